package fastproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
// X-Forwarded-For kept only from a trusted proxy.
func TestRequestRewrite(t *testing.T) {
	const req = "GET /p?q=1 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive, X-Hop\r\n" +
		"X-Hop: secret\r\nKeep-Alive: 5\r\nForwarded: for=evil\r\nX-Forwarded-Host: evil\r\nX-Request-Id: r-1\r\nTE: trailers\r\n\r\n"
	for _, c := range []struct {
		name, yaml, xff string
	}{
		{"untrusted peer", "", "127.0.0.1"},
		{"trusted peer", "keys: {trusted_proxies: [127.0.0.1/32]}\n", "203.0.113.7, 127.0.0.1"},
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
				"X-Request-Id": "r-1", "X-Hop": "", "Keep-Alive": "", "Forwarded": "", "Te": "", "Connection": "",
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
