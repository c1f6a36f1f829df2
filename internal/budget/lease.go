package budget

import (
	"sync"
	"time"
)

// Leases: how a fleet keeps one budget without a round trip on the request
// path (docs/fleet.md tells why this design).
//
// A proxy admits a key's request only while its own spend (its completed
// worker time plus the elapsed time of its requests in flight) stays under
// the lease it holds: a slice of the key's remaining budget granted by the
// fleet store, atomically against what the whole fleet used and the slices
// the other proxies hold. So the slices in force never add up to more than
// the budget left, and the fleet overshoots only by the requests that were
// already running when the budget ran out, as one proxy does.
//
// The ledger asks for the next slice before the current one runs out (at
// half of it, or half of its lifetime) by queueing the key for the store's
// loop (LeaseRequests, GrantLease), which is woken through FleetWake: the
// request that noticed never waits. A key without a lease in force (its
// first requests here, or back after its slice lapsed unused) falls back
// to an even share for the round trip of its request: this proxy's own
// usage in the window must stay under budget / the number of proxies last
// seen. A key whose slice lapses while its renewal is unanswered (Redis
// answering, but late) admits nothing here until an answer comes back in
// time: Redis lets the lapsed slice go a margin later and may grant its
// unspent part to another proxy, so an even share spent here meanwhile
// would be on top of the budget. While the store is away (SetDegraded) a
// proxy spends the slices it holds and no more, then, once a window has
// passed, its even share: the fleet as a whole cannot exceed the budget
// while the store is away.
//
// Restrictions made here (budget, operator, lift) are queued the same way
// (Restrictions) so the store publishes them at once instead of at its next
// sync.

// DefaultLeaseTTL is how long a granted slice may be used.
const DefaultLeaseTTL = 2 * time.Second

// leaseState is the lease side of a fleet entry.
type leaseState struct {
	// spent is this ledger's completed worker ns for the key, cumulative
	// (it never slides out): spend = spent + in-flight elapsed.
	spent int64
	// limit is the spend allowed under the lease; until (Unix ns) is when
	// it lapses; grant is the last slice, for the refill threshold.
	limit, until, grant int64
	// askSpend, askAt: spend and time when the last request was built;
	// the grant counts from there, and the next request's burn rate.
	// baseSpend is the askSpend of the last answered request (a request
	// that failed must not move it).
	askSpend, askAt, baseSpend, baseAt int64
	// budget and restrictFor are the limits of the key's last Admit: what
	// the store asks a slice of, and how long to restrict once the fleet's
	// usage reached the budget.
	budget, restrictFor      int64
	answered, wanted, urgent bool // had an answer; queued for a lease; queued for a restriction push
	// lapsed: refused on a lapsed slice since hold was set (reported once).
	lapsed bool
	// hold, when it is the ledger's current outage generation + 1
	// (holdGen), ties the key to its slices: set when a renewal is queued
	// while a slice is in force (or an answer comes back already lapsed),
	// cleared by an answer that comes back in time. A key held whose
	// slice is not in force admits nothing until then, or until the store
	// is declared away (which moves the generation on: the outage rule
	// applies, and after it the key starts afresh).
	hold uint32
}

// leaseQueue is the ledger's side of the lease protocol.
type leaseQueue struct {
	mu     sync.Mutex
	on     bool
	ttl    int64
	fleetN int64 // proxies last seen; 1 until the store says
	keys   []string
	restr  []string
	wake   chan struct{}
}

// EnableLeases switches the ledger to lease admission (see above) for keys
// with a budget; a fleet store calls it once before its loop. ttl is how
// long a slice may be used (0: DefaultLeaseTTL).
func (l *Ledger) EnableLeases(ttl time.Duration) {
	l.enableFleet()
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	q := &l.lease
	q.mu.Lock()
	q.on, q.ttl = true, int64(ttl)
	if q.fleetN < 1 {
		q.fleetN = 1
	}
	if q.wake == nil {
		q.wake = make(chan struct{}, 1)
	}
	q.mu.Unlock()
	l.leasing.Store(true)
}

