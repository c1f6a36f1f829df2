package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// lockedBuffer collects a child process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProxyBinary runs the built `headroom proxy` as an operator would and
// drives it with signals: SIGHUP with a broken config (refused, still
// serving), SIGUSR1 after logrotate moved the access log (reopened), SIGTERM
// (drained, snapshot written, exit 0), then a restart that still knows the
// restricted key.
func TestProxyBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "headroom")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "ok\n")
	}))
	defer up.Close()

	listen, admin := testenv.FreePort(t), testenv.FreePort(t)
	cfgPath := filepath.Join(dir, "headroom.yaml")
	good := "listen: " + listen + "\nupstream: " + up.URL + "\nadmin: {listen: " + admin + "}\n" +
		"budget: {worker_time: 500ms, window: 1h, restrict_for: 1h}\n"
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath, snap := filepath.Join(dir, "access.log"), filepath.Join(dir, "usage.snapshot")
	start := func() (*exec.Cmd, *lockedBuffer) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		t.Cleanup(cancel)
		cmd := exec.CommandContext(ctx, bin, "proxy", "--config", cfgPath, "--access-log", logPath, "--snapshot", snap)
		stderr := &lockedBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testenv.WaitForPort(t, listen, 10*time.Second)
		testenv.WaitForPort(t, admin, 10*time.Second)
		return cmd, stderr
	}
	status := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+listen+path, nil)
		req.Header.Set("X-Api-Key", "sk_live_e2e")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	waitLog := func(stderr *lockedBuffer, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stderr.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("stderr lacks %q:\n%s", want, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	cmd, stderr := start()
	for range 2 {
		if st := status("/slow"); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	if st := status("/"); st != 429 {
		t.Fatalf("over budget: %d, want 429", st)
	}

	// SIGHUP with a broken file: refused with the field named, still serving.
	os.WriteFile(cfgPath, []byte(good+"pools: [{name: api, max_concurrent: -1}]\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(stderr, "pools[0].max_concurrent: must be > 0")
	if st := status("/"); st != 429 {
		t.Errorf("after a refused reload: %d, want 429", st)
	}
	os.WriteFile(cfgPath, []byte(good), 0o600)

	// logrotate: move the log away, SIGUSR1, the next line goes to a new file.
	waitFile(t, logPath)
	os.Rename(logPath, logPath+".1")
	cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(logPath); err != nil; _, err = os.Stat(logPath) {
		if time.Now().After(deadline) {
			t.Fatalf("SIGUSR1 did not reopen %s", logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	status("/after-rotate")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"usage snapshot written", "shutting down"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	rotated, _ := os.ReadFile(logPath + ".1")
	fresh, _ := os.ReadFile(logPath)
	if strings.Count(string(rotated), "\n") < 3 || !strings.Contains(string(fresh), "/after-rotate") {
		t.Errorf("access log across the rotation:\n--- rotated\n%s--- new\n%s", rotated, fresh)
	}
	if strings.Contains(string(rotated)+string(fresh)+stderr.String(), "sk_live_e2e") {
		t.Errorf("the API key appears in clear")
	}

	// Restart: the key is still restricted.
	cmd2, stderr2 := start()
	if st := status("/"); st != 429 {
		t.Errorf("after restart: %d, want 429 (restriction restored)\n%s", st, stderr2.String())
	}
	cmd2.Process.Signal(syscall.SIGTERM)
	if err := cmd2.Wait(); err != nil {
		t.Errorf("second exit: %v", err)
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
