package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

func target(t *testing.T, raw string) Target {
	t.Helper()
	tg, err := ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func mustRun(t *testing.T, o Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// scheduleAttempts is how many runs a test whose assertions need the
// generator to have kept its schedule gets before it gives up: on an
// overloaded machine a run may honestly report that it did not (the report
// says so, which is checked), and the next run usually keeps it.
const scheduleAttempts = 3

// runOnSchedule runs o until a run kept its schedule and returns that run.
// A run that did not keep it must say so in its report. before, when given,
// runs ahead of each attempt (to reset a server's counters). If no attempt
// kept the schedule the test cannot do its job: it skips on a developer's
// machine and fails in CI, with what the reports said.
func runOnSchedule(t *testing.T, o Options, before ...func()) *Result {
	t.Helper()
	var reasons []string
	for attempt := 1; attempt <= scheduleAttempts; attempt++ {
		for _, f := range before {
			f()
		}
		res := mustRun(t, o)
		starved := res.Verdict.Verdict == ClientCPUBound
		if res.Valid && !starved {
			return res
		}
		var text bytes.Buffer
		res.WriteText(&text)
		if !res.Valid && !strings.Contains(text.String(), "NOT VALID for the asked rate") {
			t.Fatalf("the run was invalid but the summary does not say so:\n%s", text.String())
		}
		reasons = append(reasons, fmt.Sprintf("attempt %d: invalid %q, verdict %s %q",
			attempt, res.Invalid, res.Verdict.Verdict, res.Verdict.Reasons))
		t.Logf("the generator did not keep its schedule (the report said so); %s", reasons[len(reasons)-1])
	}
	testenv.SkipOrFail(t, fmt.Sprintf("this machine starved the generator in %d runs: %s",
		scheduleAttempts, strings.Join(reasons, "; ")))
	return nil
}

func okServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "hello, world!")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// poolServer answers with a fixed pool of workers, each holding a request
// for hold: its capacity is workers/hold requests per second.
func poolServer(t *testing.T, workers int, hold time.Duration) *httptest.Server {
	pool := make(chan struct{}, workers)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case pool <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		time.Sleep(hold)
		<-pool
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestOpenModelKeepsTheSchedule(t *testing.T) {
	srv, served := okServer(t)
	res := runOnSchedule(t, Options{Targets: []Target{target(t, srv.URL)}, Rate: 200, Duration: 3 * time.Second},
		func() { served.Store(0) })
	// The schedule is exact: 200/s for 3 s is 600 arrivals, whatever the box.
	if res.Scheduled != 600 {
		t.Errorf("scheduled %d, want 600", res.Scheduled)
	}
	if res.Sent+res.Dropped != res.Scheduled {
		t.Errorf("sent %d + dropped %d != scheduled %d", res.Sent, res.Dropped, res.Scheduled)
	}
	if res.Completed != res.Sent || served.Load() != res.Sent {
		t.Errorf("completed %d, sent %d, server saw %d", res.Completed, res.Sent, served.Load())
	}
	if res.Sent < 570 {
		t.Errorf("sent %d of 600", res.Sent)
	}
	if res.RPS < 150 || res.RPS > 210 {
		t.Errorf("rps %.1f, want about 200", res.RPS)
	}
	if res.Errors != 0 || res.Status[200] != res.Completed {
		t.Errorf("errors %d, statuses %v", res.Errors, res.Status)
	}
	if res.BytesReceived < res.Completed*13 {
		t.Errorf("bytes received %d for %d responses of 13 body bytes", res.BytesReceived, res.Completed)
	}
	if len(res.Samples) < 3 {
		t.Errorf("%d samples for 3 s", len(res.Samples))
	}
}

func TestRequestCountBound(t *testing.T) {
	srv, served := okServer(t)
	for _, o := range []Options{
		{Rate: 1000, Duration: 30 * time.Second, MaxRequests: 50},
		{VUs: 5, Duration: 30 * time.Second, MaxRequests: 40},
	} {
		o.Targets = []Target{target(t, srv.URL)}
		before := served.Load()
		start := time.Now()
		res := mustRun(t, o)
		if res.Completed != o.MaxRequests || served.Load()-before != o.MaxRequests {
			t.Errorf("%s model: completed %d, server saw %d, want %d", res.Model, res.Completed, served.Load()-before, o.MaxRequests)
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("%s model: the count bound did not stop the run (%s)", res.Model, time.Since(start))
		}
	}
}

func TestLatencyAgainstKnownDelay(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		io.WriteString(w, "slow")
	}))
	defer srv.Close()
	for _, o := range []Options{
		{Rate: 40, Duration: 2 * time.Second},
		{VUs: 4, Duration: 2 * time.Second},
	} {
		o.Targets = []Target{target(t, srv.URL)}
		res := runOnSchedule(t, o)
		for name, q := range map[string]Quantiles{"corrected": res.Latency, "uncorrected": res.LatencyUncorrected} {
			if q.P50 < 0.050 || q.P50 > 0.150 {
				t.Errorf("%s model: %s p50 %s, want within [50ms, 150ms]", res.Model, name, fmtSeconds(q.P50))
			}
			if q.P99 < 0.050 || q.Max < q.P99 || q.P99 < q.P95 || q.P95 < q.P90 || q.P90 < q.P50 {
				t.Errorf("%s model: %s quantiles out of order: %+v", res.Model, name, q)
			}
		}
		if res.Completed < 20 {
			t.Errorf("%s model: only %d requests", res.Model, res.Completed)
		}
		// Closed model: 4 users, 50 ms each, 2 s: at most 4*2/0.05 = 160.
		if res.Model == "closed" && res.Completed > 170 {
			t.Errorf("closed model: %d requests, more than 4 users can make in 2 s at 50 ms", res.Completed)
		}
	}
}

