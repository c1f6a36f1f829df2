// Package budget accounts upstream worker time per key: how much of the
// upstream's workers each caller used in a sliding window, whether it is over
// its budget, and for how long it stays restricted once it was.
//
// The model is DESIGN.md's "The guard's model". Usage is the completed worker
// time charged in the window plus the elapsed time of the key's requests still
// running: charging only on completion (the seed's nginx/UDP design, seed 03)
// lets one key start a hundred 30-second requests before the first is charged.
//
// The package is pure: no I/O, no goroutines; the clock is injected (its
// one contact with the system is memory: big tables are mapped on huge
// pages, cells_linux.go). A Ledger is sharded by key hash and safe for
// concurrent use; Admit, Finish and Cancel do not allocate for keys already
// known. Idle keys are forgotten a few at a time by Admit, and all at once
// by Expire, which a running guard calls on a timer.
//
// # Window granularity
//
// Each key keeps a ring of 16 sub-buckets of worker time: the window is split
// into 15 buckets of Window/15 (4 s for a 1 m window) aligned to Unix time,
// and the 16th holds the bucket that is sliding out. Usage counts the 15 newest
// buckets fully and the sliding-out bucket pro rata to the part of it still
// inside the window, assuming its charges were spread evenly. So the window
// slides smoothly (no fixed bucket that resets and lets a key burst twice its
// budget across the boundary); the error is at most what one sub-bucket holds,
// and only for that bucket's time distribution. Completed requests are charged
// at the moment they finish, with their whole worker time.
package budget

import (
	"hash/maphash"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

const (
	// subBuckets is how many buckets a window is split into.
	subBuckets = 15
	// ringSize is subBuckets plus the bucket sliding out of the window.
	ringSize = subBuckets + 1

	// DefaultWindow is used when Limits.Window is zero.
	DefaultWindow = time.Minute

	// DefaultShards is the number of shards when Options.Shards is zero.
	DefaultShards = 128

	// sweepEvery and sweepBatch: every sweepEvery-th Admit on a shard looks at
	// the next sweepBatch cells and forgets idle entries, so that under
	// traffic memory follows the set of active keys between two Expire
	// calls. The batch is contiguous, so it costs little cache traffic per
	// Admit.
	sweepEvery = 64
	sweepBatch = 64
)

// Limits is the policy for one key (resolved by the guard from config:
// default, tier, per-key override).
type Limits struct {
	Budget      time.Duration // worker time allowed per Window; 0 = no worker-time budget
	Window      time.Duration // sliding window length (e.g. 1m); 0 = DefaultWindow
	RestrictFor time.Duration // how long a key stays restricted once over budget; 0 = only while over budget
	MaxInFlight int           // concurrent requests per key; 0 = unlimited
	Shadow      bool          // compute and report "would restrict", never enforce
}

// Outcome is what Admit decided.
type Outcome uint8

const (
	// Allowed: the request may go upstream.
	Allowed Outcome = iota
	// Restricted: the key is over budget now or still inside its restriction period.
	Restricted
	// TooManyInFlight: the key already has MaxInFlight requests running.
	TooManyInFlight
)

// String names the outcome for logs and metric labels.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Restricted:
		return "restricted"
	case TooManyInFlight:
		return "too_many_in_flight"
	}
	return "unknown"
}

// Decision is the result of Admit (and of Finish, after the charge).
type Decision struct {
	Outcome         Outcome
	Shadowed        bool          // Outcome would have denied, but Limits.Shadow let it through
	Used            time.Duration // completed worker time in the window + elapsed time of in-flight requests
	Remaining       time.Duration // Budget - Used, floored at 0 (0 when there is no budget)
	InFlight        int           // the key's requests in flight, this one included when admitted
	RestrictedUntil time.Time     // zero when not restricted
	NewlyRestricted bool          // this decision started a restriction (for logs/metrics)
	// Fleet: refused because this proxy's lease on the fleet's budget (or,
	// without one, its even share) is spent, though the key is not
	// restricted (lease.go). RestrictedUntil is when to retry.
	Fleet bool
}

// Proceed reports whether the request may go upstream: allowed, or denied
// only in shadow mode.
func (d Decision) Proceed() bool { return d.Outcome == Allowed || d.Shadowed }

