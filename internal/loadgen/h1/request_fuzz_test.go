package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/headroom-dev/headroom/internal/httpwire"
)

// FuzzNewRequest checks the request side (issue 17 item 9): whatever the
// method, URL, header and body a user gives `headroom load`, NewRequest
// either refuses them or writes exactly one request that a strict parser
// (httpwire) and net/http's both read back as given: same method, target,
// Host, header value and body, and no byte left over that a server would
// read as a second request.
func FuzzNewRequest(f *testing.F) {
	f.Add("GET", "http://127.0.0.1:8080/a?b=1", "X-Api-Key", "k", []byte(nil), "", false)
	f.Add("POST", "http://localhost/items", "Content-Type", "application/json", []byte(`{"q":1}`), "curl/8", true)
	f.Add("HEAD", "http://[::1]:80/", "X", "a\r\nInjected: 1", []byte(nil), "", false)
	f.Add("GET /x", "http://h/", "X Y", "v", []byte(nil), "ua\n", false)
	f.Add("PUT", "http://h/%20?x=%0d%0a", "Transfer-Encoding", "chunked", []byte("0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"), "", false)
	f.Fuzz(func(t *testing.T, method, rawURL, name, value string, body []byte, ua string, close bool) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		r, err := NewRequest(RequestOptions{Method: method, URL: u, Header: map[string][]string{name: {value}},
			Body: body, UserAgent: ua, Close: close})
		if err != nil {
			return
		}
		wire := r.Wire()

		var req httpwire.Request
		br := bufio.NewReader(bytes.NewReader(wire))
		if err := httpwire.ReadRequest(br, &req, 0); err != nil {
			t.Fatalf("NewRequest wrote a request httpwire refuses (%v):\n%q", err, wire)
		}
		wantMethod := method
		if wantMethod == "" {
			wantMethod = "GET"
		}
		if string(req.Method) != wantMethod || string(req.Target) != u.RequestURI() || string(req.Host) != u.Host {
			t.Fatalf("read back %q %q host %q, want %q %q host %q:\n%q", req.Method, req.Target, req.Host, wantMethod, u.RequestURI(), u.Host, wire)
		}
		if req.Chunked || req.ContentLength != int64(len(body)) && len(body) > 0 {
			t.Fatalf("body framed as chunked=%v length %d for %d bytes:\n%q", req.Chunked, req.ContentLength, len(body), wire)
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, body) {
			t.Fatalf("after the head: %q, want the body %q (a second request?)", rest, body)
		}

		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatalf("net/http refuses the request (%v):\n%q", err, wire)
		}
		got, _ := io.ReadAll(hr.Body)
		if !bytes.Equal(got, body) || hr.Method != wantMethod {
			t.Fatalf("net/http read %s with body %q, want %s %q", hr.Method, got, wantMethod, body)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Connection", "Transfer-Encoding", "User-Agent":
		default:
			if hv := hr.Header.Values(name); len(hv) != 1 || hv[0] != trimOWS(value) {
				t.Fatalf("header %q read back as %q, want %q:\n%q", name, hv, value, wire)
			}
		}
		if cl := hr.Header.Get("Content-Length"); len(body) > 0 && cl != strconv.Itoa(len(body)) {
			t.Fatalf("Content-Length %q for %d bytes", cl, len(body))
		}
	})
}

// trimOWS drops the optional whitespace around a field value (RFC 9110
// §5.5), which no parser keeps.
func trimOWS(s string) string {
	return string(bytes.Trim([]byte(s), " \t"))
}