func TestFixedWorkerPoolIsServerBound(t *testing.T) {
	// 4 workers × 25 ms = 160 requests/s; ask for 400/s.
	srv := poolServer(t, 4, 25*time.Millisecond)
	res := runOnSchedule(t, Options{Targets: []Target{target(t, srv.URL)}, Rate: 400, Duration: 4 * time.Second,
		GracefulStop: time.Second})
	if res.Verdict.Verdict != ServerBound {
		t.Fatalf("verdict %s, want %s; reasons: %q", res.Verdict.Verdict, ServerBound, res.Verdict.Reasons)
	}
	if res.RPS > 250 {
		t.Errorf("rps %.0f from a server that can do 160/s", res.RPS)
	}
}

func TestDroppedWhenInFlightFull(t *testing.T) {
	srv := poolServer(t, 2, 100*time.Millisecond)
	res := mustRun(t, Options{Targets: []Target{target(t, srv.URL)}, Rate: 200, Duration: 2 * time.Second,
		MaxInFlight: 5, GracefulStop: time.Second})
	if res.Dropped == 0 {
		t.Fatalf("no drops with 5 slots against a 20/s server at 200/s")
	}
	if res.Sent+res.Dropped != res.Scheduled {
		t.Errorf("sent %d + dropped %d != scheduled %d", res.Sent, res.Dropped, res.Scheduled)
	}
	if res.Valid || !strings.Contains(strings.Join(res.Invalid, " "), "dropped") {
		t.Errorf("valid %v, invalid %q: want the run declared not valid for its drops", res.Valid, res.Invalid)
	}
	var text bytes.Buffer
	res.WriteText(&text)
	if !strings.Contains(text.String(), "NOT VALID for the asked rate") {
		t.Errorf("summary does not say the results are not valid:\n%s", text.String())
	}
}

