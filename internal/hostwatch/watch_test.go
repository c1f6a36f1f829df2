package hostwatch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

func readRecording(t *testing.T, dir string) []Sample {
	t.Helper()
	var out []Sample
	if _, err := tsdb.Scan(dir, time.Time{}, time.Time{}, func(_ time.Time, p []byte) error {
		s, err := DecodeSample(p)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWatchThisMachine runs watch for real on this machine for a couple of
// seconds at 200 ms and checks that real samples were recorded.
func TestWatchThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux /proc")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var log bytes.Buffer
	st, err := Watch(ctx, WatchOptions{Data: dir, Interval: 200 * time.Millisecond, Log: &log})
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, log.String())
	}
	got := readRecording(t, dir)
	// Ten expected; a loaded 2-core box may manage fewer.
	if len(got) < 3 || len(got) != st.Samples {
		t.Fatalf("recorded %d samples (watch says %d), want at least 3", len(got), st.Samples)
	}
	for i, s := range got {
		if s.Mem.Total == 0 || s.CPUs == 0 || s.ProcCount == 0 || len(s.Net) == 0 || s.BootTime == 0 {
			t.Errorf("sample %d lacks basic facts: mem %d cpus %d procs %d net %d", i, s.Mem.Total, s.CPUs, s.ProcCount, len(s.Net))
		}
		if i > 0 && !s.Time.After(got[i-1].Time) {
			t.Errorf("sample %d not after sample %d", i, i-1)
		}
	}
	self := false
	for _, p := range got[len(got)-1].Procs {
		if p.PID == os.Getpid() {
			self = true
		}
	}
	if !self {
		t.Log("this test process is not among the top processes (fine on a busy machine)")
	}
	if r, ok := RatesBetween(got[0], got[len(got)-1]); !ok || r.Busy < 0 || r.Busy > 100 {
		t.Errorf("rates between first and last: %+v %v", r, ok)
	}
	if !strings.Contains(log.String(), "recording a sample every 200ms") {
		t.Errorf("log: %s", log.String())
	}
}

// TestWatchPartialFailure: with /proc/meminfo and /proc/pressure
// unreadable, watch keeps recording what it can and logs each kind of
// failure once.
func TestWatchPartialFailure(t *testing.T) {
	root := filepath.Join(t.TempDir(), "proc")
	at := time.Date(2025, 8, 28, 6, 15, 0, 0, time.UTC)
	tree := &procTree{root: root, boot: seedBoot1, procCPU: map[int]float64{}, started: map[int]int{}}
	tree.write(t, at, 0, seedState(at))
	os.Remove(filepath.Join(root, "meminfo"))
	os.Chmod(filepath.Join(root, "pressure", "io"), 0)
	if os.Getuid() == 0 {
		// root reads through mode 0; make io unreadable another way.
		os.Remove(filepath.Join(root, "pressure", "io"))
		os.Mkdir(filepath.Join(root, "pressure", "io"), 0o755)
	}

	dir := t.TempDir()
	tick := make(chan time.Time)
	var log bytes.Buffer
	var mu sync.Mutex
	now := at
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	done := make(chan struct{})
	var st WatchStats
	var err error
	go func() {
		defer close(done)
		st, err = Watch(context.Background(), WatchOptions{Data: dir, Tick: tick, NoSync: true, Log: &log,
			Sampler: SamplerOptions{ProcRoot: root, Now: clock}})
	}()
	for i := 1; i <= 3; i++ {
		mu.Lock()
		now = at.Add(time.Duration(i) * 5 * time.Second)
		mu.Unlock()
		tick <- now
	}
	close(tick)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if st.Samples != 4 {
		t.Fatalf("%d samples, want 4", st.Samples)
	}
	if n := strings.Count(log.String(), "memory (/proc/meminfo)"); n != 1 {
		t.Errorf("meminfo failure logged %d times, want once:\n%s", n, log.String())
	}
	got := readRecording(t, dir)
	if len(got) != 4 {
		t.Fatalf("%d samples read back", len(got))
	}
	s := got[3]
	if s.Mem.Total != 0 || s.PSI != nil || s.CPUs != 1 || len(s.Listeners) != 5 || len(s.Errors) != 2 {
		t.Errorf("partial sample: mem %+v psi %v cpus %d listeners %d errors %q", s.Mem, s.PSI, s.CPUs, len(s.Listeners), s.Errors)
	}
}

func TestNoProc(t *testing.T) {
	_, err := NewSampler(SamplerOptions{ProcRoot: filepath.Join(t.TempDir(), "nope")})
	if !IsNoProc(err) {
		t.Fatalf("err = %v, want ErrNoProc", err)
	}
	_, err = TakeSnapshot(context.Background(), SnapshotOptions{ProcRoot: filepath.Join(t.TempDir(), "nope")})
	if !IsNoProc(err) {
		t.Fatalf("snapshot err = %v, want ErrNoProc", err)
	}
}

func TestParseSpanAndSize(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "2w": 14 * 24 * time.Hour, "1.5d": 36 * time.Hour} {
		if got, err := ParseSpan(in); err != nil || got != want {
			t.Errorf("ParseSpan(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "0s", "soon"} {
		if _, err := ParseSpan(bad); err == nil {
			t.Errorf("ParseSpan(%q) accepted", bad)
		}
	}
	for in, want := range map[string]int64{"64MB": 64 << 20, "64MiB": 64 << 20, "1G": 1 << 30, "512KiB": 512 << 10, "100000": 100000} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "MB", "-5MB", "1k", "lots"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestSnapshotFixture(t *testing.T) {
	root := filepath.Join(t.TempDir(), "proc")
	at := time.Date(2025, 8, 28, 6, 24, 0, 0, time.UTC)
	tree := &procTree{root: root, boot: seedBoot1, procCPU: map[int]float64{}, started: map[int]int{}}
	tree.write(t, at, 0, seedState(at))
	snap, err := TakeSnapshot(context.Background(), SnapshotOptions{ProcRoot: root, Wait: time.Millisecond, Journal: FileJournal{Path: seedJournalPath},
		Now: func() time.Time { return at.Add(10 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteSnapshot(&b, snap, time.UTC); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/seed/snapshot.golden.txt", b.Bytes())
	if len(snap.Failed) != 1 || snap.Failed[0].Unit != "packagekit.service" {
		t.Errorf("failed units from the journal: %+v", snap.Failed)
	}
}
