// Package fastproxy is the guard's HTTP/1.1 front-end for the common case
// (plain HTTP/1.1 or 1.0 with keep-alive, origin-form targets): one
// goroutine per client connection, the request head parsed once by
// internal/httpwire into a structure reused for every request on the
// connection, the head forwarded to a pooled upstream connection with only
// the rewrites a proxy must make, bodies streamed both ways through pooled
// buffers. It is a front-end over the admission core (internal/admit):
// Begin, Admit, Finish, exactly as the net/http front-end in
// internal/guard uses them.
//
// Why not net/http: in front of a fast upstream, net/http's server,
// httputil.ReverseProxy and http.Transport (header maps, a goroutine and a
// context per request, per-request allocations) cost about five times
// nginx's CPU per request (issue 12, BENCHMARKS.md).
//
// What it does not handle it hands, connection and all, to a net/http
// server (Options.Fallback): Upgrade (WebSocket), Expect: 100-continue,
// absolute-form and authority-form targets (CONNECT), asterisk-form
// (OPTIONS *). The hand-off replays the bytes already read, so the
// fallback server sees the connection as the client sent it.
//
// Framing is strict both ways (httpwire): a request the parser refuses is
// answered 400 (431, 501, 505) and the connection closed; a malformed
// upstream response is a 502 and the upstream connection is dropped. The
// upstream only ever receives framing the proxy wrote itself: a
// Content-Length it checked, or a chunked body it re-encoded.
package fastproxy

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/httpwire"
)

// Options configures a Server. Core and Upstream are required.
type Options struct {
	// Core admits and charges every request.
	Core *admit.Core
	// Upstream is the upstream's host:port (plain HTTP).
	Upstream string
	// Log, if not nil, receives every request's access-log record, its
	// client address, its outcome and its X-Request-Id, once the request
	// ended. rec and requestID are only valid during the call.
	Log func(rec *accesslog.Record, client netip.Addr, o admit.Outcome, requestID string)
	// Logger receives upstream failures. Nil: slog.Default().
	Logger *slog.Logger
	// Fallback serves the connections the fast path hands off (see the
	// package comment). Its Handler is the net/http front-end. Nil:
	// such requests are answered 501 Not Implemented.
	Fallback *http.Server
	// MaxHeadBytes bounds a request head (431 past it). 0 means
	// httpwire.DefaultMaxHeadBytes.
	MaxHeadBytes int
	// SendTimedOut, if set, is called for every client connection closed
	// because it took no bytes of its answer for timeouts.client_send
	// (SendConn), the fallback's included.
	SendTimedOut func(net.Conn)
}

// Server is the fast front-end. Create it with New.
type Server struct {
	core     *admit.Core
	clock    budget.Clock
	sysClock bool // clock is the system's: its readings are real time
	upstream *upstreamPool
	log      func(*accesslog.Record, netip.Addr, admit.Outcome, string)
	logger   *slog.Logger
	fallback *http.Server
	handoff  *connListener
	maxHead  int
	// send and sendTimedOut are timeouts.client_send (fixed at start, as
	// the other connection timeouts) and Options.SendTimedOut.
	send         time.Duration
	sendTimedOut func(net.Conn)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	connsDone chan struct{} // closed when conns empties after closing
	fbDone    chan error
}

