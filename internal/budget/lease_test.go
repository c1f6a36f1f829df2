package budget

import (
	"strconv"
	"testing"
	"time"
)

func TestLeaseAdmission(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk})
	l.EnableLeases(2 * time.Second)
	l.SetFleetSize(3)
	lim := Limits{Budget: 6 * time.Second, Window: time.Minute, RestrictFor: time.Minute}

	// No lease yet: the even share (6 s / 3) is this proxy's to spend, and
	// the key is queued for a lease.
	d, tk := l.Admit("k", lim)
	if !d.Proceed() {
		t.Fatalf("first request: %+v", d)
	}
	select {
	case <-l.FleetWake():
	default:
		t.Fatal("no wake for the lease request")
	}
	reqs := l.LeaseRequests(nil, 10)
	if len(reqs) != 1 || reqs[0].Key != "k" || reqs[0].Budget != 6*time.Second || reqs[0].Want != 2*time.Second || reqs[0].Left != 0 {
		t.Fatalf("lease requests %+v: want k asking its 2 s share", reqs)
	}
	// The store grants 1 s: in-flight time counts against it.
	l.GrantLease("k", LeaseGrant{Left: time.Second, TTL: 2 * time.Second})
	clk.Advance(900 * time.Millisecond)
	if d, tk2 := l.Admit("k", lim); !d.Proceed() {
		t.Fatalf("at 0.9 s of a 1 s lease: %+v", d)
	} else {
		l.Cancel(tk2)
	}
	// 1.1 s spent of 1 s: refused, not restricted, retry soon.
	clk.Advance(200 * time.Millisecond)
	d, _ = l.Admit("k", lim)
	if d.Proceed() || !d.Fleet || d.NewlyRestricted || d.RestrictedUntil.IsZero() {
		t.Fatalf("lease spent: %+v, want a fleet refusal", d)
	}
	if st := l.Status("k", lim); !st.RestrictedUntil.IsZero() {
		t.Errorf("a spent lease restricted the key: %+v", st)
	}
	l.Finish(tk, 1100*time.Millisecond)
	reqs = l.LeaseRequests(nil, 10)
	if len(reqs) != 1 || reqs[0].Left != 0 || reqs[0].InFlight != 0 {
		t.Fatalf("renewal %+v", reqs)
	}
	// The fleet's usage has reached the budget: restricted, and the
	// restriction queued for publishing at once.
	if !l.GrantLease("k", LeaseGrant{TTL: 2 * time.Second, Exhausted: true}).Restricted {
		t.Fatal("an exhausted answer did not restrict")
	}
	if d, _ := l.Admit("k", lim); d.Proceed() || d.Fleet || !d.RestrictedUntil.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("after exhaustion: %+v", d)
	}
	ev := l.Restrictions(nil)
	if len(ev) != 1 || ev[0].Key != "k" || !ev[0].Until.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("restriction events %+v", ev)
	}
	if ev := l.Restrictions(nil); len(ev) != 0 {
		t.Errorf("events delivered twice: %+v", ev)
	}
}

func TestLeaseWhileRedisIsAway(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk})
	l.EnableLeases(2 * time.Second)
	l.SetFleetSize(4)
	lim := Limits{Budget: 8 * time.Second, Window: time.Minute}
	_, tk := l.Admit("k", lim)
	l.LeaseRequests(nil, 10)
	l.GrantLease("k", LeaseGrant{Left: 5 * time.Second, TTL: 2 * time.Second})
	l.Finish(tk, 3*time.Second)
	if d, tk := l.Admit("k", lim); !d.Proceed() {
		t.Fatalf("3 s of a 5 s lease: %+v", d)
	} else {
		l.Cancel(tk)
	}
	// Redis away: the slice (5 s) is still this proxy's, even once its
	// lifetime is over, and nothing beyond it.
	l.SetDegraded(true)
	_, tk = l.Admit("k", lim)
	clk.Advance(1900 * time.Millisecond)
	if d, tk := l.Admit("k", lim); !d.Proceed() {
		t.Fatalf("4.9 s of a 5 s slice while Redis is away: %+v", d)
	} else {
		l.Cancel(tk)
	}
	clk.Advance(200 * time.Millisecond)
	if d, _ := l.Admit("k", lim); d.Proceed() || !d.Fleet {
		t.Errorf("5.1 s of a 5 s slice, Redis away: %+v", d)
	}
	l.Finish(tk, 2100*time.Millisecond)
	// A window later, everything has slid out: the even share (8 s / 4)
	// of this proxy's own usage.
	clk.Advance(time.Minute)
	if d, tk := l.Admit("k", lim); !d.Proceed() {
		t.Errorf("a window after the last answer, Redis away: %+v", d)
	} else {
		l.Finish(tk, 2*time.Second)
	}
	if d, _ := l.Admit("k", lim); d.Proceed() || !d.Fleet {
		t.Errorf("own 2 s of a 2 s share, Redis away: %+v", d)
	}
	// A key that never had an answer: the even share (8 s / 4) of this
	// proxy's own usage.
	if d, tk := l.Admit("other", lim); !d.Proceed() {
		t.Errorf("a fresh key without a lease: %+v", d)
	} else {
		l.Cancel(tk)
	}
}

