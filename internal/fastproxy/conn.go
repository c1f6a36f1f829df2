package fastproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/httpwire"
	"github.com/headroom-dev/headroom/internal/requestid"
)

// conn is one client connection and everything reused across its
// requests.
type conn struct {
	s    *Server
	nc   net.Conn
	dl   deadlines // the read deadline (the write deadline is sc's)
	sc   SendConn  // what bw writes to: nc under timeouts.client_send
	cr   connReader
	br   *bufio.Reader
	bw   *bufio.Writer
	peer netip.Addr
	idle atomic.Bool // waiting for the next request: Shutdown may close it

	req      httpwire.Request
	ex       exchange
	trusted  bool   // the peer is a trusted proxy (for this request's configuration)
	rid      []byte // the request's X-Request-Id: the trusted client's (a view of req) or ridBuf
	ridBuf   [requestid.Len]byte
	w        *watcher // started on first use
	watching bool     // w is watching the client for this request
	// now is the real time at the request's last clock reading (stamp),
	// the base of its deadlines.
	now     time.Time
	hdr     [20]byte      // a chunk header being written (here, not on the heap)
	addrKey admit.AddrKey // the last address key, reused while the client is the same

	body   []byte // the buffered request body, reused
	chunk  httpwire.ChunkedReader
	length httpwire.LengthReader
}

// connReader reads the client connection, first handing back the byte the
// watcher read while the connection was meant to be quiet (the start of a
// pipelined request).
type connReader struct {
	c     net.Conn
	stash []byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(r.stash) > 0 {
		n := copy(p, r.stash)
		r.stash = r.stash[n:]
		return n, nil
	}
	return r.c.Read(p)
}

// exchange is one request's story, reset for each request.
type exchange struct {
	adm admit.Admission

	upStart, upEnd time.Time
	respAt         time.Time
	upStatus       int

	status int   // what the client was answered
	sent   int64 // body bytes written to the client
	failed bool  // a write to the client failed: it left

	mu     sync.Mutex
	goneAt time.Time // when the client left, if it did
}

func (ex *exchange) reset() {
	ex.adm = admit.Admission{}
	ex.upStart, ex.upEnd, ex.respAt = time.Time{}, time.Time{}, time.Time{}
	ex.upStatus, ex.status, ex.sent, ex.failed = 0, 0, 0, false
	ex.mu.Lock()
	ex.goneAt = time.Time{}
	ex.mu.Unlock()
}

func (ex *exchange) markGone(t time.Time) {
	ex.mu.Lock()
	if ex.goneAt.IsZero() {
		ex.goneAt = t
	}
	ex.mu.Unlock()
}

