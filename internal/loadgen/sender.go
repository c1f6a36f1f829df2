package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/loadgen/h1"
)

// preparedTarget is a target with everything computed once.
type preparedTarget struct {
	t       Target
	host    string // for routing and the interface lookup
	display string
	h1      *h1.Request // nil when net/http sends it
	header  http.Header
}

func prepareTargets(o *Options) ([]*preparedTarget, error) {
	header := o.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if o.APIKey != "" {
		header.Set(o.APIKeyHeader, o.APIKey)
	}
	var out []*preparedTarget
	for _, t := range o.Targets {
		if t.URL == nil {
			return nil, fmt.Errorf("target without URL")
		}
		p := &preparedTarget{t: t, host: hostOnly(t.URL.Host), display: displayURL(t), header: header}
		if t.URL.Scheme == "http" && !o.HTTP2 {
			req, err := h1.NewRequest(h1.RequestOptions{Method: t.Method, URL: t.URL, Header: header,
				Body: o.Body, UserAgent: o.UserAgent, Close: o.NoKeepAlive})
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", p.display, err)
			}
			p.h1 = req
		}
		out = append(out, p)
	}
	return out, nil
}

// sender sends requests; a conn is one virtual user's connection.
// exact asks for the deadline to the nanosecond (the end of the run), where
// otherwise a keep-alive connection may let it slip by its slack.
type sender interface {
	send(t *preparedTarget, deadline time.Time, exact bool) (h1.Response, error)
	conn() senderConn
	// bytesSince returns response bytes counted outside the per-request
	// figures since the last call (net/http's connections).
	bytesSince() int64
	protocol() string
	// interrupt fails every request in progress and every later one at
	// once: the run was stopped (Ctrl-C) and must not wait for them.
	interrupt()
	close()
}

type senderConn interface {
	send(t *preparedTarget, deadline time.Time, exact bool) (h1.Response, error)
	release()
}

// mixedSender routes plain HTTP/1.1 targets to h1 and the rest to net/http.
type mixedSender struct {
	now    func() time.Time
	dialer *net.Dialer
	mu     sync.Mutex
	idle   []*h1.Conn // LIFO, so a steady load reuses the fewest connections
	std    *stdSender
	proto  string
	slack  time.Duration

	allMu       sync.Mutex
	all         []*h1.Conn // every connection made, for interrupt
	interrupted bool
}

func (s *mixedSender) track(c *h1.Conn) *h1.Conn {
	s.allMu.Lock()
	s.all = append(s.all, c)
	if s.interrupted {
		c.Interrupt()
	}
	s.allMu.Unlock()
	return c
}

func (s *mixedSender) interrupt() {
	s.allMu.Lock()
	s.interrupted = true
	for _, c := range s.all {
		c.Interrupt()
	}
	s.allMu.Unlock()
	if s.std != nil {
		s.std.cancel()
	}
}

var _ sender = (*mixedSender)(nil)

func newSender(o *Options, targets []*preparedTarget) (sender, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	// A tenth of the timeout: a 30 s timeout may run to 33 s, and the
	// connection's timer is touched every 3 s instead of every request.
	s := &mixedSender{now: now, dialer: &net.Dialer{Timeout: o.Timeout}, slack: o.Timeout / 10}
	needStd := false
	for _, t := range targets {
		if t.h1 == nil {
			needStd = true
		}
	}
	switch {
	case needStd && o.HTTP2:
		s.proto = "HTTP/2"
	case needStd:
		s.proto = "HTTP/1.1 (net/http)"
	default:
		s.proto = "HTTP/1.1"
	}
	if needStd {
		s.std = newStdSender(o)
	}
	return s, nil
}

func (s *mixedSender) protocol() string { return s.proto }

func (s *mixedSender) getConn() *h1.Conn {
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c
	}
	s.mu.Unlock()
	return s.track(&h1.Conn{Dialer: s.dialer, Now: s.now, DeadlineSlack: s.slack})
}

func (s *mixedSender) putConn(c *h1.Conn) {
	s.mu.Lock()
	s.idle = append(s.idle, c)
	s.mu.Unlock()
}

