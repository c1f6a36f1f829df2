package store

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/testenv"
)

func newRedisStore(t *testing.T, url, id, prefix string, clk budget.Clock) *Redis {
	t.Helper()
	s, err := NewRedis(RedisOptions{URL: url, ID: id, Prefix: prefix, Clock: clk, Timeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// proxySim is one proxy without HTTP: a ledger and its store.
type proxySim struct {
	l *budget.Ledger
	s *Redis
}

func (p proxySim) sync(t *testing.T) {
	t.Helper()
	if err := p.s.SyncOnce(context.Background(), p.l); err != nil {
		t.Fatalf("sync %s: %v", p.s.id, err)
	}
}

func (p proxySim) spend(t *testing.T, key string, d time.Duration) {
	t.Helper()
	dec, tk := p.l.Admit(key, lim)
	if !dec.Proceed() {
		t.Fatalf("%s: %s refused: %+v", p.s.id, key, dec)
	}
	p.l.Finish(tk, d)
}

func newFleet(t *testing.T, url string, clk budget.Clock, ids ...string) []proxySim {
	// Unique per run: the tests share one Redis, and -count=N runs them again.
	prefix := "t" + strings.ReplaceAll(t.Name(), "/", "_") + ":" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	var ps []proxySim
	for _, id := range ids {
		ps = append(ps, proxySim{l: budget.New(budget.Options{Clock: clk}), s: newRedisStore(t, url, id, prefix, clk)})
	}
	return ps
}

func TestRedisFleetSharesUsageAndRestrictions(t *testing.T) {
	rs := testenv.StartRedis(t) // its own: the test lists every key in it
	clk := budget.NewManualClock(t0)
	ps := newFleet(t, rs.URL(), clk, "a", "b")
	a, b := ps[0], ps[1]

	// Half of the 10 s budget through each proxy: alone, each admits.
	a.spend(t, "fp-half", 5*time.Second)
	b.spend(t, "fp-half", 5*time.Second)
	a.sync(t)
	b.sync(t)
	a.sync(t)
	for _, p := range ps {
		if d, _ := p.l.Admit("fp-half", lim); d.Outcome != budget.Restricted || d.Used != 10*time.Second {
			t.Errorf("%s: %+v, want restricted at the fleet's 10 s", p.s.id, d)
		}
	}
	// The restriction each made is now in Redis too.
	clk.Advance(time.Second)
	a.sync(t)
	b.sync(t)

	// An operator restricts a key on a that b never saw; b follows.
	a.l.Restrict("fp-abuser", t0.Add(10*time.Minute))
	a.sync(t)
	b.sync(t)
	if s := b.l.Status("fp-abuser", lim); !s.RestrictedUntil.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("b: fp-abuser restricted until %v, want %v", s.RestrictedUntil, t0.Add(10*time.Minute))
	}
	// And lifts fp-half on b; a follows, with the usage forgiven on both.
	clk.Advance(time.Second)
	b.l.Lift("fp-half")
	b.sync(t)
	a.sync(t)
	b.sync(t)
	for _, p := range ps {
		if d, tk := p.l.Admit("fp-half", lim); d.Outcome != budget.Allowed {
			t.Errorf("%s after the lift: %+v, want allowed", p.s.id, d)
		} else {
			p.l.Cancel(tk)
		}
	}

	// In-flight time on one proxy counts on the other.
	_, seen := b.l.Admit("fp-slow", lim)
	b.l.Cancel(seen)
	_, tk := a.l.Admit("fp-slow", lim)
	clk.Advance(4 * time.Second)
	a.sync(t)
	b.sync(t)
	if s := b.l.Status("fp-slow", lim); s.WorkerSeconds != 4 {
		t.Errorf("b: fp-slow at %v worker seconds, want a's 4 s in flight", s.WorkerSeconds)
	}
	a.l.Finish(tk, 4*time.Second)
	a.sync(t)
	b.sync(t)
	if s := b.l.Status("fp-slow", lim); s.WorkerSeconds != 4 {
		t.Errorf("b: fp-slow at %v worker seconds once finished, want 4 (not counted twice)", s.WorkerSeconds)
	}

	// Only fingerprints, under the prefix.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, ps[0].s.prefix) {
			t.Errorf("redis key %q outside the prefix %q", k, ps[0].s.prefix)
		}
	}
	if len(keys) < 4 {
		t.Errorf("redis keys %v: want usage hashes, restrictions, version and epoch", keys)
	}
}

