package budget

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestChargeMatchesAdmitFinish: Charge(key, lim, n, w) leaves a key as n
// shadow Admits each followed by its Finish would (the first charged all
// of w, the rest nothing), through restrictions, their end, windows
// sliding, on keys some of which also have requests in flight. (Each key
// keeps its limits: a key forgotten while idle is swept at different
// moments by one Charge and by n Admits, and a window changed by a reload
// then re-buckets different histories.)
func TestChargeMatchesAdmitFinish(t *testing.T) {
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			ca, cb := NewManualClock(start), NewManualClock(start)
			a, b := New(Options{Clock: ca}), New(Options{Clock: cb})
			keys := []string{"k1", "k2", "fp-0123456789abcdef", "addr:203.0.113.7"}
			lims := []Limits{
				{Budget: 2 * time.Second, Window: time.Minute, RestrictFor: 30 * time.Second},
				{Budget: time.Second, Window: 10 * time.Second},
				{Window: time.Minute},
			}
			var inflightA, inflightB []Ticket
			for step := range 400 {
				k := r.IntN(len(keys))
				key, lim := keys[k], lims[k%len(lims)]
				switch op := r.IntN(10); {
				case op < 6:
					n := 1 + r.IntN(5)
					w := time.Duration(r.IntN(400)) * time.Millisecond
					got := a.Charge(key, lim, n, w)
					var want Decision
					for i := range n {
						shadow := lim
						shadow.Shadow = true
						da, tk := b.Admit(key, shadow)
						charge := time.Duration(0)
						if i == 0 {
							charge = w
						}
						df := b.Finish(tk, charge)
						if i == 0 {
							want = df
						}
						want.NewlyRestricted = want.NewlyRestricted || da.NewlyRestricted || df.NewlyRestricted
						want.Used, want.Remaining, want.Outcome, want.RestrictedUntil = df.Used, df.Remaining, df.Outcome, df.RestrictedUntil
						want.InFlight = df.InFlight
					}
					if got != want {
						t.Fatalf("step %d: Charge(%s, %+v, %d, %v) = %+v, Admit+Finish gave %+v", step, key, lim, n, w, got, want)
					}
				case op < 8:
					// A request in flight on both, finished later.
					_, ta := a.Admit(key, Limits{Window: lim.Window, Shadow: true})
					_, tb := b.Admit(key, Limits{Window: lim.Window, Shadow: true})
					inflightA, inflightB = append(inflightA, ta), append(inflightB, tb)
				case len(inflightA) > 0:
					w := time.Duration(r.IntN(300)) * time.Millisecond
					a.Finish(inflightA[0], w)
					b.Finish(inflightB[0], w)
					inflightA, inflightB = inflightA[1:], inflightB[1:]
				}
				d := time.Duration(r.IntN(3000)) * time.Millisecond
				ca.Advance(d)
				cb.Advance(d)
				for k, key := range keys {
					lim := lims[k%len(lims)]
					if sa, sb := a.Status(key, lim), b.Status(key, lim); sa != sb {
						t.Fatalf("step %d: Status(%s, %+v): Charge's ledger %+v, Admit+Finish's %+v", step, key, lim, sa, sb)
					}
				}
			}
		})
	}
}

// TestChargeRestrictedKeyStillCharged: a key already restricted is
// charged all the same (the work was done), and stays restricted.
func TestChargeRestrictedKeyStillCharged(t *testing.T) {
	c := NewManualClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	l := New(Options{Clock: c})
	lim := Limits{Budget: time.Second, Window: time.Minute, RestrictFor: time.Minute}
	if d := l.Charge("k", lim, 3, 1500*time.Millisecond); !d.NewlyRestricted || d.Outcome != Restricted {
		t.Fatalf("first charge over the budget: %+v, want newly restricted", d)
	}
	d := l.Charge("k", lim, 2, 500*time.Millisecond)
	if d.NewlyRestricted || d.Outcome != Restricted || d.Used != 2*time.Second {
		t.Fatalf("second charge: %+v, want restricted (not newly), 2s used", d)
	}
	if st := l.Status("k", lim); st.Requests != 5 || st.InFlight != 0 {
		t.Fatalf("status %+v, want 5 requests, none in flight", st)
	}
	// Reaching the budget exactly restricts, as Finish does.
	if d := l.Charge("k2", lim, 1, time.Second); !d.NewlyRestricted {
		t.Fatalf("a charge of exactly the budget: %+v, want newly restricted", d)
	}
}
