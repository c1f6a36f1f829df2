package admit

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

var t0 = time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)

func newCore(t testing.TB, yaml string) (*Core, *budget.ManualClock) {
	t.Helper()
	cfg, err := config.Parse([]byte("upstream: http://127.0.0.1:1\n" + yaml))
	if err != nil {
		t.Fatal(err)
	}
	clock := budget.NewManualClock(t0)
	c, err := New(Options{Config: cfg, Clock: clock, Secret: []byte("test-secret-0123456789"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c, clock
}

func keyRequest(key string) *Request {
	return &Request{Header: http.Header{"X-Api-Key": {key}}, Peer: netip.MustParseAddr("192.0.2.10"), Host: "app", Path: "/api/x"}
}

// The contract end to end: proceed with a ticket, finish with the worker
// time, and the key that went over is refused, with the refusal as data.
func TestCoreAdmitFinishRefuse(t *testing.T) {
	c, clock := newCore(t, `
budget: {worker_time: 10s, window: 1m, restrict_for: 5m}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 2}]
`)
	var a Admission
	c.Begin(keyRequest("sk_1"), &a)
	if a.Key != c.Fingerprint("sk_1") || a.Pool.Name() != "api" || a.Limits.Budget != 10*time.Second {
		t.Fatalf("Begin: key %q pool %q limits %+v", a.Key, a.Pool.Name(), a.Limits)
	}
	if o, ok := c.Admit(context.Background(), &a); !ok || o != OK {
		t.Fatalf("Admit: %v %v, want OK", o, ok)
	}
	if a.Pool.Active() != 1 {
		t.Errorf("pool active %d while admitted, want 1", a.Pool.Active())
	}
	clock.Advance(12 * time.Second)
	c.Finish(&a, 12*time.Second, true, OK)
	if a.Pool.Active() != 0 {
		t.Errorf("pool active %d after Finish, want 0", a.Pool.Active())
	}
	c.Finish(&a, 12*time.Second, true, OK) // a second Finish charges nothing more
	if s := c.Ledger().Status(a.Key, a.Limits); s.WorkerSeconds != 12 || s.RestrictedUntil.IsZero() {
		t.Fatalf("after the charge: %+v, want 12 s used and restricted", s)
	}

	var b Admission
	c.Begin(keyRequest("sk_1"), &b)
	o, ok := c.Admit(context.Background(), &b)
	if ok || o != Restricted {
		t.Fatalf("over budget: %v %v, want Restricted", o, ok)
	}
	r := c.Refusal(&b, o)
	if r.Status != http.StatusTooManyRequests || !strings.HasSuffix(string(r.Body), "}\n") {
		t.Fatalf("refusal %d %q", r.Status, r.Body)
	}
	h := http.Header{}
	for _, f := range r.Header {
		h[f.Name] = append(h[f.Name], f.Value)
	}
	if h.Get("Retry-After") != "300" || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("refusal fields %v", h)
	}
	if want := `"worker-time";q=10;w=60;headroom-qu="worker-seconds";pk=` + PartitionKey(b.Key); h.Get("RateLimit-Policy") != want {
		t.Errorf("RateLimit-Policy %q, want %q", h.Get("RateLimit-Policy"), want)
	}
	if want := `"worker-time";r=0;t=300;pk=` + PartitionKey(b.Key); h.Get("RateLimit") != want {
		t.Errorf("RateLimit %q, want %q", h.Get("RateLimit"), want)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil || body["error"] != "worker_time_budget_exceeded" || body["key"] != b.Key ||
		body["used_seconds"] != 12.0 || body["retry_after_seconds"] != 300.0 {
		t.Errorf("refusal body %s (%v)", r.Body, err)
	}
	c.Finish(&b, 0, false, o)
	if b.Pool.Active() != 0 {
		t.Errorf("a refused request holds the pool: %d active", b.Pool.Active())
	}
}

// A full pool is refused with 503 and no RateLimit fields: the upstream is
// busy, not the key at fault.
func TestCoreQueueFullRefusal(t *testing.T) {
	c, _ := newCore(t, `pools: [{name: api, path_prefixes: [/api/], max_concurrent: 1, queue: 0, queue_timeout: 2s}]`)
	var a, b Admission
	c.Begin(keyRequest("sk_1"), &a)
	if _, ok := c.Admit(context.Background(), &a); !ok {
		t.Fatal("first request refused")
	}
	c.Begin(keyRequest("sk_2"), &b)
	o, ok := c.Admit(context.Background(), &b)
	if ok || o != QueueFull {
		t.Fatalf("second request: %v %v, want QueueFull", o, ok)
	}
	r := c.Refusal(&b, o)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), `"pool_queue_full"`) {
		t.Errorf("refusal %d %s", r.Status, r.Body)
	}
	for _, f := range r.Header {
		if strings.HasPrefix(f.Name, "Ratelimit") {
			t.Errorf("503 carries %s", f.Name)
		}
		if f.Name == "Retry-After" && f.Value != "2" {
			t.Errorf("Retry-After %s, want the queue timeout 2", f.Value)
		}
	}
	c.Finish(&a, time.Second, true, OK)
}

// Decide counts the pool but never waits on it: beside nginx, nginx holds
// the connections.
func TestCoreDecideIgnoresPoolLimits(t *testing.T) {
	c, _ := newCore(t, `pools: [{name: api, path_prefixes: [/api/], max_concurrent: 1, queue: 0}]`)
	as := make([]Admission, 3)
	for i := range as {
		c.Begin(keyRequest("sk"), &as[i])
		if o, ok := c.Decide(&as[i]); !ok || o != OK {
			t.Fatalf("request %d: %v %v", i, o, ok)
		}
	}
	if n := c.Pool("api").Active(); n != 3 {
		t.Errorf("%d counted in the pool, want 3", n)
	}
	for i := range as {
		c.Cancel(&as[i])
	}
	if n := c.Pool("api").Active(); n != 0 {
		t.Errorf("%d left in the pool after Cancel, want 0", n)
	}
}

// The hot path a front-end pays per request for a known key: Begin, Admit,
// the RateLimit fields appended to its own buffer, and Finish.
func TestCoreHotPathDoesNotAllocate(t *testing.T) {
	c, _ := newCore(t, `
budget: {worker_time: 1h, window: 1m}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 4}]
`)
	req := keyRequest("sk_live_1")
	var a Admission
	var buf [512]byte
	run := func() {
		c.Begin(req, &a)
		if _, ok := c.Admit(context.Background(), &a); !ok {
			t.Fatal("refused")
		}
		_, _ = a.AppendRateLimit(buf[:0], a.Start)
		c.Finish(&a, time.Millisecond, true, OK)
	}
	run() // the key's first request fingerprints it and creates its entry
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// A request without an API key is keyed by its client's address: with the
// front-end's AddrKey, a connection's requests reuse one key string, and a
// request from another client (a trusted proxy's X-Forwarded-For) gets
// its own.
func TestCoreAddrKeyReused(t *testing.T) {
	c, _ := newCore(t, `
budget: {worker_time: 1h, window: 1m}
keys: {trusted_proxies: [192.0.2.10/32]}
`)
	var memo AddrKey
	h := http.Header{}
	req := &Request{Header: h, Peer: netip.MustParseAddr("192.0.2.10"), Host: "app", Path: "/x", AddrKey: &memo}
	var a Admission
	run := func() {
		c.Begin(req, &a)
		if _, ok := c.Admit(context.Background(), &a); !ok {
			t.Fatal("refused")
		}
		c.Finish(&a, time.Millisecond, true, OK)
	}
	run()
	if a.Key != "addr:192.0.2.10" {
		t.Fatalf("key %q, want addr:192.0.2.10", a.Key)
	}
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%v allocations per request with an AddrKey, want 0", n)
	}
	h.Set("X-Forwarded-For", "198.51.100.7")
	c.Begin(req, &a)
	if a.Key != "addr:198.51.100.7" {
		t.Errorf("key %q behind the trusted proxy, want addr:198.51.100.7", a.Key)
	}
	h.Del("X-Forwarded-For")
	c.Begin(req, &a)
	if a.Key != "addr:192.0.2.10" {
		t.Errorf("key %q back from the proxy itself, want addr:192.0.2.10", a.Key)
	}
	req.AddrKey = nil
	c.Begin(req, &a)
	if a.Key != "addr:192.0.2.10" {
		t.Errorf("key %q without an AddrKey, want addr:192.0.2.10", a.Key)
	}
}

func BenchmarkCore(b *testing.B) {
	c, _ := newCore(b, `
budget: {worker_time: 1h, window: 1m}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 64}]
`)
	req := keyRequest("sk_live_1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var a Admission
		for pb.Next() {
			c.Begin(req, &a)
			if _, ok := c.Admit(context.Background(), &a); ok {
				c.Finish(&a, time.Millisecond, true, OK)
			}
		}
	})
}

