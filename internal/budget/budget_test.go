package budget

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// t0 is aligned to a 4 s bucket (1 m window / 15), so sliding amounts are exact.
var t0 = time.Unix(1_700_000_000, 0)

const sec = time.Second

func newTestLedger() (*Ledger, *ManualClock) {
	clk := NewManualClock(t0)
	return New(Options{Clock: clk, Shards: 4}), clk
}

var std = Limits{Budget: 10 * sec, Window: time.Minute, RestrictFor: 5 * time.Minute}

// step is one action in a scripted scenario: move the clock, then act.
type step struct {
	advance time.Duration
	op      string // "admit", "finish", "cancel", "status", "restrict", "lift"
	key     string
	ticket  int           // which admitted request (by admit order) finish/cancel refers to
	worker  time.Duration // charge for finish
	lim     *Limits       // nil = std

	// expectations (checked when set)
	outcome    *Outcome
	shadowed   *bool
	newly      *bool
	used       *time.Duration
	inFlight   *int
	restricted *bool
}

func o(x Outcome) *Outcome              { return &x }
func b(x bool) *bool                    { return &x }
func du(x time.Duration) *time.Duration { return &x }
func n(x int) *int                      { return &x }

func TestLedgerScenarios(t *testing.T) {
	shadow := std
	shadow.Shadow = true
	capped := Limits{MaxInFlight: 2, Window: time.Minute}
	noPeriod := std
	noPeriod.RestrictFor = 0

	tests := []struct {
		name  string
		steps []step
	}{
		{"in-flight time counts before completion", []step{
			{op: "admit", key: "a", outcome: o(Allowed), used: du(0), inFlight: n(1)},
			{advance: 4 * sec, op: "status", key: "a", used: du(4 * sec), inFlight: n(1)},
			{op: "admit", key: "a", outcome: o(Allowed), used: du(4 * sec), inFlight: n(2)},
			{advance: 3 * sec, op: "status", key: "a", used: du(7*sec + 3*sec), inFlight: n(2)},
			// over budget while both still run: the next request is refused.
			{advance: 1 * sec, op: "admit", key: "a", outcome: o(Restricted), newly: b(true), used: du(8*sec + 4*sec)},
			{op: "status", key: "a", restricted: b(true)},
		}},
		{"a hundred long requests are stopped by in-flight time", func() []step {
			var s []step
			for range 100 {
				s = append(s, step{op: "admit", key: "bulk", outcome: o(Allowed)})
			}
			// 100 requests × 0.1 s = 10 s of worker time, none finished yet.
			s = append(s, step{advance: 100 * time.Millisecond, op: "admit", key: "bulk", outcome: o(Restricted), newly: b(true), used: du(10 * sec)})
			return s
		}()},
		{"finish charges real time and releases in-flight", []step{
			{op: "admit", key: "a"},
			{advance: 2 * sec, op: "finish", ticket: 0, worker: 2 * sec, used: du(2 * sec), inFlight: n(0)},
			{op: "status", key: "a", used: du(2 * sec), inFlight: n(0)},
		}},
		{"cancel releases without charging", []step{
			{op: "admit", key: "a"},
			{advance: 2 * sec, op: "cancel", ticket: 0},
			{op: "status", key: "a", used: du(0), inFlight: n(0)},
		}},
		{"a client abort is charged the upstream's real time", []step{
			// The client gave up at 5 s; the upstream ran for 30 s: the guard
			// calls Finish when the upstream finishes, with 30 s.
			{op: "admit", key: "a", lim: &Limits{Budget: 100 * sec, Window: time.Minute}},
			{advance: 30 * sec, op: "finish", ticket: 0, worker: 30 * sec, used: du(30 * sec)},
		}},
		{"finish that crosses the budget restricts", []step{
			{op: "admit", key: "a"},
			{advance: 12 * sec, op: "finish", ticket: 0, worker: 12 * sec, newly: b(true), restricted: b(true)},
			{op: "admit", key: "a", outcome: o(Restricted), newly: b(false)},
		}},
		{"window slides smoothly", []step{
			{op: "admit", key: "a", lim: &Limits{Budget: 100 * sec, Window: time.Minute}},
			{op: "finish", ticket: 0, worker: 8 * sec},
			{advance: 30 * sec, op: "status", key: "a", used: du(8 * sec)},
			{advance: 30 * sec, op: "status", key: "a", used: du(8 * sec)}, // exactly one window later: the oldest bucket still fully in
			{advance: 1 * sec, op: "status", key: "a", used: du(6 * sec)},  // a quarter of its bucket slid out
			{advance: 1 * sec, op: "status", key: "a", used: du(4 * sec)},
			{advance: 2 * sec, op: "status", key: "a", used: du(0)},
		}},
		{"no double burst across a minute boundary", []step{
			// Spend 9 s just before t0+60 s; a fixed 1-minute bucket would
			// reset at t0+60 s and allow another 10 s.
			{advance: 56 * sec, op: "admit", key: "a"},
			{op: "finish", ticket: 0, worker: 9 * sec},
			{advance: 4 * sec, op: "admit", key: "a", outcome: o(Allowed), used: du(9 * sec)},
			{advance: 1 * sec, op: "finish", ticket: 1, worker: 2 * sec, newly: b(true)},
			{op: "admit", key: "a", outcome: o(Restricted)},
		}},
		{"restriction expires", []step{
			{op: "admit", key: "a"},
			{op: "finish", ticket: 0, worker: 11 * sec, newly: b(true)},
			{advance: 4*time.Minute + 59*sec, op: "admit", key: "a", outcome: o(Restricted), used: du(0)},
			{advance: 1 * sec, op: "admit", key: "a", outcome: o(Allowed), restricted: b(false)},
		}},
		{"without a restriction period, denied only while over budget", []step{
			{op: "admit", key: "a", lim: &noPeriod},
			{op: "finish", ticket: 0, worker: 11 * sec, newly: b(false)},
			{op: "admit", key: "a", lim: &noPeriod, outcome: o(Restricted), newly: b(false)},
			{advance: 64 * sec, op: "admit", key: "a", lim: &noPeriod, outcome: o(Allowed)},
		}},
		{"other keys are not affected", []step{
			{op: "admit", key: "a"},
			{op: "finish", ticket: 0, worker: 11 * sec, newly: b(true)},
			{op: "admit", key: "a", outcome: o(Restricted)},
			{op: "admit", key: "b", outcome: o(Allowed), used: du(0)},
		}},
		{"shadow never denies but reports", []step{
			{op: "admit", key: "a", lim: &shadow},
			{op: "finish", ticket: 0, worker: 11 * sec, newly: b(true)},
			{op: "admit", key: "a", lim: &shadow, outcome: o(Restricted), shadowed: b(true), newly: b(false), inFlight: n(1)},
			{op: "admit", key: "a", lim: &shadow, outcome: o(Restricted), shadowed: b(true), inFlight: n(2)},
			{op: "status", key: "a", restricted: b(true), inFlight: n(2)},
		}},
		{"concurrency cap", []step{
			{op: "admit", key: "a", lim: &capped, outcome: o(Allowed)},
			{op: "admit", key: "a", lim: &capped, outcome: o(Allowed)},
			{op: "admit", key: "a", lim: &capped, outcome: o(TooManyInFlight), inFlight: n(2)},
			{op: "admit", key: "b", lim: &capped, outcome: o(Allowed)},
			{op: "finish", ticket: 0, worker: sec},
			{op: "admit", key: "a", lim: &capped, outcome: o(Allowed), inFlight: n(2)},
			{op: "status", key: "a", restricted: b(false)},
		}},
		{"shadowed concurrency cap lets requests through", []step{
			{op: "admit", key: "a", lim: &Limits{MaxInFlight: 1, Shadow: true}, outcome: o(Allowed)},
			{op: "admit", key: "a", lim: &Limits{MaxInFlight: 1, Shadow: true}, outcome: o(TooManyInFlight), shadowed: b(true), inFlight: n(2)},
		}},
		{"operator restrict and lift", []step{
			{op: "restrict", key: "a", advance: 0},
			{op: "admit", key: "a", outcome: o(Restricted), newly: b(false)},
			{op: "lift", key: "a"},
			{op: "admit", key: "a", outcome: o(Allowed)},
		}},
		{"lift forgives completed usage", []step{
			{op: "admit", key: "a"},
			{op: "finish", ticket: 0, worker: 20 * sec, newly: b(true)},
			{op: "lift", key: "a"},
			{op: "admit", key: "a", outcome: o(Allowed), used: du(0)},
		}},
		{"a window change keeps usage", []step{
			{op: "admit", key: "a", lim: &Limits{Budget: 100 * sec, Window: time.Minute}},
			{op: "finish", ticket: 0, worker: 5 * sec},
			{advance: sec, op: "admit", key: "a", lim: &Limits{Budget: 100 * sec, Window: 10 * time.Minute}, used: du(5 * sec)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := newTestLedger()
			var tickets []Ticket
			for i, st := range tc.steps {
				clk.Advance(st.advance)
				lim := std
				if st.lim != nil {
					lim = *st.lim
				}
				var d Decision
				var ks *KeyStatus
				switch st.op {
				case "admit":
					var tk Ticket
					d, tk = l.Admit(st.key, lim)
					if d.Proceed() != tk.Valid() {
						t.Fatalf("step %d: Proceed()=%v but ticket valid=%v", i, d.Proceed(), tk.Valid())
					}
					if tk.Valid() {
						tickets = append(tickets, tk)
					}
				case "finish":
					d = l.Finish(tickets[st.ticket], st.worker)
				case "cancel":
					l.Cancel(tickets[st.ticket])
				case "status":
					s := l.Status(st.key, lim)
					ks = &s
				case "restrict":
					l.Restrict(st.key, clk.Now().Add(time.Hour))
				case "lift":
					l.Lift(st.key)
				default:
					t.Fatalf("bad op %q", st.op)
				}
				if ks != nil {
					d = Decision{Used: time.Duration(math.Round(ks.WorkerSeconds * 1e9)), InFlight: ks.InFlight, RestrictedUntil: ks.RestrictedUntil}
				}
				if st.outcome != nil && d.Outcome != *st.outcome {
					t.Errorf("step %d (%s %s): outcome %v, want %v (%+v)", i, st.op, st.key, d.Outcome, *st.outcome, d)
				}
				if st.shadowed != nil && d.Shadowed != *st.shadowed {
					t.Errorf("step %d: shadowed %v, want %v", i, d.Shadowed, *st.shadowed)
				}
				if st.newly != nil && d.NewlyRestricted != *st.newly {
					t.Errorf("step %d (%s): newly restricted %v, want %v (%+v)", i, st.op, d.NewlyRestricted, *st.newly, d)
				}
				if st.used != nil && d.Used != *st.used {
					t.Errorf("step %d (%s %s): used %v, want %v", i, st.op, st.key, d.Used, *st.used)
				}
				if st.inFlight != nil && d.InFlight != *st.inFlight {
					t.Errorf("step %d: in flight %d, want %d", i, d.InFlight, *st.inFlight)
				}
				if st.restricted != nil && d.RestrictedUntil.IsZero() == *st.restricted {
					t.Errorf("step %d (%s): restricted until %v, want restricted=%v", i, st.op, d.RestrictedUntil, *st.restricted)
				}
			}
		})
	}
}

func TestDecisionRemainingAndUntil(t *testing.T) {
	l, clk := newTestLedger()
	d, tk := l.Admit("a", std)
	if d.Remaining != 10*sec {
		t.Fatalf("remaining %v, want 10s", d.Remaining)
	}
	clk.Advance(3 * sec)
	d = l.Finish(tk, 3*sec)
	if d.Remaining != 7*sec {
		t.Fatalf("remaining after 3s %v, want 7s", d.Remaining)
	}
	_, tk = l.Admit("a", std)
	clk.Advance(8 * sec)
	d = l.Finish(tk, 8*sec)
	if !d.NewlyRestricted || d.Remaining != 0 {
		t.Fatalf("want newly restricted with nothing remaining: %+v", d)
	}
	if want := clk.Now().Add(5 * time.Minute); !d.RestrictedUntil.Equal(want) {
		t.Fatalf("restricted until %v, want %v", d.RestrictedUntil, want)
	}
}

func TestTop(t *testing.T) {
	l, clk := newTestLedger()
	for i, w := range []time.Duration{3, 9, 1, 7} {
		_, tk := l.Admit(fmt.Sprintf("k%d", i), Limits{})
		l.Finish(tk, w*sec)
	}
	_, _ = l.Admit("running", Limits{}) // in flight for 5 s
	clk.Advance(5 * sec)
	l.Restrict("banned", clk.Now().Add(time.Minute))
	top := l.Top(3, func(string) Limits { return Limits{Budget: 8 * sec} })
	var got []string
	for _, ks := range top {
		got = append(got, fmt.Sprintf("%s=%g", ks.Key, ks.WorkerSeconds))
	}
	want := []string{"k1=9", "k3=7", "running=5"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("top = %v, want %v", got, want)
	}
	if top[0].Remaining != 0 || top[1].Remaining != sec {
		t.Fatalf("remaining: %+v", top[:2])
	}
	all := l.Top(100, nil)
	if len(all) != 6 || all[5].Key != "banned" {
		t.Fatalf("want 6 keys with the restricted idle key last, got %+v", all)
	}
}

func TestIdleKeysAreForgotten(t *testing.T) {
	// One shard: sweeping advances with the Admits on a shard, and the key
	// hash is seeded randomly, so with several shards which ones get swept
	// would vary from run to run.
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk, Shards: 1})
	for i := range 1000 {
		_, tk := l.Admit(fmt.Sprintf("old-%d", i), Limits{})
		l.Finish(tk, sec)
	}
	_, running := l.Admit("still-running", Limits{})
	l.Restrict("still-restricted", clk.Now().Add(time.Hour))
	if got := l.Len(); got != 1002 {
		t.Fatalf("Len = %d, want 1002", got)
	}
	clk.Advance(2 * time.Minute) // everything slid out of its window
	for i := range 20 * sweepEvery * 4 {
		_, tk := l.Admit(fmt.Sprintf("new-%d", i%10), Limits{})
		l.Cancel(tk)
	}
	if got := l.Len(); got != 12 {
		t.Fatalf("Len = %d after sweeping, want 12 (10 new, running, restricted)", got)
	}
	clk.Advance(sec)
	if d := l.Finish(running, 2*time.Minute+sec); d.Used != 2*time.Minute+sec {
		t.Fatalf("the in-flight key's ticket must survive sweeping: %+v", d)
	}
	if st := l.Status("still-restricted", Limits{}); st.RestrictedUntil.IsZero() {
		t.Fatal("restricted key was forgotten")
	}
	// A ticket finished twice after its key was forgotten (a caller bug)
	// must not touch the slot's next owner.
	clk.Advance(2 * time.Minute)
	for i := range 20 * sweepEvery * 4 {
		_, tk := l.Admit(fmt.Sprintf("newer-%d", i%10), Limits{})
		l.Cancel(tk)
	}
	if d := l.Finish(running, time.Hour); d != (Decision{}) {
		t.Fatalf("stale ticket after eviction was honoured: %+v", d)
	}
}