func (ex *exchange) gone() time.Time {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.goneAt
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if c.w != nil {
			c.w.quit()
		}
		if !handedOff {
			c.nc.Close()
		}
		c.s.forget(c)
	}()
	first := true
	for {
		cfg := c.s.core.Config()
		wait := cfg.Timeouts.Idle.D()
		if first {
			wait = cfg.Timeouts.ReadHeader.D()
		}
		c.idle.Store(true)
		if c.s.closing.Load() {
			return
		}
		if len(c.cr.stash) == 0 && c.br.Buffered() == 0 {
			// A fresh reading: the last request's answer may have
			// taken its client long to read.
			c.dl.read(after(wait), slackFor(wait))
			// Shutdown sets closing, then ends idle connections' reads
			// with a past deadline; seen after our own deadline, closing
			// is either set (leave) or the past deadline comes after.
			if c.s.closing.Load() {
				return
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		c.idle.Store(false)
		c.rid = nil // no id until the head parsed and Begin ran
		// The head's own deadline (slowloris), unless it is all here
		// already, as it is when it came in one packet.
		if b, _ := c.br.Peek(c.br.Buffered()); !bytes.Contains(b, crlfcrlf) {
			rh := cfg.Timeouts.ReadHeader.D()
			c.dl.read(after(rh), slackFor(rh))
		}
		if err := httpwire.ReadRequest(c.br, &c.req, c.s.maxHead); err != nil {
			var we *httpwire.Error
			if errors.As(err, &we) {
				c.answerMalformed(we.Status)
			}
			return
		}
		if c.needsFallback() {
			handedOff = c.handOff()
			if !handedOff {
				c.answerMalformed(501)
			}
			return
		}
		first = false
		if !c.handle() || c.s.closing.Load() {
			return
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// needsFallback reports a request the fast path leaves to net/http.
func (c *conn) needsFallback() bool {
	r := &c.req
	return r.Upgrade || r.ConnectionUpgrade || r.Expect != nil || !r.OriginForm()
}

// handOff gives the connection to the fallback server, replaying the
// request head and whatever followed it.
func (c *conn) handOff() bool {
	if c.s.handoff == nil {
		return false
	}
	c.dl.read(time.Time{}, 0)
	rest := make([]byte, 0, len(c.req.Raw)+len(c.cr.stash)+c.br.Buffered())
	rest = append(rest, c.req.Raw...)
	buffered, _ := c.br.Peek(c.br.Buffered())
	rest = append(rest, buffered...)
	rest = append(rest, c.cr.stash...)
	// Written through sc: the fallback's writes are bounded by
	// timeouts.client_send too.
	return c.s.handoff.hand(&replayConn{Conn: &c.sc, r: io.MultiReader(bytes.NewReader(rest), c.nc)})
}

// replayConn is a connection whose first bytes were already read.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var statusText = map[int]string{400: "Bad Request", 431: "Request Header Fields Too Large", 501: "Not Implemented", 505: "HTTP Version Not Supported"}

// answerMalformed answers a request the parser refused and the connection
// is closed after it (RFC 9112 §9.6 lets nothing after a framing error be
// trusted).
func (c *conn) answerMalformed(status int) {
	// A body that broke its framing: the request was parsed, admitted
	// and logged (c.rid is set), so its answer names it.
	c.bw.Write(AppendMalformed(c.bw.AvailableBuffer(), status, c.rid))
	c.bw.Flush()
}

// handle serves one request; it reports whether the connection may carry
// another.
func (c *conn) handle() bool {
	ex := &c.ex
	ex.reset()
	r := &c.req
	core := c.s.core
	path, ok := decodePath(r.Path())
	if !ok {
		c.answerMalformed(400)
		return false
	}
	// Views of the head's bytes, not copies: the core keeps none of them
	// past Begin (a key it remembers, it clones), and r.Raw is not reused
	// before the next request.
	areq := admit.Request{Header: headerView{r}, Peer: c.peer, Host: view(r.Host), Path: path, Query: view(r.Query()), AddrKey: &c.addrKey}
	core.Begin(&areq, &ex.adm)
	c.trusted = c.peer.IsValid() && ex.adm.TrustedPeer(c.peer)
	c.rid = c.requestID()
	cfg := ex.adm.Config()
	keep := r.KeepAlive

	body, o, done := c.readBody(cfg)
	if done {
		// The body's rest was not read: the connection closes.
		c.finish(o)
		c.clientFlush()
		return false
	}
	// The client's part is in: from now on, watch for it leaving while it
	// waits, in a pool's queue (a client that leaves, leaves the queue)
	// or for a slow upstream (proxy starts the watch).
	ctx := context.Background()
	if poolQueues(cfg, ex.adm.Pool.Name()) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		c.watching = c.startWatch(cancel)
	}
	o, ok = core.Admit(ctx, &ex.adm)
	if !ok {
		if o != admit.AbortedInQueue {
			ref := core.Refusal(&ex.adm, o)
			c.writeAnswer(ref.Status, ref.Header, ref.Body, keep)
		} else {
			keep = false
		}
	} else {
		var upKeep bool
		o, upKeep = c.proxy(cfg, body, o, keep)
		keep = keep && upKeep
	}
	if c.watching && !c.stopWatch() {
		keep = false
	}
	c.watching = false
	if ex.failed {
		keep = false
	}
	// Counted and logged before the client has the end of its answer, as
	// on the net/http path, so whoever reads the metrics or the log after
	// the answer finds the request there.
	c.finish(o)
	c.clientFlush()
	return keep
}

// requestID is the request's X-Request-Id (RequestID).
func (c *conn) requestID() []byte { return RequestID(&c.req, c.trusted, c.ridBuf[:]) }

func poolQueues(cfg *config.Config, name string) bool {
	for i := range cfg.Pools {
		if cfg.Pools[i].Name == name {
			return cfg.Pools[i].Queue > 0
		}
	}
	return false
}

// decodePath is the target's path as net/http decodes it (the core routes
// pools by path prefix: "/%61pi/" must land in the same pool as "/api/").
func decodePath(raw []byte) (string, bool) {
	if bytes.IndexByte(raw, '%') < 0 {
		return view(raw), true
	}
	p, err := url.PathUnescape(string(raw))
	return p, err == nil
}

// finish charges and counts the request, and writes its access-log line:
// a client that left is logged 499 at the moment it left, next to the
// upstream's real status and time (seeds/03).
func (c *conn) finish(o admit.Outcome) {
	ex := &c.ex
	// The upstream's answer was all written (to the client's buffer)
	// before upEnd was read: the request ended then.
	end := ex.upEnd
	if end.IsZero() {
		end = c.stamp()
		if !ex.upStart.IsZero() {
			ex.upEnd = end
		}
	}
	gone := ex.gone()
	switch {
	case o == admit.BodyTimeout || o == admit.BodyTooLarge:
		gone = time.Time{}
	case gone.IsZero() && (o == admit.AbortedInQueue || (o == admit.BodyIncomplete && ex.status == 0)):
		gone = end
	}
	Finish(c.s.core, c.s.log, &Ending{
		Adm: &ex.adm, Req: &c.req, RequestID: c.rid,
		UpStart: ex.upStart, UpEnd: ex.upEnd, RespAt: ex.respAt, End: end, Gone: gone,
		UpStatus: ex.upStatus, Status: ex.status, Sent: ex.sent,
	}, o)
}

// stamp reads the server's clock for the exchange's record, and the
// real time for its deadlines (c.now): one reading when the server's
// clock is the system's.
func (c *conn) stamp() time.Time {
	t := c.s.clock.Now()
	if c.s.sysClock {
		c.now = t
	} else {
		c.now = time.Now()
	}
	return t
}

// StatusClientClosed is nginx's status for a client that left before its
// answer (as internal/guard logs it).
const StatusClientClosed = 499

// writeAnswer writes a response the proxy makes itself (a refusal, an
// upstream failure, a body fault).
func (c *conn) writeAnswer(status int, fields []admit.Field, body []byte, keep bool) {
	ex := &c.ex
	ex.status = status
	c.clientWrite(AppendAnswer(c.bw.AvailableBuffer(), &c.req, status, fields, body, c.rid, keep))
	if !ex.failed {
		ex.sent += int64(len(body))
	}
}

func appendStatusLine(b []byte, status int, reason []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if reason == nil {
		reason = []byte(reasons[status])
	}
	b = append(b, reason...)
	return append(b, "\r\n"...)
}

var reasons = map[int]string{
	200: "OK", 400: "Bad Request", 408: "Request Timeout", 413: "Request Entity Too Large",
	429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

func appendConnection(b []byte, r *httpwire.Request, keep bool) []byte {
	switch {
	case !keep:
		return append(b, "Connection: close\r\n"...)
	case r.Minor == 0:
		return append(b, "Connection: keep-alive\r\n"...)
	}
	return b
}

// clientWrite writes to the client; once a write failed (the client
// left), the rest is dropped so the upstream's answer is still read to its
// end and charged in full.
func (c *conn) clientWrite(p []byte) {
	ex := &c.ex
	if ex.failed {
		return
	}
	if _, err := c.bw.Write(p); err != nil {
		ex.failed = true
		ex.markGone(c.s.clock.Now())
	}
}

func (c *conn) clientFlush() {
	ex := &c.ex
	if ex.failed {
		return
	}
	if err := c.bw.Flush(); err != nil {
		ex.failed = true
		ex.markGone(c.s.clock.Now())
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// view is b as a string without a copy; only for strings that do not
// outlive the request (the head's bytes are overwritten by the next one).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// headerView gives the core the request's fields (admit.Header). Its
// values are views of the head's bytes, not copies, as the rest of
// admit.Request: the core keeps none of them past Begin (an API key it
// remembers, the fingerprint cache clones; X-Forwarded-For it parses).
type headerView struct{ r *httpwire.Request }

func (h headerView) Get(name string) string {
	for i := range h.r.Fields {
		if httpwire.EqualFoldName(h.r.Fields[i].Name, name) {
			return view(h.r.Fields[i].Value)
		}
	}
	return ""
}

func (h headerView) Values(name string) []string {
	var vs []string
	for i := range h.r.Fields {
		if httpwire.EqualFoldName(h.r.Fields[i].Name, name) {
			vs = append(vs, view(h.r.Fields[i].Value))
		}
	}
	return vs
}

// dateField is "Date: <now>\r\n" (RFC 9110 §6.6.1: an origin server with a
// clock sends Date, and net/http adds it), formatted at most once a second.
var dateCache atomic.Pointer[dateLine]

type dateLine struct {
	sec  int64
	line []byte
}

func dateField() []byte {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.line
	}
	d := &dateLine{sec: now.Unix()}
	d.line = append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	d.line = append(d.line, "\r\n"...)
	dateCache.Store(d)
	return d.line
}
