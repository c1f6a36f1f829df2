package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const (
	headMax  = 8 << 10  // a request or response head, at most
	readSize = 16 << 10 // one read of an answer
	logSize  = 64 << 10 // the access log's buffer per loop (nginx's buffer=64k)
	events   = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
)

// proxy is the set of loops serving one address.
type proxy struct {
	addr string     // where the listeners are bound (the port resolved)
	errs chan error // a loop that stopped
}

// start binds loops listeners to listen (the first one resolves port 0,
// the others share its port through SO_REUSEPORT) and starts the loops.
func start(listen, upstream string, loops int, accessLog string) (*proxy, error) {
	if loops < 1 {
		return nil, errors.New("-loops must be at least 1")
	}
	up, err := sockaddr(upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", upstream, err)
	}
	var logf *os.File
	if accessLog != "" {
		if logf, err = os.OpenFile(accessLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			return nil, err
		}
	}
	addr, err := sockaddr(listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", listen, err)
	}
	p := &proxy{errs: make(chan error, loops)}
	ls := make([]*loop, loops)
	for i := range ls {
		l := &loop{up: up, logf: logf, lfd: -1, epfd: -1}
		if logf != nil {
			l.log = make([]byte, 0, logSize)
		}
		if err := l.init(addr); err != nil {
			for _, o := range ls[:i] {
				o.close()
			}
			l.close()
			return nil, err
		}
		if i == 0 {
			sa, err := unix.Getsockname(l.lfd)
			if err != nil {
				l.close()
				return nil, err
			}
			addr = sa
			p.addr = sockaddrString(sa)
		}
		ls[i] = l
	}
	for _, l := range ls {
		go func() { p.errs <- l.run() }()
	}
	return p, nil
}

func sockaddr(hostport string) (unix.Sockaddr, error) {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return nil, err
	}
	ip := a.AddrPort().Addr().Unmap()
	if ip.Is4() {
		return &unix.SockaddrInet4{Port: a.Port, Addr: ip.As4()}, nil
	}
	return &unix.SockaddrInet6{Port: a.Port, Addr: ip.As16()}, nil
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return "?"
}

func family(sa unix.Sockaddr) int {
	if _, ok := sa.(*unix.SockaddrInet4); ok {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// loop is one event loop: an epoll descriptor, a listener, the client and
// upstream connections it accepted or opened, all used by its thread only.
type loop struct {
	epfd, lfd int
	up        unix.Sockaddr
	objs      []obj      // by descriptor
	idle      []*backend // keep-alive upstream connections, last in first out
	events    [128]unix.EpollEvent
	gen       int32 // tells a stale event (its descriptor since reused) from a live one

	logf     *os.File // nil: no access log
	log      []byte   // whole lines not yet written
	now      []byte   // [02/Jan/2006:15:04:05 -0700], once a second
	nextTick time.Time
}

// obj is what a descriptor of the loop is: a client or an upstream
// connection (neither: the listener or nothing).
type obj struct {
	gen int32
	c   *client
	b   *backend
}

func (l *loop) init(addr unix.Sockaddr) error {
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if l.lfd, err = unix.Socket(family(addr), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return err
	}
	for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(l.lfd, unix.SOL_SOCKET, o, 1); err != nil {
			return err
		}
	}
	if err := unix.Bind(l.lfd, addr); err != nil {
		return fmt.Errorf("bind %s: %w", sockaddrString(addr), err)
	}
	if err := unix.Listen(l.lfd, 4096); err != nil {
		return err
	}
	return l.add(l.lfd, unix.EPOLLIN|unix.EPOLLET, obj{})
}

func (l *loop) close() {
	if l.lfd >= 0 {
		unix.Close(l.lfd)
	}
	if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
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
	timeout := -1
	if l.logf != nil {
		timeout = 1000
		l.tick(time.Now())
	}
	for {
		n, err := unix.EpollWait(l.epfd, l.events[:], timeout)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if l.logf != nil {
			if now := time.Now(); !now.Before(l.nextTick) {
				l.tick(now)
				l.flushLog()
			}
		}
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
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
	}
}

func (l *loop) tick(now time.Time) {
	l.now = now.AppendFormat(l.now[:0], "[02/Jan/2006:15:04:05 -0700]")
	l.nextTick = now.Truncate(time.Second).Add(time.Second)
}

func (l *loop) flushLog() {
	if len(l.log) > 0 {
		_, _ = l.logf.Write(l.log)
		l.log = l.log[:0]
	}
}

func (l *loop) accept() {
	for {
		fd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: all taken; anything else: try again on the next event
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &client{fd: fd, in: make([]byte, headMax), out: make([]byte, 0, readSize+headMax)}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			c.ip = netip.AddrFrom4(a.Addr).AppendTo(nil)
		case *unix.SockaddrInet6:
			c.ip = netip.AddrFrom16(a.Addr).Unmap().AppendTo(nil)
		default:
			c.ip = []byte("-")
		}
		if err := l.add(fd, events, obj{c: c}); err != nil {
			l.forget(fd)
		}
	}
}

