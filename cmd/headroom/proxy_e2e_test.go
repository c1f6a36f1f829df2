package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

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
	up := testenv.SlowUpstream(t, 300*time.Millisecond, "/slow")

	listen, admin := testenv.FreePort(t), testenv.FreePort(t)
	cfgPath := filepath.Join(dir, "headroom.yaml")
	good := "listen: " + listen + "\nupstream: " + up.URL + "\nadmin: {listen: " + admin + "}\n" +
		"budget: {worker_time: 500ms, window: 1h, restrict_for: 1h}\n"
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath, snap := filepath.Join(dir, "access.log"), filepath.Join(dir, "usage.snapshot")
	start := func() (*exec.Cmd, *testenv.Buffer) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		t.Cleanup(cancel)
		cmd := exec.CommandContext(ctx, bin, "proxy", "--config", cfgPath, "--access-log", logPath, "--snapshot", snap)
		stderr := &testenv.Buffer{}
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
	waitLog := func(stderr *testenv.Buffer, want string) {
		t.Helper()
		testenv.Eventually(t, fmt.Sprintf("stderr to say %q", want), func() bool { return strings.Contains(stderr.String(), want) })
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
	testenv.Eventually(t, "SIGUSR1 to reopen "+logPath, func() bool { _, err := os.Stat(logPath); return err == nil })
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
	testenv.Eventually(t, path+" to be written", func() bool { st, err := os.Stat(path); return err == nil && st.Size() > 0 })
}
