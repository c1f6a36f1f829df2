package loadgen_test

// End-to-end tests: the built headroom binary against a real server process,
// with the generator's limits made real rather than simulated.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// TestMain lets the test binary double as a CPU hog for the CPU test.
func TestMain(m *testing.M) {
	if os.Getenv("HR_LOADGEN_HELPER") == "hog" {
		deadline := time.Now().Add(2 * time.Minute) // never outlive a forgotten cleanup
		x := 0
		for time.Now().Before(deadline) {
			for i := 0; i < 1e6; i++ {
				x ^= i
			}
		}
		if x == -1 { // keeps the loop from being optimised away
			fmt.Println(x)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds headroom and bench/loadserver once per test process.
func binaries(t *testing.T) (headroom, server string) {
	t.Helper()
	goBin := testenv.RequireBinary(t, "go")
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "headroom-loadgen-e2e-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command(goBin, "build", "-o", buildDir+string(os.PathSeparator),
			"github.com/headroom-dev/headroom/cmd/headroom",
			"github.com/headroom-dev/headroom/bench/loadserver")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "headroom"), filepath.Join(buildDir, "loadserver")
}

// startServer runs loadserver (through prefix, e.g. ip netns exec or
// taskset) and returns its URL; the process is killed at cleanup.
func startServer(t *testing.T, prefix []string, args ...string) string {
	t.Helper()
	_, server := binaries(t)
	argv := append(append(append([]string{}, prefix...), server), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case u, ok := <-lines:
		if !ok {
			t.Fatalf("loadserver said nothing: %s", stderr.String())
		}
		return u
	case <-time.After(20 * time.Second):
		t.Fatalf("loadserver did not start: %s", stderr.String())
	}
	return ""
}

type loadJSON struct {
	Requests          int64    `json:"requests"`
	RPS               float64  `json:"rps"`
	BytesReceivedPerS float64  `json:"bytes_received_per_s"`
	Errors            int64    `json:"errors"`
	Verdict           string   `json:"verdict"`
	Reasons           []string `json:"reasons"`
	Latency           struct {
		P50, P95, P99 float64
	} `json:"latency"`
}

// runLoad runs the built headroom load with --json and decodes the result.
func runLoad(t *testing.T, env []string, prefix []string, args ...string) loadJSON {
	t.Helper()
	headroom, _ := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	argv := append(append(append([]string{}, prefix...), headroom, "load"), append(args, "--json")...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\nstderr: %s\nstdout: %s", argv, err, stderr.String(), stdout.String())
	}
	var r loadJSON
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("decode --json output: %v\n%s", err, stdout.String())
	}
	t.Logf("%s: %d requests, %.0f/s, %.1f MB/s, verdict %s\n  %s", strings.Join(args, " "), r.Requests, r.RPS,
		r.BytesReceivedPerS/1e6, r.Verdict, strings.Join(r.Reasons, "\n  "))
	return r
}

func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	testenv.SkipOrFail(t, why+" needs root, and CI runs as root")
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// TestLinkLimitIsClientNetworkBound recreates seed 04 for real: a network
// namespace of the test's own whose loopback is shaped to 80 Mbit/s (10 MB/s)
// by a token bucket, the server and the generator both inside it, and 256 KB
// responses. The server has CPU to spare; the wire does not.
func TestLinkLimitIsClientNetworkBound(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the link test takes about 15 s")
	}
	requireRoot(t, "a network namespace with a shaped link")
	ip := testenv.RequireBinary(t, "ip")
	tc := testenv.RequireBinary(t, "tc")
	binaries(t)
	ns := fmt.Sprintf("hr-test-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		// Root in a container without CAP_SYS_ADMIN, say.
		testenv.SkipOrFail(t, fmt.Sprintf("cannot create a network namespace here: %v %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("delete namespace %s: %v %s", ns, err, out)
		}
	})
	in := []string{ip, "netns", "exec", ns}
	run(t, append(in, ip, "link", "set", "lo", "up")...)
	// A real link's MTU: with loopback's 64 KB packets a token bucket of
	// 64 KB drops whole windows and TCP stalls in retransmission timeouts,
	// which is no model of a home line.
	run(t, append(in, ip, "link", "set", "lo", "mtu", "1500")...)
	run(t, append(in, tc, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "80mbit", "burst", "64kb", "latency", "50ms")...)

	url := startServer(t, in, "-addr", "127.0.0.1:0", "-size", "262144")

	// Without being told the capacity: the shape of the evidence must show
	// a link limit (bodies crawl, bytes/s flat).
	r := runLoad(t, nil, in, url, "--vus", "16", "--duration", "5s")
	if r.Verdict != "client-network-bound" {
		t.Errorf("verdict %s, want client-network-bound; reasons: %q", r.Verdict, r.Reasons)
	}
	if r.BytesReceivedPerS < 2e6 || r.BytesReceivedPerS > 10.5e6 {
		t.Errorf("received %.1f MB/s through a 10 MB/s link", r.BytesReceivedPerS/1e6)
	}
	if r.Errors != 0 {
		t.Errorf("%d errors", r.Errors)
	}
	// Told the capacity: the reasons name it (how close the run came to it
	// depends on how TCP fared through the bucket on a busy machine).
	r = runLoad(t, nil, in, url, "--vus", "16", "--duration", "5s", "--link-capacity", "80Mbit")
	if r.Verdict != "client-network-bound" || !strings.Contains(strings.Join(r.Reasons, " "), "80Mbit/s link capacity given") {
		t.Errorf("verdict %s, reasons %q: want client-network-bound naming the 80Mbit/s link", r.Verdict, r.Reasons)
	}
}