func TestRedisConcurrentRestrictionsKeepTheLongest(t *testing.T) {
	rs := testenv.SharedRedis(t)
	clk := budget.NewManualClock(t0)
	ps := newFleet(t, rs.URL(), clk, "a", "b")
	a, b := ps[0], ps[1]
	// Within one sync period: an operator restricts for an hour on a, then
	// the budget (or another operator) for a minute on b.
	a.l.Restrict("fp-k", t0.Add(time.Hour))
	clk.Advance(time.Second)
	b.l.Restrict("fp-k", t0.Add(time.Minute))
	a.sync(t)
	b.sync(t) // b's newer event meets a's longer one in Redis
	a.sync(t)
	b.sync(t) // and b reads back the merged record
	for _, p := range ps {
		if s := p.l.Status("fp-k", lim); !s.RestrictedUntil.Equal(t0.Add(time.Hour)) {
			t.Errorf("%s: restricted until %v, want the hour", p.s.id, s.RestrictedUntil)
		}
	}
	// A lift after both ends it everywhere.
	clk.Advance(time.Second)
	b.l.Lift("fp-k")
	b.sync(t)
	a.sync(t)
	for _, p := range ps {
		if s := p.l.Status("fp-k", lim); !s.RestrictedUntil.IsZero() {
			t.Errorf("%s: still restricted until %v after the lift", p.s.id, s.RestrictedUntil)
		}
	}
}

func TestRedisDownKeepsLocalEnforcementAndRecovers(t *testing.T) {
	rs := testenv.StartRedis(t) // its own: the test kills it
	clk := budget.NewManualClock(t0)
	ps := newFleet(t, rs.URL(), clk, "a", "b")
	a, b := ps[0], ps[1]

	a.spend(t, "fp-k", 4*time.Second)
	b.spend(t, "fp-k", 4*time.Second)
	// Pushed before the outage and untouched since: only a re-push after
	// the restart brings them back.
	b.spend(t, "fp-quiet", 3*time.Second)
	a.l.Restrict("fp-banned", t0.Add(time.Hour))
	a.sync(t)
	b.sync(t)
	a.sync(t)
	if up, _ := a.s.Health(); !up || metric(t, a.s, "headroom_store_up", "") != 1 {
		t.Fatalf("a not up after syncs")
	}

	rs.Stop()
	// Redis gone: syncs fail, the proxies keep deciding on what they know
	// (8 s of 10: one more 2 s tips the key over on either).
	if err := a.s.SyncOnce(context.Background(), a.l); err == nil {
		t.Fatal("sync with Redis down succeeded")
	}
	up, detail := a.s.Health()
	if h := detail.(RedisHealth); up || h.Error == "" || h.Since == nil {
		t.Errorf("health with Redis down: up=%v %+v", up, h)
	}
	if metric(t, a.s, "headroom_store_up", "") != 0 || metric(t, a.s, "headroom_store_errors_total", "pull") != 1 {
		t.Errorf("metrics with Redis down: up %v, pull errors %v", metric(t, a.s, "headroom_store_up", ""), metric(t, a.s, "headroom_store_errors_total", "pull"))
	}
	a.spend(t, "fp-k", 2*time.Second)
	if d, _ := a.l.Admit("fp-k", lim); d.Outcome != budget.Restricted {
		t.Errorf("a with Redis down: %+v, want restricted on its local view of the fleet", d)
	}
	b.spend(t, "fp-other", time.Second) // b serves as usual
	if err := b.s.SyncOnce(context.Background(), b.l); err == nil {
		t.Fatal("b: sync with Redis down succeeded")
	}

	// Redis comes back empty. Within a few syncs the fleet's state is
	// rebuilt from what the proxies hold: nothing in the window is lost.
	rs.Start(t)
	for range 3 {
		a.sync(t)
		b.sync(t)
	}
	if up, _ := a.s.Health(); !up {
		t.Errorf("a not up after Redis came back")
	}
	if d, _ := b.l.Admit("fp-k", lim); d.Outcome != budget.Restricted || d.Used != 10*time.Second {
		t.Errorf("b after recovery: %+v, want restricted at 10 s (a's restriction and usage re-pushed)", d)
	}
	// b's usage of a key a never saw is in Redis again for any proxy that pulls it.
	c := proxySim{l: budget.New(budget.Options{Clock: clk}), s: newRedisStore(t, rs.URL(), "c", a.s.prefix, clk)}
	_, tk := c.l.Admit("fp-other", lim)
	c.l.Cancel(tk)
	c.sync(t)
	if s := c.l.Status("fp-other", lim); s.WorkerSeconds != 1 {
		t.Errorf("a new proxy sees fp-other at %v worker seconds, want b's 1 s re-pushed after the Redis restart", s.WorkerSeconds)
	}
	_, tk = c.l.Admit("fp-quiet", lim)
	c.l.Cancel(tk)
	c.sync(t)
	if s := c.l.Status("fp-quiet", lim); s.WorkerSeconds != 3 {
		t.Errorf("a new proxy sees fp-quiet at %v worker seconds, want b's 3 s from before the Redis restart", s.WorkerSeconds)
	}
	if s := c.l.Status("fp-banned", lim); !s.RestrictedUntil.Equal(t0.Add(time.Hour)) {
		t.Errorf("a new proxy sees fp-banned restricted until %v, want a's restriction from before the Redis restart", s.RestrictedUntil)
	}
	if s := c.l.Status("fp-k", lim); s.RestrictedUntil.IsZero() {
		t.Errorf("a new proxy does not see fp-k's restriction: %+v", s)
	}
}