// Ticket identifies one admitted request; a small value type (no
// allocation). The zero Ticket is valid to pass to Finish and Cancel, which
// then do nothing.
type Ticket struct {
	hash        uint64 // the key's: its shard, and its home cell if the entry moved
	slot        uint32 // where the entry was at Admit
	gen         uint32 // the entry's generation, unique in its shard
	start       int64  // ns since the ledger's base
	budget      int64  // the Limits in force at Admit, so Finish can restrict
	restrictFor int64
}

// Valid reports whether the ticket stands for an admitted request.
func (t Ticket) Valid() bool { return t.gen != 0 }

// Options configures a Ledger. The zero value is usable: system clock,
// DefaultShards shards.
type Options struct {
	// Clock tells the time; nil means SystemClock.
	Clock Clock
	// Shards is the number of independently locked shards, rounded up to a
	// power of two; 0 means DefaultShards.
	Shards int
}

// Ledger holds every key's usage, in-flight requests and restriction.
type Ledger struct {
	clock    Clock
	base     time.Time // offsets (in-flight starts) are ns since base, monotonic when the clock has it
	baseUnix int64     // base as Unix ns: bucket indexes and restrictions are absolute, so snapshots survive restarts
	seed     maphash.Seed
	mask     uint64
	shards   []shard
	// sysClock is set when clock is SystemClock: now then reads only the
	// monotonic clock (time.Since), half the cost of time.Now, with the
	// same result (offsets are monotonic differences from base either way).
	sysClock bool
	fleetCursors
}

// shard is 256 bytes, four whole cache lines, so neighbouring shards'
// locks never share one (TestShardSize keeps it so: pad if a field is added).
type shard struct {
	mu     sync.Mutex
	tab    table // the keys and their entries (index.go)
	ops    uint32
	cursor int // where sweep looks next
	_      [16]byte
}

// entry is one key's state, in its table cell (index.go): the first cache
// line holds what every decision reads, the second the key, the next two
// the worker time by bucket, the last the request counts. Times are Unix ns
// except start offsets.
type entry struct {
	tag      uint32 // of the key's hash; 0 marks an empty cell
	gen      uint32 // unique in the shard, so a ticket knows its entry after a move
	width    int64  // bucket width in ns (Window/subBuckets)
	head     int64  // absolute index (unix ns / width) of the newest bucket
	until    int64  // restricted until (unix ns); 0 = not restricted
	sumStart int64  // sum of in-flight requests' start offsets
	total    int64  // sum of work, so usage is O(1) on the hot path
	inFlight int32
	klen     uint16           // the key's length; longKey: longer than inlineKey, key holds its id in table.long
	key      [inlineKey]byte  // the key itself
	work     [ringSize]int64  // worker ns completed, by bucket (with a fleet store: the fleet's, fleetEntry.own is ours)
	reqs     [ringSize]uint32 // requests admitted, by bucket
}

// New returns an empty Ledger.
func New(opts Options) *Ledger {
	clk := opts.Clock
	if clk == nil {
		clk = SystemClock{}
	}
	n := opts.Shards
	if n <= 0 {
		n = DefaultShards
	}
	p := 1
	for p < n {
		p <<= 1
	}
	base := clk.Now()
	l := &Ledger{
		clock:    clk,
		base:     base,
		baseUnix: base.UnixNano(),
		seed:     maphash.MakeSeed(),
		mask:     uint64(p - 1),
		shards:   make([]shard, p),
	}
	_, l.sysClock = clk.(SystemClock)
	// Tables outside the Go heap (cells_linux.go) go with the ledger.
	runtime.AddCleanup(l, func(shards []shard) {
		for i := range shards {
			shards[i].tab.release()
		}
	}, l.shards)
	return l
}

// now returns the current offset from base and the current Unix ns.
func (l *Ledger) now() (off, abs int64) {
	if l.sysClock {
		off = int64(time.Since(l.base))
	} else {
		off = int64(l.clock.Now().Sub(l.base))
	}
	return off, l.baseUnix + off
}

// at is now for a reading t of the ledger's clock that a caller already
// took (AdmitAt, FinishAt): the offset from base and the Unix ns, as now would
// return them had it read the clock at t.
func (l *Ledger) at(t time.Time) (off, abs int64) {
	off = int64(t.Sub(l.base))
	return off, l.baseUnix + off
}

// shardOf returns key's hash, which also places it in the shard's table,
// and its shard.
func (l *Ledger) shardOf(key string) (uint64, *shard) {
	h := maphash.String(l.seed, key)
	return h, &l.shards[h&l.mask]
}

