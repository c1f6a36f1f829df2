package guard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/buildinfo"
	"github.com/headroom-dev/headroom/internal/testenv"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestOverBudgetKeyIsRestrictedOthersAreNot(t *testing.T) {
	clock := budget.NewManualClock(t0)
	e := newEnv(t, envOpts{clock: clock, upstream: advancing(clock), yaml: `
budget: {worker_time: 60s, window: 10m, restrict_for: 5m}
`})
	// 2 × 30 s of worker time: the second request's charge reaches the budget.
	for i := range 2 {
		r := e.do("GET", "/work?d=30s", "X-Api-Key", "heavy-key")
		if r.status != 200 {
			t.Fatalf("request %d: status %d, want 200: %s", i, r.status, r.body)
		}
	}
	r := e.do("GET", "/work?d=1s", "X-Api-Key", "heavy-key")
	if r.status != 429 {
		t.Fatalf("over budget: status %d, want 429: %s", r.status, r.body)
	}
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 290 || ra > 300 {
		t.Errorf("Retry-After = %q, want about 300 (restrict_for 5m)", r.header.Get("Retry-After"))
	}
	fp := e.g.Fingerprint("heavy-key")
	pk := admit.PartitionKey(fp)
	if got, want := r.header.Get("RateLimit-Policy"), `"worker-time";q=60;w=600;headroom-qu="worker-seconds";pk=`+pk; got != want {
		t.Errorf("RateLimit-Policy = %s, want %s", got, want)
	}
	if got := r.header.Get("RateLimit"); !regexp.MustCompile(`^"worker-time";r=0;t=(29\d|300);pk=:[A-Za-z0-9+/=]+:$`).MatchString(got) {
		t.Errorf("RateLimit = %s", got)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("429 body is not JSON: %v: %s", err, r.body)
	}
	if body["error"] != "worker_time_budget_exceeded" || body["key"] != fp || body["restricted_until"] != t0.Add(60*time.Second+5*time.Minute).Format(time.RFC3339) {
		t.Errorf("429 body = %s", r.body)
	}

	// Another key is untouched, and sees its remaining budget.
	r = e.do("GET", "/work?d=1s", "Authorization", "Bearer light-key")
	if r.status != 200 {
		t.Fatalf("other key: status %d, want 200", r.status)
	}
	if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"worker-time";r=60;pk=`) {
		t.Errorf("other key RateLimit = %s, want the whole budget remaining", got)
	}
	kj := e.key("heavy-key") // raw key lookup
	if !kj.Restricted || kj.RestrictedUntil == nil || kj.WorkerSeconds != 60 || kj.Key != fp {
		t.Errorf("GET /v1/keys/heavy-key = %+v", kj)
	}
	if kj2 := e.key(fp); kj2.Key != fp || !kj2.Restricted { // fingerprint lookup
		t.Errorf("GET /v1/keys/%s = %+v", fp, kj2)
	}
	// The refused request never reached the upstream: 3 upstream requests
	// logged with an upstream status, the 429 without.
	lines := e.logLines(4)
	if !strings.Contains(lines[2], `" 429 `) || !strings.Contains(lines[2], " - - "+fp+" default") {
		t.Errorf("429 log line = %s", lines[2])
	}
	if !strings.Contains(e.logs.String(), "key over its worker-time budget") {
		t.Errorf("no restriction log line in:\n%s", e.logs.String())
	}
	// After the restriction period and the window, the key is served again.
	clock.Advance(11 * time.Minute)
	if r := e.do("GET", "/work?d=1s", "X-Api-Key", "heavy-key"); r.status != 200 {
		t.Errorf("after the restriction: status %d, want 200", r.status)
	}
}