func TestRedisBatchesAreBounded(t *testing.T) {
	rs := testenv.SharedRedis(t)
	clk := budget.NewManualClock(t0)
	a := newFleet(t, rs.URL(), clk, "a")[0]
	a.s.maxKeys = 3
	for i := range 7 {
		a.spend(t, "fp-"+strings.Repeat(string(rune('a'+i)), 3), time.Second)
	}
	a.sync(t)
	if got := metric(t, a.s, "headroom_store_keys_pushed_total", ""); got != 3 {
		t.Errorf("first sync pushed %v keys, want 3 (max keys)", got)
	}
	a.sync(t)
	a.sync(t)
	if got := metric(t, a.s, "headroom_store_keys_pushed_total", ""); got != 7 {
		t.Errorf("three syncs pushed %v keys, want all 7", got)
	}
	if got := metric(t, a.s, "headroom_store_keys_pulled_total", ""); got != 9 {
		t.Errorf("three syncs pulled %v keys, want 3 per sync", got)
	}
}

func TestRedisSyncLoopStopsWithContext(t *testing.T) {
	rs := testenv.SharedRedis(t)
	s := newRedisStore(t, rs.URL(), "a", "loop:", nil)
	s.interval = 10 * time.Millisecond
	l := budget.New(budget.Options{})
	_, tk := l.Admit("fp-k", lim)
	l.Finish(tk, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Sync(ctx, l); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, s, "headroom_store_keys_pushed_total", "") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sync loop pushed nothing in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// metric reads one of the store's metrics as /metrics would serve it; op,
// when set, selects the series with that op label.
func metric(t *testing.T, s *Redis, name, op string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if op != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != op) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s{op=%q} not found", name, op)
	return 0
}

// A Redis that accepts connections but never answers (overloaded, or a
// half-dead network path) fails the sync after the timeout; the ledger
// keeps deciding meanwhile.
func TestRedisSlowIsReportedAsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	clk := budget.NewManualClock(t0)
	s, err := NewRedis(RedisOptions{URL: "redis://" + ln.Addr().String() + "/0", ID: "a", Clock: clk, Timeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := budget.New(budget.Options{Clock: clk})
	done := make(chan error, 1)
	go func() { done <- s.Restore(l) }()
	// Requests are decided while the sync waits on Redis.
	if d, tk := l.Admit("fp-k", lim); !d.Proceed() {
		t.Fatalf("admit during a slow sync: %+v", d)
	} else {
		l.Finish(tk, time.Second)
	}
	if err := <-done; err == nil {
		t.Fatal("sync against a Redis that never answers succeeded")
	}
	if up, detail := s.Health(); up || detail.(RedisHealth).Error == "" {
		t.Errorf("health after a timed-out sync: up=%v %+v", up, detail)
	}
}

// The store works the same on one server, a Redis Cluster (the keys of one
// budget share a hash tag, so its scripts run on one slot) and a master
// found through Sentinel.
func TestRedisFormsShareUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"single", func(t *testing.T) string { return testenv.SharedRedis(t).URL() }},
		{"cluster", func(t *testing.T) string { return testenv.SharedCluster(t).URL() }},
		{"sentinel", func(t *testing.T) string { return testenv.StartSentinel(t, time.Second).URL() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := budget.NewManualClock(t0)
			ps := newFleet(t, tc.url(t), clk, "a", "b")
			a, b := ps[0], ps[1]
			for _, k := range []string{"fp-one", "fp-two", "fp-three"} {
				a.spend(t, k, 5*time.Second)
				b.spend(t, k, 5*time.Second)
			}
			a.l.Restrict("fp-banned", t0.Add(time.Hour))
			a.sync(t)
			b.sync(t)
			a.sync(t)
			for _, p := range ps {
				for _, k := range []string{"fp-one", "fp-two", "fp-three"} {
					if d, _ := p.l.Admit(k, lim); d.Outcome != budget.Restricted || d.Used != 10*time.Second {
						t.Errorf("%s %s: %+v, want restricted at the fleet's 10 s", p.s.id, k, d)
					}
				}
			}
			if s := b.l.Status("fp-banned", lim); !s.RestrictedUntil.Equal(t0.Add(time.Hour)) {
				t.Errorf("b: fp-banned restricted until %v, want a's hour", s.RestrictedUntil)
			}
			if up, h := a.s.Health(); !up || !strings.HasPrefix(h.(RedisHealth).Addr, "redis") {
				t.Errorf("health: %v %+v", up, h)
			}
		})
	}
}