func widthOf(window time.Duration) int64 {
	if window <= 0 {
		window = DefaultWindow
	}
	w := int64(window) / subBuckets
	if w < 1 {
		w = 1
	}
	return w
}

// lookup returns key's position in the shard's table (h is its hash),
// creating the entry when create is set. Positions hold only until the
// table next changes (an insert, a removal): call with the shard locked and
// do not keep them.
func (s *shard) lookup(key string, h uint64, width, abs int64, create bool) (int, bool) {
	i, ok := s.tab.find(h, key)
	if ok || !create {
		return i, ok
	}
	i = s.tab.insert(h, key, i)
	e := &s.tab.cells[i]
	e.width, e.head = width, abs/width
	return i, true
}

// ticketed returns the position of t's entry: where it was at Admit, or
// where it has moved since; false when its key was forgotten.
func (s *shard) ticketed(t Ticket) (int, bool) {
	if i := int(t.slot); i < len(s.tab.cells) {
		if e := &s.tab.cells[i]; e.gen == t.gen && e.tag == tagOf(t.hash) {
			return i, true
		}
	}
	return s.tab.findGen(t.hash, t.gen)
}

// rewindow re-buckets an entry whose window changed (a config reload): the
// usage it had under the old window is kept, collapsed into the current
// bucket, so a reload neither forgives nor double-counts.
func (e *entry) rewindow(width, abs int64, f *fleetEntry) {
	used := e.completed(abs)
	var reqs uint64
	for _, r := range e.reqs {
		reqs += uint64(r)
	}
	var mine int64
	if f != nil {
		mine = f.ownCompleted(e, abs)
		f.own = [ringSize]int64{}
	}
	e.work = [ringSize]int64{}
	e.reqs = [ringSize]uint32{}
	e.width = width
	e.head = abs / width
	e.work[e.head%ringSize] = used
	e.total = used
	if f != nil {
		f.own[e.head%ringSize] = mine
		f.dirty |= dirtyUsage
	}
	e.reqs[e.head%ringSize] = uint32(min(reqs, math.MaxUint32))
}

// advanceTo moves the ring's head to bucket cur, clearing buckets that
// slid out (f's too, when the ledger has a fleet store). A clock that went
// backwards leaves the head where it is.
func (e *entry) advanceTo(cur int64, f *fleetEntry) {
	if cur <= e.head {
		return
	}
	if cur-e.head >= ringSize {
		e.work = [ringSize]int64{}
		e.reqs = [ringSize]uint32{}
		e.total = 0
		if f != nil {
			f.own = [ringSize]int64{}
		}
	} else {
		for i := e.head + 1; i <= cur; i++ {
			e.total -= e.work[i%ringSize]
			e.work[i%ringSize] = 0
			e.reqs[i%ringSize] = 0
			if f != nil {
				f.own[i%ringSize] = 0
			}
		}
	}
	e.head = cur
}

// settle advances the ring to abs and returns the completed worker time in
// the window ending there: the hot path, with one division.
func (e *entry) settle(abs int64, f *fleetEntry) int64 {
	cur := abs / e.width
	if cur < e.head { // clock went backwards
		return e.completed(abs)
	}
	e.advanceTo(cur, f)
	// The ring now holds exactly the window's buckets plus the one sliding
	// out, oldest = cur-subBuckets, which shares cur+1's slot.
	w := e.work[(cur+1)%ringSize]
	if w == 0 {
		return e.total
	}
	within := abs - cur*e.width
	return e.total - w + int64(float64(w)*float64(e.width-within)/float64(e.width))
}

// completed is the worker time charged in the window ending at abs, without
// modifying the entry (Status and Top read under the lock but do not write).
func (e *entry) completed(abs int64) int64 {
	cur := abs / e.width
	within := abs - cur*e.width
	if cur < e.head { // clock went backwards: read as of the head
		cur, within = e.head, 0
	}
	oldest := cur - subBuckets
	if cur == e.head {
		// The hot path, right after advance: the ring holds exactly the
		// window's buckets plus the sliding-out one.
		w := e.work[oldest%ringSize]
		if w == 0 {
			return e.total
		}
		return e.total - w + int64(float64(w)*float64(e.width-within)/float64(e.width))
	}
	var sum int64
	for i := oldest + 1; i <= cur; i++ {
		if i <= e.head && i > e.head-ringSize {
			sum += e.work[i%ringSize]
		}
	}
	if oldest <= e.head && oldest > e.head-ringSize {
		if w := e.work[oldest%ringSize]; w > 0 {
			// The part of the oldest bucket still inside the window.
			sum += int64(float64(w) * float64(e.width-within) / float64(e.width))
		}
	}
	return sum
}

