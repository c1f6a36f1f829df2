package fastproxy

import (
	"bufio"
	"cmp"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/requestid"
)

// cannedUpstream answers every request on a connection with resp, then
// closes the connection if closeAfter.
func cannedUpstream(t *testing.T, resp string, closeAfter bool) string {
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
					if closeAfter {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestResponseFraming: what the upstream sends is re-framed for the
// client (chunked stays chunked, a close-delimited body becomes chunked for
// an HTTP/1.1 client and close-delimited for HTTP/1.0), and a malformed
// upstream response is a 502, never passed through.
func TestResponseFraming(t *testing.T) {
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
			up := cannedUpstream(t, c.upstream, c.closeAfter)
			proxy := startProxy(t, up, "")
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

// TestRequestRewrite: what the upstream receives is the client's head with
// only the proxy's rewrites: hop-by-hop fields (and those Connection
// names) dropped, Forwarded and X-Forwarded-* replaced, the client's
// X-Forwarded-For and X-Request-Id kept only from a trusted proxy.
func TestRequestRewrite(t *testing.T) {
	const req = "GET /p?q=1 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive, X-Hop\r\n" +
		"X-Hop: secret\r\nKeep-Alive: 5\r\nForwarded: for=evil\r\nX-Forwarded-Host: evil\r\nX-Request-Id: r-1\r\nTE: trailers\r\n\r\n"
	for _, c := range []struct {
		name, yaml, xff, rid string
	}{
		{"untrusted peer", "", "127.0.0.1", ""},
		{"trusted peer", "keys: {trusted_proxies: [127.0.0.1/32]}\n", "203.0.113.7, 127.0.0.1", "r-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := startRawUpstream(t)
			proxy := startProxy(t, up.ln.Addr().String(), c.yaml)
			if rs := exchangeRaw(t, proxy, []byte(req)); len(rs) != 1 || rs[0].StatusCode != 200 {
				t.Fatalf("answers %v", statuses(rs))
			}
			raw, _, _ := up.take()
			got, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(raw))))
			if err != nil {
				t.Fatalf("%v: %q", err, raw)
			}
			want := map[string]string{
				"X-Forwarded-For": c.xff, "X-Forwarded-Host": "app.example", "X-Forwarded-Proto": "http",
				"X-Hop": "", "Keep-Alive": "", "Forwarded": "", "Te": "", "Connection": "",
			}
			if c.rid != "" {
				want["X-Request-Id"] = c.rid
			} else if id := got.Header.Values("X-Request-Id"); len(id) != 1 || !isNewID(id[0]) {
				t.Errorf("X-Request-Id %q, want one new id in place of the untrusted client's", id)
			}
			for k, v := range want {
				if g := strings.Join(got.Header.Values(k), ","); g != v {
					t.Errorf("%s: %q, want %q", k, g, v)
				}
			}
			if got.Host != "app.example" || got.RequestURI != "/p?q=1" {
				t.Errorf("host %q target %q", got.Host, got.RequestURI)
			}
		})
	}
}

// isNewID reports whether id is one the proxy made.
func isNewID(id string) bool {
	return len(id) == requestid.Len && strings.Trim(id, "0123456789abcdef") == ""
}

