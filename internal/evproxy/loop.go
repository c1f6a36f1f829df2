//go:build linux

package evproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/connlimit"
	"github.com/headroom-dev/headroom/internal/fastproxy"
	"github.com/headroom-dev/headroom/internal/httpwire"
	"github.com/headroom-dev/headroom/internal/requestid"
)

const (
	readSize = 32 << 10 // one read of an answer's body
	maxIdle  = 256      // idle upstream connections kept per loop
	events   = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	// sweepEvery is how often a loop looks for connections past their
	// timeouts (timeouts are seconds; their lateness is fastproxy's
	// slack at most, plus this).
	sweepEvery = 100 * time.Millisecond
)

// errNeedMore is what a connection's source says when it has no more
// bytes now: the parser is called again on the next readiness.
var errNeedMore = errors.New("evproxy: need more bytes")

// loop is one event loop: an epoll descriptor, a dup of the listener, an
// eventfd to wake it, and the client and upstream connections it
// accepted or opened, used by its thread only.
type loop struct {
	s         *Server
	epfd, lfd int
	wfd       int           // eventfd: Shutdown and Close wake the loop
	upAddr    unix.Sockaddr // the upstream, the loop's own (Connect writes into it)
	objs      []obj
	idle      []*backend // keep-alive upstream connections, last in first out
	clients   []*client  // every client of the loop (for the sweep and the shutdown)
	events    [128]unix.EpollEvent
	gen       int32
	scratch   []byte
	accepting bool
	// acceptPaused: the listener is out of the epoll set until
	// resumeAccept (pauseAccept).
	acceptPaused               bool
	resumeAccept, acceptLogged time.Time
	nextSweep                  time.Time
	stopped                    bool
	forceClose                 bool
}

// obj is what a descriptor of the loop is.
type obj struct {
	gen int32
	c   *client
	b   *backend
}

func newLoop(s *Server, lfd int) (*loop, error) {
	l := &loop{s: s, epfd: -1, lfd: -1, wfd: -1, scratch: make([]byte, readSize), upAddr: sockaddr(s.upAddr)}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if l.wfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.release()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if l.lfd, err = unix.FcntlInt(uintptr(lfd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
		l.release()
		return nil, fmt.Errorf("dup: %w", err)
	}
	if err := l.add(l.wfd, unix.EPOLLIN, obj{}); err != nil {
		l.release()
		return nil, err
	}
	if err := l.add(l.lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, obj{}); err != nil {
		l.release()
		return nil, err
	}
	l.accepting = true
	return l, nil
}

// release closes the loop's own descriptors.
func (l *loop) release() {
	for _, fd := range []int{l.lfd, l.wfd, l.epfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	l.lfd, l.wfd, l.epfd = -1, -1, -1
}

func (l *loop) wake() {
	var one = [8]byte{1}
	unix.Write(l.wfd, one[:])
}

// add registers fd with the loop's epoll as o.
func (l *loop) add(fd int, ev uint32, o obj) error {
	for fd >= len(l.objs) {
		l.objs = append(l.objs, make([]obj, len(l.objs)+64)...)
	}
	l.gen++
	o.gen = l.gen
	l.objs[fd] = o
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: ev, Fd: int32(fd), Pad: o.gen})
}

// forget closes fd, which leaves the epoll set with it.
func (l *loop) forget(fd int) {
	l.objs[fd] = obj{}
	unix.Close(fd)
}

func (l *loop) run() error {
	runtime.LockOSThread()
	// Its descriptors are closed by Serve once every loop ended, under
	// the Server's lock (stop wakes loops under it).
	l.nextSweep = time.Now().Add(sweepEvery)
	for {
		if l.s.closing.Load() && !l.stopped {
			l.stop()
		}
		if l.s.force.Load() && !l.forceClose {
			l.forceClose = true
			l.closeAll()
		}
		if l.stopped && len(l.clients) == 0 {
			l.closeIdle()
			return nil
		}
		wait := sweepEvery
		if l.acceptPaused {
			wait = acceptPause
		}
		n, err := unix.EpollWait(l.epfd, l.events[:], int(wait/time.Millisecond))
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			switch fd {
			case l.lfd:
				if l.accepting {
					l.accept()
				}
				continue
			case l.wfd:
				var b [8]byte
				unix.Read(l.wfd, b[:])
				continue
			}
			o := l.objs[fd]
			if o.gen != ev.Pad {
				continue // closed (and perhaps reused) after this batch was taken
			}
			switch {
			case o.c != nil:
				l.clientEvent(o.c, ev.Events)
			case o.b != nil:
				l.backendEvent(o.b, ev.Events)
			}
		}
		now := time.Now()
		l.resumeAccepting(now)
		if !now.Before(l.nextSweep) {
			l.nextSweep = now.Add(sweepEvery)
			l.sweep(now)
		}
	}
}

