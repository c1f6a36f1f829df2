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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	method := o.Method
	if method == "" {
		method = "GET"
	}
	if strings.ContainsAny(method, " \r\n") {
		return nil, fmt.Errorf("h1: invalid method %q", method)
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
		if strings.ContainsAny(k, " :\r\n") {
			return nil, fmt.Errorf("h1: invalid header name %q", k)
		}
		for _, v := range o.Header[k] {
			if strings.ContainsAny(v, "\r\n") {
				return nil, fmt.Errorf("h1: header %s has a line break in its value", k)
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

// maxHeaderBytes bounds one response's header block, as net/http does for
// requests, so a broken server cannot make the generator buffer forever.
const maxHeaderBytes = 1 << 20

// ReadResponse reads one response from br and discards its body. It returns
// the status code and whether the connection may carry another request.
// firstByte, if not nil, is called once the status line has arrived.
func ReadResponse(br *bufio.Reader, head bool, firstByte func()) (status int, keepAlive bool, err error) {
	for {
		status, keepAlive, err = readOne(br, head, firstByte)
		firstByte = nil
		// 1xx responses precede the real one (RFC 9110 §15.2); 101 would
		// switch protocols, which a load test never asks for.
		if err != nil || status >= 200 || status == 101 {
			return status, keepAlive, err
		}
	}
}

func readOne(br *bufio.Reader, head bool, firstByte func()) (int, bool, error) {
	line, err := readLine(br)
	if err != nil {
		return 0, false, err
	}
	if firstByte != nil {
		firstByte()
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, malformed("status line %q", trim(line))
	}
	http10 := line[7] == '0'
	status := 0
	for _, ch := range line[9:12] {
		if ch < '0' || ch > '9' {
			return 0, false, malformed("status line %q", trim(line))
		}
		status = status*10 + int(ch-'0')
	}
	if len(line) > 12 && line[12] != ' ' {
		return 0, false, malformed("status line %q", trim(line))
	}
	keep := !http10
	contentLength := int64(-1)
	chunked := false
	total := len(line)
	for {
		h, err := readLine(br)
		if err != nil {
			return status, false, err
		}
		total += len(h)
		if total > maxHeaderBytes {
			return status, false, malformed("headers longer than %d bytes", maxHeaderBytes)
		}
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			return status, false, malformed("header line %q", trim(h))
		}
		name, value := h[:colon], bytes.TrimSpace(h[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return status, false, malformed("Content-Length %q", trim(value))
			}
			contentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			if !asciiEqualFold(value, "identity") {
				if !hasTokenFold(value, "chunked") {
					return status, false, malformed("unsupported Transfer-Encoding %q", trim(value))
				}
				chunked = true
			}
		case asciiEqualFold(name, "connection"):
			if hasTokenFold(value, "close") {
				keep = false
			} else if hasTokenFold(value, "keep-alive") {
				keep = true
			}
		}
	}
	if head || status < 200 || status == 204 || status == 304 {
		return status, keep, nil
	}
	switch {
	case chunked:
		return status, keep, discardChunked(br)
	case contentLength >= 0:
		if _, err := br.Discard(int(contentLength)); err != nil {
			return status, false, fmt.Errorf("read body: %w", unexpectedEOF(err))
		}
		return status, keep, nil
	default:
		// No length: the body runs until the server closes (RFC 9112 §6.3).
		_, err := io.Copy(io.Discard, br)
		if err != nil {
			return status, false, fmt.Errorf("read body: %w", err)
		}
		return status, false, nil
	}
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return fmt.Errorf("read chunk size: %w", err)
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || len(line) > 16 {
			return malformed("chunk size %q", trim(line))
		}
		size, err := strconv.ParseUint(string(line), 16, 63)
		if err != nil {
			return malformed("chunk size %q", trim(line))
		}
		if size == 0 {
			// Trailers, then the empty line.
			for {
				t, err := readLine(br)
				if err != nil {
					return fmt.Errorf("read trailer: %w", err)
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(size)); err != nil {
			return fmt.Errorf("read chunk: %w", unexpectedEOF(err))
		}
		crlf, err := readLine(br)
		if err != nil {
			return fmt.Errorf("read chunk end: %w", err)
		}
		if len(crlf) != 0 {
			return malformed("chunk not followed by CRLF")
		}
	}
}

// readLine returns one line without its CRLF (or LF). The slice is only
// valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, malformed("line longer than %d bytes", br.Size())
	}
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
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

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasTokenFold reports whether the comma-separated list v holds token.
func hasTokenFold(v []byte, token string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if asciiEqualFold(bytes.TrimSpace(part), token) {
			return true
		}
	}
	return false
}