func (s *mixedSender) send(t *preparedTarget, deadline time.Time, exact bool) (h1.Response, error) {
	if t.h1 == nil {
		return s.std.send(t, deadline)
	}
	c := s.getConn()
	c.DeadlineSlack = s.slack
	if exact {
		c.DeadlineSlack = 0
	}
	resp, err := c.Do(t.h1, deadline)
	s.putConn(c)
	return resp, err
}

func (s *mixedSender) bytesSince() int64 {
	if s.std == nil {
		return 0
	}
	return s.std.bytes.Swap(0)
}

func (s *mixedSender) close() {
	s.mu.Lock()
	for _, c := range s.idle {
		c.Close()
	}
	s.idle = nil
	s.mu.Unlock()
	if s.std != nil {
		s.std.cancel()
		s.std.tr.CloseIdleConnections()
	}
}

// userConn is a virtual user's own connection.
type userConn struct {
	s *mixedSender
	c *h1.Conn
}

func (s *mixedSender) conn() senderConn {
	return &userConn{s: s, c: s.track(&h1.Conn{Dialer: s.dialer, Now: s.now, DeadlineSlack: s.slack})}
}

func (u *userConn) send(t *preparedTarget, deadline time.Time, exact bool) (h1.Response, error) {
	if t.h1 == nil {
		return u.s.std.send(t, deadline)
	}
	u.c.DeadlineSlack = u.s.slack
	if exact {
		u.c.DeadlineSlack = 0
	}
	return u.c.Do(t.h1, deadline)
}

func (u *userConn) release() { u.c.Close() }

// stdSender sends through net/http: HTTP/2, TLS, and anything h1 does not
// handle.
type stdSender struct {
	o      *Options
	tr     *http.Transport
	client *http.Client
	bytes  atomic.Int64
	// base is cancelled by interrupt.
	base   context.Context
	cancel context.CancelFunc
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func newStdSender(o *Options) *stdSender {
	s := &stdSender{o: o}
	s.base, s.cancel = context.WithCancel(context.Background())
	d := &net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}
	s.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: c, n: &s.bytes}, nil
		},
		MaxIdleConns:        o.MaxInFlight,
		MaxIdleConnsPerHost: o.MaxInFlight,
		DisableKeepAlives:   o.NoKeepAlive,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: o.Insecure}, //nolint:gosec // asked for with --insecure
		ForceAttemptHTTP2:   o.HTTP2,
		TLSHandshakeTimeout: o.Timeout,
	}
	if o.HTTP2 {
		p := new(http.Protocols)
		p.SetHTTP2(true)
		// h2c with prior knowledge for http:// targets (Go's transport
		// speaks it when UnencryptedHTTP2 is the only cleartext choice).
		p.SetUnencryptedHTTP2(true)
		s.tr.Protocols = p
	}
	s.client = &http.Client{Transport: s.tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a load test measures the response it got
	}}
	return s
}

func (s *stdSender) send(t *preparedTarget, deadline time.Time) (h1.Response, error) {
	ctx, cancel := context.WithDeadline(s.base, deadline)
	defer cancel()
	var resp h1.Response
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { resp.FirstByte = time.Now() }}
	if s.o.Now != nil {
		trace.GotFirstResponseByte = func() { resp.FirstByte = s.o.Now() }
	}
	ctx = httptrace.WithClientTrace(ctx, trace)
	var body io.Reader
	if len(s.o.Body) > 0 {
		body = bytes.NewReader(s.o.Body)
	}
	req, err := http.NewRequestWithContext(ctx, t.t.Method, t.t.URL.String(), body)
	if err != nil {
		return resp, err
	}
	req.Header = t.header.Clone()
	ua := s.o.UserAgent
	if ua == "" {
		ua = "headroom"
	}
	req.Header.Set("User-Agent", ua)
	r, err := s.client.Do(req)
	if err != nil {
		return resp, err
	}
	_, err = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	resp.Status = r.StatusCode
	return resp, err
}
