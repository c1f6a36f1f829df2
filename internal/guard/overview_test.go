package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/adminui"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/store"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// TestOverviewWith100kKeys: with 100,000 keys in the ledger, the page and
// its overview stay small: the server sends the top keys and the
// restricted ones it picked, never the whole ledger.
func TestOverviewWith100kKeys(t *testing.T) {
	clk := budget.NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, envOpts{
		clock:    clk,
		upstream: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		yaml: "budget: {worker_time: 200s, window: 1m, restrict_for: 5m}\n" +
			"pools:\n  - name: api\n    path_prefixes: [/api/]\n    max_concurrent: 8\n    queue: 16\n  - name: ui\n    max_concurrent: 24\n",
	})
	const keys, restricted = 100_000, 500
	led := e.g.Ledger()
	lim := e.g.Core().Limits("")
	for i := range keys {
		_, tk := led.Admit(fmt.Sprintf("fp-%016x", i), lim)
		// Usage from 1 ms to 100 s: the heaviest key is the last one.
		led.Finish(tk, time.Duration(i+1)*time.Millisecond)
	}
	for i := range restricted {
		led.Restrict(fmt.Sprintf("fp-%016x", i*7), clk.Now().Add(time.Duration(i+1)*time.Second))
	}

	get := func(path string) ([]byte, http.Header) {
		t.Helper()
		res, err := http.Get(e.admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
		}
		return b, res.Header
	}

	body, hdr := get("/v1/overview")
	if len(body) > 16<<10 {
		t.Errorf("overview of %d keys is %d bytes, want under 16 KiB", keys, len(body))
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var ov adminui.Overview
	if err := json.Unmarshal(body, &ov); err != nil {
		t.Fatal(err)
	}
	if ov.KeysTracked != keys || len(ov.Top) != adminui.DefaultTop || ov.RestrictedTotal != restricted || len(ov.Restricted) != adminui.DefaultTop {
		t.Fatalf("overview: %d keys tracked, %d top, %d of %d restricted; want %d, %d, %d of %d",
			ov.KeysTracked, len(ov.Top), len(ov.Restricted), ov.RestrictedTotal, keys, adminui.DefaultTop, adminui.DefaultTop, restricted)
	}
	for i, k := range ov.Top {
		want := fmt.Sprintf("fp-%016x", keys-1-i)
		if k.Key != want || k.WorkerSeconds != float64(keys-i)/1000 || k.BudgetSeconds != 200 {
			t.Errorf("top[%d] = %s %.3f s of %g, want %s %.3f s of 200", i, k.Key, k.WorkerSeconds, k.BudgetSeconds, want, float64(keys-i)/1000)
		}
	}
	for i, k := range ov.Restricted {
		// The restricted keys are 0, 7, 14, …: the heaviest is the last.
		want := fmt.Sprintf("fp-%016x", (restricted-1-i)*7)
		if k.Key != want || k.RestrictedUntil == nil {
			t.Errorf("restricted[%d] = %s until %v, want %s", i, k.Key, k.RestrictedUntil, want)
		}
	}
	if len(ov.Pools) != 2 || ov.Pools[0].Name != "api" || ov.Pools[0].MaxConcurrent != 8 || ov.Pools[0].QueueMax != 16 || ov.Pools[1].MaxConcurrent != 24 {
		t.Errorf("pools: %+v", ov.Pools)
	}
	if ov.Role != "proxy" || ov.Store.State != "memory" {
		t.Errorf("role %q, store %+v", ov.Role, ov.Store)
	}

	body, _ = get("/v1/overview?top=" + fmt.Sprint(adminui.MaxTop))
	if err := json.Unmarshal(body, &ov); err != nil || len(ov.Top) != adminui.MaxTop || len(body) > 64<<10 {
		t.Errorf("top=%d: %d keys in %d bytes (%v), want %d in under 64 KiB", adminui.MaxTop, len(ov.Top), len(body), err, adminui.MaxTop)
	}
	for _, bad := range []string{"0", "101", "all", "-1"} {
		res, err := http.Get(e.admin.URL + "/v1/overview?top=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("top=%s: status %d, want 400", bad, res.StatusCode)
		}
	}

	// The page is the same few kilobytes whatever the ledger holds, and
	// loads nothing from elsewhere.
	page, hdr := get("/")
	if len(page) > 48<<10 {
		t.Errorf("page is %d bytes, want under 48 KiB", len(page))
	}
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("page headers: %v", hdr)
	}
	for _, ext := range []string{"src=\"http", "href=\"http", "@import", "url(http", "fetch(\"http", "fetch('http"} {
		if strings.Contains(string(page), ext) {
			t.Errorf("page loads something from elsewhere (%s)", ext)
		}
	}
}