// SetDegraded tells the ledger whether the fleet store is away: while it
// is, a key spends what is left of the last slice it was granted, then
// (a window after that answer) the even share of this proxy's own usage.
func (l *Ledger) SetDegraded(away bool) {
	if l.degraded.Swap(away) != away && away {
		l.outages.Add(1)
	}
}

// holdGen is what leaseState.hold holds while it is in force.
func (l *Ledger) holdGen() uint32 { return l.outages.Load() + 1 }

// LeaseLapses is how many times a key's slice lapsed here while its
// renewal was unanswered and the store not declared away, each time
// refusing the key here until an answer came back in time (counted at the
// first refusal).
func (l *Ledger) LeaseLapses() uint64 { return l.lapses.Load() }

// FleetWake is signalled when a key wants a lease or a restriction waits to
// be published. Nil before EnableLeases.
func (l *Ledger) FleetWake() <-chan struct{} {
	l.lease.mu.Lock()
	defer l.lease.mu.Unlock()
	return l.lease.wake
}

// SetFleetSize records how many proxies share the budgets (at least 1): the
// divisor of the even share used without a lease.
func (l *Ledger) SetFleetSize(n int) {
	l.lease.mu.Lock()
	l.lease.fleetN = max(int64(n), 1)
	l.lease.mu.Unlock()
}

// FleetSize is the number of proxies last seen.
func (l *Ledger) FleetSize() int {
	l.lease.mu.Lock()
	defer l.lease.mu.Unlock()
	return int(max(l.lease.fleetN, 1))
}

func (l *Ledger) signal() {
	select {
	case l.lease.wake <- struct{}{}:
	default:
	}
}

// leaseAllows decides a key with a budget under leases (shard locked, f
// non-nil). It queues the key for a lease when its slice runs low.
func (l *Ledger) leaseAllows(key string, e *entry, f *fleetEntry, off, abs int64, lim Limits) bool {
	ls := &f.lease
	ls.budget, ls.restrictFor = int64(lim.Budget), int64(lim.RestrictFor)
	spend := ls.spent + e.inFlightElapsed(off)
	degraded := l.degraded.Load()
	if ls.until > abs && !degraded {
		left := ls.limit - spend
		if left <= ls.grant/2 || ls.until-abs <= l.lease.ttl/2 {
			l.wantLease(key, ls, true)
		}
		return left > 0
	}
	l.lease.mu.Lock()
	n := max(l.lease.fleetN, 1)
	l.lease.mu.Unlock()
	if degraded && ls.answered && abs-ls.baseAt < e.width*subBuckets {
		// The store is away: what this proxy holds, its last slice, is
		// its own to spend, even past the slice's lifetime (nobody can
		// grant it to another proxy meanwhile), and nothing more: the
		// others may be spending theirs. Once a whole window has passed
		// since the last answer, every proxy's slices have slid out and
		// the even share below is safe.
		return spend-ls.baseSpend < ls.grant
	}
	if !degraded {
		l.wantLease(key, ls, false)
		if ls.hold != 0 && ls.hold == l.holdGen() {
			// The slice lapsed with its renewal unanswered (or came back
			// already lapsed), the store not declared away: nothing more
			// until an answer comes back in time. Redis lets the slice
			// go a margin after its lifetime and may grant what this
			// proxy did not spend of it to another: an even share here
			// would be on top of it.
			if !ls.lapsed {
				ls.lapsed = true
				l.lapses.Add(1)
			}
			return false
		}
	}
	// No slice yet (a key's first requests here), back after its slice
	// lapsed unused, or the store away for longer than a window: an even
	// share of this proxy's own usage in the window; the shares add up to
	// the budget.
	return f.ownCompleted(e, abs)+e.inFlightElapsed(off) < ls.budget/n
}

