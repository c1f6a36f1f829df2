package demo

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// syntheticResult is a run with fixed times, so the summary is stable.
func syntheticResult(restricted bool) *Result {
	o, _ := Options{}.withDefaults()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	r := &Result{
		Opts: o, Scale: 1, Start: start, Ran: 30 * time.Second,
		AccessLog: "/tmp/headroom-demo/access.log", AdminURL: "http://127.0.0.1:9", KeyFP: "fp-0123456789abcdef",
		HeldAllWorkers: []Interval{{8100 * time.Millisecond, 16300 * time.Millisecond}},
		KeyWorkerAtEnd: 82.5,
	}
	if restricted {
		r.Crossed, r.CrossedAt, r.RunningAtCross = true, 10500*time.Millisecond, 4
		r.Restricted, r.RestrictedAt, r.UsedAtRestrict, r.RunningAtLimit = true, 13100*time.Millisecond, 30.2, 4
		r.Drained, r.DrainedAt = true, 36200*time.Millisecond
	}
	for i := range 150 {
		lat := 51 * time.Millisecond
		if s := float64(i) * 0.2; s >= 8.1 && s < 16.3 {
			lat = time.Duration((16.3 - s) * float64(time.Second))
		}
		r.UI = append(r.UI, Sample{ID: "ui", Start: at(float64(i) * 0.2), Latency: lat, Status: 200})
	}
	for i, w := range []float64{12, 23, 20, 27.5} {
		id := string(rune('a' + i))
		sent := 3 + float64(i/2)*5
		r.API = append(r.API, Sample{ID: id, Start: at(sent), Latency: 5 * time.Second, Abandoned: true})
		r.Upstream = append(r.Upstream, UpstreamRecord{ID: id, API: true, Arrived: at(sent), Started: at(sent),
			Done: at(sent + w), Finished: true})
	}
	for i := range 10 {
		r.API = append(r.API, Sample{ID: "r", Start: at(13.1 + float64(i)), Latency: time.Millisecond, Status: 429})
	}
	if !restricted {
		// Pages still waiting at the stop: one starved for 6 s, one sent
		// a moment before (not news).
		r.UI = append(r.UI,
			Sample{ID: "ui-w", Start: at(24), Latency: 6 * time.Second, Err: "stopped"},
			Sample{ID: "ui-x", Start: at(29.99), Latency: 10 * time.Millisecond, Err: "stopped"})
	}
	r.Log = LogSummary{Lines: 189, KeyRequests: 14, KeyRefused: 10, KeyAborted: 4, AbortedClient: 20 * time.Second,
		AbortedUpstream: 82600 * time.Millisecond, AbortedAnswered: 4}
	if !restricted {
		r.Log.UIAborted = 1 // the page sent a moment before the stop
	}
	r.GuardLog = []string{`level=WARN msg="key over its worker-time budget" key=fp-0123456789abcdef used=30.2s`}
	return r
}

func TestSummaryGolden(t *testing.T) {
	for _, tc := range []struct {
		name       string
		restricted bool
	}{{"summary-restricted.golden", true}, {"summary-never-restricted.golden", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			syntheticResult(tc.restricted).WriteSummary(&buf)
			testenv.Golden(t, filepath.Join("testdata", tc.name), buf.Bytes())
		})
	}
}

func TestFmtDurAndTruncate(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "-", 51 * time.Millisecond: "51ms", 2345 * time.Millisecond: "2.3s", 75 * time.Second: "1m15s"} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%s) = %q, want %q", d, got, want)
		}
	}
	if got := truncate("key fp-0123…: 5", 12); got != "key fp-0123…" {
		t.Errorf("truncate = %q", got)
	}
}