func TestStatusesErrorsAndThresholds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/broken" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	// A port nothing listens on: refused connections are failures too.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String() + "/"
	l.Close()

	th := func(s string) Threshold {
		x, err := ParseThreshold(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	res := mustRun(t, Options{
		Targets:     []Target{target(t, srv.URL+"/ok"), target(t, srv.URL+"/broken"), target(t, dead)},
		VUs:         1,
		Duration:    10 * time.Second,
		MaxRequests: 30,
		Thresholds:  []Threshold{th("errors<1%"), th("p99<10s")},
	})
	if res.Status[200] != 10 || res.Status[503] != 10 || res.ErrorKinds["connection refused"] != 10 {
		t.Errorf("statuses %v, failures %v; want 10 each", res.Status, res.ErrorKinds)
	}
	if res.Errors != 20 {
		t.Errorf("errors %d, want 20 (10 refused + 10 503)", res.Errors)
	}
	if res.Passed || res.Thresholds[0].Passed || !res.Thresholds[1].Passed {
		t.Errorf("thresholds %+v, passed %v", res.Thresholds, res.Passed)
	}
}

func TestRequestShape(t *testing.T) {
	const key = "sk-live-0123456789"
	var bad atomic.Int64
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || string(b) != `{"q":1}` || r.Header.Get("X-Custom") != "yes" ||
			r.Header.Get("X-Api-Key") != key || r.URL.RawQuery != "page=2" {
			bad.Add(1)
		}
	}))
	defer srv.Close()
	tg := target(t, "POST "+srv.URL+"/items?page=2")
	res := mustRun(t, Options{Targets: []Target{tg}, Rate: 50, Duration: time.Second,
		Header: http.Header{"X-Custom": {"yes"}}, Body: []byte(`{"q":1}`), APIKey: key})
	if got.Load() == 0 || bad.Load() != 0 {
		t.Errorf("%d requests, %d malformed", got.Load(), bad.Load())
	}
	var out bytes.Buffer
	res.WriteJSON(&out)
	res.WriteText(&out)
	if strings.Contains(out.String(), key) || strings.Contains(out.String(), "page=2") {
		t.Errorf("the API key or query leaked into the report")
	}
}

func TestHTTP2(t *testing.T) {
	var h2, other atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		} else {
			other.Add(1)
		}
		io.WriteString(w, "ok")
	})
	cleartext := httptest.NewUnstartedServer(handler)
	cleartext.Config.Protocols = new(http.Protocols)
	cleartext.Config.Protocols.SetHTTP1(true)
	cleartext.Config.Protocols.SetUnencryptedHTTP2(true)
	cleartext.Start()
	defer cleartext.Close()
	tlsSrv := httptest.NewUnstartedServer(handler)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	defer tlsSrv.Close()

	for _, u := range []string{cleartext.URL, tlsSrv.URL} {
		h2.Store(0)
		other.Store(0)
		res := mustRun(t, Options{Targets: []Target{target(t, u)}, Rate: 50, Duration: time.Second, HTTP2: true, Insecure: true})
		if res.Completed == 0 || res.Errors != 0 || other.Load() != 0 || h2.Load() != res.Completed {
			t.Errorf("%s: %d completed, %d errors %v, %d over HTTP/2, %d otherwise", u, res.Completed, res.Errors, res.ErrorKinds, h2.Load(), other.Load())
		}
		if res.BytesReceived == 0 {
			t.Errorf("%s: no bytes counted", u)
		}
	}
}

func TestKeepAliveAndNot(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	res := mustRun(t, Options{Targets: []Target{target(t, srv.URL)}, VUs: 2, Duration: time.Second, MaxRequests: 100})
	if n := conns.Load(); n > 2 || res.Completed != 100 {
		t.Errorf("keep-alive: %d connections for %d requests by 2 users", n, res.Completed)
	}
	conns.Store(0)
	res = mustRun(t, Options{Targets: []Target{target(t, srv.URL)}, VUs: 2, Duration: time.Second, MaxRequests: 50, NoKeepAlive: true})
	if n := conns.Load(); n != res.Completed || res.Errors != 0 {
		t.Errorf("no keep-alive: %d connections for %d requests (%d errors)", n, res.Completed, res.Errors)
	}
}

