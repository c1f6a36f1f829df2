//go:build linux

package evproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/connlimit"
	"github.com/headroom-dev/headroom/internal/fastproxy"
	"github.com/headroom-dev/headroom/internal/httpwire"
)

// Options configures a Server: fastproxy's (the hand-offs are served by a
// fastproxy.Server made from them), and the number of loops.
type Options struct {
	fastproxy.Options
	// Loops is the number of event loops; 0 means DefaultLoops.
	Loops int
}

// Server is the event-loop front-end. Create it with New.
type Server struct {
	core     *admit.Core
	clock    budget.Clock
	sysClock bool
	log      func(*accesslog.Record, netip.Addr, admit.Outcome, string)
	logger   *slog.Logger
	upstream string         // host:port
	upAddr   netip.AddrPort // upstream, resolved at New (each loop has its own unix.Sockaddr of it)
	maxHead  int
	fast     *fastproxy.Server
	nloops   int
	// sendTimedOut is Options.SendTimedOut.
	sendTimedOut func(net.Conn)

	mu      sync.Mutex
	loops   []*loop
	serving bool
	closing atomic.Bool // Shutdown or Close began: accept nothing more
	force   atomic.Bool // Close, or Shutdown's context ended: close everything
	done    chan struct{}
	lns     []net.Listener
	// caps counts the connections the loops accept, when the listener
	// given to Serve caps them; nil: no caps.
	caps capped
	// acceptFails counts the accepts that failed for want of resources;
	// each pauses its loop's accepting (pauseAccept).
	acceptFails atomic.Int64
}

// capped is a listener that caps its connections (connlimit.Listener):
// the loops accept on the listener it wraps and count each connection
// with Take, as its own Accept would.
type capped interface {
	Unwrap() net.Listener
	Take(client netip.Addr) (*connlimit.Taken, bool)
	Refusal() []byte
}

// New returns a Server for o.
func New(o Options) (*Server, error) {
	if o.Core == nil || o.Upstream == "" {
		return nil, errors.New("evproxy: Options.Core and Options.Upstream are required")
	}
	up, err := resolve(o.Upstream)
	if err != nil {
		return nil, fmt.Errorf("evproxy: upstream %s: %w", o.Upstream, err)
	}
	fast, err := fastproxy.New(o.Options)
	if err != nil {
		return nil, err
	}
	s := &Server{
		core:         o.Core,
		clock:        o.Core.Clock(),
		log:          o.Log,
		logger:       o.Logger,
		upstream:     o.Upstream,
		upAddr:       up,
		maxHead:      o.MaxHeadBytes,
		fast:         fast,
		nloops:       o.Loops,
		sendTimedOut: o.SendTimedOut,
		done:         make(chan struct{}),
	}
	_, s.sysClock = s.clock.(budget.SystemClock)
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.maxHead <= 0 {
		s.maxHead = httpwire.DefaultMaxHeadBytes
	}
	if s.nloops <= 0 {
		s.nloops = DefaultLoops()
	}
	return s, nil
}

// DefaultLoops is one loop per P but one (GOMAXPROCS-1, at least 1). A
// loop holds its P whenever it is not blocked in epoll_wait, and the
// spare P is for everything else in the process: the hand-offs served by
// fastproxy, the access log's flusher, the admin server, the GC's
// workers. With no P idle, sysmon also takes a loop's P back each time
// its epoll_wait blocks longer than 20 µs (so that other work could run)
// and keeps itself polling every 20 µs to do it; with one idle it leaves
// them be. Measured with wrk -t2 -c50 on 2 cores (BENCHMARKS.md): one
// loop took 0.78x the CPU per request of two, at the same requests/s.
func DefaultLoops() int { return max(runtime.GOMAXPROCS(0)-1, 1) }

func resolve(hostport string) (netip.AddrPort, error) {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// sockaddr is ap for connect(2): a new one per loop, since Connect writes
// the raw form into it (one shared by the loops is a data race).
func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// Serve serves the connections of l (a *net.TCPListener, or a capped
// listener around one) on the event loops until Shutdown or Close; it
// returns http.ErrServerClosed then. A Server serves one listener.
func (s *Server) Serve(l net.Listener) error {
	inner := l
	caps, isCapped := l.(capped)
	if isCapped {
		inner = caps.Unwrap()
	}
	tl, ok := inner.(*net.TCPListener)
	if !ok {
		return fmt.Errorf("evproxy: Serve needs a TCP listener, not %T", inner)
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("evproxy: Serve called twice")
	}
	s.serving = true
	if isCapped {
		s.caps = caps
	}
	s.lns = append(s.lns, l)
	loops := make([]*loop, 0, s.nloops)
	var lerr error
	cerr := rc.Control(func(fd uintptr) {
		for range s.nloops {
			lp, err := newLoop(s, int(fd))
			if err != nil {
				lerr = err
				return
			}
			loops = append(loops, lp)
		}
	})
	if cerr == nil && lerr != nil {
		cerr = lerr
	}
	if cerr != nil {
		for _, lp := range loops {
			lp.release()
		}
		s.mu.Unlock()
		return cerr
	}
	s.loops = loops
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, lp := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lp.run(); err != nil {
				s.logger.Error("event loop stopped", "err", err)
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for _, lp := range loops {
		lp.release()
	}
	s.loops = nil
	s.mu.Unlock()
	close(s.done)
	return http.ErrServerClosed
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish (each connection closes after its current answer), and
// waits for them until ctx ends; then it closes what is left (requests
// still upstream are charged the time they ran). The connections handed
// to fastproxy are shut down the same way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop(false)
	var err error
	select {
	case <-s.wait():
	case <-ctx.Done():
		err = ctx.Err()
		s.stop(true)
		<-s.wait()
	}
	if ferr := s.fast.Shutdown(ctx); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.stop(true)
	<-s.wait()
	return s.fast.Close()
}

// wait is closed once no loop runs.
func (s *Server) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return s.done
}

// stop tells the loops to stop accepting and close idle connections (all
// connections, with force).
func (s *Server) stop(force bool) {
	s.mu.Lock()
	s.closing.Store(true)
	if force {
		s.force.Store(true)
	}
	for _, l := range s.lns {
		l.Close()
	}
	for _, lp := range s.loops {
		lp.wake()
	}
	s.mu.Unlock()
}

// stamp reads the server's clock for the exchange's record, and the real
// time for its deadlines: one reading when the clock is the system's.
func (s *Server) stamp() (clock, real time.Time) {
	t := s.clock.Now()
	if s.sysClock {
		return t, t
	}
	return t, time.Now()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errTimeout is an upstream's failure to answer within its timeout.
var errTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "evproxy: upstream timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return false }

var _ net.Error = timeoutError{}

func errno(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := err.(syscall.Errno); ok {
		return &net.OpError{Op: "read", Net: "tcp", Err: e}
	}
	return err
}

// peerConn stands for a client connection of the loop where a callback
// takes a net.Conn (Options.SendTimedOut reads its RemoteAddr).
type peerConn struct {
	net.Conn
	addr net.Addr
}

func (c peerConn) RemoteAddr() net.Addr { return c.addr }
