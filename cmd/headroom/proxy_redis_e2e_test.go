package main

import (
	"encoding/json"
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

// TestProxyBinaryRedisFleet runs two `headroom proxy --store redis://…`
// binaries sharing one redis-server: a key that spends half its budget
// through each is refused by both, and SIGTERM pushes the last usage.
func TestProxyBinaryRedisFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	rs := testenv.SharedRedis(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "headroom")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	up := testenv.SlowUpstream(t, 300*time.Millisecond)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	type proc struct {
		cmd           *exec.Cmd
		listen, admin string
		stderr        *testenv.Buffer
	}
	start := func() *proc {
		p := &proc{listen: testenv.FreePort(t), admin: testenv.FreePort(t), stderr: &testenv.Buffer{}}
		p.cmd = exec.Command(bin, "proxy", "--listen", p.listen, "--admin", p.admin,
			"--upstream", up.URL, "--budget", "1s", "--window", "1m", "--restrict-for", "1m",
			"--store", rs.URL(), "--secret-file", secret)
		p.cmd.Stderr = p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
		testenv.WaitForPort(t, p.listen, 10*time.Second)
		return p
	}
	a, b := start(), start()

	get := func(p *proc) int {
		req, _ := http.NewRequest("GET", "http://"+p.listen+"/x", nil)
		req.Header.Set("X-Api-Key", "raw-key-in-a-fleet")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// 0.6 s through each: under the 1 s budget on either alone.
	for _, p := range []*proc{a, b} {
		for range 2 {
			if code := get(p); code != http.StatusOK {
				t.Fatalf("under budget: got %d", code)
			}
		}
	}
	// Once a proxy has pulled the other's usage (a sync is 1 s), it sees
	// the fleet's 1.2 s and refuses. Bounded, no timing assertion.
	for _, p := range []*proc{a, b} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			var k struct {
				WorkerSeconds float64 `json:"worker_seconds"`
			}
			resp, err := http.Get("http://" + p.admin + "/v1/keys/raw-key-in-a-fleet")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&k)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if k.WorkerSeconds >= 1.2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never saw the fleet's usage (at %v s):\n%s", k.WorkerSeconds, p.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code := get(p); code != http.StatusTooManyRequests {
			t.Errorf("with the fleet over budget: got %d, want 429", code)
		}
	}

	for _, p := range []*proc{a, b} {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
		log := p.stderr.String()
		for _, want := range []string{"redis store connected", "last usage pushed to the redis store"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	}
}
