// Package connlimit caps the connections a listener holds open: in all, and
// per client address. Issue 17: nothing limited a client's connections to
// headroom proxy, so one address could hold as many as the file descriptor
// limit allows, and every other client then waited for accept. nginx's
// limit_conn does this job in front of an application; this is the proxy's.
//
// A connection over a cap is answered "503 Service Unavailable" with
// Connection: close and Retry-After, then closed, before any of its bytes
// are read: the client learns why, and costs the proxy no request.
package connlimit

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Reason names the cap a refused connection hit.
type Reason string

const (
	Total     Reason = "total"      // Options.Max
	PerClient Reason = "per_client" // Options.PerClient
)

// Options configure a Listener. The zero value caps nothing.
type Options struct {
	// Max is the most connections open at once; 0 means no cap.
	Max int
	// PerClient is the most connections open at once from one client
	// address; 0 means no cap.
	PerClient int
	// Exempt reports addresses the per-client cap does not apply to: the
	// trusted proxies in front, whose connections carry many clients. Nil:
	// none.
	Exempt func(netip.Addr) bool
	// Refused, if set, is called for every refused connection with the
	// cap it hit and the connections open (in all, or from that client).
	Refused func(r Reason, client netip.Addr, open int)
	// RetryAfter is the Retry-After of the 503, in seconds; 0 means 1.
	RetryAfter int
}

// Listener is a net.Listener whose Accept keeps within Options' caps.
type Listener struct {
	net.Listener
	o    Options
	open atomic.Int64

	mu       sync.Mutex
	byClient map[netip.Addr]int
	refusal  []byte
}

// New wraps l.
func New(l net.Listener, o Options) *Listener {
	if o.RetryAfter <= 0 {
		o.RetryAfter = 1
	}
	return &Listener{Listener: l, o: o, byClient: map[netip.Addr]int{},
		refusal: []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n" +
			"Retry-After: " + strconv.Itoa(o.RetryAfter) + "\r\nContent-Length: 27\r\n\r\ntoo many connections open\r\n")}
}

// Open returns the connections open now.
func (l *Listener) Open() int64 { return l.open.Load() }

// Accept returns the next connection within the caps; those over a cap
// are answered 503 and closed.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := peer(c)
		t, r, open := l.take(client)
		if r != "" {
			l.refuse(c, r, client, open)
			continue
		}
		return &conn{Conn: c, t: t}, nil
	}
}

// Unwrap returns the listener l wraps, for a server that accepts on its
// descriptor itself (an event loop); it must then count each connection
// with Take.
func (l *Listener) Unwrap() net.Listener { return l.Listener }

// Take counts a connection from client that was accepted outside Accept.
// ok false: the connection is over a cap (Options.Refused has been told);
// the caller writes Refusal to it without waiting on the client and closes
// it. Otherwise the caller calls t.Release once, when the connection
// closes.
func (l *Listener) Take(client netip.Addr) (t *Taken, ok bool) {
	t, r, open := l.take(client)
	if r != "" {
		if l.o.Refused != nil {
			l.o.Refused(r, client, open)
		}
		return nil, false
	}
	return t, true
}

// Refusal is the 503 answer to a connection over a cap, closing it.
func (l *Listener) Refusal() []byte { return l.refusal }

// Taken is one connection counted against the caps.
type Taken struct {
	l       *Listener
	client  netip.Addr
	counted bool // against client's own cap
	once    sync.Once
}

// Release gives the connection's place back; calls after the first do
// nothing, so every path that closes a connection may call it.
func (t *Taken) Release() { t.once.Do(func() { t.l.release(t.client, t.counted) }) }

// take counts a connection from client, or says which cap it is over
// (with the connections open against that cap).
func (l *Listener) take(client netip.Addr) (*Taken, Reason, int) {
	if n := l.open.Add(1); l.o.Max > 0 && n > int64(l.o.Max) {
		l.open.Add(-1)
		return nil, Total, int(n - 1)
	}
	if l.o.PerClient > 0 && client.IsValid() && (l.o.Exempt == nil || !l.o.Exempt(client)) {
		l.mu.Lock()
		n := l.byClient[client] + 1
		if n > l.o.PerClient {
			l.mu.Unlock()
			l.open.Add(-1)
			return nil, PerClient, n - 1
		}
		l.byClient[client] = n
		l.mu.Unlock()
		return &Taken{l: l, client: client, counted: true}, "", 0
	}
	return &Taken{l: l}, "", 0
}

func (l *Listener) refuse(c net.Conn, r Reason, client netip.Addr, open int) {
	if l.o.Refused != nil {
		l.o.Refused(r, client, open)
	}
	// Never block Accept on a client that does not read.
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(l.refusal)
	_ = c.Close()
}

func (l *Listener) release(client netip.Addr, counted bool) {
	l.open.Add(-1)
	if !counted {
		return
	}
	l.mu.Lock()
	if n := l.byClient[client] - 1; n > 0 {
		l.byClient[client] = n
	} else {
		delete(l.byClient, client)
	}
	l.mu.Unlock()
}

type conn struct {
	net.Conn
	t *Taken
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.t.Release()
	return err
}

func peer(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
