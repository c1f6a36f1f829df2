package guard

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// echoBody is an upstream that answers with what it received: the body's
// length as it arrived, its Content-Length and Transfer-Encoding.
func echoBody(calls *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		io.WriteString(w, strings.Join([]string{
			"len=" + strconv.Itoa(len(b)),
			"cl=" + r.Header.Get("Content-Length"),
			"te=" + strings.Join(r.TransferEncoding, ","),
			"body=" + string(b),
		}, " "))
	})
}

// rawRequest sends head and then body over a new connection to the proxy,
// and returns the connection for the test to finish or abandon.
func rawRequest(t *testing.T, e *env, head, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSlowBodyNeverHoldsAnUpstreamSlot(t *testing.T) {
	var calls atomic.Int32
	e := newEnv(t, envOpts{yaml: `
timeouts: {body: 400ms}
pools: [{name: only, max_concurrent: 1, queue: 0}]
`, upstream: echoBody(&calls)})
	// A client that declares 100 bytes and sends 10, then stalls.
	slow := rawRequest(t, e, "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\n", "0123456789")
	// Meanwhile the pool's only slot is free: another request gets through
	// at once instead of a 503 (queue 0) behind the trickling upload.
	if r := e.do("POST", "/fast"); r.status != 200 {
		t.Fatalf("a request beside the slow upload got %d %s, want 200", r.status, r.body)
	}
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("reading the slow upload's answer: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "request_body_timeout") {
		t.Errorf("slow upload answered %d %s, want 408 request_body_timeout", res.StatusCode, b)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream called %d times, want once (the slow upload must never reach it)", n)
	}
	lines := e.logLines(2)
	var timedOut logFields
	for _, l := range lines {
		if f := parseLine(t, l); f.status == http.StatusRequestTimeout {
			timedOut = f
		}
	}
	if timedOut.status != http.StatusRequestTimeout || timedOut.upstreamStatus != "-" {
		t.Errorf("slow upload logged as %+v, want 408 with no upstream: %q", timedOut, lines)
	}
	if !strings.Contains(metricsText(t, e), `headroom_requests_total{outcome="body_timeout",pool="only"} 1`) {
		t.Errorf("body_timeout not counted")
	}
}

func TestRequestBodyBuffering(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, head, body string
		status                 int
		want                   []string // in the upstream's echo, or the refusal
		reached                bool
		streamed               bool // found out mid-stream: the upstream may or may not have seen a start
	}{
		{
			name: "small body, known length", head: "POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\n", body: "hello",
			status: 200, want: []string{"len=5", "cl=5", "body=hello"}, reached: true,
		},
		{
			name: "chunked body reaches the upstream with its length", head: "POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n",
			body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", status: 200, want: []string{"len=11", "cl=11", "te= ", "body=hello world"}, reached: true,
		},
		{
			name: "larger than the buffer streams intact", yaml: "request_body: {buffer: 16}\n",
			head: "POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\n", body: strings.Repeat("abcdefghij", 100),
			status: 200, want: []string{"len=1000", "cl=1000", "body=abcdefghij"}, reached: true,
		},
		{
			name: "chunked larger than the buffer streams intact", yaml: "request_body: {buffer: 16}\n",
			head: "POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n", body: "14\r\n" + strings.Repeat("ab", 10) + "\r\n14\r\n" + strings.Repeat("cd", 10) + "\r\n0\r\n\r\n",
			status: 200, want: []string{"len=40", "te=chunked", "body=" + strings.Repeat("ab", 10) + strings.Repeat("cd", 10)}, reached: true,
		},
		{
			name: "buffering off passes the body through", yaml: "request_body: {buffer: -1}\n",
			head: "POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\n", body: "hello",
			status: 200, want: []string{"len=5", "body=hello"}, reached: true,
		},
		{
			name: "declared length over max", yaml: "request_body: {max: 10}\n",
			head: "POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 20\r\n\r\n", body: strings.Repeat("x", 20),
			status: 413, want: []string{"request_body_too_large", `"max_bytes":10`},
		},
		{
			name: "chunked body over max", yaml: "request_body: {max: 10}\n",
			head: "POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n", body: "14\r\n" + strings.Repeat("x", 20) + "\r\n0\r\n\r\n",
			status: 413, want: []string{"request_body_too_large"},
		},
		{
			name: "chunked body over max, beyond the buffer", yaml: "request_body: {buffer: 4, max: 10}\n",
			head: "POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n", body: "14\r\n" + strings.Repeat("x", 20) + "\r\n0\r\n\r\n",
			status: 413, want: []string{"request_body_too_large"}, streamed: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			e := newEnv(t, envOpts{yaml: tc.yaml, upstream: echoBody(&calls)})
			c := rawRequest(t, e, tc.head, tc.body)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, b, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b)+" ", w) {
					t.Errorf("answer %q does not contain %q", b, w)
				}
			}
			if reached := calls.Load() > 0; reached != tc.reached && !tc.streamed {
				t.Errorf("upstream reached: %v, want %v", reached, tc.reached)
			}
		})
	}
}

// A body read in full must not cost the guard its view of a client that
// leaves: the abort is still logged as 499 with the upstream's real time.
func TestClientAbortAfterBufferedBody(t *testing.T) {
	upstreamDone := make(chan struct{})
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(1200 * time.Millisecond)
		w.WriteHeader(201)
		close(upstreamDone)
	})})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.proxy.URL+"/report", strings.NewReader("q=all"))
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("client should have timed out, got %d", res.StatusCode)
	}
	testenv.Recv(t, "upstream finished", upstreamDone)
	f := parseLine(t, e.logLines(1)[0])
	if f.status != 499 || f.upstreamStatus != "201" || f.upstreamTime < 1.2 {
		t.Errorf("logged %+v, want 499 with upstream 201 after >= 1.2 s", f)
	}
}

// Past the buffer the body streams, and the deadline still bounds it: a
// stalled upload is the client's 408, not the upstream's 502 or 504.
func TestSlowBodyBeyondTheBufferIs408(t *testing.T) {
	var calls atomic.Int32
	e := newEnv(t, envOpts{yaml: `
timeouts: {body: 400ms}
request_body: {buffer: 16}
`, upstream: echoBody(&calls)})
	c := rawRequest(t, e, "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\n", strings.Repeat("y", 20))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled streaming upload answered %d %s, want 408", res.StatusCode, b)
	}
	f := parseLine(t, e.logLines(1)[0])
	if f.status != http.StatusRequestTimeout {
		t.Errorf("logged %+v, want 408", f)
	}
	if !strings.Contains(metricsText(t, e), `headroom_requests_total{outcome="body_timeout",pool="default"} 1`) {
		t.Errorf("body_timeout not counted")
	}
	if strings.Contains(e.logs.String(), "upstream request failed") {
		t.Errorf("a client's stalled upload logged as an upstream failure: %s", e.logs.String())
	}
}

// The proxy passes Accept-Encoding through as the client sent it (or not).
func TestAcceptEncodingPassesThrough(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ae="+r.Header.Get("Accept-Encoding"))
	})})
	c := rawRequest(t, e, "GET /a HTTP/1.1\r\nHost: app\r\n\r\n", "")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if string(b) != "ae=" {
		t.Errorf("upstream saw %q for a client that sent no Accept-Encoding, want none", b)
	}
	if r := e.do("GET", "/a", "Accept-Encoding", "br"); r.body != "ae=br" {
		t.Errorf("upstream saw %q, want the client's br", r.body)
	}
}
