package store_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headroom-dev/headroom/internal/guard"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/store"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// fleetProxy is one `headroom proxy` (guard.Run) with a Redis store.
type fleetProxy struct {
	name         string
	proxy, admin string // base URLs
	log          *testenv.Buffer
}

// startFleetProxy starts a proxy with a 1 s per minute budget and a 100 ms
// sync; each tune changes the config before it is validated.
func startFleetProxy(t *testing.T, name, upstream, redisURL, prefix string, tune ...func(*config.Config)) *fleetProxy {
	t.Helper()
	dur := func(d time.Duration) *config.Duration { c := config.Duration(d); return &c }
	cfg := &config.Config{
		Listen:   "127.0.0.1:0",
		Upstream: upstream,
		Admin:    config.Admin{Listen: "127.0.0.1:0"},
		Keys:     config.Keys{Secret: "fleet-test-secret-0123456789"},
		Budget:   config.Limits{WorkerTime: dur(time.Second), Window: dur(time.Minute), RestrictFor: dur(time.Minute)},
		Store: config.Store{Type: "redis", URL: redisURL, Prefix: prefix,
			SyncInterval: config.Duration(100 * time.Millisecond), SyncTimeout: config.Duration(time.Second)},
	}
	for _, f := range tune {
		f(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := &fleetProxy{name: name, log: &testenv.Buffer{}}
	lg := slog.New(slog.NewTextHandler(p.log, nil))
	s, err := store.NewRedis(store.RedisOptions{URL: cfg.Store.URL, Prefix: cfg.Store.Prefix, ID: name,
		Interval: cfg.Store.SyncInterval.D(), Timeout: cfg.Store.SyncTimeout.D(), MaxKeys: cfg.Store.MaxKeys, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- guard.Run(ctx, guard.ServerOptions{Config: cfg, Snapshots: s, Logger: lg,
			Ready: func(proxy, admin net.Addr) { ready <- [2]net.Addr{proxy, admin} }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done: // the final push may fail if Redis is gone: that is reported, not a test failure
		case <-time.After(30 * time.Second):
			t.Errorf("%s: guard.Run did not return", name)
		}
		s.Close()
	})
	select {
	case a := <-ready:
		p.proxy, p.admin = "http://"+a[0].String(), "http://"+a[1].String()
	case err := <-done:
		t.Fatalf("%s: guard.Run: %v", name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not ready", name)
	}
	return p
}

func (p *fleetProxy) get(t *testing.T, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", p.proxy+"/work", nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (p *fleetProxy) adminJSON(t *testing.T, method, path string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, p.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s admin: %v", p.name, err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s admin %s %s: %v", p.name, method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s admin %s %s: %d %v", p.name, method, path, resp.StatusCode, v)
	}
	return v
}

// TestFleetOfTwoProxies runs two real proxies (guard.Run, as `headroom
// proxy --store redis://…` does) over loopback HTTP in front of one
// sleeping upstream, sharing one redis-server.
func TestFleetOfTwoProxies(t *testing.T) {
	rs := testenv.StartRedis(t) // its own: the test kills it
	upstream := testenv.SlowUpstream(t, 300*time.Millisecond)
	prefix := "e2e:"
	a := startFleetProxy(t, "a", upstream.URL, rs.URL(), prefix)
	b := startFleetProxy(t, "b", upstream.URL, rs.URL(), prefix)

	// One client's 0.3 s requests, alternately through a and b, until the
	// fleet refuses: the 1 s budget is held across both (each alone would
	// admit four), give or take the one request running when it ran out.
	const half = "secret-api-key-half"
	admitted := 0
	for i := 0; ; i++ {
		p := []*fleetProxy{a, b}[i%2]
		code := p.get(t, half)
		if code == http.StatusTooManyRequests {
			break
		}
		if code != http.StatusOK || i == 20 {
			t.Fatalf("%s: request %d for %s got %d", p.name, i, half, code)
		}
		admitted++
	}
	if admitted < 2 || float64(admitted)*0.3 > 1.0+0.3 {
		t.Errorf("the fleet admitted %d requests of 0.3 s on a 1 s budget: want at least one through each and at most the budget plus one request", admitted)
	}
	for _, p := range []*fleetProxy{a, b} {
		testenv.Eventually(t, p.name+" refuses "+half, func() bool { return p.get(t, half) == http.StatusTooManyRequests })
	}

	// An operator restricts a key on a: b refuses it too.
	const banned = "secret-api-key-banned"
	a.adminJSON(t, "POST", "/v1/keys/"+banned+"/restrict?for=10m")
	testenv.Eventually(t, "b sees the restriction made on a", func() bool {
		return b.adminJSON(t, "GET", "/v1/keys/"+banned)["restricted"] == true
	})
	if code := b.get(t, banned); code != http.StatusTooManyRequests {
		t.Errorf("b: %s got %d, want 429", banned, code)
	}

	// Raw API keys never reach Redis: keys and restrictions are fingerprints.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	restr, err := rdb.HGetAll(ctx, prefix+"{restrictions}").Result()
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(keys, " ")
	for k := range restr {
		all += " " + k
	}
	if strings.Contains(all, "secret-api-key") || !strings.Contains(all, "fp-") {
		t.Errorf("redis holds %q: want fingerprints only", all)
	}

	// Redis dies: both proxies keep serving and enforcing on their own view.
	rs.Stop()
	for _, p := range []*fleetProxy{a, b} {
		testenv.Eventually(t, p.name+" reports the store down", func() bool {
			h := p.adminJSON(t, "GET", "/healthz")
			return h["status"] == "degraded" && h["store"].(map[string]any)["up"] == false
		})
	}
	for _, p := range []*fleetProxy{a, b} {
		if code := p.get(t, "secret-api-key-fresh-"+p.name); code != http.StatusOK {
			t.Errorf("%s with Redis down: a fresh key got %d, want 200", p.name, code)
		}
		if code := p.get(t, half); code != http.StatusTooManyRequests {
			t.Errorf("%s with Redis down: %s got %d, want 429 (restriction enforced locally)", p.name, half, code)
		}
		if code := p.get(t, banned); code != http.StatusTooManyRequests {
			t.Errorf("%s with Redis down: %s got %d, want 429", p.name, banned, code)
		}
	}

	// Redis is back (empty): sync resumes, and new restrictions propagate.
	rs.Start(t)
	for _, p := range []*fleetProxy{a, b} {
		testenv.Eventually(t, p.name+" reports the store up again", func() bool {
			return p.adminJSON(t, "GET", "/healthz")["status"] == "ok"
		})
	}
	const later = "secret-api-key-later"
	b.adminJSON(t, "POST", "/v1/keys/"+later+"/restrict?for=10m")
	testenv.Eventually(t, "a sees the restriction made on b after Redis came back", func() bool {
		return a.adminJSON(t, "GET", "/v1/keys/"+later)["restricted"] == true
	})
	// What the proxies held is in Redis again, the earlier restriction too.
	testenv.Eventually(t, "the restriction made before the Redis restart is back in Redis", func() bool {
		n, err := rdb.HLen(ctx, prefix+"{restrictions}").Result()
		return err == nil && n >= 3 // half (by budget), banned, later
	})

	for _, p := range []*fleetProxy{a, b} {
		log := p.log.String()
		if n := strings.Count(log, "redis store unreachable"); n != 1 {
			t.Errorf("%s logged the outage %d times, want once:\n%s", p.name, n, log)
		}
		if n := strings.Count(log, "redis store reachable again"); n != 1 {
			t.Errorf("%s logged the recovery %d times, want once:\n%s", p.name, n, log)
		}
	}
}