func TestInFlightTimeCountsBeforeCompletion(t *testing.T) {
	clock := budget.NewManualClock(t0)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	e := newEnv(t, envOpts{clock: clock, yaml: `
budget: {worker_time: 60s, window: 10m, restrict_for: 5m}
`, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done\n")
	})})
	done := make(chan resp, 1)
	go func() { done <- e.do("GET", "/slow", "X-Api-Key", "k1") }()
	testenv.Recv(t, "upstream request started", started)
	clock.Advance(90 * time.Second)

	kj := e.key("k1")
	if kj.InFlight != 1 || kj.WorkerSeconds < 90 {
		t.Fatalf("while running: in_flight=%d worker_seconds=%v, want 1 and >= 90", kj.InFlight, kj.WorkerSeconds)
	}
	// Nothing has completed yet, but the running request already spent the
	// budget: the key's next request is refused.
	if r := e.do("GET", "/fast", "X-Api-Key", "k1"); r.status != 429 {
		t.Errorf("second request while the first runs: status %d, want 429", r.status)
	}
	close(release)
	if r := testenv.Recv(t, "slow request", done); r.status != 200 {
		t.Errorf("slow request: status %d", r.status)
	}
	kj = e.key("k1")
	if kj.InFlight != 0 || kj.WorkerSeconds != 90 || !kj.Restricted {
		t.Errorf("after: %+v, want 90 s charged, restricted", kj)
	}
}

// A client that gives up after a moment does not stop the bill: the
// upstream request runs to its end, the key is charged its real duration,
// and the access log has 499 at the client's time next to the upstream's
// real status and time (seeds/03). Real clock: the margins are wide (the
// client leaves after 100 ms, the upstream works 1.5 s).
func TestClientAbortIsChargedRealUpstreamTime(t *testing.T) {
	upstreamDone := make(chan struct{})
	e := newEnv(t, envOpts{yaml: `
budget: {worker_time: 60s, window: 10m, restrict_for: 5m}
`, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		w.WriteHeader(201)
		io.WriteString(w, strings.Repeat("x", 100<<10))
		close(upstreamDone)
	})})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if r := e.doCtx(ctx, "GET", "/report?api_key=secret-in-query", "User-Agent", "NewRelic Exporter"); r.status != -1 {
		t.Fatalf("client should have timed out, got status %d", r.status)
	}
	testenv.Recv(t, "upstream finished", upstreamDone)
	line := e.logLines(1)[0]
	f := parseLine(t, line)
	if f.status != 499 || f.upstreamStatus != "201" {
		t.Errorf("status %d upstream %s, want 499 and 201: %s", f.status, f.upstreamStatus, line)
	}
	if f.bytes != 0 {
		t.Errorf("bytes_sent %d to a client that was gone before the response", f.bytes)
	}
	if f.upstreamTime < 1.5 || f.requestTime >= f.upstreamTime {
		t.Errorf("request_time %.3f upstream_time %.3f: want the client's short time and the upstream's >= 1.5 s: %s", f.requestTime, f.upstreamTime, line)
	}
	if strings.Contains(line, "secret-in-query") || !strings.Contains(line, "api_key=REDACTED") {
		t.Errorf("key in the query not redacted: %s", line)
	}
	kj := e.key("addr:127.0.0.1")
	if kj.WorkerSeconds < 1.5 || kj.InFlight != 0 {
		t.Errorf("charged %v s (in flight %d), want the upstream's full >= 1.5 s", kj.WorkerSeconds, kj.InFlight)
	}
	if !strings.Contains(metricsText(t, e), `headroom_requests_total{outcome="client_abort",pool="default"} 1`) {
		t.Errorf("client_abort not counted")
	}
}

