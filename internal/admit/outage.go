package admit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Issue 17: an upstream outage locked every key out after it ended. Each
// request the proxy itself timed out (504) was charged its full timeout, so
// every key that had waited on the hung upstream was restricted for the
// restriction period, clients that gave up included.
//
// The rule: worker time the upstream spent failing as a whole is the
// upstream's, not the keys'. When most of a pool's requests of the last
// outageWindow seconds failed upstream, this one included (unreachable,
// reset, cut short or timed out by the proxy), a request that fails is not
// charged to its key's budget; it is still counted, with its real time, in
// headroom_worker_seconds_total{outcome="upstream_error"} and in
// headroom_outage_uncharged_seconds_total. Outside such an outage a failing
// request is charged in full, so a key whose own requests are slow (or
// time out while the rest of the pool is answered) pays for them, and a
// key's requests still running count toward its budget as always, so a key
// with requests hanging on a hung upstream can be restricted before the
// outage shows (its first failure comes at the upstream timeout): when the
// pool answers again, a restriction started during the outage, or within
// timeouts.upstream before it, is lifted if the key's charged usage alone
// is now within its budget, since then only the hung requests' time in
// flight put it over. In a
// pool with no other traffic a key's failing requests are the pool's, and
// go uncharged: only their time in flight can then restrict it.

// outageWindow is the seconds of outcomes the rule looks at: long enough
// to see an outage's failures arrive, short enough to end with it.
const outageWindow = 10

// upstreamHealth counts a pool's requests that reached the upstream, and
// how many failed, in one-second buckets over the last outageWindow
// seconds. Counts are approximate at a bucket's turn of second, which the
// rule does not notice.
type upstreamHealth struct {
	b       [outageWindow]healthBucket
	failing atomic.Bool  // as last reported, for the log line on a change
	since   atomic.Int64 // unix nanoseconds the pool started failing

	mu         sync.Mutex
	restricted [64]recentRestriction // ring of the pool's latest restrictions
	next       int
}

type recentRestriction struct {
	key string
	at  time.Time
}

// noteRestricted remembers a restriction the pool's traffic started, for
// forgive.
func (h *upstreamHealth) noteRestricted(key string, at time.Time) {
	h.mu.Lock()
	h.restricted[h.next%len(h.restricted)] = recentRestriction{key: key, at: at}
	h.next++
	h.mu.Unlock()
}

// startedSince returns the keys restricted at or after t.
func (h *upstreamHealth) startedSince(t time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keys []string
	for _, r := range h.restricted {
		if r.key != "" && !r.at.Before(t) {
			keys = append(keys, r.key)
		}
	}
	return keys
}

type healthBucket struct {
	sec        atomic.Int64
	ok, failed atomic.Int64
}

func (h *upstreamHealth) record(now time.Time, failed bool) {
	sec := now.Unix()
	b := &h.b[uint64(sec)%outageWindow]
	if s := b.sec.Load(); s != sec && b.sec.CompareAndSwap(s, sec) {
		b.ok.Store(0)
		b.failed.Store(0)
	}
	if failed {
		b.failed.Add(1)
	} else {
		b.ok.Add(1)
	}
}

// outage reports whether most of the pool's recent requests failed. The
// request being decided is already recorded, so an outage's very first
// failure goes uncharged too.
func (h *upstreamHealth) outage(now time.Time) bool {
	sec := now.Unix()
	var ok, failed int64
	for i := range h.b {
		b := &h.b[i]
		if sec-b.sec.Load() < outageWindow {
			ok += b.ok.Load()
			failed += b.failed.Load()
		}
	}
	return failed > 0 && 2*failed > ok+failed
}

// answeringAgain ends a pool's outage: it logs the change and lifts the
// restrictions the outage's hung requests caused (see the rule above).
func (c *Core) answeringAgain(p *Pool, now time.Time) {
	if !p.health.failing.CompareAndSwap(true, false) {
		return
	}
	from := time.Unix(0, p.health.since.Load()).Add(-c.Config().Timeouts.Upstream.D())
	lifted := 0
	for _, key := range p.health.startedSince(from) {
		lim := c.Limits(key)
		st := c.ledger.Status(key, lim)
		if st.RestrictedUntil.After(now) && st.InFlight == 0 && lim.Budget > 0 &&
			time.Duration(st.WorkerSeconds*float64(time.Second)) < lim.Budget {
			c.ledger.Lift(key)
			lifted++
			c.log.Info("restriction lifted: only the upstream outage's requests put the key over its budget",
				"key", key, "pool", p.name, "used", time.Duration(st.WorkerSeconds*float64(time.Second)).Round(time.Millisecond).String())
		}
	}
	c.log.Info("upstream answering again: failing requests are charged to keys' budgets", "pool", p.name, "restrictions_lifted", lifted)
}
