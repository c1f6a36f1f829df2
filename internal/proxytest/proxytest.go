// Package proxytest is the differential framing check the guard's own
// HTTP/1.1 front-ends (internal/fastproxy, internal/evproxy) share, one
// copy for both: a raw upstream that records every byte it receives and
// frames it with httpwire, a raw client, and the drivers that send the
// hostile request corpus (internal/httpwire/testdata/requests.txt), or a
// fuzzer's bytes, through a proxy and check that each request is either
// refused by the proxy or arrives framed exactly as the proxy framed it;
// and the table of upstream answers each must re-frame for its client
// (ResponseFraming). Only tests import it.
package proxytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/httpwire"
	"github.com/headroom-dev/headroom/internal/requestid"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// Corpus is the hostile request corpus, relative to the directory of a
// package beside internal/httpwire (where go test runs a package's
// tests).
const Corpus = "../httpwire/testdata/requests.txt"

// StartProxy serves a proxy in front of upstream (host:port) with the
// configuration yaml (after its upstream line) until the test ends, and
// returns its address.
type StartProxy func(t testing.TB, upstream, yaml string) string

// Peers are the two configurations the drivers run a proxy with: the
// client a trusted proxy or not (whose X-Forwarded-For and X-Request-Id
// the proxy keeps, or replaces).
var Peers = []struct{ Name, YAML string }{
	{"untrusted", ""},
	{"trusted", "keys: {trusted_proxies: [127.0.0.1/32]}\n"},
}

// Core is an admission core for a proxy in front of upstream (host:port)
// with the configuration yaml (after its upstream line).
func Core(t testing.TB, upstream, yaml string) *admit.Core {
	t.Helper()
	cfg, err := config.Parse([]byte("upstream: http://" + upstream + "\n" + yaml))
	if err != nil {
		t.Fatal(err)
	}
	core, err := admit.New(admit.Options{Config: cfg, Secret: []byte("test-secret-0123456789"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return core
}

// RawUpstream is an upstream that records every byte it receives and
// answers each request it can frame with OK. It frames with httpwire;
// the drivers re-read what it recorded with net/http's parser too, so a
// disagreement between the two shows.
type RawUpstream struct {
	ln net.Listener

	mu       sync.Mutex
	received bytes.Buffer // every byte, all connections, in arrival order
	requests int
	errs     []error
}

// OK is the raw upstream's answer (a []byte, so that answering does not
// allocate and a benchmark's allocs/op are the proxy's own).
var OK = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

// StartRawUpstream starts a RawUpstream, closed when the test ends.
func StartRawUpstream(t testing.TB) *RawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &RawUpstream{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

// Addr is the upstream's host:port.
func (u *RawUpstream) Addr() string { return u.ln.Addr().String() }

type recordingReader struct {
	u *RawUpstream
	c net.Conn
}

func (r recordingReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.u.mu.Lock()
	r.u.received.Write(p[:n])
	r.u.mu.Unlock()
	return n, err
}

func (u *RawUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(recordingReader{u, c})
	var r httpwire.Request
	for {
		err := httpwire.ReadRequest(br, &r, 0)
		if err == io.EOF {
			return
		}
		if err == nil {
			switch {
			case r.Chunked:
				_, err = io.Copy(io.Discard, httpwire.NewChunkedReader(br))
			case r.ContentLength > 0:
				_, err = io.Copy(io.Discard, &httpwire.LengthReader{R: br, N: r.ContentLength})
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				u.mu.Lock()
				u.errs = append(u.errs, err)
				u.mu.Unlock()
			}
			return
		}
		u.mu.Lock()
		u.requests++
		u.mu.Unlock()
		if _, err := c.Write(OK); err != nil {
			return
		}
	}
}

// Take returns what arrived since the last Take: the bytes, the requests
// the upstream framed, and what it could not frame.
func (u *RawUpstream) Take() (raw []byte, requests int, errs []error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	raw = bytes.Clone(u.received.Bytes())
	requests, errs = u.requests, u.errs
	u.received.Reset()
	u.requests, u.errs = 0, nil
	return raw, requests, errs
}

// Exchange sends data on a fresh connection to addr, half-closes it, and
// reads every response until the proxy closes.
func Exchange(t testing.TB, addr string, data []byte) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		out = append(out, res)
	}
}

// NetHTTPRequests frames raw with net/http's server-side parser and
// returns each request's body. A request without exactly one well-formed
// X-Request-Id is an error: the proxy always sends one.
func NetHTTPRequests(raw []byte) ([]string, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	var bodies []string
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return bodies, nil
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return bodies, err
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return bodies, err
		}
		if ids := req.Header.Values("X-Request-Id"); len(ids) != 1 || !requestid.Valid(ids[0]) {
			return bodies, fmt.Errorf("request %d reached the upstream with X-Request-Id %q, want exactly one well-formed id", len(bodies), ids)
		}
		bodies = append(bodies, string(b))
	}
}

