package guard

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/requestid"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// rawDo sends req, as it is, on a fresh connection to the proxy and
// returns the response.
func rawDo(t *testing.T, e *env, req string) (*http.Response, string) {
	t.Helper()
	rs, _ := rawResponses(t, e, req, 1)
	if len(rs) != 1 {
		t.Fatalf("no response to %q", req)
	}
	b, _ := io.ReadAll(rs[0].Body)
	return rs[0], string(b)
}

// generated reports whether id is one the proxy made.
func generated(id string) bool {
	return len(id) == requestid.Len && strings.Trim(id, "0123456789abcdef") == ""
}

// TestRequestID: the upstream gets exactly one X-Request-Id, a trusted
// proxy's own when it sent one well-formed id, the guard's otherwise; the
// client gets the same id back, not the upstream's; the JSON access log
// records it.
func TestRequestID(t *testing.T) {
	const trusted = "keys: {trusted_proxies: [127.0.0.1/32]}\n"
	long := strings.Repeat("i", requestid.MaxLen)
	for _, c := range []struct {
		name, yaml string
		fields     string // the request's X-Request-Id lines
		keep       string // the id the upstream must get; "" for a new one
	}{
		{"trusted, valid: kept", trusted, "X-Request-Id: r-1\r\n", "r-1"},
		{"trusted, uuid: kept", trusted, "x-request-id: f81d4fae-7dec-11d0-a765-00a0c91e6bf6\r\n", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"},
		{"trusted, at the length bound: kept", trusted, "X-Request-Id: " + long + "\r\n", long},
		{"trusted, too long: replaced", trusted, "X-Request-Id: " + long + "i\r\n", ""},
		{"trusted, space: replaced", trusted, "X-Request-Id: r 1\r\n", ""},
		{"trusted, list: replaced", trusted, "X-Request-Id: r-1,r-2\r\n", ""},
		{"trusted, empty: replaced", trusted, "X-Request-Id: \r\n", ""},
		{"trusted, non-ASCII: replaced", trusted, "X-Request-Id: r-\xc3\xa9\r\n", ""},
		{"trusted, repeated: replaced", trusted, "X-Request-Id: r-1\r\nX-Request-Id: r-2\r\n", ""},
		{"trusted, repeated alike: replaced", trusted, "X-Request-Id: r-1\r\nx-request-id: r-1\r\n", ""},
		{"trusted, absent: generated", trusted, "", ""},
		{"untrusted, valid: replaced", "", "X-Request-Id: r-1\r\n", ""},
		{"untrusted, absent: generated", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen := make(chan []string, 1)
			e := newEnv(t, envOpts{yaml: c.yaml + "access_log: {format: json}\n", upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Values("X-Request-Id")
				w.Header().Set("X-Request-Id", "the-upstream's-own")
				io.WriteString(w, "ok")
			})})
			res, body := rawDo(t, e, "GET /x HTTP/1.1\r\nHost: app\r\nX-Api-Key: k\r\n"+c.fields+"\r\n")
			if res.StatusCode != 200 || body != "ok" {
				t.Fatalf("answer %d %q", res.StatusCode, body)
			}
			up := testenv.Recv(t, "upstream request", seen)
			if len(up) != 1 {
				t.Fatalf("the upstream got X-Request-Id %q, want exactly one", up)
			}
			if c.keep != "" && up[0] != c.keep {
				t.Errorf("upstream X-Request-Id %q, want the trusted proxy's %q", up[0], c.keep)
			}
			if c.keep == "" && !generated(up[0]) {
				t.Errorf("upstream X-Request-Id %q, want one the guard made", up[0])
			}
			if got := res.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != up[0] {
				t.Errorf("client got X-Request-Id %q, want the upstream request's %q alone", got, up[0])
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(e.logLines(1)[0]), &line); err != nil {
				t.Fatal(err)
			}
			if line["request_id"] != up[0] {
				t.Errorf("access log request_id %v, want %q", line["request_id"], up[0])
			}
		})
	}
}

// TestRequestIDUnique: every request gets its own id, on one keep-alive
// connection and across connections.
func TestRequestIDUnique(t *testing.T) {
	seen := make(chan string, 1)
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Request-Id")
	})})
	ids := map[string]bool{}
	for i := range 300 {
		r := e.do("GET", "/", "X-Api-Key", "k", "X-Request-Id", "same-every-time")
		up := testenv.Recv(t, "upstream request", seen)
		if r.status != 200 || r.header.Get("X-Request-Id") != up || !generated(up) {
			t.Fatalf("request %d: %d, client id %q, upstream id %q", i, r.status, r.header.Get("X-Request-Id"), up)
		}
		if ids[up] {
			t.Fatalf("request %d: id %s given twice", i, up)
		}
		ids[up] = true
		if i%100 == 99 {
			http.DefaultClient.CloseIdleConnections()
		}
	}
}

// TestRequestIDOnOwnAnswers: the guard's own answers (a refusal, a body
// too large, an unreachable upstream) carry the request's id too, the
// one its access-log line has.
func TestRequestIDOnOwnAnswers(t *testing.T) {
	for _, c := range []struct {
		name, yaml, req string
		status          int
		setup           func(e *env)
	}{
		{name: "429 restricted", status: 429,
			req:   "GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: bad\r\nX-Request-Id: r-1\r\n\r\n",
			setup: func(e *env) { e.adminDo("POST", "/v1/keys/bad/restrict?for=10m", nil) }},
		{name: "413 body too large", yaml: "request_body: {max: 4}\n", status: 413,
			req: "POST / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k\r\nX-Request-Id: r-1\r\nContent-Length: 10\r\n\r\n0123456789"},
		{name: "502 upstream down", status: 502,
			req: "GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k\r\nX-Request-Id: r-1\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOpts{yaml: c.yaml + "access_log: {format: json}\n", upstream: http.NotFoundHandler()})
			if c.status == 502 {
				e.upstream.Close() // nothing listens there any more
			}
			if c.setup != nil {
				c.setup(e)
			}
			res, _ := rawDo(t, e, c.req)
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d", res.StatusCode, c.status)
			}
			got := res.Header.Values("X-Request-Id")
			if len(got) != 1 || !generated(got[0]) {
				t.Fatalf("X-Request-Id %q, want one the guard made (the client is not trusted)", got)
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(e.logLines(1)[0]), &line); err != nil {
				t.Fatal(err)
			}
			if line["request_id"] != got[0] {
				t.Errorf("access log request_id %v, want %q", line["request_id"], got[0])
			}
		})
	}
}
