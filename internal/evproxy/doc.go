// Package evproxy is the guard's event-loop front-end for the common
// case: HTTP/1.x origin-form requests without a body, served by N event
// loops (default GOMAXPROCS), each on a locked OS thread with its own
// epoll descriptor and its own pool of keep-alive upstream connections,
// edge-triggered, each descriptor remembering whether it is readable or
// writable (as nginx does, so that no read is tried before there is
// data). It is a front-end over the admission core (internal/admit)
// exactly like internal/fastproxy: Begin, a non-blocking admission
// (TryAdmit), Finish, Refusal, the same access-log records through the
// same Options.Log, the same heads on the wire (fastproxy's append
// functions write them).
//
// Why: the goroutine-per-connection fast path pays Go's scheduling twice
// per proxied request (two parks and wake-ups, and a read that fails
// with EAGAIN); an event loop pays neither (issue 12, BENCHMARKS.md "An
// event-loop floor in Go").
//
// Everything else is handed, connection and all, at a request boundary
// and with the bytes already read, to fastproxy (Server.ServeConn), which
// hands to net/http what it does not do: a request with a body, Upgrade,
// Expect, a target not in origin form, a path that does not decode, a
// request whose pool would make it wait in a queue.
//
// Accepting: the listener Serve is given is shared by every loop (a dup of
// its descriptor per loop in the loop's epoll, with EPOLLEXCLUSIVE so a
// new connection wakes one loop, level-triggered, one accept per wake-up
// so that connections spread over the loops). Binding an SO_REUSEPORT
// listener per loop would balance better in the kernel, but the guard
// binds its listener itself (it may come from systemd or a test), and a
// listener bound without SO_REUSEPORT cannot have siblings.
//
// On systems other than Linux New returns an error, and the guard serves
// with fastproxy.
package evproxy
