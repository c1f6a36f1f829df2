package budget

import (
	"sync"
	"sync/atomic"
	"time"
)

// Fleet sharing: several proxies, each with its own Ledger, share every
// key's usage and restrictions through a store (internal/store's Redis
// store). Decisions stay local: the store never sits on the Admit/Finish
// path. It runs a loop that
//
//   - pulls the fleet's usage for the keys this ledger holds (ActiveKeys) and
//     merges the part other proxies contributed (MergeRemote), so Admit sees
//     the fleet's usage, and applies restrictions and lifts made elsewhere
//     (ApplyRestriction);
//   - pushes what changed here since the last push (ExportChanges): this
//     ledger's own worker time per sub-bucket, the elapsed time of its
//     requests in flight, and its restriction events.
//
// A ledger keeps its own part of each bucket apart from the merged part, so
// a push never re-sends what it pulled and a merge replaces the remote part
// instead of adding to it: both are idempotent, and a push can be repeated
// in full (Resync) after Redis lost its data or a push failed.
//
// That bookkeeping (fleetEntry) lives in a slice beside the table's cells,
// moved with them (index.go), and is allocated by the first call of any
// method here: a ledger without a fleet store keeps its 320-byte cells,
// and the hot path pays one nil check.

// Buckets is the number of sub-buckets a KeyUsage carries: the window's 15
// plus the one sliding out of it.
const Buckets = ringSize

const (
	dirtyUsage       uint8 = 1 << iota // own work or in-flight changed
	dirtyRestriction                   // restricted or lifted here
)

// fleetEntry is one key's fleet bookkeeping, at the same slot as its entry.
type fleetEntry struct {
	// own is this ledger's part of entry.work, what a fleet store pushes;
	// the rest is other proxies' usage merged in by MergeRemote.
	own [ringSize]int64
	// since is when the restriction state last changed here (restrict or
	// lift, Unix ns), so fleet events apply newest first; lifted is the
	// last lift, whose forgiveness stale remote usage must not undo.
	since, lifted int64
	dirty         uint8 // dirtyUsage | dirtyRestriction: changed since the last ExportChanges
	lease         leaseState
}

// fleetAt is slot's fleet bookkeeping, nil while no fleet store uses the
// ledger. Call with the shard locked.
func (s *shard) fleetAt(slot int) *fleetEntry {
	if s.tab.fleet == nil {
		return nil
	}
	return &s.tab.fleet[slot]
}

// restricted records a restriction made here at abs (f may be nil).
func (f *fleetEntry) restricted(abs int64) {
	if f != nil {
		f.since = abs
		f.dirty |= dirtyRestriction
	}
}

// ownCompleted is this ledger's part of e's usage at abs (whole buckets).
func (f *fleetEntry) ownCompleted(e *entry, abs int64) int64 {
	cur := max(abs/e.width, e.head)
	var sum int64
	for i := cur - subBuckets + 1; i <= cur; i++ {
		if i <= e.head && i > e.head-ringSize {
			sum += f.own[i%ringSize]
		}
	}
	return sum
}

// enableFleet allocates the fleet bookkeeping, once. Usage already in the
// ledger counts as its own, and everything is marked for the first push.
func (l *Ledger) enableFleet() {
	if l.fleetOn.Load() {
		return
	}
	l.fleetOnce.Do(func() {
		_, abs := l.now()
		for i := range l.shards {
			s := &l.shards[i]
			s.mu.Lock()
			s.tab.fleet, s.tab.fmem = allocFleet(len(s.tab.cells))
			for slot := range s.tab.cells {
				e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
				if e.tag == 0 {
					continue
				}
				f.own = e.work
				f.dirty = dirtyUsage
				if e.until > abs {
					f.since = abs
					f.dirty |= dirtyRestriction
				}
			}
			s.mu.Unlock()
		}
		l.fleetOn.Store(true)
	})
}

// KeyUsage is one key's usage and restriction as it travels between a
// Ledger and a fleet store.
type KeyUsage struct {
	Key string
	// Width is the key's sub-bucket width (its window / 15): bucket indexes
	// only mean the same thing between ledgers that agree on it.
	Width time.Duration
	// Head is the absolute index (Unix ns / Width) of the newest bucket.
	Head int64
	// Work is worker ns per bucket, oldest first: Work[i] is bucket
	// Head-Buckets+1+i. From ExportChanges: this ledger's own completed
	// time. To MergeRemote: the other proxies' time.
	Work [Buckets]int64
	// InFlight (ExportChanges only) is the elapsed time of this ledger's
	// requests for the key still running.
	InFlight time.Duration
	// LeaseLeft is what this ledger may still spend of its lease on the key,
	// until LeaseUntil (zero: no lease in force): pushed, so the store
	// counts it as reserved and not as usage.
	LeaseLeft  time.Duration
	LeaseUntil time.Time

	// The restriction, from ExportChanges. RestrictionChanged says it was
	// set or lifted here since the last export; Since is when (it orders
	// events from several proxies: the newest wins). Until is zero when the
	// key is not restricted (a lift, when RestrictionChanged).
	RestrictionChanged bool
	Until              time.Time
	Since              time.Time
}