func TestPoolsKeepUIFlowingWhileAPISaturates(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, envOpts{yaml: `
budget: {worker_time: 0s}
pools:
  - {name: api, path_prefixes: [/api/], max_concurrent: 2, queue: 1, queue_timeout: 300ms}
  - {name: ui, max_concurrent: 4}
`, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			<-release
		}
		io.WriteString(w, "ok\n")
	})})
	api := e.g.Core().Pool("api")
	var wg sync.WaitGroup
	results := make(chan int, 3)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- e.do("GET", "/api/export", "X-Api-Key", "api-"+strconv.Itoa(i)).status
		}()
	}
	testenv.Eventually(t, "2 api requests upstream", func() bool { return api.Active() == 2 })
	queued := make(chan resp, 1)
	go func() { queued <- e.do("GET", "/api/export", "X-Api-Key", "api-q") }()
	testenv.Eventually(t, "1 api request queued", func() bool { return api.Waiting() == 1 })

	// The queue is full: refused at once with 503 and Retry-After.
	r := e.do("GET", "/api/export", "X-Api-Key", "api-x")
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "pool_queue_full") {
		t.Errorf("api over its pool: %d %q %s, want 503 pool_queue_full with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	// The UI is served while the API pool is saturated.
	for range 10 {
		if r := e.do("GET", "/dashboard"); r.status != 200 {
			t.Fatalf("ui request while api saturated: status %d", r.status)
		}
	}
	// The queued request waited its queue_timeout, then 503.
	if q := testenv.Recv(t, "queued request", queued); q.status != 503 || !strings.Contains(q.body, "pool_queue_timeout") {
		t.Errorf("queued api request: %d %s, want 503 pool_queue_timeout", q.status, q.body)
	}
	close(release)
	wg.Wait()
	close(results)
	for st := range results {
		if st != 200 {
			t.Errorf("api request: status %d, want 200", st)
		}
	}
	m := metricsText(t, e)
	for _, want := range []string{
		`headroom_requests_total{outcome="ok",pool="ui"} 10`,
		`headroom_requests_total{outcome="ok",pool="api"} 2`,
		`headroom_requests_total{outcome="queue_full",pool="api"} 1`,
		`headroom_requests_total{outcome="queue_timeout",pool="api"} 1`,
		`headroom_in_flight{pool="api"} 0`,
		`headroom_queue_depth{pool="api"} 0`,
		`headroom_upstream_duration_seconds_count{pool="ui"} 10`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestMaxInFlightAndShadow(t *testing.T) {
	clock := budget.NewManualClock(t0)
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	e := newEnv(t, envOpts{clock: clock, yaml: `
budget: {worker_time: 10s, window: 10m, restrict_for: 5m, max_in_flight: 1}
tiers:
  - {name: trial, shadow: true}
overrides:
  - {key: shadow-key, tier: trial}
`, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			started <- struct{}{}
			<-release
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
			clock.Advance(d)
		}
		io.WriteString(w, "ok\n")
	})})
	done := make(chan int, 1)
	go func() { done <- e.do("GET", "/block", "X-Api-Key", "busy").status }()
	testenv.Recv(t, "upstream request started", started)
	r := e.do("GET", "/x", "X-Api-Key", "busy")
	if r.status != 429 || !strings.Contains(r.body, "too_many_in_flight") || r.header.Get("Retry-After") != "1" {
		t.Errorf("second concurrent request: %d %s", r.status, r.body)
	}
	if got := r.header.Get("RateLimit-Policy"); !strings.Contains(got, `"concurrency";q=1;qu="concurrent-requests"`) {
		t.Errorf("RateLimit-Policy = %s", got)
	}
	close(release)
	testenv.Recv(t, "blocked request", done)

	// Shadow tier: over budget, but served; counted as would-restrict.
	for i := range 3 {
		if r := e.do("GET", "/x?d=20s", "X-Api-Key", "shadow-key"); r.status != 200 {
			t.Fatalf("shadow request %d: status %d, want 200 (shadow mode never refuses)", i, r.status)
		}
	}
	kj := e.key("shadow-key")
	if !kj.Shadow || !kj.Restricted || kj.Tier != "trial" {
		t.Errorf("shadow key = %+v, want shadow, marked restricted, tier trial", kj)
	}
	m := metricsText(t, e)
	for _, want := range []string{
		`headroom_restrictions_total{mode="shadow",pool="default"} 1`,
		`headroom_requests_total{outcome="shadow_restricted",pool="default"} 2`,
		`headroom_requests_total{outcome="concurrency_limited",pool="default"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestUpstreamDownIs502NotAHang(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.NotFoundHandler()})
	e.upstream.Close() // nothing listens there any more
	start := time.Now()
	r := e.do("GET", "/anything", "X-Api-Key", "k")
	if r.status != 502 || !strings.Contains(r.body, "upstream_unavailable") {
		t.Errorf("status %d %s, want 502 upstream_unavailable", r.status, r.body)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s", el)
	}
	if !strings.Contains(e.logs.String(), "upstream request failed") || !strings.Contains(e.logs.String(), "connection refused") {
		t.Errorf("no clear log line:\n%s", e.logs.String())
	}
	f := parseLine(t, e.logLines(1)[0])
	if f.status != 502 || f.upstreamStatus != "-" {
		t.Errorf("log: %+v", f)
	}
	if kj := e.key("k"); kj.InFlight != 0 {
		t.Errorf("in flight after failure: %d", kj.InFlight)
	}
}

// A client that leaves while its request waits in a pool's queue is logged
// 499 without an upstream part, and leaves the queue.
func TestClientAbortWhileQueued(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, envOpts{yaml: `
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 1, queue: 5, queue_timeout: 1m}]
`, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	})})
	api := e.g.Core().Pool("api")
	first := make(chan int, 1)
	go func() { first <- e.do("GET", "/api/a").status }()
	testenv.Eventually(t, "the first request upstream", func() bool { return api.Active() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan resp, 1)
	go func() { queued <- e.doCtx(ctx, "GET", "/api/b") }()
	testenv.Eventually(t, "the second request queued", func() bool { return api.Waiting() == 1 })
	cancel()
	testenv.Recv(t, "the queued client to give up", queued)
	testenv.Eventually(t, "the queue to empty", func() bool { return api.Waiting() == 0 })
	f := parseLine(t, e.logLines(1)[0])
	if f.status != 499 || f.upstreamStatus != "-" || f.pool != "api" {
		t.Errorf("queued abort logged as %+v", f)
	}
	close(release)
	if st := testenv.Recv(t, "the first request", first); st != 200 {
		t.Errorf("first request: %d", st)
	}
	if m := metricsText(t, e); !strings.Contains(m, `headroom_requests_total{outcome="aborted_in_queue",pool="api"} 1`) {
		t.Errorf("aborted_in_queue not counted")
	}
}

// An upstream that accepts but never answers gets 504 after
// timeouts.upstream_header, not a hang.
func TestUpstreamHeaderTimeoutIs504(t *testing.T) {
	stop := make(chan struct{})
	e := newEnv(t, envOpts{yaml: "timeouts: {upstream_header: 200ms}\n", upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})})
	defer close(stop)
	r := e.do("GET", "/hang")
	if r.status != 504 {
		t.Errorf("status %d, want 504: %s", r.status, r.body)
	}
	if !strings.Contains(e.logs.String(), "status=504") {
		t.Errorf("no log line for the timeout:\n%s", e.logs.String())
	}
}

// Protocol upgrades (WebSocket) pass through: the guard's response writer
// lets ReverseProxy hijack the client connection.
func TestUpgradePassesThrough(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString(line)
		brw.Flush()
	})})
	c, err := net.Dial("tcp", strings.TrimPrefix(e.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo through the tunnel: %q %v", line, err)
	}
	c.Close()
	if f := parseLine(t, e.logLines(1)[0]); f.status != 101 || f.upstreamStatus != "101" {
		t.Errorf("upgrade logged as %+v", f)
	}
}

// TestExpectContinue: a client that waits for 100 Continue before sending
// its body gets it (on the fast path the request is handed to net/http,
// which answers the expectation), then its body reaches the upstream, and
// the keep-alive connection serves a next request.
func TestExpectContinue(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b))
	})})
	c, err := net.Dial("tcp", strings.TrimPrefix(e.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue before the body, got %q %v", line, err)
	}
	if rest, _ := br.ReadString('\n'); rest != "\r\n" {
		t.Fatalf("100 Continue followed by %q", rest)
	}
	io.WriteString(c, "hello")
	var res *http.Response
	for res == nil || res.StatusCode < 200 {
		// More 1xx may come (the upstream's own 100, passed on).
		if res, err = http.ReadResponse(br, nil); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != "got hello" {
		t.Fatalf("after 100 Continue: %d %q", res.StatusCode, b)
	}
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("next request on the connection: %v %v", res, err)
	}
}

func TestAdminRestrictAndLift(t *testing.T) {
	clock := budget.NewManualClock(t0)
	e := newEnv(t, envOpts{clock: clock, upstream: advancing(clock)})
	var kj admin.KeyJSON
	if st := e.adminDo("POST", "/v1/keys/ops-key/restrict?for=10m", &kj); st != 200 || !kj.Restricted || *kj.RestrictedUntil != t0.Add(10*time.Minute).Format(time.RFC3339) {
		t.Fatalf("restrict: %d %+v", st, kj)
	}
	if r := e.do("GET", "/", "X-Api-Key", "ops-key"); r.status != 429 {
		t.Errorf("restricted by an operator: status %d, want 429", r.status)
	}
	if st := e.adminDo("POST", "/v1/keys/ops-key/restrict?for=banana", nil); st != 400 {
		t.Errorf("bad duration: status %d, want 400", st)
	}
	if st := e.adminDo("DELETE", "/v1/keys/ops-key/restriction", &kj); st != 200 || kj.Restricted || kj.RestrictedUntil != nil {
		t.Fatalf("lift: %d %+v", st, kj)
	}
	if r := e.do("GET", "/", "X-Api-Key", "ops-key"); r.status != 200 {
		t.Errorf("after lift: status %d, want 200", r.status)
	}
	var list struct {
		Keys []admin.KeyJSON `json:"keys"`
	}
	e.do("GET", "/?d=5s", "X-Api-Key", "second")
	if st := e.adminDo("GET", "/v1/keys", &list); st != 200 || len(list.Keys) == 0 || list.Keys[0].Key != e.g.Fingerprint("second") {
		t.Errorf("GET /v1/keys: %d %+v", st, list)
	}
	var health map[string]any
	if st := e.adminDo("GET", "/healthz", &health); st != 200 || health["status"] != "ok" {
		t.Errorf("healthz: %d %v", st, health)
	}
}

func TestAdminToken(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.NotFoundHandler(), yaml: `
admin: {token: s3cret-admin-token}
`})
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/metrics", "", 401},
		{"/v1/keys", "Bearer wrong", 401},
		{"/v1/keys", "Bearer s3cret-admin-token", 200},
	} {
		req, _ := http.NewRequest("GET", e.admin.URL+c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s with %q: %d, want %d", c.path, c.auth, res.StatusCode, c.want)
		}
	}
}

// Keys never appear in clear: not in the access log, the operational log,
// the metrics or the key listing.
func TestKeysNeverInClear(t *testing.T) {
	clock := budget.NewManualClock(t0)
	e := newEnv(t, envOpts{clock: clock, upstream: advancing(clock), yaml: `