// client is a connection from a client.
type client struct {
	fd                 int
	ip                 []byte // its address's text, for X-Forwarded-For and the log
	readable, writable bool
	rdhup              bool // the peer's FIN is in: a short read does not mean drained
	in                 []byte
	off, n             int    // in[off:n] is what was read and not yet handled
	out                []byte // the answer not yet written
	outOff             int
	req                []byte // the head sent upstream
	reqOff             int    // how much of it was written
	b                  *backend
	retried            bool
	closed             bool

	// The request in flight.
	busy       bool
	headLen    int
	closeAfter bool
	head       bool // HEAD: the answer has no body
	method     span
	uri        span
	proto      span
	referer    span
	ua         span
	status     int
	sent       int64 // body bytes
}

type span struct{ from, to int }

func (c *client) bytes(s span) []byte { return c.in[s.from:s.to] }

// backend is a connection to the upstream.
type backend struct {
	fd                 int
	connected          bool
	readable, writable bool
	reused             bool // it answered a request before this one
	in                 []byte
	n                  int // in[:n] holds a head not complete yet
	c                  *client
	headDone           bool
	remain             int64 // body bytes still to come
	keep               bool  // may be pooled when the answer is done
}

func (l *loop) clientEvent(c *client, ev uint32) {
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		l.closeClient(c)
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		c.readable = true
		if ev&unix.EPOLLRDHUP != 0 {
			c.rdhup = true
		}
	}
	if ev&unix.EPOLLOUT != 0 {
		c.writable = true
	}
	l.driveClient(c)
}

// driveClient writes what is pending to the client and, when no request
// is in flight, reads and starts the next one.
func (l *loop) driveClient(c *client) {
	if !l.flushClient(c) || c.outOff < len(c.out) {
		return
	}
	if c.busy {
		if c.b != nil && c.b.readable {
			l.driveBackend(c.b) // it waited for the client to take the answer
		}
		return
	}
	if c.closeAfter {
		l.closeClient(c)
		return
	}
	for {
		if c.off < c.n {
			if done := l.startRequest(c); done || c.closed {
				return
			}
		}
		if !c.readable {
			return
		}
		if c.off > 0 {
			c.n = copy(c.in, c.in[c.off:c.n])
			c.off = 0
		}
		if c.n == len(c.in) {
			l.refuse(c, "431 Request Header Fields Too Large")
			return
		}
		n, err := unix.Read(c.fd, c.in[c.n:])
		if n > 0 {
			if n < len(c.in)-c.n && !c.rdhup {
				c.readable = false // drained: the next data brings an edge
			}
			c.n += n
			continue
		}
		if err == unix.EAGAIN {
			c.readable = false
			return
		}
		l.closeClient(c) // EOF or an error
		return
	}
}