// TestConcurrentAccounting runs Admit/Finish from many goroutines (run with
// -race) and checks that no charge or in-flight count is lost.
func TestConcurrentAccounting(t *testing.T) {
	l, _ := newTestLedger()
	const workers, perWorker, keys = 8, 2000, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				key := fmt.Sprintf("k%d", (w*perWorker+i)%keys)
				d, tk := l.Admit(key, Limits{MaxInFlight: 1000})
				if !d.Proceed() {
					t.Errorf("denied: %+v", d)
					return
				}
				if i%10 == 0 {
					l.Cancel(tk)
				} else {
					l.Finish(tk, time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	var total float64
	for _, ks := range l.Top(keys, nil) {
		total += ks.WorkerSeconds
		if ks.InFlight != 0 {
			t.Errorf("%s: %d still in flight", ks.Key, ks.InFlight)
		}
	}
	want := float64(workers*perWorker*9/10) * 0.001
	if math.Abs(total-want) > 1e-6 {
		t.Fatalf("total charged %.6fs, want %.6fs", total, want)
	}
}

// TestInFlightAfterLongUptime: n×now and Σstart overflow int64 after a long
// uptime with many requests in flight; their difference must stay exact.
func TestInFlightAfterLongUptime(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk, Shards: 1})
	clk.Advance(200 * 365 * 24 * time.Hour) // offsets near 6.3e18 ns
	lim := Limits{Window: time.Minute}
	var tickets []Ticket
	for range 3 {
		_, tk := l.Admit("k", lim)
		tickets = append(tickets, tk)
	}
	clk.Advance(2 * time.Second)
	if st := l.Status("k", lim); st.WorkerSeconds != 6 || st.InFlight != 3 {
		t.Fatalf("status %+v, want 6 worker-seconds from 3 requests of 2 s", st)
	}
	for _, tk := range tickets {
		l.Cancel(tk)
	}
	if st := l.Status("k", lim); st.WorkerSeconds != 0 || st.InFlight != 0 {
		t.Fatalf("status after cancel %+v", st)
	}
}

