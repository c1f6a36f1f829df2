package guard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// Issue 17 item 5: nothing limited client connections. connections.max and
// connections.per_client cap them; one over a cap gets 503 and is closed,
// counted in a metric and said in the log; closing one makes room again.
func TestConnectionCaps(t *testing.T) {
	upSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer upSrv.Close()
	up := upSrv.URL
	cfgPath := filepath.Join(t.TempDir(), "headroom.yaml")
	writeConfig(t, cfgPath, "listen: 127.0.0.1:0\nupstream: "+up+"\nadmin: {listen: 127.0.0.1:0}\n"+
		"connections: {max: 3, per_client: 2}\n")
	r := startRun(t, cfgPath, budget.SystemClock{})
	addr := strings.TrimPrefix(r.proxy, "http://")

	// dial opens a connection from the loopback address from and asks for
	// one page on it; the connection stays open when it was accepted.
	dial := func(from string) (net.Conn, int) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("from %s: %v", from, err)
		}
		io.Copy(io.Discard, res.Body)
		return c, res.StatusCode
	}
	a1, s1 := dial("127.0.0.1")
	_, s2 := dial("127.0.0.1")
	_, s3 := dial("127.0.0.1") // a third from one client
	if s1 != 200 || s2 != 200 || s3 != http.StatusServiceUnavailable {
		t.Errorf("one client's connections: %d %d %d, want 200 200 503", s1, s2, s3)
	}
	_, s4 := dial("127.0.0.2")
	_, s5 := dial("127.0.0.2") // a fourth in all
	if s4 != 200 || s5 != http.StatusServiceUnavailable {
		t.Errorf("another client's: %d %d, want 200 503 (connections.max 3)", s4, s5)
	}
	_, m := get(t, r.admin+"/metrics")
	for _, want := range []string{`headroom_connections_refused_total{reason="per_client"} 1`, `headroom_connections_refused_total{reason="total"} 1`, "headroom_connections_open 3"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "headroom_connections"))
		}
	}
	for _, want := range []string{"connection refused: this client holds connections.per_client connections", "connection refused: the proxy holds connections.max client connections"} {
		if !strings.Contains(r.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.logs.String())
		}
	}
	a1.Close()
	testenv.Eventually(t, "room for a connection once one closed", func() bool {
		c, st := dial("127.0.0.2")
		c.Close()
		return st == 200
	})
}
