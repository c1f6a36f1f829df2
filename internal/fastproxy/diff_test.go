package fastproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/httpwire"
	"github.com/headroom-dev/headroom/internal/requestid"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// rawUpstream is an upstream that records every byte it receives and
// answers each request it can frame with a small 200. It frames with
// httpwire; the test re-reads what it recorded with net/http's parser too,
// so a disagreement between the two shows.
type rawUpstream struct {
	ln net.Listener

	mu       sync.Mutex
	received bytes.Buffer // every byte, all connections, in arrival order
	requests int
	errs     []error
}

func startRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
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

type recordingReader struct {
	u *rawUpstream
	c net.Conn
}

func (r recordingReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.u.mu.Lock()
	r.u.received.Write(p[:n])
	r.u.mu.Unlock()
	return n, err
}

func (u *rawUpstream) serve(c net.Conn) {
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
		if _, err := c.Write(rawOK); err != nil {
			return
		}
	}
}

// rawOK is the raw upstream's answer (a []byte, so that answering does
// not allocate and BenchmarkProxy's allocs/op are the proxy's own).
var rawOK = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

// take returns what arrived since the last take.
func (u *rawUpstream) take() (raw []byte, requests int, errs []error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	raw = bytes.Clone(u.received.Bytes())
	requests, errs = u.requests, u.errs
	u.received.Reset()
	u.requests, u.errs = 0, nil
	return raw, requests, errs
}

func startProxy(t testing.TB, upstream, yaml string) string {
	t.Helper()
	cfg, err := config.Parse([]byte("upstream: http://" + upstream + "\n" + yaml))
	if err != nil {
		t.Fatal(err)
	}
	core, err := admit.New(admit.Options{Config: cfg, Secret: []byte("test-secret-0123456789"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Core: core, Upstream: upstream, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// exchange sends data on a fresh connection, half-closes it, and reads
// every response until the proxy closes.
func exchangeRaw(t *testing.T, addr string, data []byte) []*http.Response {
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

// netHTTPRequests frames raw with net/http's server-side parser and
// returns each request's body. A request without exactly one well-formed
// X-Request-Id is an error: the proxy always sends one.
func netHTTPRequests(raw []byte) ([]string, error) {
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

// TestDifferential sends every case of the hostile corpus over a raw
// socket through the proxy to a raw upstream: each request is either
// refused by the proxy (its status, the connection closed, nothing
// reaching the upstream) or arrives framed exactly as the proxy framed it:
// one request with the very body the proxy decoded, read the same way by
// net/http's parser, and no byte left over that another parser could take
// for a request of its own.
//
// The client is a trusted proxy in one run and not in the other (whose
// X-Forwarded-For and X-Request-Id the proxy keeps, or replaces): either
// way, each request reaches the upstream with exactly one X-Request-Id.
func TestDifferential(t *testing.T) {
	for _, peer := range []struct{ name, yaml string }{
		{"untrusted", ""},
		{"trusted", "keys: {trusted_proxies: [127.0.0.1/32]}\n"},
	} {
		t.Run(peer.name, func(t *testing.T) { differential(t, peer.yaml) })
	}
}

func differential(t *testing.T, yaml string) {
	up := startRawUpstream(t)
	proxy := startProxy(t, up.ln.Addr().String(), yaml)
	for _, c := range testenv.QuotedCases(t, "../httpwire/testdata/requests.txt") {
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
			resps := exchangeRaw(t, proxy, c.Data)
			raw, n, errs := up.take()
			if len(errs) > 0 {
				t.Fatalf("the upstream could not frame what it received: %v\n%q", errs, raw)
			}
			if want != "ok" {
				if len(resps) != 1 || strconv.Itoa(resps[0].StatusCode) != want {
					t.Fatalf("want one %s answer, got %d answers %v", want, len(resps), statuses(resps))
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
				t.Fatalf("want one request through: %d answers %v, upstream framed %d requests from %q", len(resps), statuses(resps), n, raw)
			}
			bodies, herr := netHTTPRequests(raw)
			if herr != nil || len(bodies) != 1 || bodies[0] != string(body) {
				t.Fatalf("net/http frames what the upstream got as %d requests %q (%v), want one with body %q:\n%q", len(bodies), bodies, herr, body, raw)
			}
		})
	}
}

func statuses(rs []*http.Response) []int {
	var s []int
	for _, r := range rs {
		s = append(s, r.StatusCode)
	}
	return s
}
