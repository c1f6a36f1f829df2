package store

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// holdProxy is a TCP proxy in front of a Redis that can hold what its
// clients send (not forwarding it) until released: a Redis that still
// answers, late, on one proxy's connections only.
type holdProxy struct {
	ln     net.Listener
	target string
	caught chan struct{} // a client sent something while held

	mu    sync.Mutex
	gate  chan struct{} // nil: forwarding; open: held until closed
	conns []net.Conn
}

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target, caught: make(chan struct{}, 1)}
	go p.serve()
	t.Cleanup(func() {
		p.release()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *holdProxy) url() string { return "redis://" + p.ln.Addr().String() + "/0" }

func (p *holdProxy) hold() {
	p.mu.Lock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
	p.mu.Unlock()
}

func (p *holdProxy) release() {
	p.mu.Lock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
	p.mu.Unlock()
}

func (p *holdProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

// pipe copies from src to dst; the client's side waits at the gate.
func (p *holdProxy) pipe(dst, src net.Conn, gated bool) {
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && gated {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			if gate != nil {
				select {
				case p.caught <- struct{}{}:
				default:
				}
				<-gate
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serve answers p's queued lease requests, as the store's loop does when
// the ledger wakes it.
func (p proxySim) serve(t *testing.T) {
	t.Helper()
	p.s.syncMu.Lock()
	defer p.s.syncMu.Unlock()
	if _, err := p.s.serveLeases(context.Background(), p.l); err != nil {
		t.Fatalf("%s: leases: %v", p.s.id, err)
	}
}

// TestLeaseLateRenewalKeepsTheBudget: docs/fleet.md's case of a renewal
// that comes back late while Redis still answers. Proxy a's connection to
// Redis holds its renewal past its slice's lifetime, while b's answers at
// once. Once Redis lets a's slice go (its margin), b may be granted its
// unspent part; so a must admit nothing more on its lapsed slice meanwhile
// (not its even share, as before a first answer), and the two together stay
// within the budget plus the one request each may have running when it
// stops admitting.
func TestLeaseLateRenewalKeepsTheBudget(t *testing.T) {
	rs := testenv.SharedRedis(t)
	hp := startHoldProxy(t, rs.Addr)
	clk := budget.NewManualClock(t0)
	ps := newFleet(t, rs.URL(), clk, "a", "b")
	// a goes through the proxy, and its held renewal must not time out:
	// Redis answers, only late.
	var alog testenv.Buffer
	sa, err := NewRedis(RedisOptions{URL: hp.url(), ID: "a", Prefix: ps[0].s.prefix, Clock: clk, Timeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&alog, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sa.Close() })
	a, b := proxySim{l: ps[0].l, s: sa}, ps[1]
	const ttl = 2 * time.Second
	for _, p := range []proxySim{a, b} {
		p.l.EnableLeases(ttl)
	}
	a.sync(t)
	b.sync(t)
	a.sync(t)
	if a.l.FleetSize() != 2 || b.l.FleetSize() != 2 {
		t.Fatalf("fleet sizes %d, %d: want 2", a.l.FleetSize(), b.l.FleetSize())
	}
	const key = "fp-late"
	lim := budget.Limits{Budget: 6 * time.Second, Window: time.Minute, RestrictFor: 5 * time.Minute}
	const req = 500 * time.Millisecond // each admitted request, charged at once
	var spent [2]time.Duration
	try := func(i int, p proxySim, d time.Duration) budget.Decision {
		dec, tk := p.l.Admit(key, lim)
		if dec.Proceed() {
			p.l.Finish(tk, d)
			spent[i] += d
		}
		return dec
	}

	// Both take a slice: a its 3 s share, b what is left of 6 s.
	try(0, a, 100*time.Millisecond)
	a.serve(t)
	try(1, b, 100*time.Millisecond)
	b.serve(t)

	// Half the slices' lifetime: both renew, a's renewal is held.
	clk.Advance(time.Second)
	hp.hold()
	if d := try(0, a, 100*time.Millisecond); !d.Proceed() {
		t.Fatalf("a within its slice: %+v", d)
	}
	done := make(chan error, 1)
	go func() {
		a.s.syncMu.Lock()
		defer a.s.syncMu.Unlock()
		_, err := a.s.serveLeases(context.Background(), a.l)
		done <- err
	}()
	select {
	case <-hp.caught:
	case err := <-done:
		t.Fatalf("a's renewal was not sent through the held proxy: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a's renewal never reached the proxy")
	}
	try(1, b, 100*time.Millisecond)
	b.serve(t)

	// Past a's slice's lifetime, its renewal still unanswered. b carries on
	// (renewing as it should), a tries its luck every 100 ms; once Redis
	// has let a's slice go, b may be granted it.
	var aLapsed, aRefused int
	for range 60 {
		clk.Advance(100 * time.Millisecond)
		if clk.Now().After(t0.Add(ttl)) {
			if d := try(0, a, req); d.Proceed() {
				aLapsed++
			} else if d.Fleet {
				aRefused++
			}
		}
		try(1, b, req)
		b.serve(t)
	}
	hp.release()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("a's late renewal: %v", err)
	}
	total := spent[0] + spent[1]
	t.Logf("a spent %v (%d admitted on its lapsed slice, %d refused), b %v: %v of a %v budget",
		spent[0], aLapsed, aRefused, spent[1], total, lim.Budget)
	if limit := lim.Budget + 2*req; total > limit {
		t.Errorf("the fleet let %v through (a %v, b %v) with a's renewal late: over its %v budget by more than a request on each proxy",
			total, spent[0], spent[1], lim.Budget)
	}
	if aLapsed > 0 {
		t.Errorf("a admitted %d requests on its lapsed slice while its renewal was late", aLapsed)
	}
	if aRefused == 0 {
		t.Error("a was never refused while its renewal was late")
	}
	// The lapse is counted once, and the late answer logged with the key.
	if n := metric(t, a.s, "headroom_store_lease_lapses_total", ""); n != 1 {
		t.Errorf("headroom_store_lease_lapses_total %v, want 1", n)
	}
	if lg := alog.String(); !strings.Contains(lg, "slice lapsed") || !strings.Contains(lg, "key="+key) {
		t.Errorf("a's log has no line about the late answer for %s:\n%s", key, lg)
	}
}
