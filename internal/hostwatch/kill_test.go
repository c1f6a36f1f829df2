package hostwatch

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

// watchChildEnv makes the test binary run Watch until killed.
const watchChildEnv = "HEADROOM_WATCH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(watchChildEnv); dir != "" {
		_, err := Watch(context.Background(), WatchOptions{Data: dir, Interval: 10 * time.Millisecond})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestWatchSurvivesKill9 kills a real watch process with SIGKILL while it
// records this machine, then checks that every record decodes as a sample
// and that watch starts again on the same recording.
func TestWatchSurvivesKill9(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux /proc")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), watchChildEnv+"="+dir)
	stderr, _ := os.Create(filepath.Join(t.TempDir(), "stderr"))
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		tsdb.Scan(dir, time.Time{}, time.Time{}, func(time.Time, []byte) error { n++; return nil })
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(stderr.Name())
			t.Fatalf("child recorded %d samples in 30s: %s", n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	before := readRecording(t, dir) // fails the test if any record does not decode
	if len(before) < 20 {
		t.Fatalf("%d samples after kill", len(before))
	}
	tick := make(chan time.Time)
	close(tick) // one sample at start, then stop
	if _, err := Watch(context.Background(), WatchOptions{Data: dir, Tick: tick}); err != nil {
		t.Fatalf("watch again on the killed recording: %v", err)
	}
	if after := readRecording(t, dir); len(after) != len(before)+1 {
		t.Fatalf("after restart %d samples, want %d", len(after), len(before)+1)
	}
}