// requests is the number of requests admitted in the window ending at abs
// (whole buckets: it is informational).
func (e *entry) requests(abs int64) int64 {
	cur := max(abs/e.width, e.head)
	var n int64
	for i := cur - subBuckets + 1; i <= cur; i++ {
		if i <= e.head && i > e.head-ringSize {
			n += int64(e.reqs[i%ringSize])
		}
	}
	return n
}

// inFlightElapsed is the summed elapsed time of the entry's requests in
// flight: n×now − Σstart. Both terms may wrap around int64 after a long
// uptime with many requests in flight; Go's signed arithmetic wraps, so the
// difference, which is small, is still exact.
func (e *entry) inFlightElapsed(off int64) int64 {
	if e.inFlight == 0 {
		return 0
	}
	return max(int64(e.inFlight)*off-e.sumStart, 0)
}

func (e *entry) idle(abs int64) bool {
	return e.inFlight == 0 && e.until <= abs && (abs/e.width)-e.head >= ringSize
}

// sweep looks at n cells from the shard's cursor and forgets the idle
// entries among them (their tickets go stale: a new entry of the same key
// gets a new generation), then shrinks the table if it is mostly empty.
func (s *shard) sweep(abs int64, n int) {
	t := &s.tab
	for ; n > 0 && t.n > 0; n-- {
		if s.cursor >= len(t.cells) {
			s.cursor = 0
		}
		if t.fps[s.cursor] != 0 && t.cells[s.cursor].idle(abs) { // empty cells cost no fetch
			t.remove(s.cursor) // a later cell may move here: look at it next
			continue
		}
		s.cursor++
	}
	if t.sparse() {
		t.resize(cellsFor(t.n))
		s.cursor = 0
	}
}

// sweepAll forgets every idle entry of the shard and shrinks its table if
// that left it mostly empty; it returns how many it forgot. A removal
// shifts a later cell (or, past the end, one from the start, already
// looked at) into the cell just emptied, so that cell is looked at again.
func (s *shard) sweepAll(abs int64) int {
	t := &s.tab
	forgot := 0
	for i := 0; i < len(t.cells) && t.n > 0; {
		if t.fps[i] != 0 && t.cells[i].idle(abs) {
			t.remove(i)
			forgot++
			continue
		}
		i++
	}
	if t.sparse() {
		t.resize(cellsFor(t.n))
		s.cursor = 0
	}
	return forgot
}

// Admit decides for key under lim. When the request may proceed (Allowed, or
// Shadowed), it is registered as in flight and the returned Ticket must be
// passed to Finish or Cancel. In-flight time is counted from Admit (the guard
// calls Admit right before handing the request upstream, after any pool
// queueing). A denied request gets the zero Ticket.
//
// In shadow mode a key that goes over budget is still marked restricted (so
// "would restrict" is reported once per restriction period, and the admin API
// shows it), but its requests proceed with Decision.Shadowed set.
func (l *Ledger) Admit(key string, lim Limits) (Decision, Ticket) {
	off, abs := l.now()
	return l.admit(key, lim, off, abs)
}

// AdmitAt is Admit for a caller that has just read the ledger's clock (a
// front-end's reading of the moment it hands the request upstream): now is
// that reading, and the ledger does not read the clock again. The request
// counts as in flight from now.
func (l *Ledger) AdmitAt(key string, lim Limits, now time.Time) (Decision, Ticket) {
	off, abs := l.at(now)
	return l.admit(key, lim, off, abs)
}

