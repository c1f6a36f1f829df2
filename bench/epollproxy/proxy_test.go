package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTest runs the proxy in front of h on loopback, with an access log.
func startTest(t *testing.T, h http.HandlerFunc) (addr, logPath string, up *httptest.Server) {
	t.Helper()
	up = httptest.NewServer(h)
	t.Cleanup(up.Close)
	logPath = filepath.Join(t.TempDir(), "access.log")
	p, err := start("127.0.0.1:0", up.Listener.Addr().String(), 2, logPath)
	if err != nil {
		t.Fatal(err)
	}
	return p.addr, logPath, up
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, r *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(r, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

var big = []byte(strings.Repeat("0123456789abcdef", 1<<18)) // 4 MiB

func echo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/big" {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
		return
	}
	if r.URL.Path == "/chunked" {
		w.Write([]byte("no length"))
		w.(http.Flusher).Flush()
		return
	}
	if r.Header.Get("Connection") != "" || r.Header.Get("X-Hop") != "" {
		http.Error(w, "a hop-by-hop field came through", http.StatusTeapot)
		return
	}
	w.Header().Set("X-Hop", "gone")
	w.Header().Set("Connection", "X-Hop")
	fmt.Fprintf(w, "%s %s xff=%s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"))
}

func TestKeepAliveRequests(t *testing.T) {
	addr, logPath, up := startTest(t, echo)
	c, r := dial(t, addr)
	for i := range 3 {
		fmt.Fprintf(c, "GET /a/%d?q=1 HTTP/1.1\r\nHost: x\r\nConnection: X-Hop\r\nX-Hop: 1\r\nUser-Agent: t\r\n\r\n", i)
		resp, body := readAnswer(t, r, "GET")
		if want := fmt.Sprintf("GET /a/%d?q=1 xff=127.0.0.1", i); resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		if resp.Header.Get("X-Hop") != "" || resp.Close {
			t.Fatalf("request %d: answer header %v (close %v): hop-by-hop fields kept", i, resp.Header, resp.Close)
		}
	}
	// Two requests in one write, and an X-Forwarded-For to extend.
	fmt.Fprint(c, "GET /p1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nHEAD /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readAnswer(t, r, "GET"); body != "GET /p1 xff=10.0.0.1, 127.0.0.1" {
		t.Fatalf("pipelined GET: %q", body)
	}
	if resp, body := readAnswer(t, r, "HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("pipelined HEAD: %d %q", resp.StatusCode, body)
	}
	// An answer larger than the sockets' buffers, read slowly at first:
	// written as the client takes it.
	fmt.Fprint(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	if _, body := readAnswer(t, r, "GET"); body != string(big) {
		t.Fatalf("large answer: %d bytes, want %d", len(body), len(big))
	}
	// The upstream drops its keep-alive connections: the pooled ones are
	// replaced (or the request retried on a new one).
	up.CloseClientConnections()
	fmt.Fprint(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readAnswer(t, r, "GET"); body != "GET /after xff=127.0.0.1" {
		t.Fatalf("after the upstream closed its connections: %q", body)
	}
	// An answer without Content-Length: 502 for the floor, then closed.
	fmt.Fprint(c, "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readAnswer(t, r, "GET"); resp.StatusCode != 502 {
		t.Fatalf("chunked answer: %d, want 502", resp.StatusCode)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after a 502: %v, want the connection closed", err)
	}

	// The access log: a line per request, written within the second.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) == 8 {
			if !strings.Contains(lines[0], `"GET /a/0?q=1 HTTP/1.1" 200 `) || !strings.HasSuffix(lines[0], `"-" "t"`) {
				t.Fatalf("log line %q", lines[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log after 5 s: %q", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRequestWithBodyIsRefused(t *testing.T) {
	for _, head := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
	} {
		addr, _, _ := startTest(t, echo)
		c, r := dial(t, addr)
		fmt.Fprint(c, head)
		resp, _ := readAnswer(t, r, "POST")
		if resp.StatusCode != 400 || !resp.Close {
			t.Fatalf("%q: %d (close %v), want 400 and close", head, resp.StatusCode, resp.Close)
		}
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("%q: after the 400: %v, want the connection closed", head, err)
		}
	}
}

func TestHTTP10ClosesAfterTheAnswer(t *testing.T) {
	addr, _, _ := startTest(t, echo)
	c, r := dial(t, addr)
	fmt.Fprint(c, "GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, body := readAnswer(t, r, "GET")
	if body != "GET /old xff=127.0.0.1" || !resp.Close {
		t.Fatalf("HTTP/1.0: %q (close %v)", body, resp.Close)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer: %v, want the connection closed", err)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p, err := start("127.0.0.1:0", dead, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p.addr)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readAnswer(t, r, "GET"); resp.StatusCode != 502 {
		t.Fatalf("upstream down: %d, want 502", resp.StatusCode)
	}
}