// answer grants every queued lease request at once, as a store whose
// Redis answers promptly does.
func answer(l *Ledger, left time.Duration) {
	for _, r := range l.LeaseRequests(nil, 100) {
		l.GrantLease(r.Key, LeaseGrant{Left: left, TTL: 2 * time.Second})
	}
}

// A renewal that comes back after the slice it renews has lapsed, the
// store still answering (docs/fleet.md, "The bound"): the key admits
// nothing here meanwhile, not its even share, since Redis lets the lapsed
// slice go a margin later and may grant its unspent part to another proxy.
func TestLeaseLapsedWhileRenewing(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk})
	l.EnableLeases(2 * time.Second)
	l.SetFleetSize(3)
	lim := Limits{Budget: 6 * time.Second, Window: time.Minute, RestrictFor: time.Minute}
	admit := func(what string, want bool) {
		t.Helper()
		d, tk := l.Admit("k", lim)
		if d.Proceed() != want {
			t.Fatalf("%s: %+v, want proceed=%v", what, d, want)
		}
		if d.Proceed() {
			l.Finish(tk, 100*time.Millisecond)
		} else if !d.Fleet || d.RestrictedUntil.IsZero() || d.NewlyRestricted {
			t.Fatalf("%s: %+v, want a fleet refusal with a Retry-After, not a restriction", what, d)
		}
	}
	admit("first request, before any answer", true)
	answer(l, time.Second)

	// Half the slice's lifetime: the renewal is asked, and not answered.
	clk.Advance(time.Second)
	admit("within the slice", true)
	reqs := l.LeaseRequests(nil, 10)
	if len(reqs) != 1 {
		t.Fatalf("renewal requests %+v", reqs)
	}
	clk.Advance(900 * time.Millisecond)
	admit("the slice about to lapse", true)
	clk.Advance(200 * time.Millisecond)
	admit("the slice lapsed, its renewal unanswered", false)
	admit("still unanswered", false)
	if st := l.Status("k", lim); !st.RestrictedUntil.IsZero() {
		t.Errorf("a lapsed slice restricted the key: %+v", st)
	}
	if n := l.LeaseLapses(); n != 1 {
		t.Errorf("LeaseLapses %d, want 1", n)
	}

	// The answer comes back late but within its own lifetime (counted
	// from the ask, 1 s after the first answer): it is used.
	if r := l.GrantLease("k", LeaseGrant{Left: 2 * time.Second, TTL: 2 * time.Second}); !r.Late || r.StillLapsed || r.Restricted {
		t.Errorf("a late answer in time: %+v, want late", r)
	}
	admit("the late answer in force", true)

	// The next renewal comes back after its own slice's lifetime: nothing
	// usable, so the key stays held to its slices, and asks again.
	l.LeaseRequests(nil, 10)
	clk.Advance(2100 * time.Millisecond)
	admit("the second renewal late", false)
	if r := l.GrantLease("k", LeaseGrant{Left: 2 * time.Second, TTL: 2 * time.Second}); !r.Late || !r.StillLapsed {
		t.Errorf("an answer later than its lifetime: %+v, want late and still lapsed", r)
	}
	admit("after an answer already lapsed", false)
	if reqs := l.LeaseRequests(nil, 10); len(reqs) != 1 {
		t.Fatalf("the held key did not ask again: %+v", reqs)
	}
	if n := l.LeaseLapses(); n != 2 {
		t.Errorf("LeaseLapses %d, want 2", n)
	}
	l.GrantLease("k", LeaseGrant{Left: time.Second, TTL: 2 * time.Second})
	admit("an answer in time", true)

	// A renewal unanswered when the store is declared away: the outage
	// rule, what is left of the last slice (1 s, 0.2 s of it spent).
	clk.Advance(time.Second)
	admit("within the slice, renewing", true)
	if reqs := l.LeaseRequests(nil, 10); len(reqs) != 1 {
		t.Fatalf("renewal requests %+v", reqs)
	}
	clk.Advance(1100 * time.Millisecond)
	admit("lapsed again", false)
	l.LeaseFailed("k")
	admit("the answer failed, the store not yet declared away", false)
	l.SetDegraded(true)
	for i := range 8 {
		admit("the store away, within the last slice "+strconv.Itoa(i), true)
	}
	admit("the store away, the last slice spent", false)
	// Back: the key starts afresh, on its even share until its answer.
	l.SetDegraded(false)
	admit("the store back", true)
	answer(l, time.Second)
	admit("the store back, answered", true)
}

