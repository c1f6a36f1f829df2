package fastproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/httpwire"
)

// upConn is one keep-alive connection to the upstream.
type upConn struct {
	nc        net.Conn
	rc        syscall.RawConn // nc's, for sendThenRead; nil: requests are written at once
	pending   []byte          // a request written by the next read (sendThenRead)
	raw       rawState
	rawFn     func(fd uintptr) bool // u.rawStep
	dl        deadlines
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	resp      httpwire.Response
	chunk     httpwire.ChunkedReader
	length    httpwire.LengthReader
}

// upReader reads the upstream connection, first sending the request
// waiting in pending.
type upReader struct{ u *upConn }

func (r upReader) Read(p []byte) (int, error) {
	if r.u.pending != nil {
		return r.u.sendThenRead(p)
	}
	return r.u.nc.Read(p)
}

// sendThenRead writes the pending request and reads the start of its
// answer, waiting on the poller in between without first trying the read
// that would fail with EAGAIN (the upstream has not answered microseconds
// after the write; a plain Read tries it, as Go's poller requires, one
// syscall per request for nothing). The write is made from inside the
// raw read, after the poller forgot the connection's earlier readiness
// (pollReset), so an answer arriving right after it still wakes the wait.
// A request the socket does not take whole is finished with the
// connection's own Write, under its write deadline, and then read as
// usual.
//
// Only for a connection on which nothing is waiting unread when the
// request goes out, since the readiness of anything already there is
// forgotten: the upstream's, between an answer read to its end and the
// next request (an upstream that closed the idle connection meanwhile
// answers the write with a reset, which wakes the wait; bytes an upstream
// sent after its answer, and then nothing, are found by the plain read
// after the short wait, watchAfter, a 502 milliseconds late, or at the
// head deadline when there is no short wait, a request that queued, 504
// instead of 502). Not the client's: a pipelined request may already be in
// the socket, and the wait for it would never end (tried: the
// differential test's half-closed clients hung), so the client's side
// keeps its read that fails with EAGAIN.
func (u *upConn) sendThenRead(p []byte) (int, error) {
	st := &u.raw
	*st = rawState{out: u.pending, p: p}
	u.pending = nil
	err := u.rc.Read(u.rawFn)
	out, n, werr, rerr := st.out, st.n, st.werr, st.rerr
	wrote := st.wrote
	*st = rawState{}
	switch {
	case !wrote:
		// The raw read ended before the callback ran (a deadline
		// already past, a closed connection): nothing was sent.
		u.pending = out
		return 0, err
	case werr != nil:
		return 0, &net.OpError{Op: "write", Net: "tcp", Source: u.nc.LocalAddr(), Addr: u.nc.RemoteAddr(), Err: werr}
	case len(out) > 0:
		if _, err := u.nc.Write(out); err != nil {
			return 0, err
		}
		return u.nc.Read(p)
	case err != nil:
		return 0, err // the wait's deadline or the connection's close
	case rerr == io.EOF:
		return 0, io.EOF
	case rerr != nil:
		return n, &net.OpError{Op: "read", Net: "tcp", Source: u.nc.LocalAddr(), Addr: u.nc.RemoteAddr(), Err: rerr}
	}
	return n, nil
}

// rawState is sendThenRead's, kept in the upConn with its callback
// (rawStep, bound once) so that a request allocates neither.
type rawState struct {
	out, p     []byte // what is left to write; where the answer goes
	wrote      bool   // the write was made (whole, in part, or failed)
	n          int
	werr, rerr error
}

// rawStep is the raw read's callback: the first call writes the request,
// the next ones read the answer.
func (u *upConn) rawStep(fd uintptr) bool {
	st := &u.raw
	if !st.wrote {
		st.wrote = true
		for len(st.out) > 0 {
			m, err := syscall.Write(int(fd), st.out)
			if m > 0 {
				st.out = st.out[m:]
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return true // the rest by the connection's Write
			case err != nil:
				st.werr = os.NewSyscallError("write", err)
				return true
			case m <= 0:
				st.werr = io.ErrUnexpectedEOF
				return true
			}
		}
		return false // sent: wait for the answer
	}
	m, err := syscall.Read(int(fd), st.p)
	switch {
	case err == syscall.EINTR, err == syscall.EAGAIN:
		return false // woken early: wait on
	case err != nil:
		st.rerr = os.NewSyscallError("read", err)
	case m == 0:
		st.rerr = io.EOF
	}
	st.n = max(m, 0)
	return true
}

// maxIdle bounds the idle upstream connections kept (as the net/http
// front-end's transport keeps 256 per host).
const maxIdle = 256

// upstreamPool keeps idle upstream connections, last used first.
type upstreamPool struct {
	addr string
	core *admit.Core

	mu     sync.Mutex
	idle   []*upConn
	all    map[*upConn]struct{}
	closed bool
}

