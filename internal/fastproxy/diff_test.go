package fastproxy

import (
	"log/slog"
	"net"
	"testing"

	"github.com/headroom-dev/headroom/internal/proxytest"
)

// startProxy is a proxytest.StartProxy for the fast path.
func startProxy(t testing.TB, upstream, yaml string) string {
	t.Helper()
	core := proxytest.Core(t, upstream, yaml)
	s, err := New(Options{Core: core, Upstream: upstream, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// TestDifferential runs the hostile request corpus through the fast path
// (proxytest.Differential): each request is either refused or arrives at
// the upstream framed exactly as the proxy framed it.
func TestDifferential(t *testing.T) { proxytest.Differential(t, startProxy) }

// FuzzDifferential is TestDifferential over arbitrary bytes, pipelined
// requests included (proxytest.Fuzz).
func FuzzDifferential(f *testing.F) { proxytest.Fuzz(f, startProxy) }