// stop stops accepting and closes the idle clients; busy ones close after
// their answer.
func (l *loop) stop() {
	l.stopped = true
	if l.accepting {
		l.accepting = false
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lfd, nil)
		unix.Close(l.lfd)
		l.lfd = -1
	}
	for _, c := range append([]*client(nil), l.clients...) {
		if !c.busy {
			l.closeClient(c)
		} else {
			c.closeAfter = true
		}
	}
}

// closeAll ends every request in flight (charged the time it ran) and
// closes every connection.
func (l *loop) closeAll() {
	for _, c := range append([]*client(nil), l.clients...) {
		if c.busy && c.b != nil {
			b := c.b
			l.backendFailed(b, net.ErrClosed)
		}
		l.closeClient(c)
	}
	l.closeIdle()
}

func (l *loop) closeIdle() {
	for _, b := range l.idle {
		l.closeBackend(b)
	}
	l.idle = l.idle[:0]
}

func (l *loop) accept() {
	// One connection per wake-up: the listener is level-triggered, so
	// what else waits wakes a loop again, perhaps another one.
	fd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		switch err {
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			l.s.acceptFails.Add(1)
			l.pauseAccept(err)
		}
		return // EAGAIN: another loop took it; anything else: try again on the next event
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := &client{l: l, fd: fd, first: true}
	c.out = make([]byte, 0, 4096)
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		c.peer = netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		c.peer = netip.AddrFrom16(a.Addr).Unmap()
	}
	if caps := l.s.caps; caps != nil {
		t, ok := caps.Take(c.peer)
		if !ok {
			// Over a cap: the 503 goes out in one write that never
			// waits for the client (its send buffer is empty), then
			// the connection closes, before any of its bytes are read.
			_, _ = unix.Write(fd, caps.Refusal())
			unix.Close(fd)
			return
		}
		c.taken = t
	}
	c.br = bufio.NewReaderSize(clientSrc{c}, max(l.s.maxHead, 4096))
	c.since = time.Now()
	if err := l.add(fd, events, obj{c: c}); err != nil {
		l.forget(fd)
		if c.taken != nil {
			c.taken.Release()
		}
		return
	}
	c.idx = len(l.clients)
	l.clients = append(l.clients, c)
}

// acceptPause is how long a loop stops accepting after an accept failed
// for want of descriptors or memory.
const acceptPause = 10 * time.Millisecond

// pauseAccept takes the listener out of the epoll set for acceptPause.
// The connection that could not be accepted stays in the backlog, and the
// listener is level-triggered: accepting again at once would spin the
// loop on the same error, starving the connections it already has (the
// ones whose closing frees descriptors). Logged at most once a second.
func (l *loop) pauseAccept(err error) {
	if l.acceptPaused {
		return
	}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lfd, nil)
	l.acceptPaused = true
	now := time.Now()
	l.resumeAccept = now.Add(acceptPause)
	if now.Sub(l.acceptLogged) >= time.Second {
		l.acceptLogged = now
		l.s.logger.Warn("accepting paused: accept failed for want of resources; raise the descriptor limit (ulimit -n, LimitNOFILE=) or lower connections.max",
			"err", err, "pause", acceptPause)
	}
}

// resumeAccepting puts the listener back in the epoll set once the pause
// is over.
func (l *loop) resumeAccepting(now time.Time) {
	if !l.acceptPaused || now.Before(l.resumeAccept) {
		return
	}
	l.acceptPaused = false
	if !l.accepting {
		return // stopped meanwhile: the listener is closed
	}
	if err := l.add(l.lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, obj{}); err != nil {
		l.s.logger.Error("accept again after a pause", "err", err)
	}
}

