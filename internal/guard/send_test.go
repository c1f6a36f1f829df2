package guard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// bigUpstream answers /big with size bytes, streamed as fast as the proxy
// takes them, and says on done how long the answer took it; /hold waits for
// release; anything else is a short "ok".
type bigUpstream struct {
	size    int
	done    chan time.Duration
	held    chan struct{}
	release chan struct{}
}

func newBigUpstream(size int) *bigUpstream {
	return &bigUpstream{size: size, done: make(chan time.Duration, 1), held: make(chan struct{}, 1), release: make(chan struct{})}
}

func (u *bigUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/big":
		start := time.Now()
		w.Header().Set("Content-Length", strconv.Itoa(u.size))
		buf := make([]byte, 32<<10)
		for left := u.size; left > 0; {
			n, err := w.Write(buf[:min(len(buf), left)])
			if err != nil {
				break
			}
			left -= n
		}
		u.done <- time.Since(start)
	case "/hold":
		u.held <- struct{}{}
		<-u.release
		io.WriteString(w, "ok\n")
	default:
		io.WriteString(w, "ok\n")
	}
}

// warm leaves the proxy with two client connections and two upstream
// connections kept alive, as many as the tests need at once, and the
// admin API with one, so that the goroutine count taken after it is where
// the proxy comes back to.
func (e *env) warm(u *bigUpstream) {
	e.t.Helper()
	held := make(chan resp, 1)
	go func() { held <- e.do("GET", "/hold") }()
	testenv.Recv(e.t, "warm-up request upstream", u.held)
	if r := e.do("GET", "/small"); r.status != 200 {
		e.t.Fatalf("warm-up: status %d", r.status)
	}
	close(u.release)
	if r := testenv.Recv(e.t, "warm-up request", held); r.status != 200 {
		e.t.Fatalf("warm-up: status %d", r.status)
	}
	metricsText(e.t, e)
}

// sendGet sends a GET of path on a new connection and returns it unread.
func sendGet(t *testing.T, e *env, path, key string, readBuffer int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if readBuffer > 0 {
		c.(*net.TCPConn).SetReadBuffer(readBuffer)
	}
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: app\r\nX-Api-Key: "+key+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// A client that asks for a large answer and never reads it (issue 12's
// slowloris point, the sending side): once the socket buffers are full,
// the proxy's write to it makes no progress, and after
// timeouts.client_send the proxy closes the connection (nginx's
// send_timeout), instead of holding it, its goroutine and buffers for as
// long as the client likes. The upstream's answer is still read to its end
// and charged in full; the access log says 499, as for any client that
// left, and headroom_client_send_timeouts_total why. A client on another
// connection is served meanwhile. Both front-ends (-nethttp).
func TestClientSendTimeoutClosesStalledClient(t *testing.T) {
	const size = 64 << 20 // far more than the socket buffers between proxy and client
	u := newBigUpstream(size)
	e := newEnv(t, envOpts{upstream: u, yaml: `
budget: {worker_time: 1h, window: 10m}
timeouts: {client_send: 200ms}
`})
	e.warm(u)
	base := runtime.NumGoroutine()
	lines := len(e.logLines(2))

	start := time.Now()
	c := sendGet(t, e, "/big", "stalled-key", 0)
	upstreamTook := testenv.Recv(t, "the upstream's whole answer read by the proxy", u.done)
	if r := e.do("GET", "/small", "X-Api-Key", "other-key"); r.status != 200 || r.body != "ok\n" {
		t.Errorf("another client meanwhile: status %d %q, want 200", r.status, r.body)
	}
	testenv.Eventually(t, "the send timeout counted", func() bool {
		return strings.Contains(metricsText(t, e), "\nheadroom_client_send_timeouts_total 1\n")
	})
	// A bound, not a timing assertion: far past 200 ms, far before a
	// proxy that waits for the client would let go.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the stalled client's connection was closed after %v, want about 200-250 ms", took)
	}

	// The client finds what the socket buffers held, then the end.
	c.SetReadDeadline(time.Now().Add(testenv.EventuallyTimeout))
	got, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the stalled client's connection is still open after it read %d bytes", got)
	}
	if got >= size {
		t.Errorf("the stalled client got %d bytes, the whole answer: nothing was cut", got)
	}

	all := e.logLines(lines + 2)
	var f logFields
	for _, l := range all[lines:] {
		if strings.Contains(l, "/big") {
			f = parseLine(t, l)
		}
	}
	if f.status != 499 || f.upstreamStatus != "200" || f.bytes >= size {
		t.Errorf("the stalled request logged %+v, want 499 after the upstream's 200, fewer than %d bytes sent", f, size)
	}
	kj := e.key("stalled-key")
	// The listing and the log round to the millisecond (to nearest), so
	// the charge may read up to half a millisecond under the upstream's
	// own measure of the same time.
	const listed = 0.0005
	if kj.InFlight != 0 || kj.WorkerSeconds < upstreamTook.Seconds()-listed || kj.WorkerSeconds < f.upstreamTime-listed {
		t.Errorf("charged %v s (in flight %d), want at least the upstream's %v (logged %.3f s)", kj.WorkerSeconds, kj.InFlight, upstreamTook, f.upstreamTime)
	}
	if m := metricsText(t, e); !strings.Contains(m, `headroom_requests_total{outcome="client_abort",pool="default"} 1`) {
		t.Errorf("the stalled request is not counted as a client abort:\n%s", grep(m, "headroom_requests_total"))
	}
	if l := e.logs.String(); !strings.Contains(l, "timeouts.client_send") {
		t.Errorf("no log line says why the connection was closed:\n%s", l)
	}
	testenv.Eventually(t, "the proxy's goroutines back to "+strconv.Itoa(base), func() bool {
		return runtime.NumGoroutine() <= base
	})
	// The upstream connection came back whole: the next request on it works.
	if r := e.do("GET", "/small", "X-Api-Key", "other-key"); r.status != 200 || r.body != "ok\n" {
		t.Errorf("after: status %d %q, want 200", r.status, r.body)
	}
}