budget: {worker_time: 10s, window: 1m, restrict_for: 1m}
keys:
  sources: [{header: X-Api-Key}, {bearer: true}, {query: api_key}]
`})
	secrets := []string{"sk_live_HEADERKEY123", "sk_live_BEARERKEY456", "sk_live_QUERYKEY789"}
	for range 2 {
		e.do("GET", "/a?d=6s", "X-Api-Key", secrets[0])
		e.do("GET", "/b?d=6s", "Authorization", "Bearer "+secrets[1])
		e.do("GET", "/c?d=6s&api_key="+secrets[2]+"&page=2")
	}
	e.logLines(6)
	var list map[string]any
	e.adminDo("GET", "/v1/keys", &list)
	listing, _ := json.Marshal(list)
	all := e.alog.String() + e.logs.String() + metricsText(t, e) + string(listing)
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("key %s appears in clear", s)
		}
		if !strings.Contains(string(listing), e.g.Fingerprint(s)) {
			t.Errorf("listing lacks the fingerprint of %s: %s", s, listing)
		}
	}
	if !strings.Contains(e.alog.String(), "/c?d=6s&api_key=REDACTED&page=2") {
		t.Errorf("query not redacted as expected:\n%s", e.alog.String())
	}
}

func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	for _, c := range []struct {
		name, trusted, xff, want string
	}{
		{"untrusted peer: header ignored", "", "203.0.113.9", "addr:127.0.0.1"},
		{"trusted peer", "127.0.0.0/8", "203.0.113.9", "addr:203.0.113.9"},
		{"forged left part ignored", "127.0.0.1", "198.51.100.1, 203.0.113.9", "addr:203.0.113.9"},
		{"chain of trusted proxies", "[127.0.0.1, 10.0.0.0/8]", "203.0.113.9, 10.1.2.3", "addr:203.0.113.9"},
		{"garbage stops the walk", "127.0.0.1", "203.0.113.9, nonsense", "addr:127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := ""
			if c.trusted != "" {
				if !strings.HasPrefix(c.trusted, "[") {
					c.trusted = "[" + c.trusted + "]"
				}
				tp = "keys: {trusted_proxies: " + c.trusted + "}\n"
			}
			seen := make(chan string, 1)
			e := newEnv(t, envOpts{yaml: tp, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Get("X-Forwarded-For")
			})})
			e.do("GET", "/", "X-Forwarded-For", c.xff)
			xff := testenv.Recv(t, "upstream request", seen)
			f := parseLine(t, e.logLines(1)[0])
			if f.key != c.want {
				t.Errorf("key %s, want %s", f.key, c.want)
			}
			// The upstream sees the client's XFF only from a trusted peer.
			if trusted := c.trusted != ""; trusted != strings.Contains(xff, strings.Split(c.xff, ",")[0]) {
				t.Errorf("upstream X-Forwarded-For = %q", xff)
			}
		})
	}
}

// Issue 17 item 6: an untrusted client's X-Real-Ip reached the upstream
// unchanged, where applications read it as the client's address. It is
// treated as X-Forwarded-For is: the upstream sees the client the guard
// resolved, the peer or, behind a trusted proxy, the forwarded address.
func TestRealIPOnlyFromTrustedProxies(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		header     []string
		want       string
	}{
		{"untrusted client's claim replaced", "", []string{"X-Real-Ip", "203.0.113.9"}, "127.0.0.1"},
		{"no header: set to the client", "", nil, "127.0.0.1"},
		{"trusted proxy: the forwarded client", "keys: {trusted_proxies: [127.0.0.1]}\n", []string{"X-Forwarded-For", "203.0.113.9", "X-Real-Ip", "198.51.100.1"}, "203.0.113.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen := make(chan []string, 1)
			e := newEnv(t, envOpts{yaml: c.yaml, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Values("X-Real-Ip")
			})})
			e.do("GET", "/", c.header...)
			if got := testenv.Recv(t, "upstream request", seen); len(got) != 1 || got[0] != c.want {
				t.Errorf("upstream X-Real-Ip = %q, want %q", got, c.want)
			}
		})
	}
}

func TestReloadKeepsOldConfigWhenInvalid(t *testing.T) {
	clock := budget.NewManualClock(t0)
	e := newEnv(t, envOpts{clock: clock, upstream: advancing(clock), yaml: `
