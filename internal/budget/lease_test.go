package budget

import (
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
	l.GrantLease("k", time.Second, 2*time.Second, false)
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
	if !l.GrantLease("k", 0, 2*time.Second, true) {
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

func TestLeaseLapsesToEvenShare(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk})
	l.EnableLeases(2 * time.Second)
	l.SetFleetSize(4)
	lim := Limits{Budget: 8 * time.Second, Window: time.Minute}
	_, tk := l.Admit("k", lim)
	l.LeaseRequests(nil, 10)
	l.GrantLease("k", 5*time.Second, 2*time.Second, false)
	l.Finish(tk, 3*time.Second)
	if d, tk := l.Admit("k", lim); !d.Proceed() {
		t.Fatalf("3 s of a 5 s lease: %+v", d)
	} else {
		l.Cancel(tk)
	}
	// The lease lapses (Redis away): the even share is 8 s / 4 = 2 s of
	// this proxy's own usage, already spent.
	clk.Advance(3 * time.Second)
	l.LeaseFailed("k")
	if d, _ := l.Admit("k", lim); d.Proceed() || !d.Fleet {
		t.Errorf("own 3 s over a 2 s share without a lease: %+v", d)
	}
	if d, tk := l.Admit("other", lim); !d.Proceed() {
		t.Errorf("a fresh key without a lease: %+v", d)
	} else {
		l.Cancel(tk)
	}
}