func newUpstreamPool(addr string, core *admit.Core) *upstreamPool {
	return &upstreamPool{addr: addr, core: core, all: map[*upConn]struct{}{}}
}

var errPoolClosed = errors.New("fastproxy: shutting down")

// get returns an idle connection, or a new one; now is the request's
// clock reading (for the idle bound).
func (p *upstreamPool) get(cfg *config.Config, now time.Time) (*upConn, bool, error) {
	idleFor := cfg.Timeouts.Idle.D()
	p.mu.Lock()
	for len(p.idle) > 0 {
		u := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if idleFor > 0 && now.Sub(u.idleSince) > idleFor {
			delete(p.all, u)
			u.nc.Close()
			continue
		}
		p.mu.Unlock()
		return u, true, nil
	}
	p.mu.Unlock()
	d := net.Dialer{Timeout: cfg.Timeouts.Dial.D(), KeepAlive: 30 * time.Second}
	nc, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	u := &upConn{nc: nc, dl: deadlines{nc: nc}, bw: bufio.NewWriterSize(nc, 8<<10)}
	u.br = bufio.NewReaderSize(upReader{u}, httpwire.DefaultMaxHeadBytes)
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			u.rc, u.rawFn = rc, u.rawStep
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		nc.Close()
		return nil, false, errPoolClosed
	}
	p.all[u] = struct{}{}
	return u, false, nil
}

// put keeps u for the next request; now is when its answer ended.
func (p *upstreamPool) put(u *upConn, now time.Time) {
	// Its deadlines stay: nothing reads or writes an idle connection,
	// and the next request moves them.
	u.idleSince = now
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= maxIdle {
		delete(p.all, u)
		u.nc.Close()
		return
	}
	p.idle = append(p.idle, u)
}

func (p *upstreamPool) drop(u *upConn) {
	u.nc.Close()
	p.mu.Lock()
	delete(p.all, u)
	p.mu.Unlock()
}

// closeAll closes every upstream connection, busy ones included: the
// calls still running end (and are charged the time they ran).
func (p *upstreamPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for u := range p.all {
		u.nc.Close()
	}
	p.idle = p.idle[:0]
}

func (p *upstreamPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeAll()
}

var copyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// bodyErr is a failure reading the client's body while it streams
// upstream: the client's fault.
type bodyErr struct{ err error }

func (e *bodyErr) Error() string { return "request body: " + e.err.Error() }

// clientBody reads the streamed rest of a request body, telling its
// failures apart from the upstream's, and lifts the client's read deadline
// once the body is in.
type clientBody struct {
	c   *conn
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.c.dl.read(time.Time{}, 0)
	} else if err != nil {
		b.err = err
		err = &bodyErr{err}
	}
	return n, err
}

// proxy hands the admitted request upstream and streams the answer back.
// It returns the request's outcome and whether the client connection may
// be kept.
func (c *conn) proxy(cfg *config.Config, body reqBody, o admit.Outcome, keep bool) (admit.Outcome, bool) {
	ex := &c.ex
	s := c.s
	r := &c.req
	// One clock reading for the exchange's start and every deadline
	// below: deadlines have slack of milliseconds to seconds, and the
	// reading is microseconds old at most when they are set.
	ex.upStart = c.stamp()
	now := c.now
	deadline := afterAt(now, cfg.Timeouts.Upstream.D())
	slack := slackFor(cfg.Timeouts.Upstream.D())
	hd := deadline
	if d := cfg.Timeouts.UpstreamHeader.D(); d > 0 && (hd.IsZero() || now.Add(d).Before(hd)) {
		hd = now.Add(d)
	}
	var u *upConn
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		u, reused, err = s.upstream.get(cfg, now)
		if err != nil {
			return c.upstreamFailed(cfg, err), false
		}
		u.dl.write(deadline, slack)
		if err = c.writeRequest(u, body); err != nil {
			s.upstream.drop(u)
			var be *bodyErr
			if errors.As(err, &be) {
				ex.upEnd = s.clock.Now()
				return c.bodyFailed(cfg, be.err), false
			}
			if reused && attempt == 0 && body.rest == nil && idempotent(r.Method) {
				continue // a stale keep-alive connection: once more on a fresh one
			}
			return c.upstreamFailed(cfg, err), false
		}
		noBytes, err := c.awaitResponse(u, now, hd, slackFor(cfg.Timeouts.UpstreamHeader.D()))
		if err != nil {
			s.upstream.drop(u)
			if noBytes && reused && attempt == 0 && body.rest == nil && idempotent(r.Method) && !isTimeout(err) {
				continue
			}
			return c.upstreamFailed(cfg, err), false
		}
		break
	}
	if kind := u.resp.Body(isHead(r.Method)); kind != httpwire.NoBody &&
		!(kind == httpwire.LengthBody && int64(u.br.Buffered()) >= u.resp.ContentLength) {
		// More of the body is to be read: under the whole exchange's
		// deadline, not the head's.
		u.dl.read(deadline, slack)
	}
	ex.upStatus = u.resp.Status
	ex.respAt = c.stamp()
	ok, clientKeep := c.copyResponse(u, keep)
	ex.upEnd = c.stamp()
	if !ok {
		s.upstream.drop(u)
		s.logger.Error("upstream response broken off", "upstream", s.upstream.addr, "status", ex.upStatus,
			"method", string(r.Method), "path", string(r.Path()), "key", ex.adm.Key)
		// The client got a status line and part of a body, then a cut
		// connection: logged as the upstream failure it was, not as the
		// 200 its status line said (issue 17, as internal/guard does).
		ex.upStatus, ex.status = http.StatusBadGateway, http.StatusBadGateway
		return admit.UpstreamError, false
	}
	if u.resp.KeepAlive && u.resp.Body(isHead(r.Method)) != httpwire.CloseBody {
		s.upstream.put(u, c.now)
	} else {
		s.upstream.drop(u)
	}
	if ex.failed {
		return admit.ClientAbort, false
	}
	return o, clientKeep
}