// Statuses are the responses' status codes.
func Statuses(rs []*http.Response) []int {
	var s []int
	for _, r := range rs {
		s = append(s, r.StatusCode)
	}
	return s
}

// Differential sends every case of the corpus over a raw socket through a
// proxy started by start to a raw upstream, once per Peers: each request
// is either refused by the proxy (its status, the connection closed,
// nothing reaching the upstream) or arrives framed exactly as the proxy
// framed it: one request with the very body the proxy decoded, read the
// same way by net/http's parser, and no byte left over that another parser
// could take for a request of its own; either way, each request reaches
// the upstream with exactly one X-Request-Id.
func Differential(t *testing.T, start StartProxy) {
	for _, peer := range Peers {
		t.Run(peer.Name, func(t *testing.T) { differential(t, start, peer.YAML) })
	}
}

func differential(t *testing.T, start StartProxy, yaml string) {
	up := StartRawUpstream(t)
	proxy := start(t, up.Addr(), yaml)
	for _, c := range testenv.QuotedCases(t, Corpus) {
		name, want := c.Fields[0], c.Fields[1]
		t.Run(name, func(t *testing.T) {
			// What the proxy must have understood: the strict parse.
			br := bufio.NewReader(bytes.NewReader(c.Data))
			var ref httpwire.Request
			var body []byte
			err := httpwire.ReadRequest(br, &ref, 0)
			if err == nil && ref.Chunked {
				body, err = io.ReadAll(httpwire.NewChunkedReader(br))
			} else if err == nil && ref.ContentLength > 0 {
				body, err = io.ReadAll(&httpwire.LengthReader{R: br, N: ref.ContentLength})
			}
			resps := Exchange(t, proxy, c.Data)
			raw, n, errs := up.Take()
			if len(errs) > 0 {
				t.Fatalf("the upstream could not frame what it received: %v\n%q", errs, raw)
			}
			if want != "ok" {
				if len(resps) != 1 || strconv.Itoa(resps[0].StatusCode) != want {
					t.Fatalf("want one %s answer, got %d answers %v", want, len(resps), Statuses(resps))
				}
				if !resps[0].Close {
					t.Errorf("the refusal did not close the connection")
				}
				if len(raw) > 0 {
					t.Fatalf("a refused request reached the upstream: %q", raw)
				}
				return
			}
			if err != nil {
				t.Fatalf("corpus says ok, the strict parse says %v", err)
			}
			if len(resps) != 1 || resps[0].StatusCode != 200 || n != 1 {
				t.Fatalf("want one request through: %d answers %v, upstream framed %d requests from %q", len(resps), Statuses(resps), n, raw)
			}
			bodies, herr := NetHTTPRequests(raw)
			if herr != nil || len(bodies) != 1 || bodies[0] != string(body) {
				t.Fatalf("net/http frames what the upstream got as %d requests %q (%v), want one with body %q:\n%q", len(bodies), bodies, herr, body, raw)
			}
		})
	}
}

// Fuzz is Differential over arbitrary bytes, pipelined requests included,
// seeded with the corpus: whatever the proxy forwards, the upstream
// (framing with httpwire, and net/http re-reading the same bytes) sees as
// exactly the requests the strict parse of the input found before its
// first refusal, with the same bodies, each with exactly one X-Request-Id,
// and nothing more; through a proxy of each of Peers.
func Fuzz(f *testing.F, start StartProxy) {
	for _, c := range testenv.QuotedCases(f, Corpus) {
		f.Add(c.Data)
	}
	f.Add([]byte("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: r-1\r\nX-Request-Id: r-1\r\n\r\n"))
	up := StartRawUpstream(f)
	var proxies []string
	for _, peer := range Peers {
		proxies = append(proxies, start(f, up.Addr(), peer.YAML))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := expectedBodies(data)
		for _, proxy := range proxies {
			Exchange(t, proxy, data)
			raw, n, errs := up.Take()
			if len(errs) > 0 {
				t.Fatalf("the upstream could not frame what it received: %v\n%q", errs, raw)
			}
			got, err := NetHTTPRequests(raw)
			if err != nil || n != len(want) || len(got) != len(want) {
				t.Fatalf("want %d requests through, the upstream framed %d, net/http %d (%v):\n%q", len(want), n, len(got), err, raw)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("request %d: body %q upstream, want %q", i, got[i], want[i])
				}
			}
		}
	})
}