// flushClient writes c.out; false when the client is gone.
func (l *loop) flushClient(c *client) bool {
	if c.closed {
		return false
	}
	for c.outOff < len(c.out) && c.writable {
		n, err := unix.Write(c.fd, c.out[c.outOff:])
		if n > 0 {
			c.outOff += n
			if c.outOff < len(c.out) {
				c.writable = false // the send buffer is full: wait for its edge
			}
			continue
		}
		if err == unix.EAGAIN {
			c.writable = false
			break
		}
		l.closeClient(c)
		return false
	}
	if c.outOff == len(c.out) {
		c.out, c.outOff = c.out[:0], 0
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
}

// refuse answers status and closes the connection once it is written.
func (l *loop) refuse(c *client, status string) {
	c.out = append(c.out, "HTTP/1.1 "...)
	c.out = append(c.out, status...)
	c.out = append(c.out, "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"...)
	c.closeAfter = true
	c.busy = false
	if c.b != nil {
		l.closeBackend(c.b)
		c.b = nil
	}
	if l.flushClient(c) && c.outOff == len(c.out) {
		l.closeClient(c)
	}
}

var crlf2 = []byte("\r\n\r\n")

// startRequest parses the head in c.in[c.off:c.n] and sends it upstream;
// false when the head is not all in yet.
func (l *loop) startRequest(c *client) bool {
	if c.off > 0 {
		c.n = copy(c.in, c.in[c.off:c.n])
		c.off = 0
	}
	end := indexBytes(c.in[:c.n], crlf2)
	if end < 0 {
		return false
	}
	c.headLen = end + 4
	c.head, c.closeAfter, c.referer, c.ua = false, false, span{}, span{}
	c.status, c.sent, c.retried = 0, 0, false
	h := c.in[:end+2] // each line with its CRLF
	// The request line: method SP target SP version.
	le := indexCRLF(h, 0)
	sp1 := indexByteFrom(h[:le], ' ', 0)
	sp2 := indexByteFrom(h[:le], ' ', sp1+1)
	if sp1 <= 0 || sp2 < 0 || sp2 == sp1+1 || indexByteFrom(h[:le], ' ', sp2+1) >= 0 {
		l.refuse(c, "400 Bad Request")
		return true
	}
	c.method, c.uri, c.proto = span{0, sp1}, span{sp1 + 1, sp2}, span{sp2 + 1, le}
	switch string(c.bytes(c.proto)) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		c.closeAfter = true // one request per connection for 1.0 (a floor)
	default:
		l.refuse(c, "400 Bad Request")
		return true
	}
	c.head = string(c.bytes(c.method)) == "HEAD"
	// The fields, twice: first what Connection names and the framing,
	// then the copy upstream without the hop-by-hop ones.
	var nominated [8]span
	nn := 0
	for i := le + 2; i < len(h); {
		e := indexCRLF(h, i)
		name, value, ok := field(h[i:e])
		if !ok {
			l.refuse(c, "400 Bad Request")
			return true
		}
		switch {
		case equalFold(name, "content-length"):
			if string(value) != "0" {
				l.refuse(c, "400 Bad Request") // a floor: no request bodies
				return true
			}
		case equalFold(name, "transfer-encoding"):
			l.refuse(c, "400 Bad Request")
			return true
		case equalFold(name, "connection"):
			forTokens(value, func(t []byte) {
				if equalFold(t, "close") {
					c.closeAfter = true
				} else if nn < len(nominated) {
					nominated[nn] = spanOf(c.in, t)
					nn++
				}
			})
		case equalFold(name, "referer"):
			c.referer = spanOf(c.in, value)
		case equalFold(name, "user-agent"):
			c.ua = spanOf(c.in, value)
		}
		i = e + 2
	}
	r := append(c.req[:0], c.bytes(c.method)...)
	r = append(r, ' ')
	r = append(r, c.bytes(c.uri)...)
	r = append(r, " HTTP/1.1\r\n"...)
	var xff []byte
	for i := le + 2; i < len(h); {
		e := indexCRLF(h, i)
		name, value, _ := field(h[i:e])
		switch {
		case hopByHop(name) || isNominated(c, name, nominated[:nn]):
		case equalFold(name, "x-forwarded-for"):
			xff = append(append(xff, value...), ", "...)
		default:
			r = append(r, h[i:e+2]...)
		}
		i = e + 2
	}
	r = append(r, "X-Forwarded-For: "...)
	r = append(r, xff...)
	r = append(r, c.ip...)
	r = append(r, "\r\n\r\n"...)
	c.req, c.reqOff, c.busy = r, 0, true
	l.send(c)
	return true
}

