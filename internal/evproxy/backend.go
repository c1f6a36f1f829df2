//go:build linux

package evproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/fastproxy"
	"github.com/headroom-dev/headroom/internal/httpwire"
)

// backend is a connection to the upstream.
type backend struct {
	fd                 int
	connected          bool
	readable, writable bool
	// hup: the upstream's FIN, a reset or an error came with an event: a
	// short read does not mean drained (no edge comes after it).
	hup       bool
	reused    bool // it answered a request before this one
	gotBytes  bool // a byte of this request's answer came
	br        *bufio.Reader
	resp      httpwire.Response
	c         *client
	head      bool // the answer's head is in
	kind      httpwire.BodyKind
	remain    int64 // LengthBody: bytes still to come
	chunks    httpwire.ChunkScanner
	stash     []byte // a chunk line's start, read and not yet decoded
	idleSince time.Time
}

func (b *backend) headDone() bool { return b != nil && b.head }

// backendSrc is the upstream's bytes as the bufio.Reader reads them.
type backendSrc struct{ b *backend }

func (s backendSrc) Read(p []byte) (int, error) {
	b := s.b
	if !b.readable {
		return 0, errNeedMore
	}
	n, err := rawRead(b.fd, p)
	if n > 0 {
		b.gotBytes = true
		if n < len(p) && !b.hup {
			b.readable = false // drained: the next data brings an edge
		}
		return n, nil
	}
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		b.readable = false
		return 0, errNeedMore
	case err == nil:
		return 0, io.EOF
	}
	return 0, errno(err)
}

// send gives c's request to an idle upstream connection or a new one.
func (l *loop) send(c *client, now time.Time) {
	var b *backend
	idleFor := c.adm.Config().Timeouts.Idle.D()
	for len(l.idle) > 0 {
		b = l.idle[len(l.idle)-1]
		l.idle = l.idle[:len(l.idle)-1]
		if idleFor > 0 && now.Sub(b.idleSince) > idleFor {
			l.closeBackend(b)
			b = nil
			continue
		}
		break
	}
	if b == nil {
		var err error
		if b, err = l.dial(); err != nil {
			l.upstreamFailed(c, err)
			return
		}
	}
	b.c, c.b = c, b
	b.head, b.gotBytes, b.remain = false, false, 0
	c.reqOff = 0
	l.driveBackend(b)
}

func (l *loop) dial() (*backend, error) {
	up := l.upAddr
	family := unix.AF_INET
	if _, ok := up.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	b := &backend{fd: fd}
	b.br = bufio.NewReaderSize(backendSrc{b}, httpwire.DefaultMaxHeadBytes)
	switch err := unix.Connect(fd, up); err {
	case nil:
		b.connected, b.writable = true, true
	case unix.EINPROGRESS:
	default:
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	if err := l.add(fd, events, obj{b: b}); err != nil {
		l.forget(fd)
		return nil, err
	}
	return b, nil
}

func (l *loop) backendEvent(b *backend, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		b.readable = true
		if ev&(unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			b.hup = true
		}
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		b.writable = true
	}
	if b.c == nil {
		// Idle: closed by the upstream (or sent what nobody asked for),
		// unless the event is older than the read that took the last
		// answer's end, in the same batch.
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 || (ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 && !quiet(b.fd)) {
			l.unpool(b)
			l.closeBackend(b)
		}
		b.readable = false
		return
	}
	l.driveBackend(b)
}

