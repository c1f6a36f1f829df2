package fastproxy

import (
	"net/url"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/loadgen/h1"
	"github.com/headroom-dev/headroom/internal/proxytest"
)

// BenchmarkProxy is one request through the fast path end to end on
// loopback (client, proxy and upstream in this process): the proxy's own
// cost plus three sockets' syscalls. bench/proxy.sh compares it with nginx.
func BenchmarkProxy(b *testing.B) {
	benchmarkProxy(b, map[string][]string{"X-Api-Key": {"bench-key"}})
}

// BenchmarkProxyByAddress is BenchmarkProxy for clients without an API
// key, keyed by their address (as wrk's requests in bench/proxy.sh are).
func BenchmarkProxyByAddress(b *testing.B) { benchmarkProxy(b, nil) }

func benchmarkProxy(b *testing.B, header map[string][]string) {
	up := proxytest.StartRawUpstream(b)
	proxy := startProxy(b, up.Addr(), "budget: {worker_time: 1h, window: 1m}\n")
	u, _ := url.Parse("http://" + proxy + "/bench?x=1")
	req, err := h1.NewRequest(h1.RequestOptions{URL: u, Header: header})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var c h1.Conn
		defer c.Close()
		for pb.Next() {
			res, err := c.Do(req, time.Now().Add(10*time.Second))
			if err != nil || res.Status != 200 {
				b.Errorf("status %d: %v", res.Status, err)
				return
			}
		}
	})
}