budget: {worker_time: 60s, window: 10m, restrict_for: 5m}
`})
	bad := *e.g.Config()
	bad.Pools = append(bad.Pools, bad.Pools...)
	bad.Pools = append(bad.Pools, poolCfg("api", 0))
	err := e.g.Reload(&bad)
	if err == nil || !strings.Contains(err.Error(), "pools[0].max_concurrent: must be > 0") {
		t.Fatalf("bad reload: %v", err)
	}
	if e.g.Config().Budget.WorkerTime.D() != 60*time.Second {
		t.Fatalf("config changed by a refused reload")
	}
	good := *e.g.Config()
	good.Overrides = append(good.Overrides, overrideCfg("tiny", time.Second))
	if err := e.g.Reload(&good); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	e.do("GET", "/?d=2s", "X-Api-Key", "tiny")
	if r := e.do("GET", "/", "X-Api-Key", "tiny"); r.status != 429 {
		t.Errorf("override from the reload not applied: %d", r.status)
	}
	m := metricsText(t, e)
	if !strings.Contains(m, `headroom_config_reloads_total{result="error"} 1`) || !strings.Contains(m, `headroom_config_reloads_total{result="ok"} 1`) {
		t.Errorf("reload metrics:\n%s", grep(m, "reloads"))
	}
}

func metricsText(t *testing.T, e *env) string {
	t.Helper()
	res, err := http.Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// logFields are the parts of a HeadroomFormat line tests look at.
type logFields struct {
	status         int
	bytes          int64
	requestTime    float64
	upstreamStatus string
	upstreamTime   float64
	key, pool      string
}

var lineRE = regexp.MustCompile(`^(\S+) - - \[[^\]]+\] "[^"]*" (\d+) (\d+) "[^"]*" "[^"]*" ([\d.]+) (\S+) (\S+) (\S+) (\S+)$`)

