package guard

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/store"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// running is one Run of the proxy, as `headroom proxy` runs it.
type running struct {
	proxy, admin string
	reload       chan struct{}
	cancel       context.CancelFunc
	done         chan error
	logs         *testenv.Buffer
}

func startRun(t *testing.T, configPath string, clock budget.Clock) *running {
	t.Helper()
	load := func() (*config.Config, error) {
		c, err := config.Load(configPath)
		if c != nil {
			c.NetHTTP, c.EventLoop = *netHTTP, *evLoop
		}
		return c, err
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.NetHTTP, cfg.EventLoop = *netHTTP, *evLoop
	r := &running{reload: make(chan struct{}), done: make(chan error, 1), logs: &testenv.Buffer{}}
	o := ServerOptions{
		Config: cfg, LoadConfig: load, Reload: r.reload, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	}
	if cfg.Store.Snapshot != "" {
		s, err := store.NewFile(store.FileOptions{Path: cfg.Store.Snapshot})
		if err != nil {
			t.Fatal(err)
		}
		o.Snapshots = s
	}
	ready := make(chan struct{})
	o.Ready = func(p, a net.Addr) {
		r.proxy, r.admin = "http://"+p.String(), "http://"+a.String()
		close(ready)
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	go func() { r.done <- Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not start")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := testenv.Recv(t, "Run to return", r.done); err != nil {
		t.Errorf("Run: %v", err)
	}
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (r *running) key(t *testing.T, k string) admin.KeyJSON {
	t.Helper()
	_, body := get(t, r.admin+"/v1/keys/"+k)
	var kj admin.KeyJSON
	if err := json.Unmarshal([]byte(body), &kj); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return kj
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A restart restores usage and restrictions from the snapshot, and keys
// keep their fingerprints (the secret is kept next to the snapshot). The
// stop drains a request still running and charges it before saving.
func TestRestartRestoresUsageFromSnapshot(t *testing.T) {
	clock := budget.NewManualClock(t0)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
			clock.Advance(d)
		}
		io.WriteString(w, "ok\n")
	}))
	defer up.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "headroom.yaml")
	writeConfig(t, cfgPath, `
listen: 127.0.0.1:0
upstream: `+up.URL+`
admin: {listen: 127.0.0.1:0}
budget: {worker_time: 60s, window: 1h, restrict_for: 1h}
store: {snapshot: `+filepath.Join(dir, "usage.snapshot")+`}
`)
	r1 := startRun(t, cfgPath, clock)
	for range 2 {
		if st, _ := get(t, r1.proxy+"/?d=40s", "X-Api-Key", "restart-key"); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	if st, _ := get(t, r1.proxy+"/", "X-Api-Key", "restart-key"); st != 429 {
		t.Fatalf("over budget before restart: %d", st)
	}
	slow := make(chan int, 1)
	go func() { st, _ := get(t, r1.proxy+"/slow?d=7s", "X-Api-Key", "drained-key"); slow <- st }()
	testenv.Recv(t, "slow request upstream", started)
	before := r1.key(t, "restart-key")

	// Stop while /slow runs: the listener closes, the request finishes and
	// is charged, then the snapshot is written.
	r1.cancel()
	testenv.Eventually(t, "the proxy to stop accepting", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(r1.proxy, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if st := testenv.Recv(t, "the drained request", slow); st != 200 {
		t.Errorf("request drained at shutdown: status %d, want 200", st)
	}
	if err := testenv.Recv(t, "Run to return", r1.done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	r1.cancel = nil

	r2 := startRun(t, cfgPath, clock)
	after := r2.key(t, "restart-key")
	if after.Key != before.Key || after.WorkerSeconds != 80 || !after.Restricted || *after.RestrictedUntil != *before.RestrictedUntil {
		t.Errorf("after restart %+v, before %+v", after, before)
	}
	if st, _ := get(t, r2.proxy+"/", "X-Api-Key", "restart-key"); st != 429 {
		t.Errorf("restriction lost in the restart: status %d", st)
	}
	if d := r2.key(t, "drained-key"); d.WorkerSeconds != 7 {
		t.Errorf("drained request charged %v s, want 7", d.WorkerSeconds)
	}
	if !strings.Contains(r2.logs.String(), "usage restored from snapshot") {
		t.Errorf("no restore log line:\n%s", r2.logs.String())
	}
}

// SIGHUP-style reload: a bad file is refused with its field named and the
// running configuration keeps working; a good one takes effect.
func TestRunReloadBadFileKeepsOldConfig(t *testing.T) {
	clock := budget.NewManualClock(t0)
	up := httptest.NewServer(advancing(clock))
	defer up.Close()
	cfgPath := filepath.Join(t.TempDir(), "headroom.yaml")
	base := "listen: 127.0.0.1:0\nupstream: " + up.URL + "\nadmin: {listen: 127.0.0.1:0}\n" +
		"budget: {worker_time: 10s, window: 1h, restrict_for: 1h}\n"
	writeConfig(t, cfgPath, base)
	r := startRun(t, cfgPath, clock)

	writeConfig(t, cfgPath, base+"pools: [{name: api, path_prefixes: [/api/], max_concurrent: 0}]\n")
	r.reload <- struct{}{}
	testenv.Eventually(t, "the reload to be refused", func() bool {
		return strings.Contains(r.logs.String(), "pools[0].max_concurrent: must be > 0")
	})
	if !strings.Contains(r.logs.String(), "keeping the running configuration") {
		t.Errorf("refusal does not say the old config stays:\n%s", r.logs.String())
	}
	get(t, r.proxy+"/?d=11s", "X-Api-Key", "k")
	if st, _ := get(t, r.proxy+"/", "X-Api-Key", "k"); st != 429 {
		t.Errorf("old budget no longer enforced after a refused reload: %d", st)
	}

	writeConfig(t, cfgPath, base+"shadow: true\n")
	r.reload <- struct{}{}
	testenv.Eventually(t, "the reload", func() bool { return strings.Contains(r.logs.String(), "configuration reloaded") })
	if st, _ := get(t, r.proxy+"/", "X-Api-Key", "k"); st != 200 {
		t.Errorf("shadow mode from the reload not applied: %d", st)
	}
	_, m := get(t, r.admin+"/metrics")
	if !strings.Contains(m, `headroom_config_reloads_total{result="error"} 1`) || !strings.Contains(m, `headroom_config_reloads_total{result="ok"} 1`) {
		t.Errorf("reload metrics:\n%s", grep(m, "reloads"))
	}
}

// A client that sends its headers too slowly (slowloris) is cut off after
// timeouts.read_header.
func TestSlowHeadersAreCutOff(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler())
	defer up.Close()
	cfgPath := filepath.Join(t.TempDir(), "headroom.yaml")
	writeConfig(t, cfgPath, "listen: 127.0.0.1:0\nupstream: "+up.URL+"\nadmin: {listen: 127.0.0.1:0}\ntimeouts: {read_header: 200ms}\n")
	r := startRun(t, cfgPath, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(r.proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") // and never finish
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after 10 s with read_header 200ms")
	}
	if len(b) > 0 && !strings.Contains(string(b), "408") {
		t.Errorf("unexpected answer: %q", b)
	}
}
