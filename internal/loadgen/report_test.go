package loadgen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// goldenResult is a staged open-model run, built by hand so the reports are
// deterministic.
func goldenResult() *Result {
	samples := sec(6, func(i int, s *Sample) {
		stage := i / 3
		rate := []int64{100, 400}[stage]
		s.Stage, s.Target = stage, float64(rate)
		s.Scheduled, s.Sent = rate, rate
		s.Completed = min(rate, 200)
		s.BytesReceived = s.Completed * 150
		s.NetRx = float64(s.BytesReceived) * 2
		s.NetTx = s.NetRx
		s.P50, s.P95, s.P99, s.Max = 0.02, 0.03*float64(i+1), 0.04*float64(i+1), 0.05*float64(i+1)
		s.RawP95, s.LagP99 = s.P95, 0.001
		s.InFlight = int64(i * 50)
	})
	res := &Result{
		Model: "open", Rate: 100, Elapsed: 6 * time.Second,
		Targets:   []string{"GET http://127.0.0.1:8080/feed?…"},
		Protocol:  "HTTP/1.1",
		Scheduled: 1500, Sent: 1500, Completed: 900, Errors: 12, Failed: 2, RPS: 149.7,
		BytesReceived: 135000, BytesPerSec: 22500,
		Latency:            Quantiles{P50: 0.021, P90: 0.15, P95: 0.18, P99: 0.24, Max: 0.3, Mean: 0.05},
		LatencyUncorrected: Quantiles{P50: 0.02, P90: 0.14, P95: 0.17, P99: 0.23, Max: 0.29, Mean: 0.045},
		SendLag:            Quantiles{P50: 0.0002, P90: 0.0006, P95: 0.0008, P99: 0.001, Max: 0.004},
		Status:             map[int]int64{200: 888, 503: 10},
		ErrorKinds:         map[string]int64{"timeout": 2},
		Valid:              true,
		Samples:            samples,
		Iface:              "lo",
		Stages: []StageResult{
			{Stage: 0, Target: 100, Duration: 3 * time.Second, Sent: 300, Completed: 300, RPS: 100, Latency: Quantiles{P95: 0.03}, Sustained: true},
			{Stage: 1, Target: 400, Duration: 3 * time.Second, Sent: 1200, Completed: 600, Errors: 12, RPS: 200, Latency: Quantiles{P95: 0.18}, Why: "answered 200/s of 400/s"},
		},
	}
	res.Capacity = capacity(res.Stages, true)
	res.Verdict = Diagnose(res.Samples, DiagnoseConfig{Open: true, Iface: "lo"})
	th, _ := ParseThreshold("p95<100ms")
	res.Thresholds, res.Passed = checkThresholds([]Threshold{th}, res)
	return res
}

func TestReportsGolden(t *testing.T) {
	res := goldenResult()
	var text, js, csv bytes.Buffer
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := WriteCSV(&csv, res.Samples); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/summary.txt", text.Bytes())
	testenv.Golden(t, "testdata/summary.json", js.Bytes())
	testenv.Golden(t, "testdata/samples.csv", csv.Bytes())
}

// TestJSONHasTheDesignFields checks the names other tools rely on
// (DESIGN.md): requests, rps, latency{p50,p95,p99} in seconds,
// bytes_received_per_s, errors, verdict, reasons.
func TestJSONHasTheDesignFields(t *testing.T) {
	var js bytes.Buffer
	goldenResult().WriteJSON(&js)
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"requests", "rps", "latency", "bytes_received_per_s", "errors", "verdict", "reasons"} {
		if _, ok := m[k]; !ok {
			t.Errorf("--json lacks %q", k)
		}
	}
	lat := m["latency"].(map[string]any)
	for _, k := range []string{"p50", "p95", "p99"} {
		if _, ok := lat[k].(float64); !ok {
			t.Errorf("latency lacks %q", k)
		}
	}
	if lat["p95"].(float64) != 0.18 {
		t.Errorf("latency.p95 = %v, want 0.18 (seconds)", lat["p95"])
	}
	switch m["verdict"] {
	case ServerBound, ClientCPUBound, ClientNetworkBound, Inconclusive:
	default:
		t.Errorf("verdict %v is not one of the four", m["verdict"])
	}
}

func TestProgressLine(t *testing.T) {
	line := ProgressLine(Progress{Elapsed: 5 * time.Second, Total: 30 * time.Second,
		Last:      Sample{Interval: time.Second, Completed: 498, P95: 0.0123, InFlight: 7},
		Completed: 2490, Errors: 25, Dropped: 3, Verdict: Verdict{Verdict: Inconclusive}})
	for _, want := range []string{"5s/30s", "498/s", "p95 12.3ms", "errors 1.0%", "dropped 3", "verdict so far: inconclusive"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("progress line spans lines: %q", line)
	}
}

// Issue 17: the summary says when the corrected latency is mostly the
// generator's own send lag, and says nothing when it is not.
func TestReportWarnsWhenSendLagDominates(t *testing.T) {
	for _, tc := range []struct {
		name        string
		corr, lag   float64
		wantWarning bool
	}{
		{"loopback at 2000/s", 0.000601, 0.000522, true},
		{"a 20ms server", 0.021, 0.0002, false},
		{"both tiny", 0.00004, 0.00003, false},
	} {
		res := &Result{Model: "open", Rate: 2000, Elapsed: 6 * time.Second, Valid: true,
			Latency:            Quantiles{P50: tc.corr, P90: tc.corr, P95: tc.corr, P99: tc.corr, Max: tc.corr},
			LatencyUncorrected: Quantiles{P50: tc.corr - tc.lag},
			SendLag:            Quantiles{P50: tc.lag}}
		var text bytes.Buffer
		if err := res.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(text.String(), "warning: the generator's send lag is")
		if got != tc.wantWarning {
			t.Errorf("%s: warning %v, want %v:\n%s", tc.name, got, tc.wantWarning, text.String())
		}
		if tc.wantWarning && !strings.Contains(text.String(), "send lag is 87% of the corrected p50 (522µs of 601µs)") {
			t.Errorf("%s: the warning does not give the figures:\n%s", tc.name, text.String())
		}
	}
}