// TestAdminPageToken: with admin.token set the page is served without it
// (it holds no data, and asks for the token), the overview only with it.
func TestAdminPageToken(t *testing.T) {
	e := newEnv(t, envOpts{upstream: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), yaml: "admin: {token: s3cret-admin-token}\n"})
	for _, tc := range []struct {
		path, auth string
		status     int
		contains   string
	}{
		{"/", "", 200, `<meta name="headroom-token" content="required">`},
		{"/v1/overview", "", 401, "unauthorized"},
		{"/v1/overview", "Bearer wrong", 401, "unauthorized"},
		{"/v1/overview", "Bearer s3cret-admin-token", 200, `"keys_tracked":0`},
		{"/nope", "Bearer s3cret-admin-token", 404, ""},
	} {
		req, _ := http.NewRequest("GET", e.admin.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || !strings.Contains(string(b), tc.contains) {
			t.Errorf("GET %s (%q): %d, want %d with %q", tc.path, tc.auth, res.StatusCode, tc.status, tc.contains)
		}
	}
	res, err := http.Get(e.admin.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(b), "s3cret") {
		t.Error("the page carries the token")
	}
}

// TestOverviewStoreState: beside a real Redis fleet store the page says
// "redis up", and "degraded" with a warning once Redis is gone.
func TestOverviewStoreState(t *testing.T) {
	rs := testenv.StartRedis(t)
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(up.Close)
	cfg, err := config.Parse([]byte("listen: 127.0.0.1:0\nupstream: " + up.URL + "\nadmin: {listen: 127.0.0.1:0}\n" +
		"keys: {secret: overview-store-secret-0123}\nstore: {type: redis, url: " + rs.URL() + ", sync_interval: 100ms}\n"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	st, err := store.NewRedis(store.RedisOptions{URL: cfg.Store.URL, Interval: cfg.Store.SyncInterval.D(), Timeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	admin := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, ServerOptions{Config: cfg, Snapshots: st, Logger: slog.New(slog.NewTextHandler(logs, nil)),
			Ready: func(_, a net.Addr) { admin <- "http://" + a.String() }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	base := testenv.Recv(t, "the admin address", admin)

	overview := func() adminui.Overview {
		res, err := http.Get(base + "/v1/overview")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var ov adminui.Overview
		if err := json.NewDecoder(res.Body).Decode(&ov); err != nil {
			t.Fatal(err)
		}
		return ov
	}
	testenv.Eventually(t, "the store up on the page", func() bool {
		ov := overview()
		return ov.Store.Type == "redis" && ov.Store.State == "up"
	})
	rs.Stop()
	testenv.Eventually(t, "the store degraded on the page", func() bool {
		ov := overview()
		return ov.Store.State == "degraded" && len(ov.Warnings) > 0 && ov.Warnings[0].Kind == "store_degraded"
	})
}

// BenchmarkOverview is one poll of the page with 100,000 keys in the
// ledger: two bounded passes over it (top keys, restricted keys), the
// registry gathered, the JSON written.
func BenchmarkOverview(b *testing.B) {
	cfg, err := config.Parse([]byte("upstream: http://127.0.0.1:1\nbudget: {worker_time: 200s, window: 1m}\n"))
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(Options{Config: cfg, Secret: []byte("bench-secret-0123456789"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	led, lim := g.Ledger(), g.Core().Limits("")
	for i := range 100_000 {
		_, tk := led.Admit(fmt.Sprintf("fp-%016x", i), lim)
		led.Finish(tk, time.Duration(i+1)*time.Millisecond)
		if i%200 == 0 {
			led.Restrict(fmt.Sprintf("fp-%016x", i), time.Now().Add(time.Hour))
		}
	}
	h := g.Admin()
	req := httptest.NewRequest("GET", "/v1/overview", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