func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

func isHead(m []byte) bool { return string(m) == "HEAD" }

// watchAfter is how long the upstream may take to start answering before
// the proxy watches for the client leaving meanwhile. Watching costs a
// read that fails, a goroutine wake-up and two deadline changes; a fast
// upstream answers before it is worth it, and a client that leaves during
// a short request is still noticed when its answer cannot be written.
// The wait may run over by up to watchSlack: the upstream connection's
// read deadline is then moved only every watchSlack or so, not twice a
// request (a deadline change is a timer update and three clock reads).
const (
	watchAfter = 10 * time.Millisecond
	watchSlack = 5 * time.Millisecond
)

// awaitResponse waits for the upstream's response head until hd, watching
// the client once the upstream is slow. now is the exchange's start.
//
// The read deadline in force while the head is read: the short wait's
// (watchAfter, for the first byte), then hd's, set only if the head is not
// all in by then, as it is when it came in one packet.
func (c *conn) awaitResponse(u *upConn, now, hd time.Time, slack time.Duration) (noBytes bool, err error) {
	short := now.Add(watchAfter)
	if !c.watching && (hd.IsZero() || short.Add(watchSlack).Before(hd)) {
		u.dl.read(short, watchSlack)
		if _, err := u.br.Peek(1); err != nil {
			if !isTimeout(err) {
				return true, err
			}
			c.watching = c.startWatch(nil)
		}
	}
	return readResponseHead(u, hd, slack)
}

// readResponseHead reads the upstream's response head, skipping 1xx
// interim responses, under the deadline hd (moved only for a head not
// already buffered). noBytes reports that nothing at all came back.
func readResponseHead(u *upConn, hd time.Time, slack time.Duration) (noBytes bool, err error) {
	headDeadline := func() {
		if b, _ := u.br.Peek(u.br.Buffered()); !bytes.Contains(b, crlfcrlf) {
			u.dl.read(hd, slack)
		}
	}
	headDeadline()
	if _, err := u.br.Peek(1); err != nil {
		return true, err
	}
	for {
		headDeadline()
		if err := httpwire.ReadResponse(u.br, &u.resp, httpwire.DefaultMaxHeadBytes); err != nil {
			return false, err
		}
		if u.resp.Status >= 200 {
			return false, nil
		}
		if u.resp.Status == 101 {
			return false, &httpwire.Error{Status: 502, Reason: "101 Switching Protocols without an Upgrade request"}
		}
	}
}

// writeRequest writes the request head, rewritten, and its body.
func (c *conn) writeRequest(u *upConn, body reqBody) error {
	r := &c.req
	length := NoBody
	switch {
	case body.none:
	case body.rest == nil:
		length = int64(len(body.buf))
	case body.length >= 0:
		length = body.length
	default:
		length = ChunkedBody
	}
	chunked := length == ChunkedBody
	b := AppendRequestHead(u.bw.AvailableBuffer(), r, &Forward{
		Upstream: c.s.upstream.addr, Trusted: c.trusted, Peer: c.peer, Client: c.ex.adm.Client, RequestID: c.rid,
	}, length)
	if body.rest == nil && u.rc != nil && len(b)+len(body.buf) <= u.bw.Available() {
		// The whole request is in hand: sent by the first read of the
		// answer (sendThenRead), in the bufio.Writer's free space.
		u.pending = append(b, body.buf...)
		return nil
	}
	if _, err := u.bw.Write(b); err != nil {
		return err
	}
	if body.rest == nil {
		if len(body.buf) > 0 {
			if _, err := u.bw.Write(body.buf); err != nil {
				return err
			}
		}
		return u.bw.Flush()
	}
	var w io.Writer = u.bw
	cw := httpwire.ChunkedWriter{W: u.bw}
	if chunked {
		w = &cw
	}
	if _, err := w.Write(body.buf); err != nil {
		return err
	}
	buf := copyBuffers.Get().(*[32 << 10]byte)
	defer copyBuffers.Put(buf)
	cb := &clientBody{c: c, r: body.rest}
	if _, err := io.CopyBuffer(w, cb, buf[:]); err != nil {
		return err
	}
	if chunked {
		if err := cw.Close(); err != nil {
			return err
		}
	}
	return u.bw.Flush()
}