// leaseLow queues key for its next slice when what is left of the current
// one is low: at a request's end, since a long request may spend most of a
// slice without any Admit to notice (shard locked, f non-nil).
// The key is made from its cell (s, slot) only when it is queued: Finish
// has no key string, and making one allocates.
func (l *Ledger) leaseLow(s *shard, slot int, e *entry, f *fleetEntry, off, abs int64) {
	ls := &f.lease
	if ls.budget <= 0 || ls.wanted {
		return
	}
	if ls.limit-(ls.spent+e.inFlightElapsed(off)) <= ls.grant/2 || ls.until-abs <= l.lease.ttl/2 {
		l.wantLease(s.tab.keyAt(slot), ls, ls.until > abs && !l.degraded.Load())
	}
}

// wantLease queues key for a lease; renew says its slice is in force, so
// that, should the slice lapse before the answer, the key is held to it
// (leaseState.hold).
func (l *Ledger) wantLease(key string, ls *leaseState, renew bool) {
	if ls.wanted {
		return
	}
	ls.wanted = true
	if renew {
		ls.hold, ls.lapsed = l.holdGen(), false
	}
	l.lease.mu.Lock()
	l.lease.keys = append(l.lease.keys, key)
	l.lease.mu.Unlock()
	l.signal()
}

// restricted records a restriction made here at abs and, under leases,
// queues it for an immediate push (f may be nil).
func (l *Ledger) restricted(f *fleetEntry, key string, abs int64) {
	if f == nil {
		return
	}
	f.restricted(abs)
	l.urgent(f, key)
}

// restrictedAt is restricted for a caller that has the key's cell (s,
// slot) but not its string, which is made only if it is queued.
func (l *Ledger) restrictedAt(s *shard, slot int, f *fleetEntry, abs int64) {
	if f == nil {
		return
	}
	f.restricted(abs)
	if l.leasing.Load() && !f.lease.urgent {
		l.urgent(f, s.tab.keyAt(slot))
	}
}

func (l *Ledger) urgent(f *fleetEntry, key string) {
	if !l.leasing.Load() || f.lease.urgent {
		return
	}
	f.lease.urgent = true
	l.lease.mu.Lock()
	l.lease.restr = append(l.lease.restr, key)
	l.lease.mu.Unlock()
	l.signal()
}

// LeaseRequest is one key's request for a slice, with this ledger's usage
// of it (the store writes both in one atomic step).
type LeaseRequest struct {
	KeyUsage
	Budget time.Duration
	// Left is what remains of the lease in force (0 without one); Want
	// is the slice asked for on top, sized from the key's burn rate here.
	Left, Want time.Duration
}

// LeaseRequests moves up to limit queued keys into dst. Each must be
// answered with GrantLease or LeaseFailed.
func (l *Ledger) LeaseRequests(dst []LeaseRequest, limit int) []LeaseRequest {
	q := &l.lease
	q.mu.Lock()
	n := min(limit, len(q.keys))
	keys := append([]string(nil), q.keys[:n]...)
	q.keys = append(q.keys[:0], q.keys[n:]...)
	fleetN := q.fleetN
	ttl := q.ttl
	q.mu.Unlock()
	off, abs := l.now()
	for _, key := range keys {
		h, s := l.shardOf(key)
		s.mu.Lock()
		slot, ok := s.lookup(key, h, 0, abs, false)
		if !ok {
			s.mu.Unlock()
			continue
		}
		e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
		ls := &f.lease
		if ls.budget <= 0 {
			ls.wanted, ls.hold = false, 0
			s.mu.Unlock()
			continue
		}
		dst = append(dst, LeaseRequest{})
		r := &dst[len(dst)-1]
		f.export(&r.KeyUsage, e, key, off, abs)
		spend := ls.spent + e.inFlightElapsed(off)
		r.Budget = time.Duration(ls.budget)
		if ls.until > abs {
			r.Left = time.Duration(max(ls.limit-spend, 0))
		}
		// The slice: what the key burns here in a lease's lifetime, at
		// least a quarter of its even share, at most the share; the whole
		// share the first time, when the rate is unknown. A slice must
		// outlast a request or two, since a request admitted on what is
		// left runs to its end.
		share := ls.budget / max(fleetN, 1)
		want := share
		if ls.askAt > 0 && abs > ls.askAt {
			rate := float64(spend-ls.askSpend) / float64(abs-ls.askAt)
			want = max(share/4, int64(rate*float64(ttl)))
		}
		// What is left counts in: a proxy holds at most its share at once.
		r.Want = time.Duration(max(min(want, share)-int64(r.Left), 0))
		ls.askSpend, ls.askAt = spend, abs
		s.mu.Unlock()
	}
	return dst
}