func (l *Ledger) admit(key string, lim Limits, off, abs int64) (Decision, Ticket) {
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
	used := e.settle(abs, f) + e.inFlightElapsed(off)

	d := Decision{Used: time.Duration(used), InFlight: int(e.inFlight)}
	switch {
	case e.until > abs:
		d.Outcome = Restricted
	case lim.Budget > 0 && used >= int64(lim.Budget):
		d.Outcome = Restricted
		if lim.RestrictFor > 0 {
			e.until = abs + int64(lim.RestrictFor)
			l.restricted(f, key, abs)
			d.NewlyRestricted = true
		}
	case f != nil && lim.Budget > 0 && l.leasing.Load() && !l.leaseAllows(key, e, f, off, abs, lim):
		// This proxy's slice of the fleet's budget is spent (lease.go):
		// refused until the next slice, not restricted.
		d.Outcome = Restricted
		d.Fleet = true
	case lim.MaxInFlight > 0 && int(e.inFlight) >= lim.MaxInFlight:
		d.Outcome = TooManyInFlight
	}
	d.RestrictedUntil = l.restrictedUntil(e, abs, lim.RestrictFor, d.Outcome == Restricted && !d.Fleet)
	if d.Fleet {
		d.RestrictedUntil = time.Unix(0, abs+l.lease.ttl/2)
	}
	if lim.Budget > 0 {
		d.Remaining = max(lim.Budget-d.Used, 0)
	}
	if d.Outcome != Allowed {
		if !lim.Shadow {
			s.mu.Unlock()
			return d, Ticket{}
		}
		d.Shadowed = true
	}
	e.inFlight++
	e.sumStart += off
	if f != nil {
		f.dirty |= dirtyUsage // its in-flight time is usage the fleet should see
	}
	if r := &e.reqs[e.head%ringSize]; *r < math.MaxUint32 {
		*r++
	}
	d.InFlight = int(e.inFlight)
	t := Ticket{
		hash: h, slot: uint32(slot), gen: e.gen, start: off,
		budget: int64(lim.Budget), restrictFor: int64(lim.RestrictFor),
	}
	s.mu.Unlock()
	return d, t
}

// restrictedUntil is the time to report for a key: its restriction's end, or
// when it is over budget without a restriction period, the end of the
// current sub-bucket (the soonest the window can have slid enough to matter),
// as a Retry-After hint.
func (l *Ledger) restrictedUntil(e *entry, abs int64, restrictFor time.Duration, over bool) time.Time {
	switch {
	case e.until > abs:
		return time.Unix(0, e.until)
	case over && restrictFor <= 0:
		return time.Unix(0, (abs/e.width+1)*e.width)
	}
	return time.Time{}
}

// Finish charges the request's real upstream worker time (measured by the
// guard: from handing it upstream until the upstream finished its response,
// even if the client went away) and ends its in-flight accounting. The
// charge lands in the current bucket. If it takes the key over the budget in
// force when the request was admitted, the key is restricted from now; the
// returned Decision says so (NewlyRestricted) and carries the usage after
// the charge. Call Finish or Cancel once per Ticket; a zero Ticket, or one
// whose key has since been forgotten, is ignored.
func (l *Ledger) Finish(t Ticket, worker time.Duration) Decision {
	if t.gen == 0 {
		return Decision{}
	}
	off, abs := l.now()
	return l.finish(t, worker, off, abs)
}

// FinishAt is Finish for a caller that has just read the ledger's clock
// (a front-end's reading of the moment the upstream's answer ended): now
// is that reading, and the ledger does not read the clock again. The
// charge, the key's usage and a restriction it starts are as of now.
func (l *Ledger) FinishAt(t Ticket, worker time.Duration, now time.Time) Decision {
	if t.gen == 0 {
		return Decision{}
	}
	off, abs := l.at(now)
	return l.finish(t, worker, off, abs)
}

func (l *Ledger) finish(t Ticket, worker time.Duration, off, abs int64) Decision {
	s := &l.shards[t.hash&l.mask]
	s.mu.Lock()
	slot, ok := s.ticketed(t)
	if !ok {
		s.mu.Unlock()
		return Decision{}
	}
	e := &s.tab.cells[slot]
	f := s.fleetAt(slot)
	completed := e.settle(abs, f)
	if e.inFlight > 0 {
		e.inFlight--
		e.sumStart -= t.start
	}
	d := l.charge(s, slot, e, f, completed, worker, t.budget, t.restrictFor, off, abs)
	s.mu.Unlock()
	return d
}

