// Package h1 is the load generator's own HTTP/1.1 client: one connection, one
// request at a time, the request bytes encoded once and written as they are,
// the response read into a reused buffer and its body discarded.
//
// net/http's client does far more per request than a load test needs
// (header maps, a body reader, a connection pool shared behind a lock), and
// that cost is paid by the generator's CPU, which is the very thing
// `headroom load` must not run out of before the server does. HTTP/2 and TLS
// targets still go through net/http; this package handles plain http://
// targets, the common case for capacity tests.
package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/httpwire"
)

// Request is a request encoded once and sent many times.
type Request struct {
	// Addr is the host:port to dial.
	Addr string
	// Head reports a HEAD request, whose response has no body whatever its
	// Content-Length says.
	Head bool
	wire []byte
}

// Wire returns the bytes written for the request.
func (r *Request) Wire() []byte { return r.wire }

// RequestOptions describe a request to encode.
type RequestOptions struct {
	Method string // "" means GET
	URL    *url.URL
	// Header holds extra headers; Host, Content-Length and Connection are
	// set by NewRequest and ignored here.
	Header    map[string][]string
	Body      []byte
	UserAgent string // "" means "headroom"
	// Close asks the server to close the connection after the response
	// (no keep-alive).
	Close bool
}

// NewRequest encodes a request for an http:// URL.
func NewRequest(o RequestOptions) (*Request, error) {
	if o.URL == nil || o.URL.Scheme != "http" {
		return nil, fmt.Errorf("h1: only http:// URLs are handled here, got %v", o.URL)
	}
	if o.URL.Host == "" {
		return nil, fmt.Errorf("h1: URL %q has no host", o.URL.String())
	}
	if !httpwire.ValidHost(o.URL.Host) {
		return nil, fmt.Errorf("h1: URL %q: %q is not a host a server would accept", o.URL.String(), o.URL.Host)
	}
	method := o.Method
	if method == "" {
		method = "GET"
	}
	if !httpwire.ValidToken(method) {
		return nil, fmt.Errorf("h1: invalid method %q: a method is a word like GET or POST", method)
	}
	addr := o.URL.Host
	if o.URL.Port() == "" {
		addr = net.JoinHostPort(o.URL.Hostname(), "80")
	}
	target := o.URL.RequestURI()
	ua := o.UserAgent
	if ua == "" {
		ua = "headroom"
	}
	if !httpwire.ValidFieldValue(ua) {
		return nil, fmt.Errorf("h1: user agent %q has a control byte or line break", ua)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n", method, target, o.URL.Host, ua)
	names := make([]string, 0, len(o.Header))
	for k := range o.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch strings.ToLower(k) {
		case "host", "content-length", "connection", "transfer-encoding":
			continue
		}
		if !httpwire.ValidToken(k) {
			return nil, fmt.Errorf("h1: invalid header name %q", k)
		}
		for _, v := range o.Header[k] {
			if !httpwire.ValidFieldValue(v) {
				return nil, fmt.Errorf("h1: header %s has a control byte or line break in its value", k)
			}
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if len(o.Body) > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(o.Body))
	}
	if o.Close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	b.Write(o.Body)
	return &Request{Addr: addr, Head: method == "HEAD", wire: b.Bytes()}, nil
}

// Response is what one exchange measured.
type Response struct {
	Status int
	// Bytes counts every byte read for the response: status line, headers
	// and body.
	Bytes int64
	// FirstByte is when the status line had arrived: the time the server
	// took to answer, as opposed to the time the body took to arrive.
	FirstByte time.Time
}

// Dialer opens connections; *net.Dialer is one.
type Dialer interface {
	Dial(network, addr string) (net.Conn, error)
}

// Conn is one keep-alive connection to one address, redialled on demand.
// It is not safe for concurrent use: each virtual user or worker owns one.
type Conn struct {
	// Dialer opens the connection; nil means a net.Dialer with a 10 s timeout.
	Dialer Dialer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DeadlineSlack lets a request's deadline run up to this much late so
	// the connection's deadline is reset once per slack rather than on
	// every request (a timer update each time). 0 means exact deadlines.
	DeadlineSlack time.Duration

	addr string
	// mu guards c against Interrupt, which runs on another goroutine; the
	// owner takes it only to dial, close and move the deadline.
	mu          sync.Mutex
	interrupted atomic.Bool
	c           net.Conn
	cr          countingReader
	br          *bufio.Reader
	used        bool // a response was read on c: a failure may be a stale keep-alive
	dl          time.Time
}

// Close closes the current connection, if any.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}

// ErrInterrupted is returned by Do once Interrupt was called.
var ErrInterrupted = errors.New("h1: interrupted")

// Interrupt makes the request in progress, if any, and every later one fail
// at once with ErrInterrupted. It is safe to call from any goroutine: it is
// how a run stopped by the user (Ctrl-C) stops waiting for slow servers.
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted.Store(true)
	if c.c != nil {
		c.c.SetDeadline(time.Unix(1, 0))
	}
}

func (c *Conn) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Conn) dial(addr string) error {
	d := c.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 10 * time.Second}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.interrupted.Load() {
		c.mu.Unlock()
		nc.Close()
		return ErrInterrupted
	}
	c.c, c.addr, c.used, c.dl = nc, addr, false, time.Time{}
	c.mu.Unlock()
	c.cr.r = nc
	if c.br == nil {
		c.br = bufio.NewReaderSize(&c.cr, 32<<10)
	} else {
		c.br.Reset(&c.cr)
	}
	return nil
}