// LeaseGrant is the store's answer to a LeaseRequest.
type LeaseGrant struct {
	// Left is what the key may spend here, counted from when the request
	// was built, for TTL.
	Left, TTL time.Duration
	// Exhausted: the fleet's usage has reached the budget.
	Exhausted bool
}

// GrantResult is what applying a LeaseGrant did.
type GrantResult struct {
	// Restricted: the answer was exhausted and restricted the key (a new
	// restriction).
	Restricted bool
	// Late: the key's slice had lapsed with this renewal unanswered, so
	// the key admitted nothing here meanwhile. Still lapsed: the answer
	// came back too late for its own slice to be in force (counted from
	// when it was asked), so the key admits nothing until the next one.
	Late, StillLapsed bool
}

// GrantLease applies the store's answer to a LeaseRequest. An exhausted
// answer restricts the key for its restriction period, as a local Admit
// over budget would. A slice is counted from when it was asked, so an
// answer that comes back later than its lifetime grants nothing usable:
// the key is then held to its slices (no even share) until one comes back
// in time.
func (l *Ledger) GrantLease(key string, g LeaseGrant) GrantResult {
	left, ttl, exhausted := g.Left, g.TTL, g.Exhausted
	_, abs := l.now()
	h, s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	var r GrantResult
	slot, ok := s.lookup(key, h, 0, abs, false)
	if !ok {
		return r
	}
	e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
	ls := &f.lease
	gen := l.holdGen()
	r.Late = ls.hold == gen && ls.until <= abs
	ls.wanted = false
	ls.limit = ls.askSpend + int64(left)
	ls.until = ls.askAt + int64(ttl)
	ls.grant = int64(left)
	ls.answered, ls.baseSpend, ls.baseAt = true, ls.askSpend, ls.askAt
	if ls.until > abs {
		ls.hold, ls.lapsed = 0, false
	} else {
		r.StillLapsed = true
		if ls.hold != gen {
			ls.hold, ls.lapsed = gen, false
		}
	}
	if exhausted && ls.restrictFor > 0 && e.until <= abs {
		e.until = abs + ls.restrictFor
		l.restricted(f, key, abs)
		r.Restricted = true
	}
	return r
}

// LeaseFailed returns a request the store could not answer (Redis away):
// the key asks again with its next request, and meanwhile keeps what is
// left of its lease; once it lapses, it admits nothing (if it was renewing
// it) until the store is declared away (SetDegraded), then the outage rule.
func (l *Ledger) LeaseFailed(key string) {
	_, abs := l.now()
	h, s := l.shardOf(key)
	s.mu.Lock()
	if slot, ok := s.lookup(key, h, 0, abs, false); ok {
		s.tab.fleet[slot].lease.wanted = false
	}
	s.mu.Unlock()
}

// RestrictionEvent is a restriction or lift to publish.
type RestrictionEvent struct {
	Key   string
	Until time.Time // zero: a lift
	Since time.Time // when it was made here
}

// Restrictions moves the queued restriction changes into dst.
func (l *Ledger) Restrictions(dst []RestrictionEvent) []RestrictionEvent {
	q := &l.lease
	q.mu.Lock()
	keys := q.restr
	q.restr = nil
	q.mu.Unlock()
	_, abs := l.now()
	for _, key := range keys {
		h, s := l.shardOf(key)
		s.mu.Lock()
		if slot, ok := s.lookup(key, h, 0, abs, false); ok {
			e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
			f.lease.urgent = false
			ev := RestrictionEvent{Key: key, Since: time.Unix(0, f.since)}
			if e.until > abs {
				ev.Until = time.Unix(0, e.until)
			}
			dst = append(dst, ev)
		}
		s.mu.Unlock()
	}
	return dst
}