// charge adds worker to the entry at slot (its completed usage so far
// settled to abs), keeps the fleet's view of it, and restricts the key
// from now if that took it to budget: the end of Finish and Charge, with
// the shard locked.
func (l *Ledger) charge(s *shard, slot int, e *entry, f *fleetEntry, completed int64, worker time.Duration, budget, restrictFor, off, abs int64) Decision {
	if worker > 0 {
		e.work[e.head%ringSize] += int64(worker)
		e.total += int64(worker)
		completed += int64(worker)
		if f != nil {
			f.own[e.head%ringSize] += int64(worker)
			f.lease.spent += int64(worker)
		}
	}
	if f != nil {
		f.dirty |= dirtyUsage
		if l.leasing.Load() {
			l.leaseLow(s, slot, e, f, off, abs)
		}
	}
	used := completed + e.inFlightElapsed(off)
	d := Decision{Used: time.Duration(used), InFlight: int(e.inFlight)}
	if budget > 0 {
		d.Remaining = max(time.Duration(budget-used), 0)
		if used >= budget && e.until <= abs && restrictFor > 0 {
			e.until = abs + restrictFor
			l.restrictedAt(s, slot, f, abs)
			d.NewlyRestricted = true
		}
	}
	if e.until > abs {
		d.Outcome = Restricted
		d.RestrictedUntil = time.Unix(0, e.until)
	}
	return d
}

// Cancel ends in-flight accounting without charging (the request never
// reached the upstream). A stale or zero Ticket is ignored.
func (l *Ledger) Cancel(t Ticket) {
	if t.gen == 0 {
		return
	}
	s := &l.shards[t.hash&l.mask]
	s.mu.Lock()
	if slot, ok := s.ticketed(t); ok {
		if e := &s.tab.cells[slot]; e.inFlight > 0 {
			e.inFlight--
			e.sumStart -= t.start
			if f := s.fleetAt(slot); f != nil {
				f.dirty |= dirtyUsage
			}
		}
	}
	s.mu.Unlock()
}

// KeyStatus is one key's state, for the admin API.
type KeyStatus struct {
	Key             string
	WorkerSeconds   float64   // Used, in seconds, in-flight included
	InFlight        int       // requests running now
	RestrictedUntil time.Time // zero = not restricted
	Requests        int64     // admitted in the window (whole sub-buckets)
	Budget          time.Duration
	Remaining       time.Duration // Budget - Used, floored at 0; 0 when there is no budget
}

func (l *Ledger) status(key string, e *entry, off, abs int64, lim Limits) KeyStatus {
	used := e.completed(abs) + e.inFlightElapsed(off)
	ks := KeyStatus{
		Key:           key,
		WorkerSeconds: time.Duration(used).Seconds(),
		InFlight:      int(e.inFlight),
		Requests:      e.requests(abs),
		Budget:        lim.Budget,
	}
	if e.until > abs {
		ks.RestrictedUntil = time.Unix(0, e.until)
	}
	if lim.Budget > 0 {
		ks.Remaining = max(lim.Budget-time.Duration(used), 0)
	}
	return ks
}

// Status reports key's state; a key the ledger does not know has zero usage.
func (l *Ledger) Status(key string, lim Limits) KeyStatus {
	off, abs := l.now()
	h, s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.lookup(key, h, 0, abs, false)
	if !ok {
		ks := KeyStatus{Key: key, Budget: lim.Budget, Remaining: lim.Budget}
		return ks
	}
	return l.status(key, &s.tab.cells[slot], off, abs, lim)
}

// Restricted reports whether key is inside a restriction now, with the
// Decision a refused Admit would return, without admitting a request or
// creating the key: a front-end asks it before a restricted key may wait
// in a queue where another key could have waited.
func (l *Ledger) Restricted(key string, lim Limits) (Decision, bool) {
	off, abs := l.now()
	h, s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.lookup(key, h, 0, abs, false)
	if !ok {
		return Decision{}, false
	}
	e := &s.tab.cells[slot]
	if e.until <= abs {
		return Decision{}, false
	}
	used := time.Duration(e.completed(abs) + e.inFlightElapsed(off))
	d := Decision{Outcome: Restricted, Used: used, InFlight: int(e.inFlight), RestrictedUntil: time.Unix(0, e.until)}
	if lim.Budget > 0 {
		d.Remaining = max(lim.Budget-used, 0)
	}
	return d, true
}

// Top returns up to n keys by usage, highest first (restricted keys with
// no usage left in the window still appear, after those with usage). lim
// gives each key's limits, for Remaining; nil means no budget.
func (l *Ledger) Top(n int, lim func(key string) Limits) []KeyStatus {
	top, _ := l.selectTop(n, lim, false)
	return top
}