// expectedBodies is what the proxy must forward: the requests of data the
// strict parser accepts, in order, until one is refused, needs the
// fallback server, or ends the connection.
func expectedBodies(data []byte) []string {
	br := bufio.NewReader(bytes.NewReader(data))
	var r httpwire.Request
	var out []string
	for {
		if err := httpwire.ReadRequest(br, &r, 0); err != nil {
			return out
		}
		if r.Upgrade || r.ConnectionUpgrade || r.Expect != nil || !r.OriginForm() {
			return out
		}
		if _, err := url.PathUnescape(string(r.Path())); err != nil {
			return out
		}
		var body []byte
		var err error
		switch {
		case r.Chunked:
			body, err = io.ReadAll(httpwire.NewChunkedReader(br))
		case r.ContentLength > 0:
			body, err = io.ReadAll(&httpwire.LengthReader{R: br, N: r.ContentLength})
		}
		if err != nil {
			return out
		}
		out = append(out, string(body))
		if !r.KeepAlive {
			return out
		}
	}
}

// End is how a CannedUpstream ends a connection after its answer.
type End int

const (
	KeepOpen   End = iota // answer every request on the connection
	CloseAfter            // close the connection after one answer
	ResetAfter            // reset it after one answer (SO_LINGER 0)
)

// CannedUpstream answers every request on a connection with resp, and
// ends the connection after it as end says.
func CannedUpstream(t testing.TB, resp string, end End) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, resp)
					if end == ResetAfter {
						c.(*net.TCPConn).SetLinger(0)
					}
					if end != KeepOpen {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// ResponseFraming checks that what the upstream sends is re-framed for
// the client by a proxy that start starts (chunked stays chunked, a close-delimited body becomes chunked for
// an HTTP/1.1 client and close-delimited for HTTP/1.0), and a malformed
// upstream response is a 502, never passed through.
func ResponseFraming(t *testing.T, start StartProxy) {
	for _, c := range []struct {
		name, upstream string
		closeAfter     bool
		request        string
		status         int
		body           string
		chunked, close bool
	}{
		{name: "length", upstream: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 200, body: "hello"},
		{name: "chunked", upstream: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n",
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 200, body: "hello", chunked: true},
		{name: "until-close to 1.1", upstream: "HTTP/1.1 200 OK\r\n\r\nhello", closeAfter: true,
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 200, body: "hello", chunked: true},
		{name: "until-close to 1.0", upstream: "HTTP/1.1 200 OK\r\n\r\nhello", closeAfter: true,
			request: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", status: 200, body: "hello", close: true},
		{name: "head keeps length", upstream: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
			request: "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", status: 200},
		{name: "hop-by-hop dropped", upstream: "HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 200, body: "ok"},
		{name: "malformed: CL and TE", upstream: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 502, close: true},
		{name: "malformed: obs-fold", upstream: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 502, close: true},
		{name: "malformed: status line", upstream: "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
			request: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 502, close: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			end := KeepOpen
			if c.closeAfter {
				end = CloseAfter
			}
			up := CannedUpstream(t, c.upstream, end)
			proxy := start(t, up, "")
			conn, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, c.request)
			br := bufio.NewReader(conn)
			method := strings.Fields(c.request)[0]
			res, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if res.StatusCode != c.status || (c.status == 200 && string(b) != c.body) {
				t.Fatalf("got %d %q, want %d %q", res.StatusCode, b, c.status, c.body)
			}
			if chunked := len(res.TransferEncoding) > 0; chunked != c.chunked {
				t.Errorf("chunked to the client: %v, want %v", chunked, c.chunked)
			}
			if res.Close != c.close {
				t.Errorf("connection close: %v, want %v", res.Close, c.close)
			}
			if res.Header.Get("X-Private") != "" || res.Header.Get("Keep-Alive") != "" {
				t.Errorf("hop-by-hop fields passed on: %v", res.Header)
			}
			if res.Header.Get("Date") == "" {
				t.Errorf("no Date field")
			}
			if method == "HEAD" && res.ContentLength != 5 {
				t.Errorf("HEAD answer's Content-Length %d, want the upstream's 5", res.ContentLength)
			}
		})
	}
}
