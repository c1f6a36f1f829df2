package guard

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawExchange writes raw bytes to the proxy and reads every response until
// the proxy closes the connection (or a response's count is reached).
func rawExchange(t *testing.T, e *env, raw string, want int) (statuses []int, closed bool) {
	t.Helper()
	rs, closed := rawResponses(t, e, raw, want)
	for _, res := range rs {
		statuses = append(statuses, res.StatusCode)
	}
	return statuses, closed
}

// rawResponses is rawExchange with the responses, their bodies read (and
// kept in Body).
func rawResponses(t *testing.T, e *env, raw string, want int) (rs []*http.Response, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for len(rs) < want {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return rs, true
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(b))
		rs = append(rs, res)
		if res.Close {
			_, err := br.ReadByte()
			return rs, err == io.EOF
		}
	}
	return rs, false
}

// Issue 17 item 2: a request with both Content-Length and Transfer-Encoding
// kept the connection open, and the bytes after its chunked body were
// served as a second request (RFC 9112 §6.3: reject, or close after
// answering). It gets 400 and the connection is closed, on either path.
func TestContentLengthWithTransferEncodingIsRefused(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		io.WriteString(w, "ok")
	})})
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
	}{
		{"length then chunked", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"chunked then length", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled},
		{"odd case, zero length", "POST /a HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n" + smuggled},
		{"after a good request", "GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			statuses, closed := rawExchange(t, e, tc.raw, 3)
			want := []int{http.StatusBadRequest}
			if strings.HasPrefix(tc.raw, "GET /first") {
				want = []int{http.StatusOK, http.StatusBadRequest}
			}
			if len(statuses) != len(want) || statuses[len(statuses)-1] != http.StatusBadRequest || !closed {
				t.Errorf("statuses %v, connection closed %v; want %v and closed", statuses, closed, want)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range seen {
				if p != "/first" {
					t.Errorf("the upstream was asked for %s", p)
				}
			}
		})
	}
}

// Framing the net/http path's connections keeps what is legal working:
// pipelined requests with a Content-Length body, chunked bodies with
// extensions and trailers, on one keep-alive connection.
func TestFramedConnectionsKeepLegalRequests(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.URL.Path+":"+string(b))
		mu.Unlock()
		io.WriteString(w, "ok")
	})})
	raw := "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"\r\n" + // a stray CRLF after a body is allowed (RFC 9112 §2.2)
		"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /4 HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\nGET /not-a-request\r\n\r\n" +
		"GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	statuses, _ := rawExchange(t, e, raw, 5)
	if len(statuses) != 5 {
		t.Fatalf("%d answers (%v) to 5 pipelined requests", len(statuses), statuses)
	}
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d: status %d", i+1, s)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := "/1:hello /2:abcde /3: /4:GET /not-a-request\r\n\r\n /5:"
	if got := strings.Join(bodies, " "); got != want {
		t.Errorf("the upstream saw %q, want %q", got, want)
	}
}