// Restricted answers as a refused Admit would, but admits nothing and
// creates no key.
func TestRestrictedPeeksWithoutAdmitting(t *testing.T) {
	l, clk := newTestLedger()
	if _, r := l.Restricted("k", std); r {
		t.Fatal("an unknown key is restricted")
	}
	if l.Len() != 0 {
		t.Fatalf("Restricted created the key: %d keys", l.Len())
	}
	_, tk := l.Admit("k", std)
	l.Finish(tk, 12*sec)
	if _, r := l.Restricted("k", std); !r {
		t.Fatal("a key over budget with restrict_for is not restricted")
	}
	clk.Advance(sec)
	got, _ := l.Restricted("k", std)
	want, _ := l.Admit("k", std)
	if got != want {
		t.Errorf("Restricted = %+v, a refused Admit = %+v", got, want)
	}
	if s := l.Status("k", std); s.InFlight != 0 || s.Requests != 1 {
		t.Errorf("after Restricted: %d in flight, %d requests; want 0 and 1", s.InFlight, s.Requests)
	}
	clk.Advance(5 * time.Minute)
	if _, r := l.Restricted("k", std); r {
		t.Error("still restricted after restrict_for")
	}
}

func TestTopRestricted(t *testing.T) {
	l, clk := newTestLedger()
	for i, w := range []time.Duration{3, 9, 1, 7} {
		_, tk := l.Admit(fmt.Sprintf("k%d", i), Limits{})
		l.Finish(tk, w*sec)
	}
	l.Restrict("k0", clk.Now().Add(time.Minute))   // 3 s used
	l.Restrict("k2", clk.Now().Add(time.Minute))   // 1 s used
	l.Restrict("idle", clk.Now().Add(time.Hour))   // no usage
	l.Restrict("gone", clk.Now().Add(time.Second)) // ends before the query
	clk.Advance(2 * sec)
	got, total := l.TopRestricted(2, func(string) Limits { return Limits{Budget: 2 * sec} })
	var keys []string
	for _, ks := range got {
		keys = append(keys, ks.Key)
		if ks.RestrictedUntil.IsZero() {
			t.Errorf("%s listed as restricted without a restriction", ks.Key)
		}
	}
	if fmt.Sprint(keys) != "[k0 k2]" || total != 3 {
		t.Fatalf("TopRestricted(2) = %v of %d, want [k0 k2] of 3", keys, total)
	}
	if all, _ := l.TopRestricted(10, nil); len(all) != 3 || all[2].Key != "idle" {
		t.Fatalf("want the idle restricted key last, got %+v", all)
	}
	if got, total := l.TopRestricted(0, nil); got != nil || total != 0 {
		t.Fatalf("TopRestricted(0) = %v, %d", got, total)
	}
}

