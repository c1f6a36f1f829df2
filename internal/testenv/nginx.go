package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NginxMain wraps an http {} snippet into a whole nginx.conf that runs from
// dir: temp paths there, and as root the workers stay root so they can
// read t.TempDir().
func NginxMain(dir, snippetPath string) string {
	var b strings.Builder
	if os.Geteuid() == 0 {
		b.WriteString("user root;\n")
	}
	b.WriteString("worker_processes 1;\nevents { worker_connections 256; }\nhttp {\n")
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s;\n", p, filepath.Join(dir, p+"_temp"))
	}
	fmt.Fprintf(&b, "    access_log off;\n    include %s;\n}\n", snippetPath)
	return b.String()
}

// NginxArgs are the arguments that run nginx in the foreground on conf,
// with its pid file in dir and its error log on stderr.
func NginxArgs(dir, conf string) []string {
	return []string{"-p", dir, "-c", conf, "-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + "; error_log stderr notice;"}
}

// StartNginx runs Debian's nginx (skipped locally, failed in CI, when it is
// missing) with snippet inside its http {} block, waits until it accepts
// connections on listen (the snippet's listen address), and stops it
// gracefully at the end of the test, logging its output if the test failed.
func StartNginx(t testing.TB, snippet, listen string) {
	t.Helper()
	bin := RequireBinary(t, "nginx")
	dir := t.TempDir()
	sp, conf := filepath.Join(dir, "headroom.conf"), filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(sp, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(NginxMain(dir, sp)), 0o644); err != nil {
		t.Fatal(err)
	}
	RunNginx(t, bin, dir, conf, listen, nil)
}

// RunNginx runs the nginx binary bin in the foreground on conf (its pid
// file in dir, NginxArgs), waits until it accepts connections on listen,
// and stops it gracefully at the end of the test; if the test failed, it
// logs nginx's output and extraLog's (nil: nothing more). It returns
// nginx's master, for a test to signal.
func RunNginx(t testing.TB, bin, dir, conf, listen string, extraLog func() string) *os.Process {
	t.Helper()
	out := &tailBuffer{}
	cmd := exec.Command(bin, NginxArgs(dir, conf)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful: workers finish, then exit
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			more := ""
			if extraLog != nil {
				more = extraLog()
			}
			t.Logf("nginx output:\n%s\n%s", out.String(), more)
		}
	})
	if err := waitPort(listen, 10*time.Second); err != nil {
		t.Fatalf("nginx: %v\n%s", err, out.String())
	}
	return cmd.Process
}