// KeyRef names a key the ledger holds and its bucket width.
type KeyRef struct {
	Key   string
	Width time.Duration
}

// ActiveKeys appends to dst up to limit keys the ledger holds, with their
// bucket widths: the keys whose fleet usage a store should pull. A call cut
// short by limit leaves off where the next call resumes, so with more keys
// than limit every key is visited in turn.
func (l *Ledger) ActiveKeys(dst []KeyRef, limit int) []KeyRef {
	l.enableFleet()
	_, abs := l.now()
	n := 0
	l.visit(&l.activeCursor, func(s *shard, slot int) bool {
		e := &s.tab.cells[slot]
		if e.tag == 0 || e.idle(abs) {
			return true
		}
		if n == limit {
			return false
		}
		dst = append(dst, KeyRef{Key: s.tab.keyAt(slot), Width: time.Duration(e.width)})
		n++
		return true
	})
	return dst
}

// ExportChanges appends to dst up to limit keys whose own usage, in-flight
// requests or restriction changed since they were last exported, and marks
// them exported. A key with requests still in flight stays marked, so their
// growing elapsed time is pushed every time. If the push fails, call
// Resync so that everything is sent again.
func (l *Ledger) ExportChanges(dst []KeyUsage, limit int) []KeyUsage {
	l.enableFleet()
	off, abs := l.now()
	n := 0
	l.visit(&l.exportCursor, func(s *shard, slot int) bool {
		e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
		if e.tag == 0 || f.dirty == 0 {
			return true
		}
		if n == limit {
			return false
		}
		dst = append(dst, KeyUsage{})
		f.export(&dst[len(dst)-1], e, s.tab.keyAt(slot), off, abs)
		f.dirty = 0
		if e.inFlight > 0 {
			f.dirty = dirtyUsage
		}
		n++
		return true
	})
	return dst
}

// visit calls fn for every slot of every shard, with the shard locked,
// starting where the last visit with the same cursor stopped (shard in the
// high half, slot in the low half), until fn returns false; the cursor then
// records that slot, so bounded batches take turns over all keys.
func (l *Ledger) visit(cursor *atomic.Uint64, fn func(s *shard, slot int) bool) {
	c := cursor.Load()
	first, from := int(c>>32)&int(l.mask), int(uint32(c))
	for k := 0; k <= len(l.shards); k++ {
		i := (first + k) & int(l.mask)
		s := &l.shards[i]
		s.mu.Lock()
		lo, hi := 0, len(s.tab.cells)
		switch k {
		case 0: // the rest of the shard we stopped in
			lo = min(from, hi)
		case len(l.shards): // and, last, its beginning
			hi = min(from, hi)
		}
		for slot := lo; slot < hi; slot++ {
			if !fn(s, slot) {
				s.mu.Unlock()
				cursor.Store(uint64(i)<<32 | uint64(slot))
				return
			}
		}
		s.mu.Unlock()
	}
}

// export fills u with e's own usage (f) as of abs, oldest bucket first.
func (f *fleetEntry) export(u *KeyUsage, e *entry, key string, off, abs int64) {
	u.Key, u.Width = key, time.Duration(e.width)
	u.Head = max(abs/e.width, e.head)
	for i := range ringSize {
		idx := u.Head - ringSize + 1 + int64(i)
		if idx <= e.head && idx > e.head-ringSize {
			u.Work[i] = f.own[idx%ringSize]
		} else {
			u.Work[i] = 0
		}
	}
	u.InFlight = time.Duration(e.inFlightElapsed(off))
	u.LeaseLeft, u.LeaseUntil = 0, time.Time{}
	if ls := &f.lease; ls.until > abs {
		u.LeaseLeft = time.Duration(max(ls.limit-ls.spent-int64(u.InFlight), 0))
		u.LeaseUntil = time.Unix(0, ls.until)
	}
	u.RestrictionChanged = f.dirty&dirtyRestriction != 0
	u.Until, u.Since = time.Time{}, time.Time{}
	if e.until > abs {
		u.Until = time.Unix(0, e.until)
	}
	if f.since != 0 {
		u.Since = time.Unix(0, f.since)
	}
}

