package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/testenv"
)

func TestNginxConfigAcceptedByNginx(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")
	t.Run("default", func(t *testing.T) { nginxAccepts(t, bin, NginxConfigOptions{}) })
	// The map's include matches nothing before the sidecar's first list,
	// and then a list with every kind of identity it writes.
	mapDir := t.TempDir()
	o := NginxConfigOptions{LogFile: filepath.Join(t.TempDir(), "access.log"), MapDir: mapDir, Cache: filepath.Join(t.TempDir(), "cache")}
	t.Run("file log and map, no list yet", func(t *testing.T) { nginxAccepts(t, bin, o) })
	keys, pools := renderMaps(map[string]listedCaller{
		k1Identity:                          {key: "fp-0123456789abcdef", pool: "default"},
		"|Bearer eyJ.a-b_c|2001:db8::1|h.x": {key: "fp-1", pool: "api"},
		"||203.0.113.9|" + strings.Repeat("h", maxIdentity-16): {key: "addr:203.0.113.9", pool: "default"},
	})
	if err := writeMaps(mapDir, keys, pools); err != nil {
		t.Fatal(err)
	}
	t.Run("file log and map, with a list", func(t *testing.T) { nginxAccepts(t, bin, o) })
}

func nginxAccepts(t *testing.T, bin string, o NginxConfigOptions) {
	dir := t.TempDir()
	snippet, err := NginxConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(dir, "headroom.conf")
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(sp, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(testenv.NginxMain(dir, sp)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append([]string{"-t"}, testenv.NginxArgs(dir, conf)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t refused the snippet: %v\n%s\n%s", err, out, snippet)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t: %s", out)
	}
}

// TestSidecarWithNginx runs the whole arrangement: a real nginx with the
// snippet nginx-config prints, an upstream whose handlers take time, and
// the sidecar.
func TestSidecarWithNginx(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")

	// The upstream: /sleep?ms=N takes N ms; /block waits until released.
	release := make(chan struct{})
	var completed atomic.Int64 // requests the upstream finished without being cancelled
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wait <-chan time.Time
		var released <-chan struct{}
		switch r.URL.Path {
		case "/sleep":
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			wait = time.After(time.Duration(ms) * time.Millisecond)
		case "/block":
			wait = time.After(30 * time.Second) // bound, in case the test fails first
			released = release
		}
		select {
		case <-wait:
		case <-released:
		case <-r.Context().Done():
			return // nginx gave up on us: not completed
		}
		completed.Add(1)
		if n, _ := strconv.Atoi(r.URL.Query().Get("bytes")); n > 0 {
			// Larger than the socket buffers, so nginx sees the write to a
			// client that left fail.
			_, _ = w.Write(make([]byte, n))
			return
		}
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "done %s %q\n", r.URL.Path, b)
			return
		}
		fmt.Fprintln(w, "done", r.URL.Path)
	}))
	t.Cleanup(up.Close)

	// The sidecar, on ports the kernel picks.
	cfg := &config.Config{
		Listen:     "127.0.0.1:0",
		NoUpstream: true,
		Admin:      config.Admin{Listen: "127.0.0.1:0"},
		Keys:       config.Keys{Secret: "0123456789abcdef0123456789abcdef"},
	}
	wt, win, rf := config.Duration(200*time.Millisecond), config.Duration(time.Minute), config.Duration(5*time.Minute)
	cfg.Budget = config.Limits{WorkerTime: &wt, Window: &win, RestrictFor: &rf}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type addrs struct{ check, syslog, admin net.Addr }
	ready := make(chan addrs, 1)
	runErr := make(chan error, 1)
	var sidecarLog testenv.Buffer
	go func() {
		runErr <- Run(ctx, RunOptions{
			Config: cfg, Syslog: "127.0.0.1:0", Tag: DefaultSyslogTag,
			Logger: slogTo(&sidecarLog),
			Ready:  func(c, s, a net.Addr) { ready <- addrs{c, s, a} },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("sidecar: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("sidecar did not stop")
		}
	})
	var a addrs
	select {
	case a = <-ready:
	case err := <-runErr:
		t.Fatalf("sidecar: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("sidecar did not start")
	}
	adminURL := "http://" + a.admin.String()

	// nginx, with the snippet nginx-config prints for these ports.
	base := startNginx(t, bin, NginxConfigOptions{Sidecar: a.check.String(), Syslog: a.syslog.String(), Upstream: up.URL},
		func() string { return sidecarLog.String() })

	client := &http.Client{Timeout: 10 * time.Second}
	get := func(t *testing.T, c *http.Client, path, key string) (*http.Response, string, error) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b), nil
	}
	keyState := func(t *testing.T, key string) admin.KeyJSON {
		t.Helper()
		res, err := client.Get(adminURL + "/v1/keys/" + key)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var k admin.KeyJSON
		if err := json.NewDecoder(res.Body).Decode(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	// waitKey polls the admin API until cond holds (the log line travels
	// by UDP, asynchronously), with a bound.
	waitKey := func(t *testing.T, key, what string, cond func(admin.KeyJSON) bool) admin.KeyJSON {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			k := keyState(t, key)
			if cond(k) {
				return k
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %s: %s never held; last state %+v", key, what, k)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("over budget gets 429 through nginx, other keys do not", func(t *testing.T) {
		res, body, err := get(t, client, "/sleep?ms=250", "alpha-key")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 || !strings.Contains(body, "done /sleep") {
			t.Fatalf("first request: %d %q", res.StatusCode, body)
		}
		if p := res.Header.Get("RateLimit-Policy"); !strings.Contains(p, `"worker-time";q=0;w=60`) {
			t.Errorf("RateLimit-Policy on an allowed answer = %q", p)
		}
		// 250 ms against a 200 ms budget: whether the line has been
		// charged yet or the request still counts in flight, alpha is over.
		res, body, err = get(t, client, "/sleep?ms=1", "alpha-key")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("alpha over budget: status %d, body %q", res.StatusCode, body)
		}
		ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 300 {
			t.Errorf("Retry-After = %q, want 1..300 seconds", res.Header.Get("Retry-After"))
		}
		if !strings.Contains(res.Header.Get("RateLimit"), `"worker-time";r=0;t=`) {
			t.Errorf("RateLimit = %q", res.Header.Get("RateLimit"))
		}
		if res.Header.Get("RateLimit-Policy") == "" {
			t.Error("no RateLimit-Policy on the 429")
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var denial map[string]any
		if err := json.Unmarshal([]byte(body), &denial); err != nil {
			t.Fatalf("429 body is not JSON: %v: %q", err, body)
		}
		if denial["error"] != "worker_time_budget_exceeded" || !strings.HasPrefix(fmt.Sprint(denial["key"]), "fp-") {
			t.Errorf("429 body = %v", denial)
		}
		if strings.Contains(body, "alpha-key") {
			t.Error("the 429 body shows the key in clear")
		}
		res, body, err = get(t, client, "/sleep?ms=1", "beta-key")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("beta, within budget: %d %q", res.StatusCode, body)
		}
	})

	t.Run("in-flight time counts before the request completes", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			res, body, err := get(t, client, "/block", "gamma-key")
			if err == nil && res.StatusCode != 200 {
				err = fmt.Errorf("status %d: %q", res.StatusCode, body)
			}
			done <- err
		}()
		k := waitKey(t, "gamma-key", "in_flight 1 and worker_seconds > 0", func(k admin.KeyJSON) bool {
			return k.InFlight == 1 && k.WorkerSeconds > 0
		})
		if k.Requests != 1 {
			t.Errorf("requests = %d", k.Requests)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("blocked request: %v", err)
		}
		waitKey(t, "gamma-key", "in_flight 0 after the log line", func(k admin.KeyJSON) bool { return k.InFlight == 0 })
	})

	t.Run("a client that aborts is charged the real upstream time", func(t *testing.T) {
		before := completed.Load()
		impatient := &http.Client{Timeout: 100 * time.Millisecond}
		if res, body, err := get(t, impatient, "/sleep?ms=600&bytes=8388608", "delta-key"); err == nil {
			t.Fatalf("the impatient client got an answer (%d %q); it should have timed out", res.StatusCode, body)
		}
		k := waitKey(t, "delta-key", "the log line charged (in_flight 0)", func(k admin.KeyJSON) bool { return k.InFlight == 0 && k.Requests == 1 })
		// The upstream worked 600 ms; the client left after 100 ms. The
		// seed's guard charged the 100 ms (or less); nginx's line, written
		// once the upstream finished, carries the 600 ms.
		if k.WorkerSeconds < 0.6 {
			t.Errorf("worker_seconds = %.3f after an abort, want the upstream's >= 0.6", k.WorkerSeconds)
		}
		if completed.Load() != before+1 {
			t.Error("the upstream request was cancelled when the client left (proxy_ignore_client_abort)")
		}
		// nginx logs the upstream's status (200), not 499: it does not
		// watch the client while the upstream works. The abort shows as an
		// empty $request_completion: the answer could not be sent.
		m := adminMetrics(t, client, adminURL)
		if !strings.Contains(m, `headroom_requests_total{outcome="client_abort",pool="default"} 1`) {
			t.Errorf("the abort was not counted:\n%s", grepLines(m, "headroom_requests_total"))
		}
	})

	t.Run("POST bodies reach the upstream, not the check", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/sleep?ms=1", strings.NewReader("payload"))
		req.Header.Set("X-Api-Key", "epsilon-key")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != "done /sleep \"payload\"\n" {
			t.Fatalf("POST: %d %q", res.StatusCode, b)
		}
	})

	t.Run("a client cannot pose as another address", func(t *testing.T) {
		// The snippet sets the sidecar's headers itself: the client's own
		// X-Headroom-Client never reaches the check.
		req, _ := http.NewRequest("GET", base+"/sleep?ms=1", nil)
		req.Header.Set("X-Headroom-Client", "192.0.2.99")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		// in_flight 0: its line is in too (and, read in order from one
		// nginx worker, every line before it), which the totals below need.
		waitKey(t, "addr:127.0.0.1", "the request charged to nginx's view of the client", func(k admin.KeyJSON) bool {
			return k.Requests == 1 && k.InFlight == 0
		})
		if k := keyState(t, "addr:192.0.2.99"); k.Requests != 0 {
			t.Errorf("the forged address was charged: %+v", k)
		}
	})

	// Every line the sidecar got matched a ticket (none lost or unmatched
	// on loopback), and keys never appear in clear in the metrics.
	m := adminMetrics(t, client, adminURL)
	for _, want := range []string{
		`headroom_sidecar_syslog_lines_total{result="matched"} 6`,
		`headroom_sidecar_syslog_lines_total{result="no_upstream"} 1`, // the 429
		`headroom_sidecar_syslog_lines_total{result="malformed"} 0`,
		`headroom_sidecar_syslog_lines_total{result="unmatched"} 0`,
		`headroom_sidecar_checks_total{result="refused"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "headroom_sidecar"))
		}
	}
	for _, k := range []string{"alpha-key", "beta-key", "gamma-key", "delta-key", "epsilon-key"} {
		if strings.Contains(m, k) || strings.Contains(sidecarLog.String(), k) {
			t.Errorf("%s appears in clear in the metrics or the sidecar's log", k)
		}
	}
}

// startNginx runs nginx in the foreground with the snippet for o (its
// Listen picked here), stops it at the end of the test, and returns its
// base URL. extraLog adds to nginx's output on failure.
func startNginx(t *testing.T, bin string, o NginxConfigOptions, extraLog func() string) string {
	t.Helper()
	return startNginxIn(t, t.TempDir(), bin, o, extraLog)
}

// startNginxIn is startNginx with nginx's directory (its pid file is
// dir/nginx.pid) chosen by the caller.
func startNginxIn(t *testing.T, dir, bin string, o NginxConfigOptions, extraLog func() string) string {
	t.Helper()
	o.Listen = testenv.FreePort(t)
	snippet, err := NginxConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	sp, conf := filepath.Join(dir, "headroom.conf"), filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(sp, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(testenv.NginxMain(dir, sp)), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.RunNginx(t, bin, dir, conf, o.Listen, extraLog)
	return "http://" + o.Listen
}

// TestSidecarDownNginxFailsOpen: with the sidecar unreachable, the
// snippet lets requests through unguarded instead of failing them all.
func TestSidecarDownNginxFailsOpen(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app") }))
	t.Cleanup(up.Close)
	base := startNginx(t, bin, NginxConfigOptions{Sidecar: testenv.FreePort(t), Syslog: "127.0.0.1:9", Upstream: up.URL},
		func() string { return "" })
	res, err := http.Get(base + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "app" {
		t.Fatalf("with the sidecar down: %d %q, want the app's answer", res.StatusCode, b)
	}
}

// getWithKey GETs url with X-Api-Key: key and returns the status.
func getWithKey(t *testing.T, c *http.Client, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Api-Key", key)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// metricOf is the value of one sample (name with its labels, as exposed)
// of the admin API's metrics; 0 when absent.
func metricOf(t *testing.T, c *http.Client, adminURL, name string) float64 {
	t.Helper()
	for l := range strings.SplitSeq(adminMetrics(t, c, adminURL), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func adminMetrics(t *testing.T, c *http.Client, adminURL string) string {
	t.Helper()
	res, err := c.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestSidecarCheckCacheWithNginx (issue 13): with nginx-config --cache and
// the sidecar's --check-cache, a light key's checks are answered from
// nginx's cache while every one of its requests is still charged from its
// log line; a key near its budget is asked about on every request and
// refused within one request of crossing it.
func TestSidecarCheckCacheWithNginx(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")
	up := workingUpstream(t, nil)
	cfg := heavyKeyConfig(t)
	run := startSidecar(t, RunOptions{Config: cfg, Tag: DefaultSyslogTag, CheckCache: 30 * time.Second})
	base := startNginx(t, bin, NginxConfigOptions{Sidecar: run.check, Syslog: run.syslog, Upstream: up.URL, Cache: filepath.Join(t.TempDir(), "cache")},
		func() string { return "" })
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path, key string) int { t.Helper(); return getWithKey(t, client, base+path, key) }
	metric := func(name string) float64 { t.Helper(); return metricOf(t, client, run.admin, name) }

	const light = 10
	for i := range light {
		// 5 ms of upstream work each: a line with no upstream time has
		// nothing to charge.
		if st := get("/fast?ms=5&i="+strconv.Itoa(i), "light-key"); st != 200 {
			t.Fatalf("light request %d: %d", i, st)
		}
	}
	if n := metric(`headroom_sidecar_checks_total{result="allowed"}`); n != 1 {
		t.Errorf("%v checks reached the sidecar for %d requests of a light key, want 1 (the rest from nginx's cache)", n, light)
	}
	// Every request is still charged: its line comes without a check, and
	// is not capped at the pool's longest checked request.
	testenv.Eventually(t, "every light request's line", func() bool {
		got := metric(`headroom_sidecar_syslog_lines_total{result="matched"}`) + metric(`headroom_sidecar_syslog_lines_total{result="unmatched"}`)
		if got > light {
			t.Fatalf("%v lines for %d requests:\n%s", got, light, grepLines(adminMetrics(t, client, run.admin), "sidecar"))
		}
		return got == light
	})
	if n := metric(`headroom_sidecar_charges_capped_total{cap="pool_max"}`); n != 0 {
		t.Errorf("%v lines of cached allows were capped at the pool's longest", n)
	}

	// The heavy key (300 ms budget) is asked about every time: its third
	// 150 ms request crosses the budget, and the next one is refused.
	heavyKeyRefusedWithinOneRequest(t, get, run.admin, metric)
}

// workingUpstream is an application whose requests take ?ms= milliseconds;
// seen, if not nil, sees each request first.
func workingUpstream(t *testing.T, seen func(*http.Request)) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			seen(r)
		}
		if ms, _ := strconv.Atoi(r.URL.Query().Get("ms")); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond) // the upstream's work, not synchronisation
		}
		fmt.Fprintln(w, "done")
	}))
	t.Cleanup(up.Close)
	return up
}

// heavyKeyConfig is an hour's budget for every key but heavy-key's: 300 ms,
// restricted for 5 minutes once over.
func heavyKeyConfig(t *testing.T) *config.Config {
	cfg := sidecarConfig(t, time.Hour, "")
	small, rf := config.Duration(300*time.Millisecond), config.Duration(5*time.Minute)
	cfg.Overrides = []config.Override{{Key: "heavy-key", Limits: config.Limits{WorkerTime: &small, RestrictFor: &rf}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// heavyKeyRefusedWithinOneRequest sends 150 ms requests of heavy-key (a
// 300 ms budget) until one is refused: two must get through, each asked
// about (checks_total{result="allowed"} grows by each).
func heavyKeyRefusedWithinOneRequest(t *testing.T, get func(path, key string) int, adminURL string, metric func(string) float64) {
	t.Helper()
	const allowed = `headroom_sidecar_checks_total{result="allowed"}`
	before := metric(allowed)
	ok := 0
	for ok < 10 {
		st := get("/slow?ms=150", "heavy-key")
		if st == 429 {
			break
		}
		if st != 200 {
			t.Fatalf("heavy request: %d", st)
		}
		ok++
		// The next check must see this request's time: wait for its line.
		testenv.Eventually(t, "the heavy request's line", func() bool {
			return getKey(t, adminURL, "heavy-key").InFlight == 0
		})
	}
	if ok != 2 {
		t.Errorf("the heavy key got %d requests through before its 429, want 2 (300 ms budget, 150 ms each)", ok)
	}
	if n := metric(allowed) - before; n != float64(ok) {
		t.Errorf("%v of the heavy key's %d allowed requests were checked, want all: a key near its budget is never cached or listed", n, ok)
	}
}

// Issue 17 item 17: nginx-config printed only a whole server block, while
// most operators already have one. Its three pieces (--part http, server,
// location) included into an existing site's config pass nginx -t, and
// guard the location they are included in: with the sidecar down it fails
// open to the application, as the whole snippet does, while a location
// without the piece is left alone.
func TestNginxConfigPartsIncludedIntoAnExistingServer(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s id=%t", r.URL.Path, r.Header.Get("X-Request-Id") != "")
	}))
	t.Cleanup(up.Close)
	t.Run("syslog", func(t *testing.T) {
		partsIncluded(t, bin, up.URL, NginxConfigOptions{Sidecar: testenv.FreePort(t), Syslog: "127.0.0.1:9", Upstream: up.URL})
	})
	t.Run("log file and map", func(t *testing.T) {
		partsIncluded(t, bin, up.URL, NginxConfigOptions{Sidecar: testenv.FreePort(t), Upstream: up.URL,
			LogFile: filepath.Join(t.TempDir(), "access.log"), MapDir: t.TempDir()})
	})
}

func partsIncluded(t *testing.T, bin, upURL string, o NginxConfigOptions) {
	dir := t.TempDir()
	part := func(name string) string {
		o.Part = name
		s, err := NginxConfig(o)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "headroom-"+name+".conf")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listen := testenv.FreePort(t)
	site := filepath.Join(dir, "site.conf")
	// An operator's own site, with the pieces included where they say.
	siteConf := fmt.Sprintf(`include %s;
server {
    listen %s;
    server_name example.com;
    include %s;

    location /api/ {
        include %s;
        proxy_pass %s;
    }

    location /static/ {
        return 200 "static";
    }
}
`, part("http"), listen, part("server"), part("location"), upURL)
	if err := os.WriteFile(site, []byte(siteConf), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(testenv.NginxMain(dir, site)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append([]string{"-t"}, testenv.NginxArgs(dir, conf)...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t refused the pieces in an existing server: %v\n%s\n%s", err, out, siteConf)
	}
	var nout testenv.Buffer
	cmd := exec.Command(bin, testenv.NginxArgs(dir, conf)...)
	cmd.Stdout, cmd.Stderr = &nout, &nout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nginx output:\n%s", nout.String())
		}
	})
	testenv.WaitForPort(t, listen, 10*time.Second)
	for path, want := range map[string]string{"/api/report": "app /api/report id=true", "/static/x": "static"} {
		res, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != want {
			t.Errorf("%s with the sidecar down: %d %q, want 200 %q", path, res.StatusCode, b, want)
		}
	}
	o.Part = "elsewhere"
	if _, err := NginxConfig(o); err == nil || !strings.Contains(err.Error(), "want http, server or location") {
		t.Errorf("--part elsewhere: %v", err)
	}
}

// TestSidecarUncheckedMapWithNginx (issue 13): with nginx-config --log-file
// and --map-dir, and the sidecar following the file and keeping the list,
// a light caller is listed after its first requests and then never asked
// about, while every one of its requests is still charged its real time
// from the buffered log (a client that leaves at 1 s of a 3 s request
// included: 3 s); that slow request takes its pool's callers off the list;
// a key near its budget is asked about on every request and refused within
// one request of crossing it.
func TestSidecarUncheckedMapWithNginx(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")
	var lastID atomic.Value // the X-Request-Id of the last request upstream
	up := workingUpstream(t, func(r *http.Request) { lastID.Store(r.Header.Get("X-Request-Id")) })
	cfg := heavyKeyConfig(t)
	nginxDir, mapDir := t.TempDir(), filepath.Join(t.TempDir(), "lists")
	logFile := filepath.Join(t.TempDir(), "access.log")
	run := startSidecar(t, RunOptions{Config: cfg, AccessLog: logFile,
		Unchecked: &UncheckedOptions{Dir: mapDir, Interval: 200 * time.Millisecond, Reload: ReloadNginx(filepath.Join(nginxDir, "nginx.pid"), 5*time.Second)}})
	base := startNginxIn(t, nginxDir, bin, NginxConfigOptions{Sidecar: run.check, Upstream: up.URL, LogFile: logFile, MapDir: mapDir},
		func() string { b, _ := os.ReadFile(logFile); return "access log:\n" + string(b) })
	// New connections: a reload retires the worker a kept-alive one is on.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path, key string) int { t.Helper(); return getWithKey(t, client, base+path, key) }
	metric := func(name string) float64 { t.Helper(); return metricOf(t, client, run.admin, name) }
	allowed := func() float64 { return metric(`headroom_sidecar_checks_total{result="allowed"}`) }

	lightSent := 0
	light := func() {
		t.Helper()
		if st := get("/fast?ms=5&n="+strconv.Itoa(lightSent), "light-key"); st != 200 {
			t.Fatalf("light request %d: %d", lightSent, st)
		}
		lightSent++
	}
	for range listMinRequests {
		light()
	}
	testenv.Eventually(t, "the light caller listed and nginx reloaded", func() bool {
		return metric("headroom_sidecar_unchecked_callers") == 1 && metric(`headroom_sidecar_map_reloads_total{result="ok"}`) >= 1
	})
	// The old worker may take a few more connections before nginx tells
	// it to stop: wait for a request nginx answers for itself.
	testenv.Eventually(t, "a light request answered from nginx's map", func() bool {
		c := allowed()
		light()
		return allowed() == c
	})
	checked := allowed()
	const more = 20
	for range more {
		light()
	}
	// Its upstream still gets an X-Request-Id, a cheap one unique on the
	// host ($pid.$connection.$connection_requests.$msec), not $request_id.
	if id, _ := lastID.Load().(string); strings.Count(id, ".") != 4 {
		t.Errorf("a listed caller's request went upstream with X-Request-Id %q, want pid.connection.request.msec", id)
	}
	if n := allowed() - checked; n != 0 {
		t.Errorf("%v of a listed caller's %d requests reached the sidecar, want none (reloads %v)", n, more, metric(`headroom_sidecar_map_reloads_total{result="ok"}`))
	}
	testenv.Eventually(t, "every light request charged from the log file", func() bool {
		return getKey(t, run.admin, "light-key").Requests == int64(lightSent)
	})
	// The follower caught up with the file, which was neither rotated nor
	// truncated, and skipped no line.
	testenv.Eventually(t, "the sidecar caught up with the log file", func() bool {
		return metric("headroom_sidecar_access_log_behind_bytes") == 0
	})
	exposed := adminMetrics(t, client, run.admin)
	for _, m := range []string{"headroom_sidecar_access_log_behind_bytes", "headroom_sidecar_access_log_overlong_lines_total", "headroom_sidecar_access_log_rotations_total", "headroom_sidecar_access_log_truncations_total"} {
		if !strings.Contains(exposed, "\n"+m+" ") {
			t.Errorf("the metrics lack %s", m)
		}
		if n := metric(m); n != 0 {
			t.Errorf("%s = %v, want 0", m, n)
		}
	}
	if n := metric(`headroom_sidecar_charges_capped_total{cap="pool_max"}`); n != 0 {
		t.Errorf("%v lines of a listed caller were capped at the pool's longest", n)
	}

	// A client that leaves at 1 s of a 3 s request: nginx lets the
	// upstream finish and logs 3 s, which is charged.
	before := getKey(t, run.admin, "light-key").WorkerSeconds
	impatient := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", base+"/slow?ms=3000", nil)
	req.Header.Set("X-Api-Key", "light-key")
	if res, err := impatient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the impatient client got an answer: %d", res.StatusCode)
	}
	testenv.Eventually(t, "the abandoned request charged its upstream time", func() bool {
		return getKey(t, run.admin, "light-key").WorkerSeconds-before >= 3
	})
	if got := getKey(t, run.admin, "light-key").WorkerSeconds - before; got > 3.5 {
		t.Errorf("the abandoned 3 s request charged %.3f s", got)
	}
	// A 3 s request in the pool: its callers are asked about again.
	testenv.Eventually(t, "the light caller taken off the list after its pool's slow request", func() bool {
		return metric("headroom_sidecar_unchecked_callers") == 0 && metric(`headroom_sidecar_map_reloads_total{result="ok"}`) >= 2
	})
	// (Eventually again: the retiring worker may still hold the old map.)
	testenv.Eventually(t, "a light request checked again", func() bool {
		c := allowed()
		light()
		return allowed() == c+1
	})

	// The heavy key (300 ms budget) is never listed: every request is
	// asked about, and the third 150 ms request is refused.
	heavyKeyRefusedWithinOneRequest(t, get, run.admin, metric)
	if id, _ := lastID.Load().(string); len(id) != 32 {
		t.Errorf("a checked request went upstream with X-Request-Id %q, want nginx's $request_id (32 hex digits, the line's and the ticket's)", id)
	}
	// The keys are in the map files, which are 0600, and never in the
	// metrics.
	m := adminMetrics(t, client, run.admin)
	if strings.Contains(m, "light-key") || strings.Contains(m, "heavy-key") {
		t.Error("a key appears in clear in the metrics")
	}
	fi, err := os.Stat(filepath.Join(mapDir, MapKeysFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", MapKeysFile, fi.Mode(), err)
	}
}
