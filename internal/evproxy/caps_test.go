//go:build linux

package evproxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/headroom-dev/headroom/internal/connlimit"
	"github.com/headroom-dev/headroom/internal/fastproxy"
	"github.com/headroom-dev/headroom/internal/proxytest"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// The connection caps (connections.max, issue 17) hold on the event loop
// as on fastproxy's Accept: a connection over the cap is answered 503 and
// closed, and a place comes back when a connection closes, whether the
// loop served it or handed it to fastproxy.
func TestConnectionCapsOnTheLoop(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	core := proxytest.Core(t, up, "")
	s, err := New(Options{Options: fastproxy.Options{Core: core, Upstream: up, Log: (&logged{}).log, Logger: slog.New(slog.DiscardHandler)}, Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	caps := connlimit.New(ln, connlimit.Options{Max: 1})
	served := make(chan error, 1)
	go func() { served <- s.Serve(caps) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := ln.Addr().String()

	ask := func(c net.Conn, br *bufio.Reader, req string) int {
		t.Helper()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, body := readResp(t, br, "GET")
		if res.StatusCode == 200 && body != "ok" {
			t.Errorf("body %q, want ok", body)
		}
		return res.StatusCode
	}
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	post := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"

	a, abr := dial(t, addr)
	if st := ask(a, abr, get); st != 200 {
		t.Fatalf("first connection: %d, want 200", st)
	}
	b, bbr := dial(t, addr)
	if st := ask(b, bbr, get); st != http.StatusServiceUnavailable {
		t.Errorf("a second connection over connections.max 1: %d, want 503", st)
	}
	if n, err := bbr.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the refused connection is still open (read %d, %v)", n, err)
	}
	a.Close()
	var c net.Conn
	testenv.Eventually(t, "a place once the loop's connection closed", func() bool {
		var cbr *bufio.Reader
		c, cbr = dial(t, addr)
		if st := ask(c, cbr, post); st == 200 { // handed off to fastproxy
			return true
		}
		c.Close()
		return false
	})
	if caps.Open() != 1 {
		t.Errorf("%d connections counted open, want 1", caps.Open())
	}
	c.Close()
	testenv.Eventually(t, "a place once the handed-off connection closed", func() bool { return caps.Open() == 0 })
	d, dbr := dial(t, addr)
	if st := ask(d, dbr, get); st != 200 {
		t.Errorf("after both closed: %d, want 200", st)
	}
}