// A slow reader that keeps taking bytes is never cut, however long its
// answer takes: the timeout bounds a write without progress, not the
// whole answer (nginx's send_timeout, not http.Server.WriteTimeout). Here
// the client takes 256 KiB every 50 ms (5 MB/s): its 8 MiB answer takes
// about 1.6 s, eight timeouts, and the proxy's writes wait on it for most
// of that (the answer is twice the socket buffers: the client's is 64 KiB,
// the proxy's 4 MiB at most), with a byte taken well within every timeout.
// (Progress the proxy can see comes in steps of about a third of its
// socket's send buffer, when the kernel wakes a waiting writer: a client
// reading much less than that per timeout is cut, by nginx too.)
func TestClientSendTimeoutSparesSlowReader(t *testing.T) {
	const size = 8 << 20
	u := newBigUpstream(size)
	e := newEnv(t, envOpts{upstream: u, yaml: `
budget: {worker_time: 1h, window: 10m}
timeouts: {client_send: 200ms}
`})
	c := sendGet(t, e, "/big", "slow-key", 64<<10)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	buf := make([]byte, 256<<10)
	var got int64
	for {
		time.Sleep(50 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(testenv.EventuallyTimeout))
		n, err := io.ReadFull(res.Body, buf)
		got += int64(n)
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("after %d of %d bytes, %v: %v", got, size, time.Since(start), err)
			}
			break
		}
	}
	if got != size {
		t.Fatalf("the slow reader got %d of %d bytes", got, size)
	}
	t.Logf("read %d bytes in %v", got, time.Since(start))
	if f := parseLine(t, e.logLines(1)[0]); f.status != 200 || f.bytes != size {
		t.Errorf("logged %+v, want 200 and %d bytes", f, size)
	}
	if m := metricsText(t, e); !strings.Contains(m, "\nheadroom_client_send_timeouts_total 0\n") {
		t.Errorf("a send timeout counted:\n%s", grep(m, "send_timeouts"))
	}
}