// client is a connection from a client and the request in flight on it.
type client struct {
	l                  *loop
	fd                 int
	idx                int // in l.clients
	peer               netip.Addr
	taken              *connlimit.Taken // its place under the connection caps; nil: none
	addrKey            admit.AddrKey
	readable, writable bool
	rdhup              bool // the peer's FIN is in: a short read does not mean drained
	br                 *bufio.Reader
	out                []byte // the answer not yet written
	outOff             int
	closed             bool
	closeAfter         bool      // close once out is written
	first              bool      // no request yet: the head's timeout is read_header
	since              time.Time // accepted, or the last answer's end
	headAt             time.Time // the first bytes of the next head came
	// stalled is when a write to the client last made no progress (zero:
	// it took everything so far), for timeouts.client_send.
	stalled time.Time

	// The request in flight.
	req       httpwire.Request
	busy      bool // upstream
	outcome   admit.Outcome
	keep      bool
	adm       admit.Admission
	trusted   bool
	rid       []byte
	ridBuf    [requestid.Len]byte
	upStart   time.Time
	upEnd     time.Time
	respAt    time.Time
	goneAt    time.Time
	hupAt     time.Time // the peer's FIN came while the request was upstream
	deadline  time.Time // timeouts.upstream (and upstream_header until the head is in)
	bodyDL    time.Time // timeouts.upstream alone
	upStatus  int
	status    int
	sent      int64
	failed    bool // the client left: what is left of the answer is dropped
	b         *backend
	reqHead   []byte
	reqOff    int
	retried   bool
	chunkOut  bool
	chunkDone bool
}

// clientSrc is the client's bytes as the bufio.Reader reads them:
// errNeedMore rather than a read that would fail with EAGAIN.
type clientSrc struct{ c *client }

func (s clientSrc) Read(p []byte) (int, error) {
	c := s.c
	if !c.readable {
		return 0, errNeedMore
	}
	n, err := rawRead(c.fd, p)
	if n > 0 {
		if n < len(p) && !c.rdhup {
			c.readable = false // drained: the next data brings an edge
		}
		return n, nil
	}
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		c.readable = false
		return 0, errNeedMore
	case err == nil:
		return 0, io.EOF
	}
	return 0, errno(err)
}

func (l *loop) clientEvent(c *client, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			c.rdhup = true
		}
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.writable = true
	}
	if c.busy && !c.failed {
		switch {
		case ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0:
			l.clientGone(c, l.s.clock.Now())
		case ev&unix.EPOLLRDHUP != 0 && c.hupAt.IsZero() && !c.b.headDone() && c.br.Buffered() == 0 && !hasData(c.fd):
			// A FIN while the upstream has not answered: the client
			// left, unless the answer comes within fastproxy's
			// watchAfter (fastproxy only watches a client once the
			// upstream is that slow; a client that half-closes after
			// its request is answered).
			c.hupAt = l.s.clock.Now()
		}
	}
	l.driveClient(c)
}

