package admit

import "context"

// cancelled is a context already done: Admit under it never waits.
var cancelled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// TryAdmit is Admit for a front-end that must not wait (an event loop):
// wait reports that the request would have waited in its pool's queue,
// and then nothing is held or counted, so the front-end can hand the
// request to one that waits (and Begins it again). Otherwise o and ok are
// Admit's. A pool without a queue (or without a limit) never waits.
func (c *Core) TryAdmit(a *Admission) (o Outcome, ok, wait bool) {
	o, ok = c.Admit(cancelled, a)
	if o == AbortedInQueue {
		return o, false, true
	}
	return o, ok, false
}
