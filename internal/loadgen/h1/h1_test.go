package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		head      bool
		status    int
		keep      bool
		rest      string // what must remain unread
		wantErr   bool
		malformed bool
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", status: 200, keep: true, rest: "NEXT"},
		{name: "no reason phrase", in: "HTTP/1.1 204\r\n\r\nNEXT", status: 204, keep: true, rest: "NEXT"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT", status: 200, keep: true, rest: "NEXT"},
		{name: "chunked mixed case", in: "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\nNEXT", status: 200, keep: true, rest: "NEXT"},
		{name: "connection close", in: "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\nnoNEXT", status: 503, keep: false, rest: "NEXT"},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, keep: false},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200, keep: true},
		{name: "until close", in: "HTTP/1.1 200 OK\r\n\r\nbody to the end", status: 200, keep: false},
		{name: "head ignores length", in: "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nNEXT", head: true, status: 200, keep: true, rest: "NEXT"},
		{name: "304 has no body", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\nNEXT", status: 304, keep: true, rest: "NEXT"},
		{name: "100 continue first", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nNEXT", status: 201, keep: true, rest: "NEXT"},
		// RFC 9112 §2.2 lets a recipient accept a bare LF; httpwire does
		// not (a proxy must not), and a server that sends one is broken.
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nokNEXT", status: 0, wantErr: true, malformed: true},
		{name: "length and chunked", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 200, wantErr: true, malformed: true},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", status: 200, wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "not http", in: "SSH-2.0-OpenSSH_9.6\r\n", wantErr: true, malformed: true},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: true, malformed: true},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", status: 200, wantErr: true, malformed: true},
		{name: "bad header", in: "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", status: 200, wantErr: true, malformed: true},
		{name: "bad chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", status: 200, wantErr: true, malformed: true},
		{name: "gzip encoding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", status: 200, wantErr: true, malformed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Small, so heads and chunks cross buffer refills; a head must
			// fit in it whole.
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 128)
			called := 0
			status, keep, err := ReadResponse(br, tt.head, func() { called++ })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.malformed && !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
			if status != tt.status {
				t.Errorf("status = %d, want %d", status, tt.status)
			}
			if err != nil {
				return
			}
			if keep != tt.keep {
				t.Errorf("keep-alive = %v, want %v", keep, tt.keep)
			}
			if called != 1 {
				t.Errorf("first-byte hook called %d times, want 1", called)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("left %q unread, want %q", rest, tt.rest)
			}
		})
	}
}

func FuzzReadResponse(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false)
	f.Add("HTTP/1.0 404 Not Found\r\n\r\nx", true)
	f.Add("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", false)
	f.Fuzz(func(t *testing.T, in string, head bool) {
		br := bufio.NewReaderSize(strings.NewReader(in), 64)
		status, _, err := ReadResponse(br, head, nil)
		if err == nil && (status < 100 || status > 999) {
			t.Fatalf("status %d accepted from %q", status, in)
		}
	})
}