// Resync marks every key with own usage in its window, requests in flight
// or a restriction as changed, so the next ExportChanges calls send them
// all: after a failed push, or when the store lost its data (a Redis
// restart), the fleet gets back what this ledger still holds.
func (l *Ledger) Resync() {
	l.enableFleet()
	_, abs := l.now()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for slot := range s.tab.cells {
			e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
			if e.tag == 0 || e.idle(abs) {
				continue
			}
			f.dirty |= dirtyUsage
			if e.until > abs {
				f.dirty |= dirtyRestriction
			}
		}
		s.mu.Unlock()
	}
}

// MergeRemote replaces the other proxies' part of key's usage with
// u.Work (their completed time per bucket; a store adds their in-flight
// time to the newest bucket). This ledger's own part is kept. Buckets
// outside both u's range and the ledger's window are left alone, as is a
// key whose bucket width differs from u.Width (the proxies disagree on its
// window, e.g. during a config rollout: usage is not shared until they
// agree). Remote usage in buckets up to the key's last lift is ignored: a
// proxy that has not seen the lift yet must not undo its forgiveness. A
// key the ledger does not hold is added only if u carries usage.
func (l *Ledger) MergeRemote(u *KeyUsage) {
	l.enableFleet()
	_, abs := l.now()
	width := int64(u.Width)
	if width <= 0 {
		return
	}
	var carries bool
	for _, w := range u.Work {
		if w > 0 {
			carries = true
			break
		}
	}
	h, s := l.shardOf(u.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.lookup(u.Key, h, width, abs, carries)
	if !ok {
		return
	}
	e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
	if e.width != width {
		return
	}
	e.advanceTo(abs/width, f)
	liftIdx := int64(-1)
	if f.lifted > 0 {
		liftIdx = f.lifted / width
	}
	for i := range ringSize {
		idx := u.Head - ringSize + 1 + int64(i)
		if idx > e.head || idx <= e.head-ringSize {
			continue
		}
		r := u.Work[i]
		if idx <= liftIdx || r < 0 {
			r = 0
		}
		b := idx % ringSize
		w := f.own[b] + r
		e.total += w - e.work[b]
		e.work[b] = w
	}
}

// ApplyRestriction applies a restriction (until non-zero) or a lift (until
// zero) made at time at by another proxy. It is ignored unless it is newer
// than the key's last restriction event here, so a stale event read back
// from the store never undoes a newer one (nor the same event, unless the
// store extended it). A newer restriction of a key that is restricted
// already keeps the later end of the two: two proxies restricting the same
// key a moment apart (say an operator for an hour, and the budget for 5 m)
// must not shorten either. A restriction of a key the ledger does not hold
// adds it; a lift of such a key, or a restriction that has already ended,
// is ignored. It reports whether anything changed.
func (l *Ledger) ApplyRestriction(key string, until, at time.Time) bool {
	l.enableFleet()
	_, abs := l.now()
	atNs := at.UnixNano()
	var untilNs int64
	if !until.IsZero() {
		untilNs = until.UnixNano()
	}
	h, s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.lookup(key, h, widthOf(0), abs, untilNs > abs)
	if !ok {
		return false
	}
	e, f := &s.tab.cells[slot], &s.tab.fleet[slot]
	// Older events lose. The same event read back applies only if it
	// extends the restriction (the store merged a longer one into it).
	if atNs < f.since || atNs == f.since && (untilNs == 0 || untilNs <= e.until) {
		return false
	}
	if untilNs == 0 {
		e.lift(atNs, f)
		// The lift came from the fleet: nothing of it to push back, but
		// this ledger's own usage was forgiven and must be pushed as such.
		f.dirty = f.dirty&^dirtyRestriction | dirtyUsage
		return true
	}
	if e.until > abs {
		untilNs = max(untilNs, e.until)
	}
	e.until, f.since = untilNs, atNs
	// A newer event from the fleet supersedes one of ours not yet pushed.
	f.dirty &^= dirtyRestriction
	return true
}

// fleetCursors are the rotating start shards of ActiveKeys and
// ExportChanges, and whether the fleet bookkeeping exists.
type fleetCursors struct {
	activeCursor atomic.Uint64
	exportCursor atomic.Uint64
	fleetOn      atomic.Bool
	fleetOnce    sync.Once
	leasing      atomic.Bool   // EnableLeases was called
	degraded     atomic.Bool   // SetDegraded: the fleet store is away
	outages      atomic.Uint32 // times SetDegraded declared it away (leaseState.hold)
	lapses       atomic.Uint64 // LeaseLapses
	lease        leaseQueue
}