// TestReloadKeepsTheTimeouts: timeouts are fixed at start, so a reload
// that changes them keeps the running ones in Config (which the fast path
// reads per request) and says so, while the rest of it takes effect.
func TestReloadKeepsTheTimeouts(t *testing.T) {
	c, _ := newCore(t, "budget: {worker_time: 10s}\ntimeouts: {idle: 30s}\n")
	var logs strings.Builder
	c.log = slog.New(slog.NewTextHandler(&logs, nil))
	cfg, err := config.Parse([]byte("upstream: http://127.0.0.1:1\nbudget: {worker_time: 20s}\ntimeouts: {idle: 5s, upstream: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	got := c.Config()
	if got.Timeouts.Idle.D() != 30*time.Second || got.Timeouts.Upstream.D() == time.Second {
		t.Errorf("timeouts after reload %+v, want the running ones (idle 30s, upstream unchanged)", got.Timeouts)
	}
	if got.Budget.WorkerTime.D() != 20*time.Second {
		t.Errorf("budget after reload %v, want the new 20s", got.Budget.WorkerTime.D())
	}
	if !strings.Contains(logs.String(), "only change at restart") || !strings.Contains(logs.String(), "timeouts") {
		t.Errorf("the kept timeouts were not logged: %s", logs.String())
	}
	if cfg.Timeouts.Idle.D() != 5*time.Second {
		t.Errorf("Reload changed the caller's config: idle %v", cfg.Timeouts.Idle.D())
	}
}

// FinishAt charges as of the front-end's reading, not the core's clock:
// the restriction a charge starts runs from the reading.
func TestCoreFinishAtChargesAsOfTheReading(t *testing.T) {
	c, clock := newCore(t, `
budget: {worker_time: 10s, window: 1m, restrict_for: 5m}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 2}]
`)
	var a Admission
	c.Begin(keyRequest("sk_1"), &a)
	if o, ok := c.Admit(context.Background(), &a); !ok || o != OK {
		t.Fatalf("Admit: %v %v", o, ok)
	}
	end := clock.Now().Add(12 * time.Second) // the core's clock is not moved
	c.FinishAt(&a, end, 12*time.Second, true, OK)
	if a.Pool.Active() != 0 {
		t.Errorf("pool active %d after FinishAt, want 0", a.Pool.Active())
	}
	clock.Set(end)
	s := c.Ledger().Status(a.Key, a.Limits)
	if s.WorkerSeconds != 12 || !s.RestrictedUntil.Equal(end.Add(5*time.Minute)) {
		t.Fatalf("after FinishAt: %+v, want 12 s used, restricted until %v", s, end.Add(5*time.Minute))
	}
}

// BeginAt, AdmitAt and DecideAt take the front-end's readings: the
// Admission starts at the first, the request is in flight from the second.
func TestCoreBeginAtAdmitAtUseTheReadings(t *testing.T) {
	c, clock := newCore(t, `
budget: {worker_time: 10s, window: 1m, restrict_for: 5m}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 2}]
`)
	head := clock.Now().Add(time.Second)
	up := head.Add(2 * time.Second)
	for _, decide := range []bool{false, true} {
		var a Admission
		c.BeginAt(keyRequest("sk_at"), &a, head)
		if !a.Start.Equal(head) {
			t.Fatalf("Start %v, want the reading %v", a.Start, head)
		}
		var o Outcome
		var ok bool
		if decide {
			o, ok = c.DecideAt(&a, up)
		} else {
			o, ok = c.AdmitAt(context.Background(), &a, up)
		}
		if !ok || o != OK {
			t.Fatalf("AdmitAt: %v %v", o, ok)
		}
		clock.Set(up.Add(4 * time.Second))
		if s := c.Ledger().Status(a.Key, a.Limits); s.WorkerSeconds != 4 || s.InFlight != 1 {
			t.Errorf("decide=%v: %+v, want 4 s in flight from the reading", decide, s)
		}
		c.FinishAt(&a, clock.Now(), 0, false, OK)
		clock.Set(t0)
	}
}