func TestStagesFindCapacity(t *testing.T) {
	// 4 workers × 20 ms = 200/s.
	srv := poolServer(t, 4, 20*time.Millisecond)
	res := runOnSchedule(t, Options{Targets: []Target{target(t, srv.URL)}, GracefulStop: time.Second,
		Stages: []Stage{{2 * time.Second, 40}, {2 * time.Second, 80}, {2 * time.Second, 400}}})
	if len(res.Stages) != 3 {
		t.Fatalf("%d stage results", len(res.Stages))
	}
	if res.Scheduled != 80+160+800 {
		t.Errorf("scheduled %d, want %d", res.Scheduled, 80+160+800)
	}
	if !res.Stages[0].Sustained || res.Stages[2].Sustained {
		t.Errorf("stages: %+v", res.Stages)
	}
	if res.Capacity == nil || !res.Capacity.Found || res.Capacity.Target < 40 || res.Capacity.Target > 80 {
		t.Errorf("capacity %+v, want 40 or 80 of a 200/s server tested at 40, 80, 400", res.Capacity)
	}
	var j bytes.Buffer
	res.WriteJSON(&j)
	var m map[string]any
	if err := json.Unmarshal(j.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if st, ok := m["stages"].([]any); !ok || len(st) != 3 {
		t.Errorf("json stages: %v", m["stages"])
	}
	if c, ok := m["capacity"].(map[string]any); !ok || c["found"] != true {
		t.Errorf("json capacity: %v", m["capacity"])
	}
}

func TestClosedModelStages(t *testing.T) {
	srv := poolServer(t, 100, 10*time.Millisecond)
	res := mustRun(t, Options{Targets: []Target{target(t, srv.URL)}, VUs: 1,
		Stages: []Stage{{time.Second, 1}, {time.Second, 8}}})
	if res.Stages[1].Completed <= res.Stages[0].Completed {
		t.Errorf("8 users made %d requests, 1 user %d", res.Stages[1].Completed, res.Stages[0].Completed)
	}
}

func TestOptionErrors(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1/")
	tg := []Target{{Method: "GET", URL: u}}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Rate: 10, Duration: time.Second}, "no target"},
		{Options{Targets: tg, Duration: time.Second}, "no load asked"},
		{Options{Targets: tg, Rate: 10}, "no bound"},
		{Options{Targets: tg, Rate: 10, VUs: 2, Duration: time.Second}, "choose --rate"},
		{Options{Targets: tg, VUs: 1, Stages: []Stage{{time.Second, 1.5}}}, "whole number"},
	} {
		_, err := Run(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want an error about %q", tc.o, err, tc.want)
		}
	}
}

func TestCancelStopsTheRun(t *testing.T) {
	// A server that never answers: cancelling the run (Ctrl-C) must not
	// wait out the 30 s timeout of the requests in progress.
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	for _, o := range []Options{
		{Rate: 20, Duration: time.Hour},
		{VUs: 3, Duration: time.Hour},
		{Rate: 20, Duration: time.Hour, HTTP2: true},
	} {
		o.Targets = []Target{target(t, hang.URL)}
		o.Timeout = 30 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		start := time.Now()
		res, err := Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s model (http2 %v): cancelled run took %s", res.Model, o.HTTP2, took)
		}
		if res.Sent == 0 || res.ErrorKinds["interrupted"] != res.Sent {
			t.Errorf("%s model (http2 %v): sent %d, failures %v: want every request interrupted", res.Model, o.HTTP2, res.Sent, res.ErrorKinds)
		}
	}
}