// hasData says whether fd has bytes to read (a pipelined request before
// the FIN).
func hasData(fd int) bool {
	var p [1]byte
	n, _, _ := unix.Recvfrom(fd, p[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n > 0
}

// clientGone marks the client gone at t: the rest of the answer is still
// read from the upstream (and charged), and dropped.
func (l *loop) clientGone(c *client, t time.Time) {
	if c.goneAt.IsZero() {
		c.goneAt = t
	}
	c.failed = true
	c.out, c.outOff = c.out[:0], 0
}

// driveClient writes what is pending to the client and, when no request
// is in flight, reads and starts the next one.
func (l *loop) driveClient(c *client) {
	for !c.closed {
		if !l.flushClient(c) {
			return
		}
		if c.busy {
			if b := c.b; b != nil && b.readable && c.outOff == len(c.out) {
				l.driveBackend(b) // it waited for the client to take the answer
			}
			return
		}
		if c.outOff < len(c.out) {
			return
		}
		if c.closeAfter || c.l.stopped {
			l.closeClient(c)
			return
		}
		err := httpwire.ReadRequest(c.br, &c.req, l.s.maxHead)
		if err != nil {
			var we *httpwire.Error
			switch {
			case err == errNeedMore:
				if c.headAt.IsZero() && c.br.Buffered() > 0 {
					c.headAt = time.Now()
				}
			case errors.As(err, &we):
				c.out = fastproxy.AppendMalformed(c.out, we.Status, nil)
				c.closeAfter = true
				continue
			default:
				l.closeClient(c) // EOF, or the connection failed
			}
			return
		}
		c.first = false
		c.headAt = time.Time{}
		l.startRequest(c)
	}
}

// flushClient writes c.out; false when the client is gone.
func (l *loop) flushClient(c *client) bool {
	if c.closed {
		return false
	}
	if c.failed {
		c.out, c.outOff = c.out[:0], 0
		return true
	}
	for c.outOff < len(c.out) && c.writable {
		n, err := rawWrite(c.fd, c.out[c.outOff:])
		if n > 0 {
			c.outOff += n
			c.stalled = time.Time{}
			if c.outOff < len(c.out) {
				c.writable = false // the send buffer is full: wait for its edge
			}
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			c.writable = false
			break
		}
		// The client left.
		if c.busy {
			l.clientGone(c, l.s.clock.Now())
			return true
		}
		l.closeClient(c)
		return false
	}
	if c.outOff == len(c.out) {
		c.out, c.outOff = c.out[:0], 0
		c.stalled = time.Time{}
	} else if c.stalled.IsZero() {
		c.stalled = time.Now()
	}
	return true
}

func (l *loop) closeClient(c *client) {
	if c.closed {
		return
	}
	c.closed = true
	if b := c.b; b != nil {
		c.b = nil
		l.closeBackend(b) // mid-answer: not reusable
	}
	l.forget(c.fd)
	l.drop(c)
	if c.taken != nil {
		c.taken.Release()
	}
}

// drop removes c from the loop's list.
func (l *loop) drop(c *client) {
	last := len(l.clients) - 1
	if c.idx <= last && l.clients[c.idx] == c {
		l.clients[c.idx] = l.clients[last]
		l.clients[c.idx].idx = c.idx
		l.clients[last] = nil
		l.clients = l.clients[:last]
	}
}

// handOff gives the connection to fastproxy at a request boundary, with
// the head just parsed and whatever the client sent after it.
func (l *loop) handOff(c *client) {
	buffered, _ := c.br.Peek(c.br.Buffered())
	rest := make([]byte, 0, len(c.req.Raw)+len(buffered))
	rest = append(append(rest, c.req.Raw...), buffered...)
	c.closed = true
	l.drop(c)
	l.objs[c.fd] = obj{}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		if c.taken != nil {
			c.taken.Release()
		}
		l.s.logger.Error("hand a connection to the fast path", "err", err)
		return
	}
	if c.taken != nil {
		// The connection keeps its place under the caps until fastproxy
		// (or net/http after it) closes it.
		nc = &takenConn{Conn: nc, taken: c.taken}
	}
	go l.s.fast.ServeConn(nc, rest)
}

// takenConn is a handed-off connection that gives its place under the
// connection caps back when it closes.
type takenConn struct {
	net.Conn
	taken *connlimit.Taken
}

func (c *takenConn) Close() error {
	err := c.Conn.Close()
	c.taken.Release()
	return err
}

// needsHandoff reports a request the loop leaves to fastproxy.
func needsHandoff(r *httpwire.Request) bool {
	return r.HasBody() || r.Upgrade || r.ConnectionUpgrade || r.Expect != nil || !r.OriginForm()
}

// startRequest admits the request just parsed, answers it or sends it
// upstream, or hands the connection off.
func (l *loop) startRequest(c *client) {
	r := &c.req
	if needsHandoff(r) {
		l.handOff(c)
		return
	}
	path, ok := fastproxy.DecodePath(r.Path())
	if !ok {
		l.handOff(c) // fastproxy answers 400
		return
	}
	s := l.s
	c.resetExchange()
	areq := admit.Request{Header: fastproxy.HeaderView(r), Peer: c.peer, Host: fastproxy.View(r.Host), Path: path,
		Query: fastproxy.View(r.Query()), AddrKey: &c.addrKey}
	s.core.Begin(&areq, &c.adm)
	o, ok, wait := s.core.TryAdmit(&c.adm)
	if wait {
		l.handOff(c) // it waits in the pool's queue there (Begun again)
		return
	}
	c.trusted = c.peer.IsValid() && c.adm.TrustedPeer(c.peer)
	c.rid = fastproxy.RequestID(r, c.trusted, c.ridBuf[:])
	c.keep = r.KeepAlive
	if !ok {
		ref := s.core.Refusal(&c.adm, o)
		c.out = fastproxy.AppendAnswer(c.out, r, ref.Status, ref.Header, ref.Body, c.rid, c.keep)
		c.status, c.sent = ref.Status, int64(len(ref.Body))
		l.finish(c, o)
		if !c.keep {
			c.closeAfter = true
		}
		return
	}
	cfg := c.adm.Config()
	var real time.Time
	c.upStart, real = s.stamp()
	if d := cfg.Timeouts.Upstream.D(); d > 0 {
		c.bodyDL = real.Add(d)
	}
	c.deadline = c.bodyDL
	if d := cfg.Timeouts.UpstreamHeader.D(); d > 0 && (c.deadline.IsZero() || real.Add(d).Before(c.deadline)) {
		c.deadline = real.Add(d)
	}
	length := fastproxy.NoBody
	if r.ContentLength == 0 {
		length = 0 // a Content-Length: 0 is forwarded as such
	}
	c.reqHead = fastproxy.AppendRequestHead(c.reqHead[:0], r, &fastproxy.Forward{
		Upstream: s.upstream, Trusted: c.trusted, Peer: c.peer, Client: c.adm.Client, RequestID: c.rid,
	}, length)
	c.busy, c.outcome = true, o
	if c.rdhup && c.br.Buffered() == 0 && !hasData(c.fd) {
		// The client's FIN came with or before this request, and there is
		// no next one: it half-closed (or left) while the request goes
		// upstream (settleHup).
		c.hupAt = c.upStart
	}
	l.send(c, real)
}

func (c *client) resetExchange() {
	c.adm = admit.Admission{}
	c.upStart, c.upEnd, c.respAt, c.goneAt, c.hupAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	c.deadline, c.bodyDL = time.Time{}, time.Time{}
	c.upStatus, c.status, c.sent, c.failed = 0, 0, 0, false
	c.retried, c.chunkOut, c.chunkDone = false, false, false
}

// finish charges, counts and logs the request ended now.
func (l *loop) finish(c *client, o admit.Outcome) {
	end := c.upEnd
	if end.IsZero() {
		end = l.s.clock.Now()
		if !c.upStart.IsZero() {
			c.upEnd = end
		}
	}
	fastproxy.Finish(l.s.core, l.s.log, &fastproxy.Ending{
		Adm: &c.adm, Req: &c.req, RequestID: c.rid,
		UpStart: c.upStart, UpEnd: c.upEnd, RespAt: c.respAt, End: end, Gone: c.goneAt,
		UpStatus: c.upStatus, Status: c.status, Sent: c.sent,
	}, o)
}

// sweep closes the connections past their timeouts: a head not in within
// timeouts.read_header (slowloris) or a connection idle for
// timeouts.idle, a client that took no byte of its answer for
// timeouts.client_send (499), an upstream past timeouts.upstream or
// upstream_header (504).
func (l *loop) sweep(now time.Time) {
	cfg := l.s.core.Config()
	rh, idle, send := cfg.Timeouts.ReadHeader.D(), cfg.Timeouts.Idle.D(), cfg.Timeouts.ClientSend.D()
	for i := 0; i < len(l.clients); i++ {
		c := l.clients[i]
		switch {
		case c.busy:
			if !c.deadline.IsZero() && now.After(c.deadline) && c.b != nil {
				l.backendFailed(c.b, errTimeout)
				l.resume(c)
			}
		case c.outOff < len(c.out):
		case !c.headAt.IsZero() || c.first:
			// A head begun (or the first one awaited): read_header.
			from := c.headAt
			if from.IsZero() {
				from = c.since
			}
			if rh > 0 && now.Sub(from) > rh+fastproxy.SlackFor(rh) {
				l.closeClient(c)
			}
		default:
			if idle > 0 && now.Sub(c.since) > idle+fastproxy.SlackFor(idle) {
				l.closeClient(c)
			}
		}
		if !c.closed && send > 0 && !c.stalled.IsZero() && c.outOff < len(c.out) {
			// Write again before judging: the socket's writable edge
			// comes only once a third of its send buffer is free, and a
			// client may take bytes slowly for longer than the timeout
			// before that (fastproxy's SendConn writes again every
			// quarter of the timeout for the same reason). A write that
			// takes a byte resets stalled.
			c.writable = true
			l.driveClient(c)
		}
		if !c.closed && send > 0 && !c.stalled.IsZero() && now.Sub(c.stalled) > send+fastproxy.SlackFor(send) {
			l.sendTimedOut(c)
		}
		if i < len(l.clients) && l.clients[i] != c {
			i-- // c left the list: another took its place
		}
	}
}

// sendTimedOut closes a client that took no byte of its answer for
// timeouts.client_send; a request still upstream is read to its end and
// charged, and logged 499.
func (l *loop) sendTimedOut(c *client) {
	if f := l.s.sendTimedOut; f != nil {
		f(peerConn{addr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.peer, 0))})
	}
	if c.busy {
		l.clientGone(c, l.s.clock.Now())
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
		// The upstream stopped being read while the client's output was
		// full, its readable edge already taken. Read the rest of the
		// answer (and charge it) now rather than wait for the HUP the
		// shutdown should bring: without that event nothing else would
		// before the upstream timeout.
		if b := c.b; b != nil && b.readable {
			l.driveBackend(b)
		}
		return
	}
	l.closeClient(c)
}
