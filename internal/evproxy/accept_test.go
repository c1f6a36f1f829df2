//go:build linux

package evproxy

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Out of descriptors, a loop stops accepting for a moment instead of
// spinning on the connection it cannot accept, goes on serving the
// connections it has, and accepts the waiting one once descriptors are
// free. It lowers RLIMIT_NOFILE, so it runs in a child process of its
// own: the other tests share this one.
func TestAcceptPausesWhenOutOfDescriptors(t *testing.T) {
	if os.Getenv("EVPROXY_FD_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptPausesWhenOutOfDescriptors$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "EVPROXY_FD_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the child process: %v\n%s", err, out)
		}
		return
	}

	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	p := start(t, up, "", nil)
	get := func(name string, c interface{ Write([]byte) (int, error) }) {
		t.Helper()
		if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
	}
	keeper, kbr := dial(t, p.addr)
	get("keeper", keeper)
	if res, body := readResp(t, kbr, "GET"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("keeper: %d %q", res.StatusCode, body)
	}

	// Fill the descriptor table (a low limit keeps that quick), then free
	// one for the client's end of the next connection: the proxy's end
	// finds none.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = min(lim.Cur, 1024)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var filler []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("filling the descriptor table: %v", err)
			}
			break
		}
		filler = append(filler, f)
	}
	filler[len(filler)-1].Close()
	filler = filler[:len(filler)-1]
	waiting, wbr := dial(t, p.addr)
	get("waiting", waiting)

	deadline := time.Now().Add(10 * time.Second)
	for p.srv.acceptFails.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no accept failed for want of descriptors")
		}
		time.Sleep(time.Millisecond)
	}
	from, fails := time.Now(), p.srv.acceptFails.Load()
	// The keeper is still served (on its idle upstream connection).
	get("keeper", keeper)
	if res, body := readResp(t, kbr, "GET"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("keeper while out of descriptors: %d %q", res.StatusCode, body)
	}
	time.Sleep(200 * time.Millisecond)
	// Paused, a loop tries once per acceptPause; spinning, it would try
	// hundreds of thousands of times. The bound is ten times the paused
	// rate over the time that passed, whatever the machine's speed.
	elapsed := time.Since(from)
	bound := 10 * 2 * (int64(elapsed/acceptPause) + 1) // 2 loops
	if n := p.srv.acceptFails.Load() - fails; n > bound {
		t.Errorf("%d failed accepts in %v, want at most %d: the loop spins on the waiting connection", n, elapsed, bound)
	}

	for _, f := range filler {
		f.Close()
	}
	if res, body := readResp(t, wbr, "GET"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("the waiting connection once descriptors were free: %d %q", res.StatusCode, body)
	}
}