// selectTop is Top, or with restrictedOnly the restricted keys alone, and
// how many keys qualified in all. It keeps the n best seen so far, sorted:
// a bounded selection, so 100,000 keys cost one pass and no sort.
func (l *Ledger) selectTop(n int, lim func(key string) Limits, restrictedOnly bool) ([]KeyStatus, int) {
	if n <= 0 {
		return nil, 0
	}
	off, abs := l.now()
	type cand struct {
		key   string
		used  int64
		until int64
	}
	best := make([]cand, 0, min(n, 1024))
	better := func(a, b cand) bool {
		if a.used != b.used {
			return a.used > b.used
		}
		if a.until != b.until {
			return a.until > b.until
		}
		return a.key < b.key
	}
	total := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for slot := range s.tab.cells {
			e := &s.tab.cells[slot]
			if e.tag == 0 || restrictedOnly && e.until <= abs {
				// Summing a window costs most of the pass: the restricted
				// list skips the keys it will not keep before it does.
				continue
			}
			c := cand{used: e.completed(abs) + e.inFlightElapsed(off), until: e.until}
			if c.until <= abs {
				c.until = 0
			}
			if c.until == 0 && (restrictedOnly || c.used == 0 && e.inFlight == 0) {
				continue
			}
			total++
			if len(best) == n && c.used < best[n-1].used {
				continue // the key is only made (allocated) for a candidate
			}
			c.key = s.tab.keyAt(slot)
			if len(best) == n && !better(c, best[n-1]) {
				continue
			}
			j := len(best)
			if j < n {
				best = append(best, c)
			} else {
				j = n - 1
			}
			for j > 0 && better(c, best[j-1]) {
				best[j] = best[j-1]
				j--
			}
			best[j] = c
		}
		s.mu.Unlock()
	}
	out := make([]KeyStatus, 0, len(best))
	for _, c := range best {
		var lm Limits
		if lim != nil {
			lm = lim(c.key)
		}
		out = append(out, l.Status(c.key, lm))
	}
	return out, total
}

// Restrict restricts key until the given time (an operator's decision; it
// replaces any current restriction).
func (l *Ledger) Restrict(key string, until time.Time) {
	_, abs := l.now()
	h, s := l.shardOf(key)
	s.mu.Lock()
	slot, _ := s.lookup(key, h, widthOf(0), abs, true)
	s.tab.cells[slot].until = until.UnixNano()
	l.restricted(s.fleetAt(slot), key, abs)
	s.mu.Unlock()
}

// Lift ends key's restriction and forgives its completed usage in the
// window: otherwise a key still over budget would be restricted again by
// its next request, and lifting would do nothing. Requests still in flight
// keep counting. A key the ledger does not hold is recorded anyway, so a
// fleet store can carry the lift to the proxies that do hold it.
func (l *Ledger) Lift(key string) {
	_, abs := l.now()
	h, s := l.shardOf(key)
	s.mu.Lock()
	slot, _ := s.lookup(key, h, widthOf(0), abs, true)
	f := s.fleetAt(slot)
	s.tab.cells[slot].lift(abs, f)
	if f != nil {
		f.dirty |= dirtyRestriction
		l.urgent(f, key)
	}
	s.mu.Unlock()
}

// lift ends the restriction and forgives the completed usage, at abs.
func (e *entry) lift(abs int64, f *fleetEntry) {
	e.until = 0
	e.work = [ringSize]int64{}
	e.total = 0
	if f != nil {
		f.own = [ringSize]int64{}
		f.since, f.lifted = abs, abs
		f.dirty |= dirtyUsage
	}
}

// Expire forgets every idle key now (nothing in its window, nothing in
// flight, not restricted) and shrinks the tables they leave mostly empty,
// so the memory follows the active keys. It returns how many keys it
// forgot. Admit forgets idle keys too, a few on each call, but only while
// requests arrive: after a burst of keys and no traffic, the memory would
// stay at its peak (issue 17), so a guard calls Expire on a timer. It
// locks one shard at a time.
func (l *Ledger) Expire() int {
	_, abs := l.now()
	forgot := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		forgot += s.sweepAll(abs)
		s.mu.Unlock()
	}
	return forgot
}

// tableBytes is the memory the shards' tables hold (cells and fleet data).
func (l *Ledger) tableBytes() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tab.cells)*cellSize + len(s.tab.fps)*2 + len(s.tab.fleet)*int(unsafe.Sizeof(fleetEntry{}))
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of keys the ledger holds (idle keys are forgotten
// gradually as requests arrive, and all at once by Expire).
func (l *Ledger) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.tab.n
		s.mu.Unlock()
	}
	return n
}