func parseLine(t *testing.T, line string) logFields {
	t.Helper()
	m := lineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a headroom log line: %q", line)
	}
	var f logFields
	f.status, _ = strconv.Atoi(m[2])
	f.bytes, _ = strconv.ParseInt(m[3], 10, 64)
	f.requestTime, _ = strconv.ParseFloat(m[4], 64)
	f.upstreamStatus = m[5]
	f.upstreamTime, _ = strconv.ParseFloat(m[6], 64)
	f.key, f.pool = m[7], m[8]
	return f
}

// TestStandardMetrics: beside its own series the admin API serves what
// every Prometheus user expects: the Go runtime, the process and the build.
func TestStandardMetrics(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})})
	m := metricsText(t, e)
	in := buildinfo.Read()
	for _, want := range []string{
		"\ngo_goroutines ",
		"\ngo_memstats_heap_alloc_bytes ",
		"\nprocess_resident_memory_bytes ",
		"\nprocess_open_fds ",
		`headroom_build_info{goversion="` + in.GoVersion + `",revision="` + in.ShortRevision() + `",version="` + in.Version + `"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Issue 17 item 4: an upstream that resets after 12 of 100,000 bytes
// reached the client as a cut connection but was logged 200 with upstream
// status 200. It is logged and counted as an upstream failure.
func TestTruncatedUpstreamBodyIsAnUpstreamFailure(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "twelve bytes")
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		c.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
		c.Close()
	})})
	res := e.do("GET", "/big", "X-Api-Key", "k-trunc")
	if res.status == http.StatusOK && len(res.body) == 100000 {
		t.Fatalf("the client got the whole body from an upstream that sent 12 bytes")
	}
	f := parseLine(t, e.logLines(1)[0])
	if f.status != http.StatusBadGateway || f.upstreamStatus != "502" {
		t.Errorf("logged status %d, upstream %s; want 502 and 502 for a body cut short:\n%s", f.status, f.upstreamStatus, e.alog.String())
	}
	m := metricsText(t, e)
	if !strings.Contains(m, `headroom_requests_total{outcome="upstream_error",pool="default"} 1`) ||
		strings.Contains(m, `headroom_requests_total{outcome="ok",pool="default"} 1`) {
		t.Errorf("not counted as an upstream failure:\n%s", grepLines(m, "headroom_requests_total"))
	}
	if !strings.Contains(e.logs.String(), "upstream response broken off") {
		t.Errorf("no log line says the upstream's answer was cut short:\n%s", e.logs.String())
	}
}

// grepLines keeps the lines of s that contain sub, comments left out.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
