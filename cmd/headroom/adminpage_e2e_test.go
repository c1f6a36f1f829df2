package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/headroom-dev/headroom/internal/testenv"
)

const (
	pageToken = "page-test-token-8f2c"
	heavyKey  = "sk_live_heavy_exporter_0001"
	lightKey  = "sk_live_light_ui_0002"
)

// TestAdminPageInBrowser opens the admin page of the built binary in
// headless Chromium, once beside `headroom proxy` and once beside
// `headroom sidecar` (with a real nginx): two keys send traffic, the page
// asks for the admin token, shows the heavy key rising and then
// restricted, unrestricts it with two clicks, and shows it allowed again,
// with no console error. The screenshots are saved in the test's artifact
// directory (go test -artifacts keeps them).
func TestAdminPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and drives a browser")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "headroom")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The upstream: every request takes ?ms=N milliseconds.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "done\n")
	}))
	t.Cleanup(up.Close)

	// 6 s of worker time per minute; the heavy key runs one 400 ms request
	// after another, so the page sees it climb for several polls before
	// it goes over.
	cfg := func(listen, admin string) string {
		return "listen: " + listen + "\nupstream: " + up.URL + "\n" +
			"admin: {listen: " + admin + ", token: " + pageToken + "}\n" +
			"keys: {secret: page-test-secret-0123456789}\n" +
			"budget: {worker_time: 6s, window: 1m, restrict_for: 10m}\n" +
			"overrides:\n  - key: " + heavyKey + "\n    label: acme exporter\n" +
			"pools:\n  - name: api\n    path_prefixes: [/api/]\n    max_concurrent: 4\n    queue: 8\n    queue_timeout: 5s\n" +
			"  - name: ui\n    max_concurrent: 4\n"
	}

	t.Run("proxy", func(t *testing.T) {
		listen, admin := testenv.FreePort(t), testenv.FreePort(t)
		startGuard(t, bin, dir, "proxy.yaml", cfg(listen, admin), admin, "proxy")
		testenv.WaitForPort(t, listen, 10*time.Second)
		checkAdminPage(t, "http://"+listen, "http://"+admin)
	})

	t.Run("sidecar", func(t *testing.T) {
		nginx, check, admin := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
		syslog := testenv.FreePort(t) // a free TCP port; the sidecar takes it for UDP
		snippet, err := exec.Command(bin, "nginx-config", "--listen", nginx, "--sidecar", check, "--syslog", syslog, "--upstream", up.URL).Output()
		if err != nil {
			t.Fatalf("nginx-config: %v", err)
		}
		startGuard(t, bin, dir, "sidecar.yaml", cfg(check, admin), admin, "sidecar", "--listen", check, "--syslog", syslog)
		testenv.WaitForPort(t, check, 10*time.Second)
		testenv.StartNginx(t, string(snippet), nginx)
		checkAdminPage(t, "http://"+nginx, "http://"+admin)
	})
}

// startGuard writes the config and runs `headroom SUB --config …` until the
// test ends.
func startGuard(t *testing.T, bin, dir, name, yaml, admin string, args ...string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{args[0], "--config", path}, args[1:]...)...)
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("headroom %s stderr:\n%s", args[0], stderr.String())
		}
	})
	testenv.WaitForPort(t, strings.TrimPrefix(admin, "http://"), 10*time.Second)
}

// traffic sends requests for key until stop is closed: one after another,
// or one every pace.
func traffic(front, key, path string, pace time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", front+path, nil)
			req.Header.Set("X-Api-Key", key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			wait := pace
			if res.StatusCode == http.StatusTooManyRequests {
				// Refused at once: pace the retries, so a restricted key
				// does not spin.
				wait = max(wait, 100*time.Millisecond)
			}
			if wait > 0 {
				select {
				case <-stop:
					return
				case <-time.After(wait):
				}
			}
		}
	}()
}

