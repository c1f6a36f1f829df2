package adminui

import (
	"fmt"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Overview is what GET /v1/overview answers: a Snapshot with the totals
// the page turns into rates, and the warnings it shows.
type Overview struct {
	Time            time.Time `json:"time"`
	Role            string    `json:"role"`
	Version         string    `json:"version"`
	UptimeSeconds   float64   `json:"uptime_seconds"`
	Shadow          bool      `json:"shadow"`
	KeysTracked     int       `json:"keys_tracked"`
	Top             []Key     `json:"top"`
	Restricted      []Key     `json:"restricted"`
	RestrictedTotal int       `json:"restricted_total"`
	Pools           []PoolRow `json:"pools"`
	Totals          Totals    `json:"totals"`
	Sidecar         *Sidecar  `json:"sidecar,omitempty"`
	Store           Store     `json:"store"`
	Warnings        []Warning `json:"warnings"`
}

// PoolRow is a pool's occupancy and its counters since start.
type PoolRow struct {
	Pool
	Totals Totals `json:"totals"`
}

// Totals are counters since the guard started (the page differences two
// polls for a rate), from headroom_requests_total, _worker_seconds_total
// and _restrictions_total.
type Totals struct {
	Requests       float64 `json:"requests"`        // every outcome
	Refused        float64 `json:"refused"`         // 429: restricted, concurrency_limited
	Unavailable    float64 `json:"unavailable"`     // 503: queue_full, queue_timeout
	ClientAborts   float64 `json:"client_aborts"`   // 499: client_abort, aborted_in_queue, body_incomplete
	UpstreamErrors float64 `json:"upstream_errors"` // 502/504
	WorkerSeconds  float64 `json:"worker_seconds"`  // charged, every outcome
	// AbortWorkerSeconds is the worker time of requests whose client had
	// left: charged in full here, and what a limiter that charges the
	// client's time would miss.
	AbortWorkerSeconds float64 `json:"abort_worker_seconds"`
	Restrictions       float64 `json:"restrictions"` // keys newly restricted (enforced and shadow)
}

// Sidecar are the sidecar's own counters: how nginx's log lines matched
// the checks that admitted them.
type Sidecar struct {
	Lines          map[string]float64 `json:"lines"` // by result: matched, late, unmatched, no_upstream, malformed
	TicketsExpired float64            `json:"tickets_expired"`
	TicketsPending float64            `json:"tickets_pending"`
}

// Warning is something the operator should know about the accounting.
type Warning struct {
	Kind     string `json:"kind"`     // abort_accounting, lost_lines, unmatched_lines, malformed_lines, shadow, store_degraded
	Severity string `json:"severity"` // info, warning
	Message  string `json:"message"`
}

// abortShareWarn is the share of worker time on abandoned requests above
// which the page warns, as the abort_accounting finding of `headroom logs
// analyze` does.
const abortShareWarn = 0.05

// Build computes the overview of src now.
func Build(src Source, top int, now time.Time) Overview {
	s := src.Snapshot(top)
	ov := Overview{
		Time:            now.UTC(),
		Role:            s.Role,
		Version:         s.Version,
		Shadow:          s.Shadow,
		KeysTracked:     s.KeysTracked,
		Top:             nonNil(s.Top),
		Restricted:      nonNil(s.Restricted),
		RestrictedTotal: s.RestrictedTotal,
		Store:           s.Store,
		Warnings:        []Warning{},
	}
	if !s.Started.IsZero() {
		ov.UptimeSeconds = math.Round(now.Sub(s.Started).Seconds())
	}
	byPool, sc := gather(src)
	for _, p := range s.Pools {
		ov.Pools = append(ov.Pools, PoolRow{Pool: p, Totals: byPool[p.Name]})
	}
	for _, t := range byPool {
		ov.Totals.add(t)
	}
	ov.Sidecar = sc
	ov.Warnings = warnings(ov)
	return ov
}

func nonNil(k []Key) []Key {
	if k == nil {
		return []Key{}
	}
	return k
}

func (t *Totals) add(o Totals) {
	t.Requests += o.Requests
	t.Refused += o.Refused
	t.Unavailable += o.Unavailable
	t.ClientAborts += o.ClientAborts
	t.UpstreamErrors += o.UpstreamErrors
	t.WorkerSeconds += o.WorkerSeconds
	t.AbortWorkerSeconds += o.AbortWorkerSeconds
	t.Restrictions += o.Restrictions
}

// gather reads the guard's counters from its registry, by pool.
func gather(src Source) (map[string]Totals, *Sidecar) {
	byPool := map[string]Totals{}
	mfs, err := src.Gatherer().Gather()
	if err != nil && len(mfs) == 0 {
		return byPool, nil
	}
	var sc *Sidecar
	side := func() *Sidecar {
		if sc == nil {
			sc = &Sidecar{Lines: map[string]float64{}}
		}
		return sc
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labels(m)
			v := value(m)
			t := byPool[l["pool"]]
			switch mf.GetName() {
			case "headroom_requests_total":
				t.Requests += v
				switch l["outcome"] {
				case "restricted", "concurrency_limited":
					t.Refused += v
				case "queue_full", "queue_timeout":
					t.Unavailable += v
				case "client_abort", "aborted_in_queue", "body_incomplete":
					t.ClientAborts += v
				case "upstream_error":
					t.UpstreamErrors += v
				}
			case "headroom_worker_seconds_total":
				t.WorkerSeconds += v
				if l["outcome"] == "client_abort" {
					t.AbortWorkerSeconds += v
				}
			case "headroom_restrictions_total":
				t.Restrictions += v
			case "headroom_sidecar_syslog_lines_total":
				side().Lines[l["result"]] += v
				continue
			case "headroom_sidecar_tickets_expired_total":
				side().TicketsExpired += v
				continue
			case "headroom_sidecar_tickets_pending":
				side().TicketsPending += v
				continue
			default:
				continue
			}
			byPool[l["pool"]] = t
		}
	}
	return byPool, sc
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// warnings are the accounting's caveats since start, most serious first.
func warnings(ov Overview) []Warning {
	w := []Warning{}
	if ov.Store.State == "degraded" {
		w = append(w, Warning{"store_degraded", "warning", "the " + ov.Store.Type + " store is unreachable: budgets are enforced on this guard's local view until it returns"})
	}
	if ov.Shadow {
		w = append(w, Warning{"shadow", "info", "shadow mode: over-budget keys are logged and counted, not refused"})
	}
	t := ov.Totals
	if t.AbortWorkerSeconds > 0 {
		share := t.AbortWorkerSeconds / math.Max(t.WorkerSeconds, t.AbortWorkerSeconds)
		sev := "info"
		if share > abortShareWarn {
			sev = "warning"
		}
		w = append(w, Warning{"abort_accounting", sev, fmt.Sprintf(
			"%.0f requests were abandoned by their clients; the upstream still worked %.1f s on them (%.0f%% of all worker time), charged in full here: a limiter that charges the client's time would have missed it",
			t.ClientAborts, t.AbortWorkerSeconds, 100*share)})
	}
	if sc := ov.Sidecar; sc != nil {
		if sc.TicketsExpired > 0 {
			w = append(w, Warning{"lost_lines", "warning", fmt.Sprintf(
				"%.0f requests' log lines never reached the sidecar (UDP loss, or an access_log not sent to it): each was charged the bound (timeouts.upstream), not its real time", sc.TicketsExpired)})
		}
		if n := sc.Lines["unmatched"]; n > 0 {
			w = append(w, Warning{"unmatched_lines", "info", fmt.Sprintf(
				"%.0f log lines had no check behind them (a sidecar restart, or a location without auth_request): charged to the key nginx logged", n)})
		}
		if n := sc.Lines["malformed"]; n > 0 {
			w = append(w, Warning{"malformed_lines", "warning", fmt.Sprintf(
				"%.0f syslog datagrams could not be read (another tag, or a log_format other than headroom nginx-config's): their worker time was not charged", n)})
		}
	}
	return w
}
