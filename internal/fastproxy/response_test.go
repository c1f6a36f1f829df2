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

	"github.com/headroom-dev/headroom/internal/proxytest"
	"github.com/headroom-dev/headroom/internal/requestid"
)

// TestResponseFraming: the fast path re-frames what the upstream sends
// for the client (proxytest.ResponseFraming).
func TestResponseFraming(t *testing.T) { proxytest.ResponseFraming(t, startProxy) }

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
			up := proxytest.StartRawUpstream(t)
			proxy := startProxy(t, up.Addr(), c.yaml)
			if rs := proxytest.Exchange(t, proxy, []byte(req)); len(rs) != 1 || rs[0].StatusCode != 200 {
				t.Fatalf("answers %v", proxytest.Statuses(rs))
			}
			raw, _, _ := up.Take()
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
			up := proxytest.StartRawUpstream(t)
			proxy := startProxy(t, up.Addr(), c.yaml)
			const n = 3
			req := strings.Repeat("GET / HTTP/1.1\r\nHost: a\r\n"+c.fields+"\r\n", n)
			rs := proxytest.Exchange(t, proxy, []byte(req))
			raw, _, _ := up.Take()
			br := bufio.NewReader(strings.NewReader(string(raw)))
			if len(rs) != n {
				t.Fatalf("%d answers %v, want %d", len(rs), proxytest.Statuses(rs), n)
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
	up := proxytest.CannedUpstream(t, "HTTP/1.1 200 OK\r\nX-Request-Id: the-upstream's\r\nx-request-id: another\r\nContent-Length: 2\r\n\r\nok", proxytest.KeepOpen)
	proxy := startProxy(t, up, "")
	rs := proxytest.Exchange(t, proxy, []byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	if len(rs) != 1 || rs[0].StatusCode != 200 {
		t.Fatalf("answers %v", proxytest.Statuses(rs))
	}
	if id := rs[0].Header.Values("X-Request-Id"); len(id) != 1 || !isNewID(id[0]) {
		t.Errorf("X-Request-Id %q, want the proxy's id alone", id)
	}
}

// TestRequestIDOnRefusals: the proxy's own answers name the request too,
// in net/http's field order (sorted).
func TestRequestIDOnRefusals(t *testing.T) {
	up := proxytest.StartRawUpstream(t)
	proxy := startProxy(t, up.Addr(), "request_body: {max: 4}\n")
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