// TestStarvedGeneratorIsClientCPUBound pins the generator to one core with
// GOMAXPROCS=1 and a busy loop on the same core, and the server on the other
// core: the generator gets about half a core and is runnable far more than
// it runs. Nothing is simulated: the verdict comes from the generator's own
// schedstat.
func TestStarvedGeneratorIsClientCPUBound(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the CPU test takes about 10 s")
	}
	taskset := testenv.RequireBinary(t, "taskset")
	cpus := allowedCPUs(t)
	if len(cpus) < 2 {
		testenv.SkipOrFail(t, "needs two CPUs: one for the starved generator, one for the server")
	}
	genCPU, srvCPU := strconv.Itoa(cpus[0]), strconv.Itoa(cpus[1])
	binaries(t)
	url := startServer(t, []string{taskset, "-c", srvCPU}, "-addr", "127.0.0.1:0")

	hog := exec.Command(taskset, "-c", genCPU, os.Args[0], "-test.run=^$")
	hog.Env = append(os.Environ(), "HR_LOADGEN_HELPER=hog")
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hog.Process.Kill()
		hog.Wait()
	})
	r := runLoad(t, []string{"GOMAXPROCS=1"}, []string{taskset, "-c", genCPU}, url, "--vus", "20", "--duration", "5s")
	if r.Verdict != "client-cpu-bound" {
		t.Errorf("verdict %s, want client-cpu-bound; reasons: %q", r.Verdict, r.Reasons)
	}
	if r.Requests == 0 || r.Errors != 0 {
		t.Errorf("%d requests, %d errors", r.Requests, r.Errors)
	}
}

// allowedCPUs lists the CPUs this process may run on (a container's cpuset
// need not start at 0), from /proc/self/status.
func allowedCPUs(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	var cpus []int
	for _, line := range strings.Split(string(b), "\n") {
		list, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		for _, part := range strings.Split(strings.TrimSpace(list), ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil {
				t.Fatalf("Cpus_allowed_list %q", list)
			}
			for c := a; c <= b; c++ {
				cpus = append(cpus, c)
			}
		}
	}
	return cpus
}

// TestBinaryServerBoundAndThreshold is the worker-pool case through the
// binary: the text summary and the exit status of a failed threshold (the
// verdict itself is asserted in TestFixedWorkerPoolIsServerBound).
func TestBinaryServerBoundAndThreshold(t *testing.T) {
	headroom, _ := binaries(t)
	url := startServer(t, nil, "-addr", "127.0.0.1:0", "-workers", "4", "-delay", "25ms")
	csvPath := filepath.Join(t.TempDir(), "s.csv")
	cmd := exec.Command(headroom, "load", url, "--rate", "400/s", "--duration", "4s", "--graceful-stop", "1s",
		"--threshold", "p95<100ms", "--out", csvPath)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2 for a failed threshold\n%s", err, stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{"verdict      ", "FAIL p95<100ms", "corrected", "uncorrected", "status       200: "} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(rows) < 5 || !strings.HasPrefix(rows[0], "second,stage,target,scheduled,sent,dropped,completed,errors") {
		t.Errorf("--out wrote %d rows:\n%s", len(rows), b)
	}
}