// quiet says whether fd has nothing to read and is not closed.
func quiet(fd int) bool {
	var p [1]byte
	_, _, err := unix.Recvfrom(fd, p[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err == unix.EAGAIN
}

func (l *loop) unpool(b *backend) {
	for i, o := range l.idle {
		if o == b {
			last := len(l.idle) - 1
			l.idle[i] = l.idle[last]
			l.idle = l.idle[:last]
			return
		}
	}
}

func (l *loop) closeBackend(b *backend) {
	if b.fd >= 0 {
		l.forget(b.fd)
		b.fd = -1
	}
	b.c = nil
}

// driveBackend connects, writes the request, and reads the answer while
// the client has taken what was read before.
func (l *loop) driveBackend(b *backend) {
	c := b.c
	if !b.connected {
		if !b.writable {
			return
		}
		if e, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			if err == nil {
				err = unix.Errno(e)
			}
			l.backendFailed(b, &net.OpError{Op: "dial", Net: "tcp", Err: err})
			l.resume(c)
			return
		}
		b.connected = true
	}
	for c.reqOff < len(c.reqHead) && b.writable {
		n, err := rawWrite(b.fd, c.reqHead[c.reqOff:])
		if n > 0 {
			c.reqOff += n
			if c.reqOff < len(c.reqHead) {
				b.writable = false
			}
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			b.writable = false
			break
		}
		l.backendFailed(b, &net.OpError{Op: "write", Net: "tcp", Err: err})
		l.resume(c)
		return
	}
	for b.c == c && !c.closed && (c.outOff == len(c.out) || c.failed) {
		var more bool
		if !b.head {
			more = l.readHead(b)
			if more && b.c == c && b.br.Buffered() > 0 {
				// The body's first bytes came in the head's read: they
				// go out in the head's write. A write of its own costs
				// the client a wake-up and a segment (about 2 µs of
				// the loop's CPU per request on loopback).
				more = l.readBody(b)
			}
		} else {
			more = l.readBody(b)
		}
		if b.c != c {
			// The answer ended (or failed): write it, and take the next
			// request.
			if !c.closed {
				l.driveClient(c)
			}
			return
		}
		if !more || !l.flushClient(c) {
			return
		}
	}
}

// readHead reads the upstream's answer's head; false to wait (or when it
// failed and was handled).
func (l *loop) readHead(b *backend) bool {
	c := b.c
	for {
		err := httpwire.ReadResponse(b.br, &b.resp, httpwire.DefaultMaxHeadBytes)
		if err == errNeedMore {
			return false
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			l.backendFailed(b, err)
			return false
		}
		if b.resp.Status == 101 {
			l.backendFailed(b, &httpwire.Error{Status: 502, Reason: "101 Switching Protocols without an Upgrade request"})
			return false
		}
		if b.resp.Status >= 200 {
			break
		}
	}
	b.head = true
	resp := &b.resp
	c.upStatus = resp.Status
	var real time.Time
	c.respAt, real = l.s.stamp()
	c.deadline = c.bodyDL
	_ = real
	l.settleHup(c, c.respAt)
	b.kind = resp.Body(string(c.req.Method) == "HEAD")
	c.status = resp.Status
	var keep bool
	if !c.failed {
		c.out, c.chunkOut, keep = fastproxy.AppendResponseHead(c.out, &c.req, resp, &c.adm, c.rid, c.keep)
	} else {
		_, c.chunkOut, keep = fastproxy.AppendResponseHead(l.scratch[:0], &c.req, resp, &c.adm, c.rid, c.keep)
	}
	c.keep = keep
	switch b.kind {
	case httpwire.NoBody:
		l.answered(b)
		return false
	case httpwire.LengthBody:
		b.remain = resp.ContentLength
		if b.remain == 0 {
			l.answered(b)
			return false
		}
	case httpwire.ChunkedBody:
		b.chunks.Reset()
	}
	return true
}

// settleHup takes the client for gone at a FIN that came while its
// request was upstream (hupAt), as fastproxy does once it watches a
// client whose upstream is slow: at the upstream's start plus WatchAfter,
// or at the FIN if later, when that is no later than at (the answer's
// head, or the upstream's failure). Its answer is still written (a
// half-closed client may still read it), the connection closed after it,
// and the request logged 499 from then (Finish). A client that
// half-closes after its request and is answered quickly is not gone.
func (l *loop) settleHup(c *client, at time.Time) {
	if c.hupAt.IsZero() || c.failed {
		return
	}
	if g := maxTime(c.hupAt, c.upStart.Add(fastproxy.WatchAfter)); !g.After(at) {
		if c.goneAt.IsZero() {
			c.goneAt = g
		}
		c.keep = false
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// readBody moves what the upstream has of the body to the client's
// output; false to wait (the upstream has nothing now, or the answer
// ended or failed).
func (l *loop) readBody(b *backend) bool {
	c := b.c
	// What the head's reads buffered first, then straight from the
	// socket.
	var p []byte
	var err error
	if n := b.br.Buffered(); n > 0 {
		p, _ = b.br.Peek(n)
	} else {
		p, err = l.readUp(b)
		if err == errNeedMore {
			return false
		}
	}
	switch b.kind {
	case httpwire.LengthBody:
		if err != nil {
			l.brokenOff(b, err)
			return false
		}
		k := min(int64(len(p)), b.remain)
		l.body(c, p[:k])
		b.remain -= k
		b.consume(int(k), p)
		if int64(len(p)) > k {
			// Bytes past the answer's end: the upstream's framing is
			// off; the connection is not kept.
			b.resp.KeepAlive = false
		}
		if b.remain == 0 {
			l.answered(b)
			return false
		}
	case httpwire.ChunkedBody:
		if err != nil {
			l.brokenOff(b, err)
			return false
		}
		for len(p) > 0 {
			n, payload, done, serr := b.chunks.Next(p)
			if serr != nil {
				l.brokenOff(b, serr)
				return false
			}
			l.body(c, payload)
			b.consume(n, p)
			p = p[n:]
			if done {
				if len(p) > 0 {
					b.resp.KeepAlive = false
				}
				l.answered(b)
				return false
			}
			if n == 0 {
				// Part of a size line: keep it and read on.
				if !b.keepPartial(p) {
					l.brokenOff(b, errors.New("chunk line too long"))
					return false
				}
				break
			}
		}
	default: // CloseBody: everything to the close
		if err == io.EOF {
			b.resp.KeepAlive = false
			l.answered(b)
			return false
		}
		if err != nil {
			l.brokenOff(b, err)
			return false
		}
		l.body(c, p)
		b.consume(len(p), p)
	}
	return true
}

// consume drops n bytes of p, which came from b.br or from scratch.
func (b *backend) consume(n int, p []byte) {
	if b.br.Buffered() > 0 {
		b.br.Discard(n)
	}
}

// keepPartial keeps the rest of a read that ended inside a chunk's size
// line for the next one (in b.br: the scratch buffer is reused).
func (b *backend) keepPartial(p []byte) bool {
	b.stash = append(b.stash[:0], p...)
	if n := b.br.Buffered(); n > 0 {
		b.br.Discard(n) // p was the buffer's rest: the stash has it now
	}
	return len(b.stash) <= 4096
}

// readUp reads the upstream straight into the loop's scratch buffer.
func (l *loop) readUp(b *backend) ([]byte, error) {
	buf := l.scratch
	off := 0
	if len(b.stash) > 0 {
		off = copy(buf, b.stash)
		b.stash = b.stash[:0]
	}
	if !b.readable {
		if off > 0 {
			b.stash = append(b.stash, buf[:off]...)
		}
		return nil, errNeedMore
	}
	if b.kind == httpwire.LengthBody && b.remain < int64(len(buf)-off) {
		// Read no further than the answer's end where it can be said:
		// what follows belongs to nothing.
		buf = buf[:off+int(b.remain)+1]
	}
	n, err := rawRead(b.fd, buf[off:])
	switch {
	case n > 0:
		if n < len(buf)-off && !b.hup {
			b.readable = false
		}
		return buf[:off+n], nil
	case err == unix.EAGAIN || err == unix.EINTR:
		b.readable = false
		if off > 0 {
			b.stash = append(b.stash, buf[:off]...)
		}
		return nil, errNeedMore
	case err == nil:
		return nil, io.EOF
	}
	return nil, errno(err)
}

// body appends body bytes to the client's output, chunk-framed when the
// client gets a chunked body.
func (l *loop) body(c *client, p []byte) {
	if len(p) == 0 || c.failed {
		return
	}
	if c.chunkOut {
		var hdr [20]byte
		c.out = append(c.out, httpwire.AppendChunkHeader(hdr[:0], len(p))...)
		c.out = append(c.out, p...)
		c.out = append(c.out, "\r\n"...)
	} else {
		c.out = append(c.out, p...)
	}
	c.sent += int64(len(p))
}

// answered ends a request whose answer came whole.
func (l *loop) answered(b *backend) {
	c := b.c
	c.upEnd, _ = l.s.stamp()
	if c.chunkOut && !c.failed {
		c.out = append(c.out, httpwire.LastChunk...)
	}
	b.c, c.b = nil, nil
	if b.resp.KeepAlive && !b.hup && b.kind != httpwire.CloseBody && b.br.Buffered() == 0 && len(b.stash) == 0 && len(l.idle) < maxIdle && !l.stopped {
		b.reused = true
		b.idleSince = c.upEnd
		l.idle = append(l.idle, b)
	} else {
		l.closeBackend(b)
	}
	o := c.outcome
	if c.failed {
		o = admit.ClientAbort
	}
	l.endRequest(c, o)
}

// endRequest finishes the request and readies the client for the next.
func (l *loop) endRequest(c *client, o admit.Outcome) {
	c.busy = false
	l.finish(c, o)
	if c.failed || !c.keep {
		c.closeAfter = true
	}
	c.since = time.Now()
	c.headAt = time.Time{}
	if c.failed {
		l.closeClient(c)
	}
}

// brokenOff ends a request whose upstream answer broke off after its
// head: the client got a status line and part of a body, then a cut
// connection, logged as the upstream failure it was (issue 17).
func (l *loop) brokenOff(b *backend, err error) {
	c := b.c
	c.upEnd, _ = l.s.stamp()
	l.closeBackend(b)
	c.b = nil
	l.s.logger.Error("upstream response broken off", "upstream", l.s.upstream, "status", c.upStatus,
		"method", string(c.req.Method), "path", string(c.req.Path()), "key", c.adm.Key)
	c.upStatus, c.status = http.StatusBadGateway, http.StatusBadGateway
	c.keep = false
	l.endRequest(c, admit.UpstreamError)
}

// backendFailed handles an upstream connection that failed or closed
// before the answer's end: a kept-alive one that said nothing is retried
// once on a new connection, for the requests fastproxy retries; otherwise
// 502 (504 for a timeout), or the client cut off if part of the answer
// went.
func (l *loop) backendFailed(b *backend, err error) {
	c := b.c
	if b.head {
		l.brokenOff(b, err)
		return
	}
	noBytes := !b.gotBytes
	l.closeBackend(b)
	c.b = nil
	if noBytes && b.reused && !c.retried && fastproxy.Idempotent(c.req.Method) && !isTimeout(err) && !l.forceClose {
		c.retried = true
		_, now := l.s.stamp()
		l.send(c, now)
		return
	}
	l.upstreamFailed(c, err)
}

// upstreamFailed answers 502 (504 for a timeout) for a request whose
// upstream could not be reached or did not answer.
func (l *loop) upstreamFailed(c *client, err error) {
	if c.upEnd.IsZero() {
		c.upEnd, _ = l.s.stamp()
	}
	l.settleHup(c, c.upEnd)
	status, body, _ := fastproxy.UpstreamFailure(err, isTimeout(err))
	l.s.logger.Error("upstream request failed", "upstream", c.adm.Config().Upstream, "status", status,
		"method", string(c.req.Method), "path", string(c.req.Path()), "key", c.adm.Key, "err", err)
	c.status = status
	c.keep = false
	if !c.failed {
		c.out = fastproxy.AppendAnswer(c.out, &c.req, status, fastproxy.JSONFields, body, c.rid, false)
		c.sent = int64(len(body))
	}
	l.endRequest(c, admit.UpstreamError)
}

// resume writes what a request that ended left for its client and takes
// the next one, unless the request goes on (a retry).
func (l *loop) resume(c *client) {
	if !c.closed && !c.busy {
		l.driveClient(c)
	}
}