func isNominated(c *client, name []byte, nominated []span) bool {
	for _, s := range nominated {
		if equalFoldBytes(name, c.bytes(s)) {
			return true
		}
	}
	return false
}

// send gives c's request to an idle upstream connection or a new one.
func (l *loop) send(c *client) {
	var b *backend
	if n := len(l.idle); n > 0 {
		b = l.idle[n-1]
		l.idle = l.idle[:n-1]
	} else {
		var err error
		if b, err = l.dial(); err != nil {
			l.badGateway(c)
			return
		}
	}
	b.c, c.b = c, b
	b.headDone, b.n, b.remain, b.keep = false, 0, 0, true
	l.driveBackend(b)
}

func (l *loop) dial() (*backend, error) {
	fd, err := unix.Socket(family(l.up), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	b := &backend{fd: fd, in: make([]byte, readSize)}
	switch err := unix.Connect(fd, l.up); err {
	case nil:
		b.connected, b.writable = true, true
	case unix.EINPROGRESS:
	default:
		unix.Close(fd)
		return nil, err
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
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		b.writable = true
	}
	if b.c == nil {
		// Idle: closed by the upstream (or sent what nobody asked for)
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

// driveBackend connects, writes the request, and reads the answer while
// the client has taken what was read before.
func (l *loop) driveBackend(b *backend) {
	c := b.c
	if !b.connected {
		if !b.writable {
			return
		}
		if e, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			l.backendFailed(b)
			return
		}
		b.connected = true
	}
	for c.reqOff < len(c.req) && b.writable {
		n, err := unix.Write(b.fd, c.req[c.reqOff:])
		if n > 0 {
			c.reqOff += n
			if c.reqOff < len(c.req) {
				b.writable = false
			}
			continue
		}
		if err == unix.EAGAIN {
			b.writable = false
			break
		}
		l.backendFailed(b)
		return
	}
	for b.readable && c.outOff == len(c.out) && b.c == c {
		n, err := unix.Read(b.fd, b.in[b.n:])
		if n <= 0 {
			if err == unix.EAGAIN {
				b.readable = false
				return
			}
			l.backendFailed(b) // EOF or an error before the answer's end
			return
		}
		if b.n+n < len(b.in) {
			b.readable = false // drained (a FIN behind it comes as its own edge)
		}
		l.answer(b, b.in[:b.n+n])
		if !c.closed && l.flushClient(c) && !c.busy && c.outOff == len(c.out) {
			l.driveClient(c) // the next request, or the close
			return
		}
	}
}

// answer takes bytes of the upstream's answer: the head (once all in) is
// checked and rewritten into the client's output, the body copied as is.
func (l *loop) answer(b *backend, p []byte) {
	c := b.c
	if !b.headDone {
		end := indexBytes(p, crlf2)
		if end < 0 {
			if len(p) >= headMax {
				l.badGateway(c)
				return
			}
			b.n = len(p) // wait for the rest of the head
			return
		}
		b.n = 0
		if !l.answerHead(b, p[:end+2]) {
			l.badGateway(c)
			return
		}
		p = p[end+4:]
	}
	k := int64(len(p))
	if k > b.remain {
		k, b.keep = b.remain, false // bytes past the answer's end: framing is off
	}
	c.out = append(c.out, p[:k]...)
	b.remain -= k
	c.sent += k
	if b.remain == 0 {
		l.finish(c, b)
	}
}

// answerHead checks the status line and framing of the head h (its lines
// with their CRLFs) and appends it to c.out without hop-by-hop fields.
func (l *loop) answerHead(b *backend, h []byte) bool {
	c := b.c
	le := indexCRLF(h, 0)
	line := h[:le]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 200 {
		return false // 1xx: not for a floor that sends no Expect or Upgrade
	}
	if line[7] == '0' {
		b.keep = false
	}
	length := int64(-1)
	var nominated [8][]byte
	nn := 0
	for i := le + 2; i < len(h); {
		e := indexCRLF(h, i)
		name, value, ok := field(h[i:e])
		if !ok {
			return false
		}
		switch {
		case equalFold(name, "content-length"):
			v, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || v < 0 || (length >= 0 && v != length) {
				return false
			}
			length = v
		case equalFold(name, "transfer-encoding"):
			return false // a floor: Content-Length only
		case equalFold(name, "connection"):
			forTokens(value, func(t []byte) {
				if equalFold(t, "close") {
					b.keep = false
				} else if nn < len(nominated) {
					nominated[nn] = t
					nn++
				}
			})
		}
		i = e + 2
	}
	switch {
	case c.head || status == 204 || status == 304:
		b.remain = 0
	case length < 0:
		return false // a floor: no answers delimited by the close
	default:
		b.remain = length
	}
	c.status = status
	c.out = append(c.out, line...)
	c.out = append(c.out, "\r\n"...)
outer:
	for i := le + 2; i < len(h); {
		e := indexCRLF(h, i)
		name, _, _ := field(h[i:e])
		line := h[i : e+2]
		i = e + 2
		if hopByHop(name) {
			continue
		}
		for _, t := range nominated[:nn] {
			if equalFoldBytes(name, t) {
				continue outer
			}
		}
		c.out = append(c.out, line...)
	}
	if c.closeAfter {
		c.out = append(c.out, "Connection: close\r\n"...)
	}
	c.out = append(c.out, "\r\n"...)
	b.headDone = true
	return true
}

// finish ends the request in flight: the log line, the upstream connection
// back to the pool.
func (l *loop) finish(c *client, b *backend) {
	l.logLine(c)
	c.busy, c.b, b.c = false, nil, nil
	c.off = c.headLen
	if b.keep && b.n == 0 {
		b.reused = true
		l.idle = append(l.idle, b)
	} else {
		l.closeBackend(b)
	}
}

// backendFailed handles an upstream connection that failed or closed
// before the answer's end: a kept-alive one that said nothing is retried
// once on a new connection (the request has no body and is sent again
// whole); otherwise 502, or the client closed if part of the answer went.
func (l *loop) backendFailed(b *backend) {
	c := b.c
	l.closeBackend(b)
	c.b = nil
	switch {
	case !b.headDone && b.n == 0 && b.reused && !c.retried:
		c.retried, c.reqOff = true, 0
		l.send(c)
	case !b.headDone:
		l.badGateway(c)
	default:
		l.closeClient(c)
	}
}

func (l *loop) badGateway(c *client) {
	if b := c.b; b != nil {
		c.b = nil
		l.closeBackend(b)
	}
	c.out = append(c.out[:0], "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"...)
	c.outOff = 0
	c.status, c.sent = 502, 0
	l.logLine(c)
	c.busy, c.closeAfter = false, true
	if l.flushClient(c) && c.outOff == len(c.out) {
		l.closeClient(c)
	}
}

func (l *loop) closeBackend(b *backend) {
	if b.fd >= 0 {
		l.forget(b.fd)
		b.fd = -1
	}
	b.c = nil
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

// logLine appends nginx's combined format for the request in flight.
func (l *loop) logLine(c *client) {
	if l.logf == nil {
		return
	}
	if len(l.log) > logSize-1024 {
		l.flushLog()
	}
	b := append(l.log, c.ip...)
	b = append(b, " - - "...)
	b = append(b, l.now...)
	b = append(b, " \""...)
	b = append(b, c.bytes(c.method)...)
	b = append(b, ' ')
	b = append(b, c.bytes(c.uri)...)
	b = append(b, ' ')
	b = append(b, c.bytes(c.proto)...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(c.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, c.sent, 10)
	b = append(b, " \""...)
	b = appendOrDash(b, c.bytes(c.referer))
	b = append(b, "\" \""...)
	b = appendOrDash(b, c.bytes(c.ua))
	l.log = append(b, "\"\n"...)
}

func appendOrDash(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return append(b, v...)
}
