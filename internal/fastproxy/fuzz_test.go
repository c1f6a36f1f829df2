package fastproxy

import (
	"bufio"
	"bytes"
	"io"
	"net/url"
	"testing"

	"github.com/headroom-dev/headroom/internal/httpwire"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// FuzzDifferential is TestDifferential over arbitrary bytes, pipelined
// requests included: whatever the proxy forwards, the upstream (framing with
// httpwire, and net/http re-reading the same bytes) sees as exactly the
// requests the strict parse of the input found before its first refusal,
// with the same bodies, each with exactly one X-Request-Id, and nothing
// more; through a proxy that trusts the client (keeping its X-Request-Id
// when well-formed) and one that does not.
func FuzzDifferential(f *testing.F) {
	for _, c := range testenv.QuotedCases(f, "../httpwire/testdata/requests.txt") {
		f.Add(c.Data)
	}
	f.Add([]byte("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: r-1\r\nX-Request-Id: r-1\r\n\r\n"))
	up := startRawUpstream(f)
	proxies := []string{
		startProxy(f, up.ln.Addr().String(), ""),
		startProxy(f, up.ln.Addr().String(), "keys: {trusted_proxies: [127.0.0.1/32]}\n"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := expectedBodies(data)
		for _, proxy := range proxies {
			exchangeRaw(t, proxy, data)
			raw, n, errs := up.take()
			if len(errs) > 0 {
				t.Fatalf("the upstream could not frame what it received: %v\n%q", errs, raw)
			}
			got, err := netHTTPRequests(raw)
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
