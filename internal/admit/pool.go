package admit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

var (
	errQueueFull    = errors.New("queue full")
	errQueueTimeout = errors.New("queue timeout")
)

// Pool is a share of upstream capacity: at most max requests upstream at
// once, at most queue more waiting (first come, first served: blocked channel
// senders are woken in order), each for at most timeout. A pool with nil
// slots is unlimited (the implicit "default" pool when none catches all).
type Pool struct {
	name    string
	max     int
	queue   int64
	timeout time.Duration
	slots   chan struct{}
	waiting atomic.Int64
	active  atomic.Int64
	m       *poolMetrics
	health  upstreamHealth // recent upstream outcomes: the outage rule (outage.go)
}

// Name is the pool's name from the configuration ("default" for the
// implicit unlimited pool).
func (p *Pool) Name() string { return p.name }

// Active is the number of requests holding a slot of the pool now.
func (p *Pool) Active() int64 { return p.active.Load() }

// Waiting is the number of requests in the pool's queue now.
func (p *Pool) Waiting() int64 { return p.waiting.Load() }

func newPool(p config.Pool, m *poolMetrics) *Pool {
	return &Pool{
		name: p.Name, max: p.MaxConcurrent, queue: int64(p.Queue), timeout: p.QueueTimeout.D(),
		slots: make(chan struct{}, p.MaxConcurrent), m: m,
	}
}

// acquire takes a slot, waiting in the queue if there is room. ctx is the
// client's: a client that gives up while queued leaves the queue.
func (p *Pool) acquire(ctx context.Context) error {
	if p.slots == nil {
		p.enter()
		return nil
	}
	if p.tryAcquire() {
		return nil
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

// tryAcquire takes a slot if one is free now, without queueing.
func (p *Pool) tryAcquire() bool {
	select {
	case p.slots <- struct{}{}:
		p.active.Add(1)
		p.m.inFlight.Inc()
		return true
	default:
		return false
	}
}

func (p *Pool) release() {
	p.leave()
	if p.slots != nil {
		<-p.slots
	}
}

// enter counts a request as in the pool without taking a slot (an
// unlimited pool, or pools only counted).
func (p *Pool) enter() {
	p.active.Add(1)
	p.m.inFlight.Inc()
}

func (p *Pool) leave() {
	p.active.Add(-1)
	p.m.inFlight.Dec()
}

// sameLimits reports whether p already enforces c, so a reload can keep it
// (and its occupied slots) instead of starting a fresh count.
func (p *Pool) sameLimits(c config.Pool) bool {
	return p.max == c.MaxConcurrent && p.queue == int64(c.Queue) && p.timeout == c.QueueTimeout.D()
}

// router sorts requests into pools: the first pool whose host or path
// prefix matches, else the catch-all pool, else the unlimited "default".
type router struct {
	pools    []*Pool
	rules    []config.Pool
	catchAll *Pool
}

func (rt *router) pick(host, path string) *Pool {
	// The host without its port, worked out only when a rule has hosts
	// (SplitHostPort allocates an error for a host without a port).
	split := false
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
			if strings.HasPrefix(path, pre) {
				return rt.pools[i]
			}
		}
	}
	return rt.catchAll
}

// byName returns the pool named name, or nil.
func (rt *router) byName(name string) *Pool {
	for _, p := range rt.pools {
		if p.name == name {
			return p
		}
	}
	if rt.catchAll.name == name {
		return rt.catchAll
	}
	return nil
}
