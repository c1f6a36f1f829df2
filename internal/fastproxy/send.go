package fastproxy

import (
	"net"
	"time"
)

// SendConn is a client connection whose writes are bounded by
// timeouts.client_send, as nginx's send_timeout bounds its writes to a
// client: a write fails only once the client took none of its bytes for
// the timeout. A client that keeps taking bytes, however slowly, is never
// cut (the whole answer may take as long as it takes); one that stops
// reading is, and the connection is closed then, which frees the proxy's
// goroutine, buffers and socket instead of holding them for as long as the
// client likes. Both front-ends use it: the fast path for its own
// connections and those it hands off, the net/http front-end under
// net/http's writes (its http.Server.WriteTimeout would bound the whole
// response instead, not the same thing).
//
// It costs no clock reading and no deadline change per write: the
// connection's write deadline (a step, a quarter of the timeout, ahead)
// is moved only once it has passed. A write under a deadline already past
// fails at once, Go's poller checking it before any system call, and is
// made again under a deadline a step from a fresh clock reading; a busy
// connection so pays one clock reading and one deadline change per step,
// not per request. A write that waits out its deadline goes on the same
// way, step by step, and fails once a whole timeout went by with no byte
// taken: a client that stopped reading is cut between one timeout and one
// and a quarter after it took its last byte.
//
// SetWriteDeadline and SetDeadline keep the write deadline the timeout
// set: net/http clears it after each request and when it hands the
// connection to a handler (Hijack), and the timeout must still bound what
// is written next. A deadline set to a time is set (nothing in headroom
// sets one).
type SendConn struct {
	net.Conn
	// Timeout is timeouts.client_send; 0 leaves writes unbounded.
	Timeout time.Duration
	// TimedOut, if set, is called once the timeout closed the connection.
	TimedOut func(net.Conn)

	// armed: a write deadline is set (past or not). Writes and deadlines
	// come from one goroutine at a time (the fast path's connection's;
	// net/http's conn's, then its handler's).
	armed bool
}

// sendTimeoutError is a write's failure once the client took nothing for
// the timeout: a net.Error whose Timeout is true.
type sendTimeoutError struct{}

func (sendTimeoutError) Error() string {
	return "fastproxy: client send timeout: the client took no bytes"
}
func (sendTimeoutError) Timeout() bool   { return true }
func (sendTimeoutError) Temporary() bool { return false }

// ErrSendTimeout is the write error of a connection SendConn cut.
var ErrSendTimeout net.Error = sendTimeoutError{}

func (c *SendConn) Write(p []byte) (int, error) {
	if c.Timeout <= 0 {
		return c.Conn.Write(p)
	}
	n, err := c.write(p)
	if err == ErrSendTimeout {
		c.Conn.Close()
		if c.TimedOut != nil {
			c.TimedOut(c.Conn)
		}
	}
	return n, err
}

func (c *SendConn) write(p []byte) (int, error) {
	if !c.armed {
		c.arm(time.Now()) // the connection's first write
	}
	n, err := c.Conn.Write(p)
	if err == nil || !isTimeout(err) {
		return n, err
	}
	// The deadline passed, before the write or while it waited. The last
	// moment the client may have taken bytes is unknown before now.
	now := time.Now()
	last := now
	for {
		c.arm(now)
		m, err := c.Conn.Write(p[n:])
		n += m
		if err == nil || !isTimeout(err) {
			return n, err
		}
		now = time.Now()
		if m > 0 {
			last = now
		} else if now.Sub(last) >= c.Timeout {
			return n, ErrSendTimeout
		}
	}
}

// arm sets the write deadline a step after now.
func (c *SendConn) arm(now time.Time) {
	c.armed = true
	c.Conn.SetWriteDeadline(now.Add(c.step()))
}

func (c *SendConn) step() time.Duration { return max(c.Timeout/4, time.Millisecond) }

// SetWriteDeadline sets t, unless t is zero (see SendConn).
func (c *SendConn) SetWriteDeadline(t time.Time) error {
	if c.Timeout <= 0 {
		return c.Conn.SetWriteDeadline(t)
	}
	if t.IsZero() {
		return nil
	}
	c.armed = true
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets the read deadline, and the write deadline as
// SetWriteDeadline does.
func (c *SendConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