// TestIdleKeysExpireWithoutTraffic: after a burst of keys and then no
// requests at all, Expire (which the guard runs on a timer) forgets the
// idle keys and gives their memory back; keys with a request in flight or
// a restriction stay, and so do their tickets. Before issue 17 item 7 idle
// keys went only when new requests swept them, so the memory stayed at the
// burst's peak while the proxy was idle.
func TestIdleKeysExpireWithoutTraffic(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk, Shards: 8})
	empty := l.tableBytes()
	const burst = 100_000
	for i := range burst {
		_, tk := l.Admit(fmt.Sprintf("burst-%d", i), Limits{})
		l.Finish(tk, sec)
	}
	_, running := l.Admit("still-running", Limits{})
	l.Restrict("still-restricted", clk.Now().Add(time.Hour))
	peak := l.tableBytes()
	for _, c := range []struct {
		advance time.Duration
		forgot  int
		left    int
	}{
		{0, 0, burst + 2},           // everything is inside its window
		{30 * sec, 0, burst + 2},    // still inside
		{2 * time.Minute, burst, 2}, // the window slid past the burst
		{time.Minute, 0, 2},         // nothing more to forget
	} {
		clk.Advance(c.advance)
		if got := l.Expire(); got != c.forgot {
			t.Errorf("+%v: Expire forgot %d keys, want %d", c.advance, got, c.forgot)
		}
		if got := l.Len(); got != c.left {
			t.Errorf("+%v: Len = %d, want %d", c.advance, got, c.left)
		}
	}
	// The key-churn memory figure: the burst's tables (50 MB here) are
	// given back, down to the smallest table in each of the 8 shards.
	if got := l.tableBytes(); got > 8*minCells*(cellSize+2) { // a cell and its fingerprint
		t.Errorf("tables hold %d bytes after expiry (peak %d, empty ledger %d): the memory did not follow the keys", got, peak, empty)
	}
	t.Logf("tables: empty %d B, after %d keys %d B, after expiry %d B", empty, burst, peak, l.tableBytes())
	if d := l.Finish(running, 3*sec); d.Used != 3*sec || d.InFlight != 0 {
		t.Errorf("the running key's ticket after expiry: %+v", d)
	}
	if st := l.Status("still-restricted", Limits{}); st.RestrictedUntil.IsZero() {
		t.Error("the restricted key was forgotten")
	}
}

