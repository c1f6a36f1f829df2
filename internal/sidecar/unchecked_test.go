package sidecar

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue is a counter's or gauge's value.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func TestCallerIdentity(t *testing.T) {
	long := strings.Repeat("a", maxIdentity)
	for _, tc := range []struct {
		name string
		hdr  http.Header
		want string // "" : not listable
	}{
		{"key", http.Header{"X-Api-Key": {"k1"}, hdrClient: {"203.0.113.7"}, hdrHost: {"api.example.com"}}, "k1||203.0.113.7|api.example.com"},
		{"bearer, with its space", http.Header{"Authorization": {"Bearer tok.en-1"}, hdrClient: {"2001:db8::1"}, hdrHost: {"h"}}, "|Bearer tok.en-1|2001:db8::1|h"},
		{"no key: the address", http.Header{hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, "||203.0.113.7|h"},
		{"repeated key: nginx joins the values", http.Header{"X-Api-Key": {"a", "b"}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"repeated Authorization", http.Header{"Authorization": {"Bearer a", "Bearer b"}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"a quote would end nginx's string", http.Header{"X-Api-Key": {`k"1`}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"a backslash", http.Header{"X-Api-Key": {`k\1`}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"a dollar", http.Header{"X-Api-Key": {"k$1"}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"a semicolon", http.Header{"X-Api-Key": {"k;1"}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"a byte past ASCII", http.Header{"X-Api-Key": {"k\xe91"}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"a leading ~ is a regex to nginx", http.Header{"X-Api-Key": {"~k"}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"too long for the map's buckets", http.Header{"X-Api-Key": {long}, hdrClient: {"203.0.113.7"}, hdrHost: {"h"}}, ""},
		{"no client address", http.Header{"X-Api-Key": {"k1"}, hdrHost: {"h"}}, ""},
		{"no host", http.Header{"X-Api-Key": {"k1"}, hdrClient: {"203.0.113.7"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := callerIdentity(tc.hdr)
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("callerIdentity = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// uncheckedEnv is a sidecarEnv with the unchecked list on, its files in a
// temporary directory and nginx's reload counted (or failed).
type uncheckedEnv struct {
	*sidecarEnv
	dir       string
	reloads   int
	reloadErr error
}

func newUncheckedEnv(t *testing.T, yaml string) *uncheckedEnv {
	t.Helper()
	return newUncheckedEnvMax(t, yaml, 0)
}

// newUncheckedEnvMax is newUncheckedEnv with UncheckedOptions.Max.
func newUncheckedEnvMax(t *testing.T, yaml string, maxCallers int) *uncheckedEnv {
	t.Helper()
	e := &uncheckedEnv{dir: t.TempDir()}
	reload := func() error { e.reloads++; return e.reloadErr }
	e.sidecarEnv = newSidecarEnvOpts(t, yaml, Options{LineDelay: 1200 * time.Millisecond,
		Unchecked: &UncheckedOptions{Dir: e.dir, Reload: reload, Max: maxCallers}})
	return e
}

func TestUncheckedListsAtMostMax(t *testing.T) {
	e := newUncheckedEnvMax(t, "budget: {worker_time: 60s}\n", 2)
	for _, k := range []string{"k3", "k1", "k2"} {
		for i := range listMinRequests {
			e.request(fmt.Sprint(k, "-", i), k, "0.010")
		}
	}
	e.sc.ReviewUnchecked()
	got := e.listed()
	if len(got) != 2 || got[k1Identity] == "" || got["k2||203.0.113.7|api.example.com"] == "" {
		t.Errorf("Max 2 of 3 eligible callers: listed %v, want k1's and k2's (identity order)", got)
	}
	// The ones listed keep their place while they stay eligible, even
	// against an eligible caller first in identity order.
	for i := range listMinRequests {
		e.request(fmt.Sprint("k0-", i), "k0", "0.010")
	}
	e.sc.ReviewUnchecked()
	if got := e.listed(); len(got) != 2 || got[k1Identity] == "" {
		t.Errorf("after another caller: listed %v", got)
	}
}

const mapDecl = hdrMapKey + ": header:X-Api-Key,bearer,addr,host"

// request is one checked request of key that took upstream (a duration
// for the line).
func (e *uncheckedEnv) request(id, key, upstream string) {
	e.t.Helper()
	if w := e.check(id, "/api/report", "X-Api-Key: "+key, mapDecl); w.Code != http.StatusNoContent {
		e.t.Fatalf("check %s: %d", id, w.Code)
	}
	e.ingest(line(id, e.sc.Core().Fingerprint(key), 200, upstream), LineMatched)
}

// listed is what the keys map file holds: identity -> fingerprint.
func (e *uncheckedEnv) listed() map[string]string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, MapKeysFile))
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]string{}
	for l := range strings.SplitSeq(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		var id, fp string
		if _, err := fmt.Sscanf(l, "%q %q;", &id, &fp); err != nil {
			e.t.Fatalf("map line %q: %v", l, err)
		}
		m[id] = fp
	}
	return m
}

const k1Identity = "k1||203.0.113.7|api.example.com"

func TestUncheckedListsALightCallerAndTakesItOffNearItsBudget(t *testing.T) {
	e := newUncheckedEnv(t, "budget: {worker_time: 60s, window: 1m}\n")
	for i := range listMinRequests - 1 {
		e.request(fmt.Sprint("r", i), "k1", "0.010")
	}
	e.sc.ReviewUnchecked()
	if e.reloads != 0 {
		t.Fatalf("listed after %d requests (reloads %d): its rate is not known yet", listMinRequests-1, e.reloads)
	}
	e.request("r-last", "k1", "0.010")
	e.sc.ReviewUnchecked()
	fp := e.sc.Core().Fingerprint("k1")
	if got := e.listed(); len(got) != 1 || got[k1Identity] != fp || e.reloads != 1 {
		t.Fatalf("after %d light requests: listed %v, reloads %d; want %s -> %s and one reload", listMinRequests, got, e.reloads, k1Identity, fp)
	}
	pools, _ := os.ReadFile(filepath.Join(e.dir, MapPoolsFile))
	if !strings.Contains(string(pools), `"`+k1Identity+`" "default";`) {
		t.Errorf("pools map:\n%s", pools)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, MapKeysFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keys map mode: %v %v, want 0600 (it holds API keys)", fi.Mode(), err)
	}
	e.sc.ReviewUnchecked()
	if e.reloads != 1 {
		t.Errorf("an unchanged list reloaded nginx again (%d reloads)", e.reloads)
	}

	// Listed: its requests come as lines without checks, charged in full
	// (not capped at the pool's longest checked request).
	e.ingest(line("u1", fp, 200, "0.900"), LineUnmatched)
	before := e.status("k1").WorkerSeconds
	// Up to half its budget it stays; past it, it is taken off.
	for i := 0; e.status("k1").WorkerSeconds < 30.5; i++ {
		e.ingest(line(fmt.Sprint("u-", i), fp, 200, "1.000"), LineUnmatched)
	}
	if got := e.status("k1").WorkerSeconds; got <= before+29 {
		t.Fatalf("the listed caller's lines charged %.3f s, want each in full", got-before)
	}
	e.sc.ReviewUnchecked()
	if got := e.listed(); len(got) != 0 || e.reloads != 2 {
		t.Fatalf("past half its budget: listed %v, reloads %d; want it taken off with one more reload", got, e.reloads)
	}
	// Its lines still in flight come after: not capped for a while.
	e.clock.Advance(time.Second)
	e.ingest(line("u-late", fp, 200, "0.950"), LineUnmatched)
	if n := metricValue(t, e.sc.m.capped.WithLabelValues(CapPoolMax)); n != 0 {
		t.Errorf("%v lines of a listed caller were capped", n)
	}
	// Checked again, it is refused within one request of crossing.
	for i := 0; e.status("k1").WorkerSeconds < 60; i++ {
		e.request(fmt.Sprint("c", i), "k1", "1.000")
	}
	if w := e.check("c-over", "/api/report", "X-Api-Key: k1", mapDecl); w.Code != http.StatusForbidden {
		t.Errorf("over its budget: check = %d, want 403", w.Code)
	}
}

func TestUncheckedNeverLists(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		// run makes 10+ requests of k1, or fewer, and whatever else
		run func(e *uncheckedEnv)
	}{
		{"a caller without the map's declaration (no --map-dir in nginx)", "budget: {worker_time: 60s}\n", func(e *uncheckedEnv) {
			for i := range 12 {
				id := fmt.Sprint("r", i)
				e.check(id, "/", "X-Api-Key: k1")
				e.ingest(line(id, e.sc.Core().Fingerprint("k1"), 200, "0.010"), LineMatched)
			}
		}},
		{"a declaration that does not cover the key source", "budget: {worker_time: 60s}\nkeys: {sources: [{header: X-Token}]}\n", func(e *uncheckedEnv) {
			for i := range 12 {
				id := fmt.Sprint("r", i)
				e.check(id, "/", "X-Token: k1", mapDecl)
				e.sc.Ingest(line(id, e.sc.Core().Fingerprint("k1"), 200, "0.010"))
			}
		}},
		{"pools by path", "budget: {worker_time: 60s}\npools: [{name: api, path_prefixes: [/api/], max_concurrent: 10}]\n", func(e *uncheckedEnv) {
			for i := range 12 {
				e.request(fmt.Sprint("r", i), "k1", "0.010")
			}
		}},
		{"a pool whose requests run long", "budget: {worker_time: 600s}\n", func(e *uncheckedEnv) {
			for i := range 12 {
				e.request(fmt.Sprint("r", i), "k1", "0.010")
			}
			e.request("slow", "k2", "1.500") // another caller's, same pool
		}},
		{"a caller over 40% of its budget", "budget: {worker_time: 10s}\n", func(e *uncheckedEnv) {
			for i := range 12 {
				e.request(fmt.Sprint("r", i), "k1", "0.350")
			}
		}},
		{"a caller whose rate would spend the rest within the horizon", "budget: {worker_time: 30s, window: 5s}\n", func(e *uncheckedEnv) {
			// 11.9 s used: 60% of the budget left, but at 2.4 s/s (the
			// 5 s window's rate) 4 reaction times (~13 s) would spend 30 s.
			for i := range 12 {
				e.request(fmt.Sprint("r", i), "k1", "0.990")
			}
		}},
		{"shadow mode", "budget: {worker_time: 60s}\nshadow: true\n", func(e *uncheckedEnv) {
			for i := range 12 {
				e.request(fmt.Sprint("r", i), "k1", "0.010")
			}
		}},
		{"a concurrency cap", "budget: {worker_time: 60s, max_in_flight: 4}\n", func(e *uncheckedEnv) {
			for i := range 12 {
				e.request(fmt.Sprint("r", i), "k1", "0.010")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newUncheckedEnv(t, tc.yaml)
			tc.run(e)
			e.sc.ReviewUnchecked()
			if e.reloads != 0 || metricValue(t, e.sc.m.unchecked) != 0 {
				t.Errorf("listed (reloads %d, map %v)", e.reloads, e.listedOrNone())
			}
		})
	}
}

func (e *uncheckedEnv) listedOrNone() map[string]string {
	if _, err := os.Stat(filepath.Join(e.dir, MapKeysFile)); err != nil {
		return nil
	}
	return e.listed()
}

func TestUncheckedRetriesAFailedReload(t *testing.T) {
	e := newUncheckedEnv(t, "budget: {worker_time: 60s}\n")
	e.reloadErr = errors.New("nginx kept its old configuration")
	for i := range listMinRequests {
		e.request(fmt.Sprint("r", i), "k1", "0.010")
	}
	e.sc.ReviewUnchecked()
	e.sc.ReviewUnchecked()
	if e.reloads != 2 {
		t.Errorf("reloads = %d, want a retry at the second review though nothing changed", e.reloads)
	}
	if n := metricValue(t, e.sc.m.mapReloads.WithLabelValues("failed")); n != 2 {
		t.Errorf("failed reloads counted %v, want 2", n)
	}
	e.reloadErr = nil
	e.sc.ReviewUnchecked()
	e.sc.ReviewUnchecked()
	if e.reloads != 3 || metricValue(t, e.sc.m.mapReloads.WithLabelValues("ok")) != 1 {
		t.Errorf("reloads = %d after nginx took it, want 3 (no more once it did)", e.reloads)
	}
	if !strings.Contains(e.logs.String(), "did not reach nginx") {
		t.Errorf("the failed reload was not logged:\n%s", e.logs.String())
	}
}

func TestClearMapsAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lists")
	had, err := clearMaps(dir)
	if err != nil || had {
		t.Fatalf("a new directory: %v, %v", had, err)
	}
	keys, pools := renderMaps(map[string]listedCaller{k1Identity: {key: "fp-1", pool: "default"}})
	if err := writeMaps(dir, keys, pools); err != nil {
		t.Fatal(err)
	}
	want := "# Written by headroom sidecar (--map-dir); rewritten every review: do not edit.\n\"" + k1Identity + "\" \"fp-1\";\n"
	if string(keys) != want {
		t.Errorf("keys map:\n%s\nwant:\n%s", keys, want)
	}
	if had, err = clearMaps(dir); err != nil || !had {
		t.Fatalf("a list from before: had %v, %v; want true (nginx must reload)", had, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, MapKeysFile))
	if strings.Contains(string(b), `"`) {
		t.Errorf("not emptied:\n%s", b)
	}
}

func TestReloadNginxRefusesAStalePidFile(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "nginx.pid")
	for _, tc := range []struct{ content, want string }{
		{"", "not a pid"},
		{"abc\n", "not a pid"},
		{fmt.Sprintf("%d\n", os.Getpid()), "not nginx"}, // this test binary
	} {
		if err := os.WriteFile(pidFile, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ReloadNginx(pidFile, time.Second)(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pid file %q: %v, want an error saying %q", tc.content, err, tc.want)
		}
	}
	if err := ReloadNginx(filepath.Join(dir, "none.pid"), time.Second)(); err == nil || !strings.Contains(err.Error(), "--nginx-pid") {
		t.Errorf("no pid file: %v", err)
	}
}
