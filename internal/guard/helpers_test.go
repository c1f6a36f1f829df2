package guard

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/evproxy"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/lifecycle"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// netHTTP runs the guard's tests against the net/http front-end instead
// of the default fast HTTP/1.1 path (internal/fastproxy): go test
// ./internal/guard -nethttp, or HEADROOM_NETHTTP=1 (scripts/test.sh runs
// both).
var netHTTP = flag.Bool("nethttp", os.Getenv("HEADROOM_NETHTTP") == "1", "serve the proxy in tests with net/http")

// evLoop runs them against the event-loop front-end (internal/evproxy),
// with what it hands off served by the fast path: go test
// ./internal/guard -evloop, or HEADROOM_EVLOOP=1.
var evLoop = flag.Bool("evloop", os.Getenv("HEADROOM_EVLOOP") == "1", "serve the proxy in tests with the event loop")

// testServer is the proxy's listener in a test.
type testServer struct {
	URL   string
	close func()
}

func (s *testServer) Close() { s.close() }

// serveProxy serves g on a loopback port, with the front-end the test run
// asks for.
func serveProxy(t *testing.T, g *Guard, cfg *config.Config) *testServer {
	t.Helper()
	c := *cfg
	c.NetHTTP = *netHTTP
	c.EventLoop = *evLoop
	fe, err := g.NewFrontend(&c, lifecycle.ErrorLog(g.log))
	if err != nil {
		t.Fatalf("front-end: %v", err)
	}
	if _, std := fe.(*framedServer); std != *netHTTP {
		t.Fatalf("-nethttp=%v: the front-end for upstream %s is %T", *netHTTP, cfg.Upstream, fe)
	}
	if _, ev := fe.(*evproxy.Server); !*netHTTP && ev != *evLoop {
		t.Fatalf("-evloop=%v: the front-end for upstream %s is %T", *evLoop, cfg.Upstream, fe)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go fe.Serve(ln)
	return &testServer{URL: "http://" + ln.Addr().String(), close: func() { fe.Close() }}
}

// env is a guard between a test client and an httptest upstream, all on
// loopback.
type env struct {
	t        *testing.T
	g        *Guard
	clock    budget.Clock
	proxy    *testServer
	admin    *httptest.Server
	upstream *httptest.Server
	alog     *testenv.Buffer
	logs     *testenv.Buffer
}

type envOpts struct {
	yaml     string // config body; upstream is filled in
	clock    budget.Clock
	upstream http.Handler
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, alog: &testenv.Buffer{}, logs: &testenv.Buffer{}, clock: o.clock}
	e.upstream = httptest.NewServer(o.upstream)
	t.Cleanup(e.upstream.Close)
	cfg, err := config.Parse([]byte("upstream: " + e.upstream.URL + "\n" + o.yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.g, err = New(Options{
		Config:    cfg,
		Clock:     o.clock,
		Secret:    []byte("test-secret-0123456789"),
		AccessLog: e.alog,
		Logger:    slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.proxy = serveProxy(t, e.g, cfg)
	e.admin = httptest.NewServer(e.g.Admin())
	t.Cleanup(func() {
		e.proxy.Close()
		e.admin.Close()
		e.g.Close()
	})
	return e
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	return e.doCtx(context.Background(), method, path, hdr...)
}

func (e *env) doCtx(ctx context.Context, method, path string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.proxy.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp{status: -1, body: err.Error()}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (e *env) adminDo(method, path string, out any) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.admin.URL+path, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("admin %s %s: %v\n%s", method, path, err, b)
		}
	}
	return res.StatusCode
}

func (e *env) key(k string) admin.KeyJSON {
	e.t.Helper()
	var kj admin.KeyJSON
	if st := e.adminDo("GET", "/v1/keys/"+k, &kj); st != 200 {
		e.t.Fatalf("GET /v1/keys/%s: status %d", k, st)
	}
	return kj
}

// logLines waits until the access log has at least n lines and returns
// them; lines are written when requests end, so tests wait for them rather
// than sleep.
func (e *env) logLines(n int) []string {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.g.alog.Flush()
		s := strings.TrimSpace(e.alog.String())
		var lines []string
		if s != "" {
			lines = strings.Split(s, "\n")
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), n, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// advancing is an upstream handler that takes the request's worker time
// from ?d= by moving the manual clock, so worker time is exact without
// sleeping.
func advancing(clock *budget.ManualClock) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
			clock.Advance(d)
		}
		io.WriteString(w, "ok "+r.URL.Path+"\n")
	})
}

func poolCfg(name string, max int) config.Pool {
	return config.Pool{Name: name, PathPrefixes: []string{"/" + name + "/"}, MaxConcurrent: max}
}

func overrideCfg(key string, budget time.Duration) config.Override {
	d := config.Duration(budget)
	return config.Override{Key: key, Limits: config.Limits{WorkerTime: &d}}
}
