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
	if !l.GrantLease("k", LeaseGrant{TTL: 2 * time.Second, Exhausted: true}) {
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
