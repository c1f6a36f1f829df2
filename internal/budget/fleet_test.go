package budget

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// A 15 s window has 1 s buckets, so the arithmetic below is in whole seconds.
var fleetLim = Limits{Budget: 10 * time.Second, Window: 15 * time.Second, RestrictFor: time.Minute}

// fleetT0 is a bucket boundary for 1 s buckets.
var fleetT0 = time.Unix(1_700_000_000, 0)

func secs(d ...float64) [Buckets]int64 {
	var w [Buckets]int64
	off := Buckets - len(d)
	for i, v := range d {
		w[off+i] = int64(v * float64(time.Second))
	}
	return w
}

// newFleetLedger is a ledger in a fleet from the start, as guard.Run's is
// (the store's Restore runs before any request).
func newFleetLedger(clk Clock) *Ledger {
	l := New(Options{Clock: clk, Shards: 4})
	l.enableFleet()
	return l
}

func charge(t *testing.T, l *Ledger, key string, d time.Duration) {
	t.Helper()
	dec, tk := l.Admit(key, fleetLim)
	if !dec.Proceed() {
		t.Fatalf("admit %s: %+v", key, dec)
	}
	l.Finish(tk, d)
}

func TestMergeRemoteArithmetic(t *testing.T) {
	head := fleetT0.Unix() // bucket index of fleetT0 with 1 s buckets
	for _, tc := range []struct {
		name    string
		own     time.Duration // charged here at fleetT0
		merges  []KeyUsage    // merged in order, at fleetT0
		advance time.Duration // then the clock moves
		want    float64       // worker seconds after that
	}{
		{name: "own only", own: 2 * time.Second, want: 2},
		{name: "remote adds to own", own: 2 * time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(1, 3)}}, want: 6},
		{name: "a second merge replaces the first", own: 2 * time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(1, 3)}, {Head: head, Work: secs(0, 1)}}, want: 3},
		{name: "remote gone to zero leaves own", own: 2 * time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(5)}, {Head: head}}, want: 2},
		{name: "remote ahead of this clock is ignored",
			merges: []KeyUsage{{Head: head + 1, Work: secs(4, 5)}}, want: 4},
		{name: "remote older than the ring is ignored",
			merges: []KeyUsage{{Head: head - 20, Work: secs(7)}}, want: 0},
		{name: "rollover: remote slides out with the window", own: time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(3)}}, advance: 16 * time.Second, want: 0},
		{name: "rollover: half of the sliding-out bucket still counts", own: 2 * time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(2)}}, advance: 15*time.Second + 500*time.Millisecond, want: 2},
		{name: "rollover: within the window nothing is lost", own: 2 * time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(2)}}, advance: 14 * time.Second, want: 4},
		{name: "other width is not merged", own: time.Second,
			merges: []KeyUsage{{Width: 2 * time.Second, Head: head / 2, Work: secs(9)}}, want: 1},
		{name: "negative remote counts as zero", own: time.Second,
			merges: []KeyUsage{{Head: head, Work: secs(-5)}}, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := NewManualClock(fleetT0)
			l := newFleetLedger(clk)
			if tc.own > 0 {
				charge(t, l, "k", tc.own)
			} else {
				_, tk := l.Admit("k", fleetLim)
				l.Cancel(tk)
			}
			for _, m := range tc.merges {
				m.Key = "k"
				if m.Width == 0 {
					m.Width = time.Second
				}
				l.MergeRemote(&m)
			}
			clk.Advance(tc.advance)
			if got := l.Status("k", fleetLim).WorkerSeconds; got != tc.want {
				t.Errorf("worker seconds = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFleetBookkeepingOnlyOnceAStoreAsks(t *testing.T) {
	clk := NewManualClock(fleetT0)
	l := New(Options{Clock: clk, Shards: 4})
	charge(t, l, "used", 3*time.Second)
	l.Restrict("banned", fleetT0.Add(time.Hour))
	for i := range l.shards {
		if l.shards[i].tab.fleet != nil {
			t.Fatal("a ledger no fleet store asked for has fleet bookkeeping")
		}
	}
	// The first fleet call adopts what the ledger holds as its own.
	clk.Advance(time.Second)
	got := map[string]KeyUsage{}
	for _, u := range l.ExportChanges(nil, 10) {
		got[u.Key] = u
	}
	if u := got["used"]; u.Work != secs(3, 0) || u.RestrictionChanged {
		t.Errorf("used = %+v, want its 3 s as own usage", u)
	}
	if u := got["banned"]; !u.RestrictionChanged || !u.Until.Equal(fleetT0.Add(time.Hour)) {
		t.Errorf("banned = %+v, want its restriction exported", u)
	}
	// Keys added afterwards get bookkeeping too.
	charge(t, l, "later", time.Second)
	if got := l.ExportChanges(nil, 10); len(got) != 1 || got[0].Key != "later" || got[0].Work != secs(1) {
		t.Errorf("later = %+v", got)
	}
}

func TestExportChanges(t *testing.T) {
	clk := NewManualClock(fleetT0)
	l := newFleetLedger(clk)
	head := fleetT0.Unix()

	if got := l.ExportChanges(nil, 10); len(got) != 0 {
		t.Fatalf("empty ledger exported %v", got)
	}
	charge(t, l, "a", 2*time.Second)
	clk.Advance(time.Second)
	charge(t, l, "a", time.Second)
	// Remote usage is merged in, but is never exported as this ledger's.
	l.MergeRemote(&KeyUsage{Key: "a", Width: time.Second, Head: head + 1, Work: secs(5, 5)})
	_, running := l.Admit("b", fleetLim)
	clk.Advance(1500 * time.Millisecond)

	got := l.ExportChanges(nil, 10)
	byKey := map[string]KeyUsage{}
	for _, u := range got {
		byKey[u.Key] = u
	}
	if len(got) != 2 {
		t.Fatalf("exported %d keys, want a and b: %+v", len(got), got)
	}
	a := byKey["a"]
	if a.Width != time.Second || a.Head != head+2 || a.Work != secs(2, 1, 0) || a.InFlight != 0 || a.RestrictionChanged {
		t.Errorf("a = %+v, want own 2 s and 1 s in the two buckets before the head", a)
	}
	if b := byKey["b"]; b.InFlight != 1500*time.Millisecond || b.Work != secs() {
		t.Errorf("b = %+v, want 1.5 s in flight and no completed work", b)
	}

	// Nothing changed for a; b is still running, so it is exported again.
	clk.Advance(time.Second)
	got = l.ExportChanges(nil, 10)
	if len(got) != 1 || got[0].Key != "b" || got[0].InFlight != 2500*time.Millisecond {
		t.Fatalf("second export = %+v, want only b with 2.5 s in flight", got)
	}
	l.Finish(running, 2500*time.Millisecond)
	got = l.ExportChanges(nil, 10)
	if len(got) != 1 || got[0].Key != "b" || got[0].InFlight != 0 || got[0].Work != secs(2.5) {
		t.Fatalf("after b finished = %+v, want b's 2.5 s as completed work", got)
	}
	if got = l.ExportChanges(nil, 10); len(got) != 0 {
		t.Fatalf("nothing changed, exported %+v", got)
	}

	// Resync sends everything still in the window again.
	l.Resync()
	if got = l.ExportChanges(nil, 10); len(got) != 2 {
		t.Fatalf("after Resync exported %d keys, want 2", len(got))
	}
	// The limit bounds one export; the rest follows in the next.
	l.Resync()
	if got = l.ExportChanges(nil, 1); len(got) != 1 {
		t.Fatalf("limit 1 exported %d", len(got))
	}
	if got = l.ExportChanges(nil, 10); len(got) != 1 {
		t.Fatalf("the rest: exported %d, want 1", len(got))
	}
}

func TestRestrictionEventsExport(t *testing.T) {
	clk := NewManualClock(fleetT0)
	l := newFleetLedger(clk)
	charge(t, l, "k", 11*time.Second) // over budget: restricted by Finish
	got := l.ExportChanges(nil, 10)
	if len(got) != 1 || !got[0].RestrictionChanged || !got[0].Until.Equal(fleetT0.Add(time.Minute)) || !got[0].Since.Equal(fleetT0) {
		t.Fatalf("export = %+v, want k restricted until t0+1m since t0", got)
	}
	clk.Advance(time.Second)
	l.Lift("k")
	got = l.ExportChanges(nil, 10)
	if len(got) != 1 || !got[0].RestrictionChanged || !got[0].Until.IsZero() || !got[0].Since.Equal(fleetT0.Add(time.Second)) || got[0].Work != secs() {
		t.Fatalf("export after lift = %+v, want a lift at t0+1s with usage forgiven", got)
	}
	// An operator's lift of a key this ledger never saw is still exported,
	// for the proxies that do hold it.
	l.Lift("elsewhere")
	if got = l.ExportChanges(nil, 10); len(got) != 1 || got[0].Key != "elsewhere" || !got[0].RestrictionChanged {
		t.Fatalf("lift of an unknown key: %+v", got)
	}
}

func TestApplyRestriction(t *testing.T) {
	at := func(s int) time.Time { return fleetT0.Add(time.Duration(s) * time.Second) }
	type ev struct {
		until, at time.Time
		applied   bool
	}
	for _, tc := range []struct {
		name       string
		local      func(l *Ledger)
		events     []ev
		restricted bool
		until      time.Time // checked when set
		used       float64
	}{
		{name: "restriction of an unknown key adds it",
			events: []ev{{at(60), at(0), true}}, restricted: true},
		{name: "a restriction that has ended is ignored",
			events: []ev{{at(-1), at(-5), false}}},
		{name: "lift of an unknown key is ignored",
			events: []ev{{time.Time{}, at(0), false}}},
		{name: "a newer lift forgives usage",
			local:  func(l *Ledger) { l.Restrict("k", at(60)) },
			events: []ev{{time.Time{}, at(1), true}}},
		{name: "an older lift does not undo a newer restriction",
			local:      func(l *Ledger) { l.Restrict("k", at(60)) },
			events:     []ev{{time.Time{}, at(-1), false}},
			restricted: true},
		{name: "the same event read back is not applied twice",
			events: []ev{{at(60), at(0), true}, {at(60), at(0), false}}, restricted: true},
		{name: "a newer, shorter restriction keeps the longer one",
			local:      func(l *Ledger) { l.Restrict("k", at(600)) },
			events:     []ev{{at(60), at(1), true}},
			restricted: true, until: at(600)},
		{name: "a newer, longer restriction extends",
			local:      func(l *Ledger) { l.Restrict("k", at(60)) },
			events:     []ev{{at(600), at(1), true}},
			restricted: true, until: at(600)},
		{name: "the same event read back extended applies",
			events:     []ev{{at(60), at(0), true}, {at(600), at(0), true}},
			restricted: true, until: at(600)},
		{name: "newest of several wins",
			events: []ev{{at(60), at(0), true}, {time.Time{}, at(1), true}, {at(30), at(0), false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := NewManualClock(fleetT0)
			l := newFleetLedger(clk)
			if tc.local != nil {
				charge(t, l, "k", 3*time.Second)
				tc.local(l)
				tc.used = 3
				if !tc.restricted {
					tc.used = 0
				}
			}
			clk.Advance(2 * time.Second)
			for i, e := range tc.events {
				if got := l.ApplyRestriction("k", e.until, e.at); got != e.applied {
					t.Errorf("event %d applied = %v, want %v", i, got, e.applied)
				}
			}
			s := l.Status("k", fleetLim)
			if got := !s.RestrictedUntil.IsZero(); got != tc.restricted {
				t.Errorf("restricted = %v (%+v), want %v", got, s, tc.restricted)
			}
			if !tc.until.IsZero() && !s.RestrictedUntil.Equal(tc.until) {
				t.Errorf("restricted until %v, want %v", s.RestrictedUntil, tc.until)
			}
			if s.WorkerSeconds != tc.used {
				t.Errorf("worker seconds = %v, want %v", s.WorkerSeconds, tc.used)
			}
		})
	}
}

func TestLiftIgnoresStaleRemoteUsage(t *testing.T) {
	clk := NewManualClock(fleetT0)
	l := newFleetLedger(clk)
	head := fleetT0.Unix()
	charge(t, l, "k", 4*time.Second)
	l.MergeRemote(&KeyUsage{Key: "k", Width: time.Second, Head: head, Work: secs(8)})
	clk.Advance(time.Second)
	l.Lift("k")
	// A proxy that has not seen the lift yet still reports its old usage:
	// it must not undo the forgiveness. Its usage after the lift counts.
	clk.Advance(time.Second)
	l.MergeRemote(&KeyUsage{Key: "k", Width: time.Second, Head: head + 2, Work: secs(8, 0, 3)})
	if got := l.Status("k", fleetLim).WorkerSeconds; got != 3 {
		t.Errorf("worker seconds after lift and stale merge = %v, want 3 (only the usage after the lift)", got)
	}
}

// fleetSim is a store in miniature: each ledger's last export, by key, and
// merges of the others' parts. It is how internal/store's Redis store uses
// the ledger, without Redis.
type fleetSim struct {
	ledgers []*Ledger
	own     []map[string]KeyUsage
}

func (f *fleetSim) sync() {
	for i, l := range f.ledgers {
		for _, u := range l.ExportChanges(nil, 1000) {
			f.own[i][u.Key] = u
			if u.RestrictionChanged {
				for j, o := range f.ledgers {
					if j != i {
						o.ApplyRestriction(u.Key, u.Until, u.Since)
					}
				}
			}
		}
	}
	for i, l := range f.ledgers {
		for _, ref := range l.ActiveKeys(nil, 1000) {
			var sum KeyUsage
			sum.Key, sum.Width = ref.Key, ref.Width
			for j := range f.ledgers {
				u, ok := f.own[j][ref.Key]
				if j == i || !ok {
					continue
				}
				sum.Head = u.Head
				for b := range u.Work {
					sum.Work[b] += u.Work[b]
				}
				sum.Work[Buckets-1] += int64(u.InFlight)
			}
			l.MergeRemote(&sum)
		}
	}
}

func TestFleetHalfBudgetEachIsRestrictedOnBoth(t *testing.T) {
	clk := NewManualClock(fleetT0)
	f := &fleetSim{}
	for range 2 {
		f.ledgers = append(f.ledgers, New(Options{Clock: clk, Shards: 4}))
		f.own = append(f.own, map[string]KeyUsage{})
	}
	a, b := f.ledgers[0], f.ledgers[1]
	charge(t, a, "k", 5*time.Second)
	charge(t, b, "k", 5*time.Second)
	// Alone, each would admit: 5 s of a 10 s budget.
	f.sync()
	for i, l := range f.ledgers {
		if d, _ := l.Admit("k", fleetLim); d.Outcome != Restricted || d.Used != 10*time.Second {
			t.Errorf("ledger %d after sync: %+v, want restricted at the fleet's 10 s", i, d)
		}
	}
	// In-flight time elsewhere counts too, for a key b has seen.
	_, seen := b.Admit("slow", fleetLim)
	b.Cancel(seen)
	_, tk := a.Admit("slow", fleetLim)
	clk.Advance(3 * time.Second)
	f.sync()
	if s := b.Status("slow", fleetLim); s.WorkerSeconds != 3 {
		t.Errorf("b sees slow at %v worker seconds, want a's 3 s in flight", s.WorkerSeconds)
	}
	a.Finish(tk, 3*time.Second)
	f.sync()
	if s := b.Status("slow", fleetLim); s.WorkerSeconds != 3 {
		t.Errorf("b sees slow at %v worker seconds after it finished, want 3 (not counted twice)", s.WorkerSeconds)
	}
	// An operator lifts k on b; a follows.
	b.Lift("k")
	f.sync()
	f.sync()
	for i, l := range f.ledgers {
		if d, _ := l.Admit("k", fleetLim); d.Outcome != Allowed {
			t.Errorf("ledger %d after the lift: %+v, want allowed", i, d)
		}
	}
}

// BenchmarkAdmitFinishFleet is BenchmarkAdmitFinish on a ledger a fleet
// store uses: the hot path also keeps this proxy's own usage apart.
func BenchmarkAdmitFinishFleet(b *testing.B) {
	lim := Limits{Budget: time.Hour, Window: time.Minute, RestrictFor: 5 * time.Minute, MaxInFlight: 100}
	for _, n := range []int{1_000, 1_000_000} {
		keys := benchKeys(n)
		l := New(Options{})
		l.enableFleet()
		for _, i := range rand.New(rand.NewPCG(5, 6)).Perm(n) { // unrelated to the walk, as in BenchmarkAdmitFinish
			_, tk := l.Admit(keys[i], lim)
			l.Finish(tk, time.Millisecond)
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := testenv.StartCPU()
			i := 0
			for b.Loop() {
				d, tk := l.Admit(keys[i], lim)
				if !d.Proceed() {
					b.Fatalf("denied: %+v", d)
				}
				l.Finish(tk, time.Millisecond)
				if i++; i == n {
					i = 0
				}
			}
			cpu.Report(b)
		})
	}
}

// With more active keys than the limit, successive calls visit them all.
func TestActiveKeysTakeTurns(t *testing.T) {
	clk := NewManualClock(fleetT0)
	l := New(Options{Clock: clk, Shards: 8})
	want := map[string]bool{}
	for i := range 50 {
		k := fmt.Sprintf("fp-%d", i)
		want[k] = true
		charge(t, l, k, time.Millisecond)
	}
	seen := map[string]bool{}
	for range 10 {
		for _, r := range l.ActiveKeys(nil, 7) {
			seen[r.Key] = true
		}
	}
	if len(seen) != len(want) {
		t.Errorf("ten calls of 7 visited %d of %d keys", len(seen), len(want))
	}
}