// FinishAt with a reading the caller took is Finish with the clock at that
// reading: the same decision, the same usage and restriction after it, and
// the ledger reads no clock of its own.
func TestFinishAtIsFinishAtTheReading(t *testing.T) {
	a, clkA := newTestLedger()
	b, clkB := newTestLedger()
	_, ta := a.Admit("k", std)
	_, tb := b.Admit("k", std)
	end := clkB.Now().Add(3 * sec)
	clkA.Advance(3 * sec)
	da := a.Finish(ta, 11*sec)
	db := b.FinishAt(tb, 11*sec, end) // b's clock still reads the admission's time
	if da != db || !db.NewlyRestricted {
		t.Fatalf("FinishAt = %+v, Finish = %+v; want the same, newly restricted", db, da)
	}
	if want := end.Add(std.RestrictFor); !db.RestrictedUntil.Equal(want) {
		t.Errorf("restricted until %v, want %v (from the reading)", db.RestrictedUntil, want)
	}
	clkB.Advance(3 * sec)
	if sa, sb := a.Status("k", std), b.Status("k", std); sa != sb {
		t.Errorf("after FinishAt: %+v, after Finish: %+v", sb, sa)
	}
	if d := b.FinishAt(Ticket{}, sec, end); d != (Decision{}) {
		t.Errorf("FinishAt of the zero ticket: %+v", d)
	}
}

// AdmitAt with a reading is Admit with the clock at that reading: the
// request is in flight from it.
func TestAdmitAtIsAdmitAtTheReading(t *testing.T) {
	a, clkA := newTestLedger()
	b, clkB := newTestLedger()
	at := clkB.Now().Add(2 * sec)
	clkA.Advance(2 * sec)
	da, ta := a.Admit("k", std)
	db, tb := b.AdmitAt("k", std, at) // b's clock still reads 2 s earlier
	if da != db {
		t.Fatalf("AdmitAt = %+v, Admit = %+v", db, da)
	}
	clkA.Advance(3 * sec)
	clkB.Advance(5 * sec)
	if sa, sb := a.Status("k", std), b.Status("k", std); sa != sb || sb.WorkerSeconds != 3 {
		t.Errorf("in flight after AdmitAt: %+v, after Admit: %+v; want 3 s in flight from the reading", sb, sa)
	}
	a.Finish(ta, sec)
	b.FinishAt(tb, sec, clkB.Now())
	if sa, sb := a.Status("k", std), b.Status("k", std); sa != sb {
		t.Errorf("after the charge: %+v, want %+v", sb, sa)
	}
}