// New returns a Server for o.
func New(o Options) (*Server, error) {
	if o.Core == nil || o.Upstream == "" {
		return nil, errors.New("fastproxy: Options.Core and Options.Upstream are required")
	}
	s := &Server{
		core:      o.Core,
		clock:     o.Core.Clock(),
		log:       o.Log,
		logger:    o.Logger,
		fallback:  o.Fallback,
		maxHead:   o.MaxHeadBytes,
		send:      o.Core.Config().Timeouts.ClientSend.D(),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	_, s.sysClock = s.clock.(budget.SystemClock)
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.maxHead <= 0 {
		s.maxHead = httpwire.DefaultMaxHeadBytes
	}
	s.sendTimedOut = o.SendTimedOut
	s.upstream = newUpstreamPool(o.Upstream, o.Core)
	if s.fallback != nil {
		s.handoff = newConnListener()
		s.fbDone = make(chan error, 1)
		go func() { s.fbDone <- s.fallback.Serve(s.handoff) }()
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	var tempDelay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off as
				// net/http does instead of spinning.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			return err
		}
		tempDelay = 0
		c := s.newConn(nc)
		if c == nil {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// ServeConn serves nc as a connection Serve accepted, whose first bytes,
// buffered, another front-end already read from it (internal/evproxy
// hands over what its event loop does not serve, at a request boundary);
// the connection is the Server's from now on, buffered too. It returns
// when the connection ends; during Shutdown or after Close it closes nc
// at once.
func (s *Server) ServeConn(nc net.Conn, buffered []byte) {
	c := s.newConn(nc)
	if c == nil {
		nc.Close()
		return
	}
	c.cr.stash = buffered
	c.serve()
}

func (s *Server) newConn(nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := &conn{s: s, nc: nc, dl: deadlines{nc: nc}}
	c.cr.c = nc
	c.br = bufio.NewReaderSize(&c.cr, max(s.maxHead, 4096))
	// Every write to the client goes through sc, under
	// timeouts.client_send.
	c.sc = SendConn{Conn: nc, Timeout: s.send, TimedOut: s.sendTimedOut}
	c.bw = bufio.NewWriterSize(&c.sc, 4096)
	c.peer = admit.PeerAddr(nc.RemoteAddr().String())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.closing.Load() && len(s.conns) == 0 && s.connsDone != nil {
		close(s.connsDone)
		s.connsDone = nil
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish (each connection closes after its current response), and
// waits for them until ctx ends; then it closes what is left, which ends
// upstream calls still running (they are charged the time they ran). The
// fallback server is shut down the same way.
func (s *Server) Shutdown(ctx context.Context) error {
	done := s.stop()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.closeConns(true)
		<-done
	}
	if s.fallback != nil {
		if ferr := s.fallback.Shutdown(ctx); ferr != nil && err == nil {
			err = ferr
		}
		s.fallback.Close()
	}
	s.upstream.close()
	return err
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	done := s.stop()
	s.closeConns(true)
	<-done
	if s.fallback != nil {
		s.fallback.Close()
	}
	s.upstream.close()
	return nil
}

// stop closes the listeners and idle connections; the channel is closed
// once no connection is left.
func (s *Server) stop() <-chan struct{} {
	s.mu.Lock()
	s.closing.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	done := make(chan struct{})
	if len(s.conns) == 0 {
		close(done)
	} else {
		s.connsDone = done
	}
	s.mu.Unlock()
	if s.handoff != nil {
		s.handoff.Close()
	}
	s.closeConns(false)
	return done
}

// closeConns wakes idle connections (their read deadline ends now, and
// they see the server closing); with all, it closes every connection.
func (s *Server) closeConns(all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if all {
			c.nc.Close()
			s.upstream.closeAll()
		} else if c.idle.Load() {
			c.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// connListener is a net.Listener fed with the connections the fast path
// hands to the fallback server.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "fastproxy-handoff" }

// deadlines moves a connection's read and write deadlines lazily (a client
// connection's write deadline is its SendConn's): a deadline already set
// at the time asked for, or up to slack after it, is kept, because changing
// one costs a timer update per request while a deadline a little late
// costs nothing (the timeouts are seconds or minutes).
type deadlines struct {
	nc     net.Conn
	rd, wd time.Time
}

func (d *deadlines) read(t time.Time, slack time.Duration) {
	if t.IsZero() {
		if !d.rd.IsZero() {
			d.nc.SetReadDeadline(t)
			d.rd = t
		}
		return
	}
	if !d.rd.IsZero() && !d.rd.Before(t) && d.rd.Sub(t) <= slack {
		return
	}
	t = t.Add(slack)
	d.nc.SetReadDeadline(t)
	d.rd = t
}

func (d *deadlines) write(t time.Time, slack time.Duration) {
	if t.IsZero() {
		if !d.wd.IsZero() {
			d.nc.SetWriteDeadline(t)
			d.wd = t
		}
		return
	}
	if !d.wd.IsZero() && !d.wd.Before(t) && d.wd.Sub(t) <= slack {
		return
	}
	t = t.Add(slack)
	d.nc.SetWriteDeadline(t)
	d.wd = t
}

// slackFor is the lateness allowed on a timeout of d: an eighth, at most a
// second.
func slackFor(d time.Duration) time.Duration { return min(d/8, time.Second) }

// after is now+d, or no deadline for d <= 0.
func after(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// afterAt is now+d, or no deadline for d <= 0.
func afterAt(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}