func TestNewRequest(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:8080/a/b?x=1")
	r, err := NewRequest(RequestOptions{Method: "POST", URL: u, Body: []byte("hi"),
		Header: map[string][]string{"X-Api-Key": {"k"}, "Host": {"evil"}}, Close: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "POST /a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: headroom\r\nX-Api-Key: k\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
	if got := string(r.Wire()); got != want {
		t.Errorf("wire:\n%q\nwant\n%q", got, want)
	}
	if r.Addr != "127.0.0.1:8080" {
		t.Errorf("addr = %q", r.Addr)
	}
	u2, _ := url.Parse("http://localhost/")
	r2, _ := NewRequest(RequestOptions{URL: u2})
	if r2.Addr != "localhost:80" {
		t.Errorf("default port: addr = %q", r2.Addr)
	}
	for _, bad := range []RequestOptions{
		{URL: mustURL("https://127.0.0.1/")},
		{URL: mustURL("http://127.0.0.1/"), Method: "GET /x"},
		{URL: mustURL("http://127.0.0.1/"), Header: map[string][]string{"X": {"a\r\nInjected: 1"}}},
		// Issue 17 item 9, found by FuzzNewRequest: bytes a server refuses.
		{URL: mustURL("http://127.0.0.1/"), UserAgent: "\x7f"},
		{URL: mustURL("http://\"/")},
		{URL: mustURL("http://127.0.0.1/"), Method: "G\x00T"},
		{URL: mustURL("http://127.0.0.1/"), Header: map[string][]string{"X\x01": {"v"}}},
		{URL: mustURL("http://127.0.0.1/"), Header: map[string][]string{"X": {"nul\x00"}}},
	} {
		if _, err := NewRequest(bad); err == nil {
			t.Errorf("NewRequest(%+v) accepted", bad)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestConnAgainstServer runs the client against net/http's server: keep-alive
// reuse, chunked bodies, HEAD, a server closing idle connections.
func TestConnAgainstServer(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.WriteHeader(200)
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Got-Key", r.Header.Get("X-Api-Key"))
			w.WriteHeader(201)
			w.Write(b)
		default:
			io.WriteString(w, "hello")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	req := func(method, path string, body string) *Request {
		r, err := NewRequest(RequestOptions{Method: method, URL: mustURL(srv.URL + path), Body: []byte(body),
			Header: map[string][]string{"X-Api-Key": {"secret"}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	c := &Conn{}
	defer c.Close()
	deadline := func() time.Time { return time.Now().Add(5 * time.Second) }
	for i := 0; i < 20; i++ {
		resp, err := c.Do(req("GET", "/", ""), deadline())
		if err != nil || resp.Status != 200 {
			t.Fatalf("request %d: %v %d", i, err, resp.Status)
		}
		if resp.Bytes < 5 || resp.FirstByte.IsZero() {
			t.Fatalf("request %d: bytes %d first byte %v", i, resp.Bytes, resp.FirstByte)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 keep-alive requests used %d connections, want 1", n)
	}
	if resp, err := c.Do(req("GET", "/chunked", ""), deadline()); err != nil || resp.Status != 200 {
		t.Fatalf("chunked: %v %d", err, resp.Status)
	}
	if resp, err := c.Do(req("HEAD", "/", ""), deadline()); err != nil || resp.Status != 200 {
		t.Fatalf("head: %v %d", err, resp.Status)
	}
	if resp, err := c.Do(req("POST", "/echo", "payload"), deadline()); err != nil || resp.Status != 201 {
		t.Fatalf("post: %v %d", err, resp.Status)
	}
	if resp, err := c.Do(req("GET", "/close", ""), deadline()); err != nil || resp.Status != 200 {
		t.Fatalf("close: %v %d", err, resp.Status)
	}
	before := conns.Load()
	if resp, err := c.Do(req("GET", "/", ""), deadline()); err != nil || resp.Status != 200 {
		t.Fatalf("after close: %v %d", err, resp.Status)
	}
	if conns.Load() != before+1 {
		t.Errorf("after Connection: close the client did not redial")
	}
	// The server drops idle connections: the next request must succeed on a
	// fresh one, not report an error.
	srv.CloseClientConnections()
	if resp, err := c.Do(req("GET", "/", ""), deadline()); err != nil || resp.Status != 200 {
		t.Fatalf("after the server closed the idle connection: %v %d", err, resp.Status)
	}
}

func TestConnTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	r, _ := NewRequest(RequestOptions{URL: mustURL(srv.URL)})
	c := &Conn{}
	defer c.Close()
	start := time.Now()
	_, err := c.Do(r, time.Now().Add(100*time.Millisecond))
	if !isTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("timeout took %s", time.Since(start))
	}
}

func BenchmarkConnDo(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	r, _ := NewRequest(RequestOptions{URL: mustURL(srv.URL)})
	c := &Conn{}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Do(r, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadResponse(b *testing.B) {
	for _, tc := range []struct{ name, resp string }{
		{"content-length", "HTTP/1.1 200 OK\r\nDate: Sun, 22 Nov 2026 22:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world!"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nd\r\nhello, world!\r\n0\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sr := strings.NewReader(tc.resp)
			br := bufio.NewReader(sr)
			b.ReportAllocs()
			for b.Loop() {
				sr.Reset(tc.resp)
				br.Reset(sr)
				if _, _, err := ReadResponse(br, false, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cannedConn answers every request with the same response, without a
// network: the client's own cost per request.
type cannedConn struct {
	net.Conn
	resp    []byte
	pending []byte
}

func (c *cannedConn) Write(p []byte) (int, error) { c.pending = c.resp; return len(p), nil }
func (c *cannedConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}
func (c *cannedConn) SetDeadline(time.Time) error { return nil }
func (c *cannedConn) Close() error                { return nil }

type cannedDialer struct{ c *cannedConn }

func (d cannedDialer) Dial(string, string) (net.Conn, error) { return d.c, nil }

func BenchmarkConnDoNoNetwork(b *testing.B) {
	cc := &cannedConn{resp: []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 22:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nhello, world!")}
	r, _ := NewRequest(RequestOptions{URL: mustURL("http://127.0.0.1:8080/")})
	c := &Conn{Dialer: cannedDialer{cc}}
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Do(r, deadline); err != nil {
			b.Fatal(err)
		}
	}
}

func TestInterrupt(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	r, _ := NewRequest(RequestOptions{URL: mustURL(srv.URL)})
	c := &Conn{DeadlineSlack: time.Second}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(r, time.Now().Add(time.Minute))
		errc <- err
	}()
	// Interrupt once the request is in flight: the server has it.
	select {
	case <-arrived:
	case err := <-errc:
		t.Fatalf("request ended before the server saw it: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the server")
	}
	c.Interrupt()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrInterrupted) {
			t.Errorf("err = %v, want ErrInterrupted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Interrupt did not stop the request")
	}
	if _, err := c.Do(r, time.Now().Add(time.Minute)); !errors.Is(err, ErrInterrupted) {
		t.Errorf("after Interrupt: err = %v, want ErrInterrupted", err)
	}
}
