package guard

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

// fakeUpstream answers every request at once without touching the network,
// so the benchmark measures the guard, not loopback TCP.
type fakeUpstream struct{ body string }

func (f fakeUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode:    200,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader(f.body)),
		ContentLength: int64(len(f.body)),
		Request:       r,
	}, nil
}

// discardWriter is a reusable ResponseWriter (httptest.ResponseRecorder
// allocates a buffer per response).
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkReverseProxyBaseline is httputil.ReverseProxy alone on the same
// fake upstream, with the same copy-buffer pool the Guard uses: what any
// Go proxy pays, so the ratio with ServeHTTP is the guard's own cost.
func BenchmarkReverseProxyBaseline(b *testing.B) {
	up, _ := url.Parse("http://127.0.0.1:1")
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() },
		Transport:  fakeUpstream{body: "hello, world\n"},
		BufferPool: bufferPool{},
	}
	r := httptest.NewRequest("GET", "http://api.example.com/api/v2/applications/33591900/metrics.json?page=2", nil)
	r.RemoteAddr = "203.0.113.7:51234"
	r.Header.Set("X-Api-Key", "sk_live_0")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		rp.ServeHTTP(w, r)
	}
}

// BenchmarkServeHTTP is the guard's cost per request on top of the
// upstream's: key fingerprint, policy, pool, ledger admit/finish, the
// ReverseProxy itself, RateLimit headers, the access log line.
func BenchmarkServeHTTP(b *testing.B) {
	for _, c := range []struct {
		name, yaml string
		keys       int
	}{
		{"budget", "budget: {worker_time: 60s}\n", 1},
		{"budget-10k-keys", "budget: {worker_time: 60s}\n", 10000},
		{"budget+pool", "budget: {worker_time: 60s, max_in_flight: 100}\npools: [{name: api, path_prefixes: [/api/], max_concurrent: 1000, queue: 10}]\n", 1},
		{"budget+accesslog", "budget: {worker_time: 60s}\naccess_log: {path: /dev/null}\n", 1},
		{"budget+jsonlog", "budget: {worker_time: 60s}\naccess_log: {path: /dev/null, format: json}\n", 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg, err := config.Parse([]byte("upstream: http://127.0.0.1:1\n" + c.yaml))
			if err != nil {
				b.Fatal(err)
			}
			g, err := New(Options{
				Config: cfg, Secret: []byte("bench-secret-0123456789"),
				Transport: fakeUpstream{body: "hello, world\n"},
				Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			reqs := make([]*http.Request, c.keys)
			for i := range reqs {
				r := httptest.NewRequest("GET", "http://api.example.com/api/v2/applications/33591900/metrics.json?page=2", nil)
				r.RemoteAddr = "203.0.113.7:51234"
				r.Header.Set("X-Api-Key", "sk_live_"+strconv.Itoa(i))
				r.Header.Set("User-Agent", "bench")
				reqs[i] = r
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				clear(w.h)
				g.ServeHTTP(w, reqs[i%len(reqs)])
			}
		})
	}
}

// BenchmarkServeHTTPParallel is BenchmarkServeHTTP's access-log cases from
// every P at once, writing to a real file as `headroom proxy` does: what
// the shared parts of the path (the access log, the upstream context, the
// ledger) cost when requests contend for them.
func BenchmarkServeHTTPParallel(b *testing.B) {
	for _, c := range []struct{ name, yaml string }{
		// A budget no run can use up, as bench/proxy.sh has: under
		// contention each request's upstream time includes the wait for
		// a CPU, and a refused key would skip the proxying measured here.
		{"budget+accesslog", "budget: {worker_time: 1h, window: 1m}\n"},
		{"budget+jsonlog", "budget: {worker_time: 1h, window: 1m}\naccess_log: {format: json}\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "access.log")
			cfg, err := config.Parse([]byte("upstream: http://127.0.0.1:1\n" + c.yaml))
			if err != nil {
				b.Fatal(err)
			}
			cfg.AccessLog.Path = path
			g, err := New(Options{
				Config: cfg, Secret: []byte("bench-secret-0123456789"),
				Transport: fakeUpstream{body: "hello, world\n"},
				Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			b.ReportAllocs()
			b.SetParallelism(8) // goroutines per P, as a server has many connections
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "http://api.example.com/api/v2/applications/33591900/metrics.json?page=2", nil)
				r.RemoteAddr = "203.0.113.7:51234"
				r.Header.Set("X-Api-Key", "sk_live_0")
				r.Header.Set("User-Agent", "bench")
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					g.ServeHTTP(w, r)
				}
			})
		})
	}
}
