package admit

import (
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
// key's requests still running count toward its budget as always. In a
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
	failing atomic.Bool // as last reported, for the log line on a change
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