// Do sends req and reads its response, all before deadline (zero: none).
// A request that fails on a reused connection before any response byte
// arrived is retried once on a fresh one: the server may have closed an idle
// keep-alive connection, which says nothing about its capacity.
func (c *Conn) Do(req *Request, deadline time.Time) (Response, error) {
	resp, err, retry := c.do(req, deadline)
	if err != nil && retry && !c.interrupted.Load() {
		resp, err, _ = c.do(req, deadline)
	}
	return resp, err
}

func (c *Conn) do(req *Request, deadline time.Time) (resp Response, err error, retry bool) {
	if c.interrupted.Load() {
		return Response{}, ErrInterrupted, false
	}
	if c.c != nil && c.addr != req.Addr {
		c.Close()
	}
	if c.c == nil {
		if err := c.dial(req.Addr); err != nil {
			return Response{}, err, false
		}
	}
	reused := c.used
	// Keep the connection's deadline within [deadline, deadline+slack].
	if deadline.After(c.dl) || c.dl.Sub(deadline) > c.DeadlineSlack || deadline.IsZero() != c.dl.IsZero() {
		set := deadline
		if !set.IsZero() {
			set = set.Add(c.DeadlineSlack)
		}
		c.mu.Lock()
		if c.interrupted.Load() {
			c.mu.Unlock()
			return Response{}, ErrInterrupted, false
		}
		err := c.c.SetDeadline(set)
		c.mu.Unlock()
		if err != nil {
			c.Close()
			return Response{}, err, reused
		}
		c.dl = set
	}
	if _, err := c.c.Write(req.wire); err != nil {
		c.Close()
		if c.interrupted.Load() {
			return Response{}, ErrInterrupted, false
		}
		return Response{}, err, reused && !isTimeout(err)
	}
	c.cr.n = 0
	status, keep, err := ReadResponse(c.br, req.Head, func() { resp.FirstByte = c.now() })
	resp.Status = status
	resp.Bytes = c.cr.n - int64(c.br.Buffered())
	if err != nil {
		noBytes := c.cr.n == 0
		c.Close()
		if c.interrupted.Load() {
			return resp, ErrInterrupted, false
		}
		return resp, err, reused && noBytes && !isTimeout(err)
	}
	c.used = true
	if !keep {
		c.Close()
	}
	return resp, nil, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ErrMalformed wraps every parse failure of a response.
var ErrMalformed = errors.New("malformed HTTP response")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// ReadResponse reads one response from br and discards its body. It returns
// the status code and whether the connection may carry another request.
// firstByte, if not nil, is called once the response's first byte has
// arrived. The head is parsed by internal/httpwire, strictly (RFC 9112: a
// bare LF, obs-fold or conflicting framing is a malformed response), and
// must fit in br's buffer.
func ReadResponse(br *bufio.Reader, head bool, firstByte func()) (status int, keepAlive bool, err error) {
	rd := readers.Get().(*reader)
	defer readers.Put(rd)
	for {
		status, keepAlive, err = rd.readOne(br, head, firstByte)
		firstByte = nil
		// 1xx responses precede the real one (RFC 9110 §15.2); 101 would
		// switch protocols, which a load test never asks for.
		if err != nil || status >= 200 || status == 101 {
			return status, keepAlive, err
		}
	}
}

// reader is the parsed head and chunked decoder one response needs,
// pooled so that reading a response allocates nothing.
type reader struct {
	resp  httpwire.Response
	chunk httpwire.ChunkedReader
}

var readers = sync.Pool{New: func() any { return new(reader) }}

func (rd *reader) readOne(br *bufio.Reader, head bool, firstByte func()) (int, bool, error) {
	if _, err := br.Peek(1); err != nil {
		return 0, false, unexpectedEOF(err)
	}
	if firstByte != nil {
		firstByte()
	}
	if b, err := br.Peek(5); err == nil && string(b) != "HTTP/" {
		return 0, false, malformed("status line %q", trim(b))
	}
	raw, err := httpwire.ReadHead(br, br.Size())
	if err != nil {
		if errors.Is(err, httpwire.ErrMalformed) {
			return 0, false, malformed("%v", err)
		}
		return 0, false, err
	}
	r := &rd.resp
	perr := r.Parse(raw)
	br.Discard(len(raw))
	if perr != nil {
		return r.Status, false, malformed("%v", perr)
	}
	status, keep := r.Status, r.KeepAlive
	switch r.Body(head) {
	case httpwire.NoBody:
		return status, keep, nil
	case httpwire.ChunkedBody:
		rd.chunk.Reset(br)
		if _, err := io.Copy(io.Discard, &rd.chunk); err != nil {
			if errors.Is(err, httpwire.ErrMalformed) {
				return status, false, malformed("%v", err)
			}
			return status, false, fmt.Errorf("read chunked body: %w", err)
		}
		return status, keep, nil
	case httpwire.LengthBody:
		if _, err := br.Discard(int(r.ContentLength)); err != nil {
			return status, false, fmt.Errorf("read body: %w", unexpectedEOF(err))
		}
		return status, keep, nil
	default:
		// No length: the body runs until the server closes (RFC 9112 §6.3).
		if _, err := io.Copy(io.Discard, br); err != nil {
			return status, false, fmt.Errorf("read body: %w", err)
		}
		return status, false, nil
	}
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func trim(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
