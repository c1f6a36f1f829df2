package budget

import (
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

// Buckets is the number of sub-buckets a KeyUsage carries: the window's 15
// plus the one sliding out of it.
const Buckets = ringSize

const (
	dirtyUsage       uint8 = 1 << iota // own work or in-flight changed
	dirtyRestriction                   // restricted or lifted here
)

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
// bucket widths: the keys whose fleet usage a store should pull. Successive
// calls start at different shards, so with more keys than limit every key
// is visited in turn.
func (l *Ledger) ActiveKeys(dst []KeyRef, limit int) []KeyRef {
	_, abs := l.now()
	start := int(l.activeCursor.Add(1))
	n := 0
	for k := range l.shards {
		s := &l.shards[(start+k)&int(l.mask)]
		s.mu.Lock()
		for slot := range s.entries {
			e := &s.entries[slot]
			if e.width == 0 || e.idle(abs) {
				continue
			}
			if n == limit {
				s.mu.Unlock()
				return dst
			}
			dst = append(dst, KeyRef{Key: s.keys[slot], Width: time.Duration(e.width)})
			n++
		}
		s.mu.Unlock()
	}
	return dst
}

// ExportChanges appends to dst up to limit keys whose own usage, in-flight
// requests or restriction changed since they were last exported, and marks
// them exported. A key with requests still in flight stays marked, so their
// growing elapsed time is pushed every time. If the push fails, call
// Resync so that everything is sent again.
func (l *Ledger) ExportChanges(dst []KeyUsage, limit int) []KeyUsage {
	off, abs := l.now()
	start := int(l.exportCursor.Add(1))
	n := 0
	for k := range l.shards {
		s := &l.shards[(start+k)&int(l.mask)]
		s.mu.Lock()
		for slot := range s.entries {
			e := &s.entries[slot]
			if e.width == 0 || e.dirty == 0 {
				continue
			}
			if n == limit {
				s.mu.Unlock()
				return dst
			}
			dst = append(dst, KeyUsage{})
			u := &dst[len(dst)-1]
			e.export(u, s.keys[slot], off, abs)
			e.dirty = 0
			if e.inFlight > 0 {
				e.dirty = dirtyUsage
			}
			n++
		}
		s.mu.Unlock()
	}
	return dst
}

// export fills u with e's own usage as of abs, oldest bucket first.
func (e *entry) export(u *KeyUsage, key string, off, abs int64) {
	u.Key, u.Width = key, time.Duration(e.width)
	u.Head = max(abs/e.width, e.head)
	for i := range ringSize {
		idx := u.Head - ringSize + 1 + int64(i)
		if idx <= e.head && idx > e.head-ringSize {
			u.Work[i] = e.own[idx%ringSize]
		} else {
			u.Work[i] = 0
		}
	}
	u.InFlight = time.Duration(e.inFlightElapsed(off))
	u.RestrictionChanged = e.dirty&dirtyRestriction != 0
	u.Until, u.Since = time.Time{}, time.Time{}
	if e.until > abs {
		u.Until = time.Unix(0, e.until)
	}
	if e.since != 0 {
		u.Since = time.Unix(0, e.since)
	}
}

// Resync marks every key with own usage in its window, requests in flight
// or a restriction as changed, so the next ExportChanges calls send them
// all: after a failed push, or when the store lost its data (a Redis
// restart), the fleet gets back what this ledger still holds.
func (l *Ledger) Resync() {
	_, abs := l.now()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for slot := range s.entries {
			e := &s.entries[slot]
			if e.width == 0 || e.idle(abs) {
				continue
			}
			e.dirty |= dirtyUsage
			if e.until > abs {
				e.dirty |= dirtyRestriction
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
	_, s := l.shardOf(u.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.lookup(u.Key, width, abs, carries)
	if !ok {
		return
	}
	e := &s.entries[slot]
	if e.width != width {
		return
	}
	e.advanceTo(abs / width)
	liftIdx := int64(-1)
	if e.lifted > 0 {
		liftIdx = e.lifted / width
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
		w := e.own[b] + r
		e.total += w - e.work[b]
		e.work[b] = w
	}
}

// ApplyRestriction applies a restriction (until non-zero) or a lift (until
// zero) made at time at by another proxy. It is ignored unless it is newer
// than the key's last restriction event here, so a stale event read back
// from the store never undoes a newer one (or the same event extended). A newer restriction of a key
// that is restricted already keeps the later end of the two: two proxies
// restricting the same key a moment apart (say an operator for an hour,
// and the budget for 5 m) must not shorten either. A restriction of a key the
// ledger does not hold adds it; a lift of such a key, or a restriction that
// has already ended, is ignored. It reports whether anything changed.
func (l *Ledger) ApplyRestriction(key string, until, at time.Time) bool {
	_, abs := l.now()
	atNs := at.UnixNano()
	var untilNs int64
	if !until.IsZero() {
		untilNs = until.UnixNano()
	}
	_, s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.lookup(key, widthOf(0), abs, untilNs > abs)
	if !ok {
		return false
	}
	e := &s.entries[slot]
	// Older events lose. The same event read back applies only if it
	// extends the restriction (the store merged a longer one into it).
	if atNs < e.since || atNs == e.since && (untilNs == 0 || untilNs <= e.until) {
		return false
	}
	if untilNs == 0 {
		e.lift(atNs)
		// The lift came from the fleet: nothing of it to push back, but
		// this ledger's own usage was forgiven and must be pushed as such.
		e.dirty = e.dirty&^dirtyRestriction | dirtyUsage
		return true
	}
	if e.until > abs {
		untilNs = max(untilNs, e.until)
	}
	e.until, e.since = untilNs, atNs
	// A newer event from the fleet supersedes one of ours not yet pushed.
	e.dirty &^= dirtyRestriction
	return true
}

// fleetCursors are the rotating start shards of ActiveKeys and
// ExportChanges.
type fleetCursors struct {
	activeCursor atomic.Uint32
	exportCursor atomic.Uint32
}
