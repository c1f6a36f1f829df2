package lifecycle

import (
	"fmt"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// TestPersistExpiresIdleKeys: a running guard forgets idle keys with no
// request arriving (issue 17 item 7). The ledger's clock is moved past
// the keys' window; the expiry timer, not traffic, must then drop them.
func TestPersistExpiresIdleKeys(t *testing.T) {
	clk := budget.NewManualClock(time.Unix(1_700_000_000, 0))
	l := budget.New(budget.Options{Clock: clk})
	lim := budget.Limits{Window: time.Minute}
	for i := range 1000 {
		_, tk := l.Admit(fmt.Sprintf("k%d", i), lim)
		l.Finish(tk, time.Second)
	}
	_, running := l.Admit("running", lim)
	p := persist(nil, l, time.Hour, time.Millisecond)
	defer p.Stop()
	if n := l.Len(); n != 1001 {
		t.Fatalf("Len = %d before the window slid, want 1001", n)
	}
	clk.Advance(2 * time.Minute)
	testenv.Eventually(t, "the idle keys expired", func() bool { return l.Len() == 1 })
	if d := l.Finish(running, time.Second); d.Used != time.Second {
		t.Fatalf("the running key's ticket after expiry: %+v", d)
	}
	p.Stop()
	p.Stop() // idempotent, as Close after a deferred Stop relies on
}