func fingerprintOf(t *testing.T, admin, key string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", admin+"/v1/keys/"+key, nil)
	req.Header.Set("Authorization", "Bearer "+pageToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var k struct{ Key string }
	if err := json.NewDecoder(res.Body).Decode(&k); err != nil || !strings.HasPrefix(k.Key, "fp-") {
		t.Fatalf("GET /v1/keys/…: %v %+v", err, k)
	}
	return k.Key
}

// one sends one request for key and returns its status.
func one(t *testing.T, front, key, path string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", front+path, nil)
	req.Header.Set("X-Api-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// checkAdminPage drives the page at admin while front is under traffic.
func checkAdminPage(t *testing.T, front, admin string) {
	heavy, light := fingerprintOf(t, admin, heavyKey), fingerprintOf(t, admin, lightKey)
	b := testenv.StartBrowser(t, 90*time.Second)
	ctx := b.Ctx
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\nbrowser errors: %v", what, err, b.Errors())
		}
	}
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s: %v\nbrowser errors: %v", what, err, b.Errors())
		}
	}
	row := func(table, key string) string {
		return `document.querySelector('#` + table + ` tbody tr[data-key="` + key + `"]')`
	}
	state := func(key string) string { return row("top", key) + `?.querySelector('.state')?.textContent` }

	stopLight, stopHeavy := make(chan struct{}), make(chan struct{})
	var lightWG, heavyWG sync.WaitGroup
	traffic(front, lightKey, "/page?ms=30", 250*time.Millisecond, stopLight, &lightWG)
	t.Cleanup(func() { close(stopLight); lightWG.Wait() })

	// The page holds no data; it asks for the token first.
	run("open the page", chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	run("enter the token", chromedp.SendKeys(chromedp.CSS("#token"), pageToken), chromedp.Click(chromedp.CSS("#token-submit")))
	poll("the light key, allowed", state(light)+` === "allowed"`)

	// Find a key by its raw value: the API fingerprints it, and the page
	// replaces what was typed with the fingerprint.
	run("find the light key", chromedp.SendKeys(chromedp.CSS("#find-key"), lightKey), chromedp.Click(chromedp.CSS(`#find button`)))
	poll("the key found", `document.querySelector('#found tr[data-key="`+light+`"] .state')?.textContent === "allowed" && document.querySelector('#find-key').value === "`+light+`"`)

	// The heavy key starts while the page watches: it rises, allowed...
	traffic(front, heavyKey, "/api/report?ms=400", 0, stopHeavy, &heavyWG)
	poll("the heavy key rising", state(heavy)+` === "allowed" && parseFloat(`+row("top", heavy)+`.querySelector('.budgetbar .txt').textContent) > 0.5`)
	label, err := chromedp.Run(ctx, chromedp.Evaluate[string](row("top", heavy)+`.querySelector('.label').textContent`))
	if err != nil || label != "acme exporter" {
		t.Errorf("heavy key's label on the page: %q, %v", label, err)
	}
	b.Screenshot(t, "heavy-key-rising")

	// ...then over its budget: restricted, with the time left.
	poll("the heavy key restricted", row("restricted", heavy)+` !== null && `+state(heavy)+`?.startsWith("RESTRICTED")`)
	poll("429s counted", `parseFloat(document.querySelector('#t-429 .v').textContent) > 0`)
	left, err := chromedp.Run(ctx, chromedp.Evaluate[string](row("restricted", heavy)+`.querySelector('td.left').textContent`))
	if err != nil || !strings.HasSuffix(left, "s") || !strings.Contains(left, "m") {
		t.Errorf("time left of the restriction on the page: %q, %v (want about 10m)", left, err)
	}
	if s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](state(light))); s != "allowed" {
		t.Errorf("light key's state on the page: %q, want allowed", s)
	}
	b.Screenshot(t, "heavy-key-restricted")

	close(stopHeavy)
	heavyWG.Wait()
	if st := one(t, front, heavyKey, "/api/report?ms=10"); st != http.StatusTooManyRequests {
		t.Fatalf("heavy key while restricted: %d, want 429", st)
	}

	// Unrestrict: the first click arms the button, the second acts.
	sel := chromedp.CSS(`#restricted button.unrestrict[data-key="` + heavy + `"]`)
	run("arm unrestrict", chromedp.Click(sel))
	poll("the button armed", `document.querySelector('#restricted button.unrestrict[data-key="`+heavy+`"]')?.textContent === "Confirm"`)
	run("confirm unrestrict", chromedp.Click(sel))
	poll("the restriction gone from the page", row("restricted", heavy)+` === null`)
	poll("the toast", `document.querySelector('#toast').textContent.includes("`+heavy+` unrestricted")`)

	// Allowed again: its next request goes through, and the page says so.
	if st := one(t, front, heavyKey, "/api/report?ms=300"); st != http.StatusOK {
		t.Fatalf("heavy key after unrestrict: %d, want 200", st)
	}
	poll("the heavy key allowed again", state(heavy)+` === "allowed"`)
	b.Screenshot(t, "heavy-key-unrestricted")

	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}
