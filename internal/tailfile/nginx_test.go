package tailfile

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// TestNginxBufferedLogRotation follows a real nginx's buffered access log
// (two workers, each with its own 64 KiB buffer) through logrotate's create
// mode: the file renamed, then USR1, while requests keep coming. Every
// request's line is delivered once: those the workers flush into the old
// file when they reopen, after the new file has its first line, too.
func TestNginxBufferedLogRotation(t *testing.T) {
	bin := testenv.RequireBinary(t, "nginx")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	listen := testenv.FreePort(t)
	var conf strings.Builder
	if os.Geteuid() == 0 {
		conf.WriteString("user root;\n") // the workers may then read t.TempDir()
	}
	conf.WriteString("worker_processes 2;\nevents { worker_connections 256; }\nhttp {\n")
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&conf, "    %s_temp_path %s;\n", p, filepath.Join(dir, p+"_temp"))
	}
	fmt.Fprintf(&conf, "    log_format uri '$request_uri';\n    access_log %s uri buffer=64k flush=200ms;\n", logPath)
	fmt.Fprintf(&conf, "    server { listen %s; location / { return 204; } }\n}\n", listen)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	master := testenv.RunNginx(t, bin, dir, confPath, listen, nil)

	h := follow(t, Options{Path: logPath, FromStart: true}, nil)
	const clients, each = 4, 100
	send := func(batch int) {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				client := &http.Client{Timeout: 10 * time.Second}
				for i := range each / 2 {
					resp, err := client.Get(fmt.Sprintf("http://%s/r/%d/%d/%d", listen, batch, c, i))
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	}
	send(0)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := master.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	send(1)
	total := clients * each
	waitFor(t, "every request's line delivered", func() bool { return len(h.lines()) >= total })
	// All of batch 1 may have gone into the old file (the workers reopen
	// when they get to it): then Run moves on after the grace period.
	waitFor(t, "Run on the new file", func() bool { return h.f.Stats().Rotations == 1 })
	seen := map[string]int{}
	for _, l := range h.lines() {
		seen[l]++
	}
	for b := range 2 {
		for c := range clients {
			for i := range each / 2 {
				if u := fmt.Sprintf("/r/%d/%d/%d", b, c, i); seen[u] != 1 {
					t.Errorf("%s delivered %d times", u, seen[u])
				}
			}
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct lines, want %d", len(seen), total)
	}
	old, _ := os.ReadFile(logPath + ".1")
	cur, _ := os.ReadFile(logPath)
	t.Logf("%d lines in the old file, %d in the new one", strings.Count(string(old), "\n"), strings.Count(string(cur), "\n"))
	if s := h.f.Stats(); s.Rotations != 1 || s.Overlong != 0 || s.Truncations != 0 {
		t.Errorf("stats %+v", s)
	}
}
