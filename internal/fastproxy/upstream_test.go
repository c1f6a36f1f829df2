package fastproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/httpwire"
)

// scriptedUpstream answers each request after delay with a 200 whose body
// is the request body's length; with closeAfter, it closes the connection
// after each answer without saying so (a keep-alive connection the
// upstream drops while it idles in the proxy's pool).
type scriptedUpstream struct {
	ln         net.Listener
	delay      time.Duration
	closeAfter bool

	mu       sync.Mutex
	conns    int
	requests int
	bodies   []int
}

func startScriptedUpstream(t *testing.T, delay time.Duration, closeAfter bool) *scriptedUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &scriptedUpstream{ln: ln, delay: delay, closeAfter: closeAfter}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			u.mu.Unlock()
			go u.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *scriptedUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	var r httpwire.Request
	for {
		if err := httpwire.ReadRequest(br, &r, 0); err != nil {
			return
		}
		n := int64(0)
		if r.ContentLength > 0 {
			n, _ = io.Copy(io.Discard, &httpwire.LengthReader{R: br, N: r.ContentLength})
		}
		u.mu.Lock()
		u.requests++
		u.bodies = append(u.bodies, int(n))
		u.mu.Unlock()
		time.Sleep(u.delay)
		body := fmt.Sprint(n)
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			return
		}
		if u.closeAfter {
			return
		}
	}
}

func (u *scriptedUpstream) counts() (conns, requests int, bodies []int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, u.requests, append([]int(nil), u.bodies...)
}

// doSequence sends the requests one after another on one client connection and
// returns each answer's status and body.
func doSequence(t *testing.T, addr string, reqs []string) (statuses []int, bodies []string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, req := range reqs {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d answers: %v", len(statuses), err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		statuses = append(statuses, res.StatusCode)
		bodies = append(bodies, string(b))
	}
	return statuses, bodies
}

// A request goes out with the first read of its answer (sendThenRead): an
// upstream that dropped the pooled connection gets the request again on a
// fresh one, as before, for an idempotent method.
func TestUpstreamDroppedKeepAliveRetried(t *testing.T) {
	up := startScriptedUpstream(t, 0, true)
	proxy := startProxy(t, up.ln.Addr().String(), "budget: {worker_time: 1h, window: 1m}\n")
	var statuses []int
	for range 5 {
		s, _ := doSequence(t, proxy, []string{"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"})
		statuses = append(statuses, s...)
		// Time for the upstream's close to reach the pooled connection.
		time.Sleep(20 * time.Millisecond)
	}
	for i, s := range statuses {
		if s != 200 {
			t.Errorf("request %d: status %d, want 200 (retried on a fresh connection)", i, s)
		}
	}
	conns, requests, _ := up.counts()
	if requests != 5 || conns < 5 {
		t.Errorf("upstream saw %d requests on %d connections, want 5 on 5 or more", requests, conns)
	}
}

// An upstream slower than watchAfter: the short wait ends with the request
// already sent, the client watch starts, and the answer is read under the
// head's deadline; the request reached the upstream exactly once.
func TestUpstreamSlowAnswerSentOnce(t *testing.T) {
	up := startScriptedUpstream(t, 3*watchAfter, false)
	proxy := startProxy(t, up.ln.Addr().String(), "budget: {worker_time: 1h, window: 1m}\n")
	statuses, bodies := doSequence(t, proxy, []string{
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
	})
	want := []string{"0", "5", "0"}
	for i := range want {
		if statuses[i] != 200 || bodies[i] != want[i] {
			t.Errorf("request %d: %d %q, want 200 %q", i, statuses[i], bodies[i], want[i])
		}
	}
	if conns, requests, _ := up.counts(); requests != 3 || conns != 1 {
		t.Errorf("upstream saw %d requests on %d connections, want 3 on 1", requests, conns)
	}
}

// Requests too large for the upstream connection's write buffer go out
// the ordinary way, before the answer is read; small and large ones
// alternate on the same pooled connection.
func TestUpstreamLargeAndSmallRequests(t *testing.T) {
	up := startScriptedUpstream(t, 0, false)
	proxy := startProxy(t, up.ln.Addr().String(), "budget: {worker_time: 1h, window: 1m}\n")
	big := strings.Repeat("b", 20<<10)
	statuses, bodies := doSequence(t, proxy, []string{
		"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big,
		"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big,
		"GET /none HTTP/1.1\r\nHost: a\r\n\r\n",
	})
	want := []string{fmt.Sprint(len(big)), "3", fmt.Sprint(len(big)), "0"}
	for i := range want {
		if statuses[i] != 200 || bodies[i] != want[i] {
			t.Errorf("request %d: %d %q, want 200 %q", i, statuses[i], bodies[i], want[i])
		}
	}
	if _, requests, got := up.counts(); requests != 4 || fmt.Sprint(got) != fmt.Sprint([]int{len(big), 3, len(big), 0}) {
		t.Errorf("upstream saw %d requests with bodies %v", requests, got)
	}
}
