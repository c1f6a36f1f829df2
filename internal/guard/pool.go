package guard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

var (
	errQueueFull    = errors.New("queue full")
	errQueueTimeout = errors.New("queue timeout")
)

// pool is a share of upstream capacity: at most max requests upstream at
// once, at most queue more waiting (first come, first served: blocked channel
// senders are woken in order), each for at most timeout. A pool with nil
// slots is unlimited (the implicit "default" pool when none catches all).
type pool struct {
	name    string
	max     int
	queue   int64
	timeout time.Duration
	slots   chan struct{}
	waiting atomic.Int64
	active  atomic.Int64
	m       *poolMetrics
}

func newPool(p config.Pool, m *poolMetrics) *pool {
	return &pool{
		name: p.Name, max: p.MaxConcurrent, queue: int64(p.Queue), timeout: p.QueueTimeout.D(),
		slots: make(chan struct{}, p.MaxConcurrent), m: m,
	}
}

// acquire takes a slot, waiting in the queue if there is room. ctx is the
// client's: a client that gives up while queued leaves the queue.
func (p *pool) acquire(ctx context.Context) error {
	if p.slots == nil {
		p.active.Add(1)
		p.m.inFlight.Inc()
		return nil
	}
	select {
	case p.slots <- struct{}{}:
		p.active.Add(1)
		p.m.inFlight.Inc()
		return nil
	default:
	}
	if p.waiting.Add(1) > p.queue {
		p.waiting.Add(-1)
		return errQueueFull
	}
	p.m.queueDepth.Inc()
	defer func() {
		p.waiting.Add(-1)
		p.m.queueDepth.Dec()
	}()
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		p.active.Add(1)
		p.m.inFlight.Inc()
		return nil
	case <-t.C:
		return errQueueTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pool) release() {
	p.active.Add(-1)
	p.m.inFlight.Dec()
	if p.slots != nil {
		<-p.slots
	}
}

// sameLimits reports whether p already enforces c, so a reload can keep it
// (and its occupied slots) instead of starting a fresh count.
func (p *pool) sameLimits(c config.Pool) bool {
	return p.max == c.MaxConcurrent && p.queue == int64(c.Queue) && p.timeout == c.QueueTimeout.D()
}

// router sorts requests into pools: the first pool whose host or path
// prefix matches, else the catch-all pool, else the unlimited "default".
type router struct {
	pools    []*pool
	rules    []config.Pool
	catchAll *pool
}

func (rt *router) pick(r *http.Request) *pool {
	// The host without its port, worked out only when a rule has hosts
	// (SplitHostPort allocates an error for a host without a port).
	host, split := r.Host, false
	for i := range rt.rules {
		rule := &rt.rules[i]
		if len(rule.Hosts) > 0 && !split {
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			split = true
		}
		for _, h := range rule.Hosts {
			if strings.EqualFold(h, host) {
				return rt.pools[i]
			}
		}
		for _, pre := range rule.PathPrefixes {
			if strings.HasPrefix(r.URL.Path, pre) {
				return rt.pools[i]
			}
		}
	}
	return rt.catchAll
}
