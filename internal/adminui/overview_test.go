package adminui

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// snapshotSource is a Source over a fixed snapshot and a real registry
// holding the guard's series, for the arithmetic of Build; the guard's own
// tests (internal/guard/overview_test.go) and the browser test cover the
// real Source.
type snapshotSource struct {
	snap Snapshot
	reg  *prometheus.Registry
}

func (s snapshotSource) Snapshot(int) Snapshot         { return s.snap }
func (s snapshotSource) Gatherer() prometheus.Gatherer { return s.reg }

func TestBuildTotalsAndWarnings(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "headroom_requests_total"}, []string{"pool", "outcome"})
	ws := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "headroom_worker_seconds_total"}, []string{"pool", "outcome"})
	rs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "headroom_restrictions_total"}, []string{"pool", "mode"})
	lines := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "headroom_sidecar_syslog_lines_total"}, []string{"result"})
	expired := prometheus.NewCounter(prometheus.CounterOpts{Name: "headroom_sidecar_tickets_expired_total"})
	reg.MustRegister(req, ws, rs, lines, expired)
	for outcome, n := range map[string]float64{"ok": 90, "restricted": 7, "concurrency_limited": 1, "queue_full": 2, "client_abort": 3, "aborted_in_queue": 1, "upstream_error": 4} {
		req.WithLabelValues("api", outcome).Add(n)
	}
	req.WithLabelValues("ui", "ok").Add(50)
	ws.WithLabelValues("api", "ok").Add(60)
	ws.WithLabelValues("api", "client_abort").Add(30)
	ws.WithLabelValues("ui", "ok").Add(10)
	rs.WithLabelValues("api", "enforced").Add(2)
	lines.WithLabelValues("matched").Add(100)
	lines.WithLabelValues("unmatched").Add(3)
	lines.WithLabelValues("malformed").Add(0)
	expired.Add(2)

	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	src := snapshotSource{reg: reg, snap: Snapshot{
		Role: "sidecar", Started: start, Shadow: true,
		Pools: []Pool{{Name: "api", MaxConcurrent: 4}, {Name: "ui"}},
		Store: Store{Type: "redis", State: "degraded"},
	}}
	ov := Build(src, 10, start.Add(90*time.Second))

	api := ov.Pools[0].Totals
	if api.Requests != 108 || api.Refused != 8 || api.Unavailable != 2 || api.ClientAborts != 4 || api.UpstreamErrors != 4 || api.WorkerSeconds != 90 || api.AbortWorkerSeconds != 30 || api.Restrictions != 2 {
		t.Errorf("api totals: %+v", api)
	}
	if ov.Totals.Requests != 158 || ov.Totals.WorkerSeconds != 100 || ov.UptimeSeconds != 90 {
		t.Errorf("totals %+v, uptime %v", ov.Totals, ov.UptimeSeconds)
	}
	if ov.Sidecar == nil || ov.Sidecar.TicketsExpired != 2 || ov.Sidecar.Lines["unmatched"] != 3 {
		t.Fatalf("sidecar: %+v", ov.Sidecar)
	}
	if ov.Top == nil || ov.Restricted == nil {
		t.Error("empty lists must be [] in JSON, not null")
	}
	var kinds []string
	for _, w := range ov.Warnings {
		kinds = append(kinds, w.Kind+"/"+w.Severity)
	}
	// 30 of 100 worker-seconds on abandoned requests is over the 5% the
	// logs' abort_accounting finding warns at; no malformed line, no warning.
	want := "store_degraded/warning shadow/info abort_accounting/warning lost_lines/warning unmatched_lines/info"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("warnings %s\nwant     %s", got, want)
	}
	if m := ov.Warnings[2].Message; !strings.Contains(m, "30.0 s") || !strings.Contains(m, "(30% of all worker time)") {
		t.Errorf("abort warning: %s", m)
	}
}

func TestWarningsQuiet(t *testing.T) {
	ov := Overview{Store: Store{Type: "memory", State: "memory"}, Totals: Totals{Requests: 10, WorkerSeconds: 5}}
	if w := warnings(ov); len(w) != 0 {
		t.Errorf("warnings for a clean run: %+v", w)
	}
	// A little abandoned work is said, not warned about.
	ov.Totals.AbortWorkerSeconds, ov.Totals.ClientAborts = 0.1, 1
	if w := warnings(ov); len(w) != 1 || w[0].Severity != "info" {
		t.Errorf("warnings for 2%% abandoned work: %+v", w)
	}
}
