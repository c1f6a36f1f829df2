package main

import (
	"encoding/json"
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
	// The Redis is shared by the package's tests and outlives one run, and
	// the key stays restricted for a minute: a key of its own per run, or
	// -count=2 finds the last run's restriction and admits nothing.
	key := fmt.Sprintf("raw-key-in-a-fleet-%d", time.Now().UnixNano())

	get := func(p *proc) int {
		req, _ := http.NewRequest("GET", "http://"+p.listen+"/x", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// 0.3 s requests alternately through a and b until the fleet refuses:
	// the 1 s budget holds across both (each alone would admit four), give
	// or take the one request running when it ran out.
	admitted := 0
	for i := 0; ; i++ {
		code := get([]*proc{a, b}[i%2])
		if code == http.StatusTooManyRequests {
			break
		}
		if code != http.StatusOK || i == 20 {
			t.Fatalf("request %d: got %d", i, code)
		}
		admitted++
	}
	if admitted < 2 || float64(admitted)*0.3 > 1.0+0.3 {
		t.Errorf("the fleet admitted %d requests of 0.3 s on a 1 s budget", admitted)
	}
	// Both refuse, and both see the fleet's usage (the restriction is
	// published; the usage arrives with a sync). Bounded, no timing
	// assertion.
	for _, p := range []*proc{a, b} {
		testenv.Eventually(t, "the fleet's usage and refusal on "+p.listen, func() bool {
			var k struct {
				WorkerSeconds float64 `json:"worker_seconds"`
			}
			resp, err := http.Get("http://" + p.admin + "/v1/keys/" + key)
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&k)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return k.WorkerSeconds >= 0.3*float64(admitted)-0.01 && get(p) == http.StatusTooManyRequests
		})
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