// skipForward are request fields the proxy rewrites itself.
func skipForward(name []byte) bool {
	switch len(name) {
	case 4:
		return httpwire.EqualFold(name, "host")
	case 9:
		return httpwire.EqualFold(name, "forwarded") || httpwire.EqualFold(name, "x-real-ip")
	case 12:
		return httpwire.EqualFold(name, "x-request-id")
	case 15:
		return httpwire.EqualFold(name, "x-forwarded-for")
	case 16:
		return httpwire.EqualFold(name, "x-forwarded-host")
	case 17:
		return httpwire.EqualFold(name, "x-forwarded-proto")
	}
	return false
}

// skipResponse are response fields the proxy writes itself: the key's
// RateLimit fields and the request's X-Request-Id (the proxy's id is the
// one the client gets, the upstream's is not passed on beside it).
func skipResponse(name []byte) bool {
	switch len(name) {
	case 9:
		return httpwire.EqualFold(name, "ratelimit")
	case 12:
		return httpwire.EqualFold(name, "x-request-id")
	case 16:
		return httpwire.EqualFold(name, "ratelimit-policy")
	}
	return false
}

// copyResponse writes the upstream's response to the client: its head
// with hop-by-hop fields removed and the key's RateLimit fields, then its
// body, re-framed for the client. ok is false when the upstream's body
// broke off (the client connection must close: it cannot be told).
func (c *conn) copyResponse(u *upConn, keep bool) (ok, clientKeep bool) {
	ex := &c.ex
	r := &c.req
	resp := &u.resp
	kind := resp.Body(isHead(r.Method))
	b, chunkOut, keep := AppendResponseHead(c.bw.AvailableBuffer(), r, resp, &ex.adm, c.rid, keep)
	ex.status = resp.Status
	c.clientWrite(b)

	var src io.Reader
	var lr *httpwire.LengthReader
	switch kind {
	case httpwire.NoBody:
		return true, keep
	case httpwire.LengthBody:
		u.length = httpwire.LengthReader{R: u.br, N: resp.ContentLength}
		lr = &u.length
		src = lr
	case httpwire.ChunkedBody:
		u.chunk.Reset(u.br)
		src = &u.chunk
	default:
		src = u.br
	}
	buf := copyBuffers.Get().(*[32 << 10]byte)
	defer copyBuffers.Put(buf)
	for {
		n, err := src.Read(buf[:])
		if n > 0 {
			if chunkOut {
				c.clientWrite(httpwire.AppendChunkHeader(c.hdr[:0], n))
			}
			c.clientWrite(buf[:n])
			if chunkOut {
				c.clientWrite(crlf)
			}
			if !ex.failed {
				// What the client got; after a failed write the rest
				// is only read from the upstream.
				ex.sent += int64(n)
			}
			if u.br.Buffered() == 0 && (lr == nil || lr.N > 0) {
				// The next read would wait on the upstream: send what
				// the client has so far.
				c.clientFlush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if kind == httpwire.CloseBody && !isTimeout(err) {
				break // a close-delimited body ends at any close
			}
			return false, false
		}
	}
	if chunkOut {
		c.clientWrite(httpwire.LastChunk)
	}
	return true, keep
}

var crlf = []byte("\r\n")

func appendLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// upstreamFailed answers for an upstream that could not be reached, did
// not answer in time, or answered with a malformed message: 502, or 504 for
// a timeout, with a log line saying which upstream and why.
func (c *conn) upstreamFailed(cfg *config.Config, err error) admit.Outcome {
	ex := &c.ex
	s := c.s
	if !ex.upStart.IsZero() && ex.upEnd.IsZero() {
		ex.upEnd = s.clock.Now()
	}
	status, body, _ := UpstreamFailure(err, isTimeout(err))
	r := &c.req
	s.logger.Error("upstream request failed", "upstream", cfg.Upstream, "status", status,
		"method", string(r.Method), "path", string(r.Path()), "key", ex.adm.Key, "err", err)
	c.writeAnswer(status, JSONFields, body, false)
	return admit.UpstreamError
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
