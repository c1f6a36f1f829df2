package budget

import (
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	clk := NewManualClock(time.Unix(1_700_000_000, 0))
	l := New(Options{Clock: clk})
	lim := Limits{Budget: 10 * time.Second, Window: time.Minute, RestrictFor: 5 * time.Minute}
	d, tk := l.Admit("k", lim)
	if d.Outcome != Allowed || !tk.Valid() {
		t.Fatalf("first admit: %+v", d)
	}
	clk.Advance(11 * time.Second)
	d, _ = l.Admit("k", lim)
	if d.Outcome != Restricted || !d.NewlyRestricted {
		t.Fatalf("in-flight should restrict: %+v", d)
	}
	l.Finish(tk, 11*time.Second)
	if st := l.Status("k", lim); st.WorkerSeconds != 11 || st.RestrictedUntil.IsZero() {
		t.Fatalf("status: %+v", st)
	}
}