// TestRequestID: each request reaches the upstream with exactly one
// X-Request-Id, the trusted proxy's well-formed one or a new one, and the
// client gets that same id back, in place of any the upstream answered
// with; ids are new for each request of a keep-alive connection.
func TestRequestID(t *testing.T) {
	const trusted = "keys: {trusted_proxies: [127.0.0.1/32]}\n"
	for _, c := range []struct {
		name, yaml, fields, keep string
	}{
		{"trusted, valid: kept", trusted, "X-Request-Id: r-1\r\n", "r-1"},
		{"trusted, lower-case name: kept", trusted, "x-request-id: r-1\r\n", "r-1"},
		{"trusted, tab: replaced", trusted, "X-Request-Id: r\t1\r\n", ""},
		{"trusted, non-ASCII: replaced", trusted, "X-Request-Id: r-\xc3\xa9\r\n", ""},
		{"trusted, list: replaced", trusted, "X-Request-Id: r-1, r-2\r\n", ""},
		{"trusted, too long: replaced", trusted, "X-Request-Id: " + strings.Repeat("i", requestid.MaxLen+1) + "\r\n", ""},
		{"trusted, repeated: replaced", trusted, "X-Request-Id: r-1\r\nX-REQUEST-ID: r-1\r\n", ""},
		{"trusted, absent: generated", trusted, "", ""},
		{"untrusted, valid: replaced", "", "X-Request-Id: r-1\r\n", ""},
		{"untrusted, absent: generated", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := startRawUpstream(t)
			proxy := startProxy(t, up.ln.Addr().String(), c.yaml)
			const n = 3
			req := strings.Repeat("GET / HTTP/1.1\r\nHost: a\r\n"+c.fields+"\r\n", n)
			rs := exchangeRaw(t, proxy, []byte(req))
			raw, _, _ := up.take()
			br := bufio.NewReader(strings.NewReader(string(raw)))
			if len(rs) != n {
				t.Fatalf("%d answers %v, want %d", len(rs), statuses(rs), n)
			}
			seen := map[string]bool{}
			for i := range n {
				got, err := http.ReadRequest(br)
				if err != nil {
					t.Fatalf("request %d: %v: %q", i, err, raw)
				}
				id := got.Header.Values("X-Request-Id")
				if len(id) != 1 || (c.keep != "" && id[0] != c.keep) || (c.keep == "" && !isNewID(id[0])) {
					t.Fatalf("request %d reached the upstream with X-Request-Id %q, want %s", i, id, cmp.Or(c.keep, "one new id"))
				}
				if c.keep == "" && seen[id[0]] {
					t.Errorf("request %d: id %s given twice", i, id[0])
				}
				seen[id[0]] = true
				if back := rs[i].Header.Values("X-Request-Id"); len(back) != 1 || back[0] != id[0] {
					t.Errorf("request %d: the client got X-Request-Id %q, want %q", i, back, id[0])
				}
			}
		})
	}
}

// TestRequestIDReplacesUpstreams: the proxy's id is the one the client
// gets; the upstream's own is not passed on beside it.
func TestRequestIDReplacesUpstreams(t *testing.T) {
	up := cannedUpstream(t, "HTTP/1.1 200 OK\r\nX-Request-Id: the-upstream's\r\nx-request-id: another\r\nContent-Length: 2\r\n\r\nok", false)
	proxy := startProxy(t, up, "")
	rs := exchangeRaw(t, proxy, []byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	if len(rs) != 1 || rs[0].StatusCode != 200 {
		t.Fatalf("answers %v", statuses(rs))
	}
	if id := rs[0].Header.Values("X-Request-Id"); len(id) != 1 || !isNewID(id[0]) {
		t.Errorf("X-Request-Id %q, want the proxy's id alone", id)
	}
}

// TestRequestIDOnRefusals: the proxy's own answers name the request too,
// in net/http's field order (sorted).
func TestRequestIDOnRefusals(t *testing.T) {
	up := startRawUpstream(t)
	proxy := startProxy(t, up.ln.Addr().String(), "request_body: {max: 4}\n")
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
	head, err := bufio.NewReader(c).ReadString(0)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := res.Header.Values("X-Request-Id"); res.StatusCode != 413 || len(id) != 1 || !isNewID(id[0]) {
		t.Fatalf("%d with X-Request-Id %q, want 413 with a new id", res.StatusCode, id)
	}
	var names []string
	for _, line := range strings.Split(head[:strings.Index(head, "\r\n\r\n")], "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		if name == "Connection" {
			break // then Date and Content-Length, as net/http writes them
		}
		names = append(names, name)
	}
	if !slices.IsSorted(names) || !slices.Contains(names, "X-Request-Id") {
		t.Errorf("fields %q, want them sorted, X-Request-Id among them", names)
	}
}
