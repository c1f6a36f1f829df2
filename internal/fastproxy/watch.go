package fastproxy

import (
	"context"
	"time"
)

// watcher notices a client leaving while the proxy is not reading from it
// (queued for a pool, or waiting for the upstream), the way net/http's
// background read does, so that the access log says when the client left
// (499 at its own time, seeds/03) and a client that leaves the queue frees
// its place. One goroutine per connection, started on first use and
// parked between requests: no goroutine per request.
type watcher struct {
	c      *conn
	start  chan struct{}
	done   chan watchResult
	cancel context.CancelFunc // set by the handler before start; called when the client leaves
	buf    [1]byte
}

type watchResult struct {
	n    int
	gone bool
}

// startWatch starts watching, unless bytes of a next request are already
// buffered (a pipelining client is still there).
func (c *conn) startWatch(cancel context.CancelFunc) bool {
	if c.br.Buffered() > 0 || len(c.cr.stash) > 0 {
		return false
	}
	if c.w == nil {
		c.w = &watcher{c: c, start: make(chan struct{}), done: make(chan watchResult)}
		go c.w.loop()
	}
	// No deadline while watching: the idle or head deadline left on the
	// connection would end the watch early.
	c.dl.read(time.Time{}, 0)
	c.w.cancel = cancel
	c.w.start <- struct{}{}
	return true
}

// stopWatch ends the watch; it reports whether the client is still there.
// A byte read meanwhile (the next request's first) is kept for it.
func (c *conn) stopWatch() bool {
	c.nc.SetReadDeadline(time.Unix(1, 0))
	res := <-c.w.done
	c.nc.SetReadDeadline(time.Time{})
	c.dl.rd = time.Time{}
	if res.n == 1 {
		c.cr.stash = append(c.cr.stash[:0], c.w.buf[0])
	}
	return !res.gone
}

func (w *watcher) loop() {
	for range w.start {
		n, err := w.c.nc.Read(w.buf[:])
		res := watchResult{n: n}
		if n == 0 && err != nil && !isTimeout(err) {
			res.gone = true
			w.c.ex.markGone(w.c.s.clock.Now())
			if w.cancel != nil {
				w.cancel()
			}
		}
		w.done <- res
	}
}

func (w *watcher) quit() { close(w.start) }
