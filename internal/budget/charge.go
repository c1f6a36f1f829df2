package budget

import (
	"math"
	"time"
)

// Charge records n requests of key that ran without a ticket and charges
// their worker time: requests the ledger learns of only once they ended
// (a sidecar's access log lines for callers nginx admitted on its own).
// It is Admit in shadow mode followed at once by Finish, n times, in one
// step under one lock: the work was done whatever the key's state, so a
// restricted key is charged too, and a key the charge takes over lim's
// budget is restricted from now (Decision.NewlyRestricted). Nothing is
// left in flight.
func (l *Ledger) Charge(key string, lim Limits, n int, worker time.Duration) Decision {
	off, abs := l.now()
	width := widthOf(lim.Window)
	h, s := l.shardOf(key)
	s.mu.Lock()
	s.ops++
	if s.ops%sweepEvery == 0 {
		s.sweep(abs, sweepBatch)
	}
	slot, _ := s.lookup(key, h, width, abs, true)
	e := &s.tab.cells[slot]
	f := s.fleetAt(slot)
	if e.width != width {
		e.rewindow(width, abs, f)
	}
	completed := e.settle(abs, f)
	if r := &e.reqs[e.head%ringSize]; n > 0 {
		*r = uint32(min(uint64(*r)+uint64(n), math.MaxUint32))
	}
	d := l.charge(s, slot, e, f, completed, worker, int64(lim.Budget), int64(lim.RestrictFor), off, abs)
	s.mu.Unlock()
	return d
}