func TestScheduleCountsAreExact(t *testing.T) {
	srv, _ := okServer(t)
	for _, tc := range []struct {
		stages []Stage
		want   int64
	}{
		{[]Stage{{time.Second, 3}}, 3},
		{[]Stage{{2 * time.Second, 1 / 1.5}}, 2},
		{[]Stage{{time.Second, 7}, {500 * time.Millisecond, 10}}, 12},
	} {
		res := mustRun(t, Options{Targets: []Target{target(t, srv.URL)}, Stages: tc.stages})
		if res.Scheduled != tc.want {
			t.Errorf("stages %v: scheduled %d, want %d", tc.stages, res.Scheduled, tc.want)
		}
	}
}

// Issue 17: the closed model's progress line showed "in flight 246" with 50
// virtual users. Each user has at most one request out, whatever the
// server's speed and however long the self-monitor takes to read /proc.
func TestClosedModelInFlightIsAtMostTheUsers(t *testing.T) {
	srv, _ := okServer(t)
	const vus = 50
	var progress []int64
	res := mustRun(t, Options{Targets: []Target{target(t, srv.URL)}, VUs: vus, Duration: 3 * time.Second,
		Progress: func(p Progress) { progress = append(progress, p.Last.InFlight) }})
	if res.Completed < vus {
		t.Fatalf("only %d requests by %d users", res.Completed, vus)
	}
	for _, s := range res.Samples {
		if s.InFlight < 0 || s.InFlight > vus {
			t.Errorf("sample at %s: %d in flight with %d virtual users", s.At, s.InFlight, vus)
		}
	}
	if len(progress) == 0 {
		t.Fatal("no progress reported in 3 s")
	}
	for i, n := range progress {
		if n < 0 || n > vus {
			t.Errorf("progress %d: %d in flight with %d virtual users", i+1, n, vus)
		}
	}
}

// Issue 17: a run where every connection was refused printed "100
// completed" and passed. It fails, says the target is unreachable, and only
// an errors threshold can declare that expected.
func TestNoResponseFailsTheRun(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/"
	l.Close()
	th := func(s string) Threshold {
		x, err := ParseThreshold(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		name       string
		thresholds []Threshold
		passed     bool
	}{
		{"no thresholds", nil, false},
		{"a latency threshold cannot hold", []Threshold{th("p95<10s")}, false},
		{"an errors threshold that fails", []Threshold{th("errors<1%")}, false},
		{"an errors threshold that expects it", []Threshold{th("errors>99%")}, true},
	} {
		for _, o := range []Options{{Rate: 50, MaxRequests: 20, Duration: 10 * time.Second}, {VUs: 2, MaxRequests: 20, Duration: 10 * time.Second}} {
			o.Targets, o.Thresholds = []Target{target(t, dead)}, tc.thresholds
			res := mustRun(t, o)
			if !res.NoResponse || res.Passed != tc.passed {
				t.Errorf("%s, %s model: no response %v, passed %v; want true, %v", tc.name, res.Model, res.NoResponse, res.Passed, tc.passed)
			}
			if len(res.Verdict.Reasons) == 0 || !strings.Contains(res.Verdict.Reasons[0], "the target is unreachable: none of the 20 requests got a response (connection refused: 20)") {
				t.Errorf("%s, %s model: verdict %s %q, want it to say the target is unreachable", tc.name, res.Model, res.Verdict.Verdict, res.Verdict.Reasons)
			}
			var text bytes.Buffer
			res.WriteText(&text)
			for _, want := range []string{"NO RESPONSE: not one of the 20 requests got an answer (connection refused: 20)", "0 answered, 20 with no response"} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("%s, %s model: summary lacks %q:\n%s", tc.name, res.Model, want, text.String())
				}
			}
		}
	}
	// A run with some answers is not a no-response run.
	srv, _ := okServer(t)
	res := mustRun(t, Options{Targets: []Target{target(t, srv.URL), target(t, dead)}, VUs: 1, MaxRequests: 10, Duration: 10 * time.Second})
	if res.NoResponse || !res.Passed || res.Failed != 5 {
		t.Errorf("half refused: no response %v, passed %v, failed %d", res.NoResponse, res.Passed, res.Failed)
	}
}