// The keys the rule must leave alone: one that never held a slice here
// (its first answer late), one back after its slice lapsed unused, and
// keys renewing on the normal schedule with prompt answers, at any pace.
func TestLeaseNoLapseRefusals(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk})
	l.EnableLeases(2 * time.Second)
	l.SetFleetSize(3)
	lim := Limits{Budget: time.Hour, Window: time.Minute}

	// The first answer never comes: the even share (20 m) meanwhile.
	for i := range 30 {
		d, tk := l.Admit("fresh", lim)
		if !d.Proceed() {
			t.Fatalf("a key without a slice, request %d at %v: %+v", i, clk.Now().Sub(t0), d)
		}
		l.Finish(tk, time.Millisecond)
		clk.Advance(100 * time.Millisecond)
	}
	l.LeaseRequests(nil, 10)

	// Unused past its lifetime, then back.
	_, tk := l.Admit("idle", lim)
	l.Finish(tk, time.Millisecond)
	answer(l, time.Minute)
	clk.Advance(5 * time.Second)
	if d, tk := l.Admit("idle", lim); !d.Proceed() {
		t.Errorf("a key back after its slice lapsed unused: %+v", d)
	} else {
		l.Cancel(tk)
	}
	answer(l, time.Minute)

	for _, every := range []time.Duration{10 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond, 2500 * time.Millisecond} {
		key := "every-" + every.String()
		for i := range 40 {
			d, tk := l.Admit(key, lim)
			if !d.Proceed() {
				t.Fatalf("%s, request %d: %+v", key, i, d)
			}
			clk.Advance(every / 2)
			l.Finish(tk, every/2)
			answer(l, time.Minute)
			clk.Advance(every / 2)
		}
	}
	if n := l.LeaseLapses(); n != 0 {
		t.Errorf("LeaseLapses %d, want 0", n)
	}
}

// BenchmarkAdmitFinishLeases is the hot path's price for a fleet store: the
// ledger alone, with the fleet bookkeeping (a sync store), and with leases
// (every key holding a slice, as it does between renewals).
func BenchmarkAdmitFinishLeases(b *testing.B) {
	const n = 1000
	lim := Limits{Budget: time.Hour, Window: time.Minute, RestrictFor: 5 * time.Minute}
	keys := benchKeys(n)
	for _, mode := range []string{"memory", "fleet-sync", "fleet-leases"} {
		l := New(Options{})
		switch mode {
		case "fleet-sync":
			l.ExportChanges(nil, 1)
		case "fleet-leases":
			l.EnableLeases(time.Hour)
		}
		for _, k := range keys {
			_, tk := l.Admit(k, lim)
			l.Finish(tk, time.Millisecond)
		}
		if mode == "fleet-leases" {
			for _, r := range l.LeaseRequests(nil, n) {
				l.GrantLease(r.Key, LeaseGrant{Left: time.Hour, TTL: time.Hour})
			}
		}
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
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
		})
	}
}
