package admit

import (
	"context"
	"testing"
	"time"
)

// TryAdmit never waits: where Admit would queue, it says so and holds
// nothing (no slot, no ticket, no place in the queue), so that the
// front-end can hand the request to one that waits; a full queue is
// refused as Admit refuses it; a free slot, or a pool without a limit,
// admits.
func TestTryAdmit(t *testing.T) {
	c, _ := newCore(t, `
budget: {worker_time: 1h, window: 1m}
pools:
  - {name: api, path_prefixes: [/api/], max_concurrent: 1, queue: 4, queue_timeout: 2s}
  - {name: noq, path_prefixes: [/noq/], max_concurrent: 1, queue: 0}
`)
	var held Admission
	c.Begin(keyRequest("sk_held"), &held)
	if o, ok, wait := c.TryAdmit(&held); !ok || wait || o != OK {
		t.Fatalf("a free slot: %v ok=%v wait=%v, want OK", o, ok, wait)
	}
	var a Admission
	c.Begin(keyRequest("sk_2"), &a)
	o, ok, wait := c.TryAdmit(&a)
	if ok || !wait || o != AbortedInQueue {
		t.Fatalf("a busy pool with a queue: %v ok=%v wait=%v, want wait", o, ok, wait)
	}
	p := c.Pool("api")
	if p.Active() != 1 || p.waiting.Load() != 0 {
		t.Errorf("after a would-wait: %d active, %d waiting; want the held one only", p.Active(), p.waiting.Load())
	}
	if s := c.Ledger().Status(a.Key, a.Limits); s.InFlight != 0 {
		t.Errorf("the would-wait key is in flight: %+v", s)
	}
	// It waits in the queue where the front-end hands it (Begun again).
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Finish(&held, time.Millisecond, true, OK)
	}()
	c.Begin(keyRequest("sk_2"), &a)
	if o, ok := c.Admit(context.Background(), &a); !ok || o != OK {
		t.Fatalf("Admit after the hand-off: %v %v", o, ok)
	}
	c.Finish(&a, time.Millisecond, true, OK)

	// No queue: refused as Admit refuses, not handed off.
	var b, d Admission
	r := keyRequest("sk_3")
	r.Path = "/noq/x"
	c.Begin(r, &b)
	if o, ok, wait := c.TryAdmit(&b); !ok || wait {
		t.Fatalf("noq's free slot: %v ok=%v wait=%v", o, ok, wait)
	}
	c.Begin(r, &d)
	if o, ok, wait := c.TryAdmit(&d); ok || wait || o != QueueFull {
		t.Fatalf("noq full: %v ok=%v wait=%v, want QueueFull", o, ok, wait)
	}
	c.Finish(&d, 0, false, QueueFull)
	c.Finish(&b, time.Millisecond, true, OK)

	// The default pool has no limit: it never waits.
	es := make([]Admission, 3)
	for i := range es {
		r := keyRequest("sk_4")
		r.Path = "/other"
		c.Begin(r, &es[i])
		if o, ok, wait := c.TryAdmit(&es[i]); !ok || wait || o != OK {
			t.Fatalf("default pool, request %d: %v ok=%v wait=%v", i, o, ok, wait)
		}
	}
	for i := range es {
		c.Finish(&es[i], 0, false, OK)
	}
}
