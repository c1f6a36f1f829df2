package connlimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// serve accepts on l and keeps each connection open until the test ends.
func serve(t *testing.T, l net.Listener) {
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				io.WriteString(c, "accepted\n")
				io.Copy(io.Discard, c) // until the client closes
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
}

// refused reports whether a connection from from got the 503 rather than
// the server's greeting.
func refused(t *testing.T, addr, from string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("from %s: %v", from, err)
	}
	return c, strings.HasPrefix(line, "HTTP/1.1 503 ")
}

func TestCaps(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	l := New(inner, Options{Max: 3, PerClient: 2,
		Exempt: func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.3") },
		Refused: func(r Reason, c netip.Addr, open int) {
			mu.Lock()
			got = append(got, string(r)+" "+c.String())
			mu.Unlock()
		}})
	serve(t, l)
	addr := inner.Addr().String()
	a, r1 := refused(t, addr, "127.0.0.1")
	_, r2 := refused(t, addr, "127.0.0.1")
	_, r3 := refused(t, addr, "127.0.0.1")
	if r1 || r2 || !r3 {
		t.Errorf("one client: refused %v %v %v, want the third only", r1, r2, r3)
	}
	_, r4 := refused(t, addr, "127.0.0.3")
	_, r5 := refused(t, addr, "127.0.0.3")
	if r4 || !r5 {
		t.Errorf("past the total: refused %v %v, want the fourth connection refused", r4, r5)
	}
	if l.Open() != 3 {
		t.Errorf("open %d, want 3", l.Open())
	}
	a.Close()
	testenv.Eventually(t, "the server to close its end", func() bool { return l.Open() == 2 })
	if _, r := refused(t, addr, "127.0.0.1"); r {
		t.Error("refused after a connection closed")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "per_client 127.0.0.1,total 127.0.0.3" {
		t.Errorf("refusals reported: %q", got)
	}
}

// Take applies the caps Accept applies, for connections a server accepts
// on the unwrapped listener itself, and a Release given twice frees one
// place, not two.
func TestTake(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	var refusals []string
	l := New(inner, Options{Max: 3, PerClient: 2,
		Exempt: func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.3") },
		Refused: func(r Reason, c netip.Addr, open int) {
			refusals = append(refusals, fmt.Sprintf("%s %s %d", r, c, open))
		}})
	if l.Unwrap() != inner {
		t.Fatal("Unwrap does not return the wrapped listener")
	}
	one, three := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3")
	a, ok1 := l.Take(one)
	_, ok2 := l.Take(one)
	_, ok3 := l.Take(one)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("one client: took %v %v %v, want the third refused", ok1, ok2, ok3)
	}
	_, ok4 := l.Take(three)
	_, ok5 := l.Take(three)
	if !ok4 || ok5 {
		t.Fatalf("past the total: took %v %v, want the fifth refused", ok4, ok5)
	}
	a.Release()
	a.Release()
	if l.Open() != 2 {
		t.Errorf("open %d after one connection released twice, want 2", l.Open())
	}
	if _, ok := l.Take(one); !ok {
		t.Error("refused after a connection was released")
	}
	if _, ok := l.Take(one); ok {
		t.Error("a second release freed a second place")
	}
	if got, want := strings.Join(refusals, ","), "per_client 127.0.0.1 2,total 127.0.0.3 3,total 127.0.0.1 3"; got != want {
		t.Errorf("refusals reported %q, want %q", got, want)
	}
	if r := string(l.Refusal()); !strings.HasPrefix(r, "HTTP/1.1 503 ") || !strings.Contains(r, "Connection: close\r\n") {
		t.Errorf("Refusal %q, want a 503 that closes", r)
	}
}
