package tsdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary act as a writer that runs until killed
// (TestKill9MidWrite).
const childEnv = "HEADROOM_TSDB_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

// payloadFor builds a self-checking payload: sequence number, then a
// pattern derived from it, of a size that varies so records straddle
// buffer and page boundaries.
func payloadFor(seq uint64) []byte {
	n := 8 + int(seq*7919%20000)
	p := make([]byte, n)
	binary.LittleEndian.PutUint64(p, seq)
	for i := 8; i < n; i++ {
		p[i] = byte(seq + uint64(i))
	}
	return p
}

func checkPayload(p []byte) (uint64, error) {
	if len(p) < 8 {
		return 0, fmt.Errorf("payload of %d bytes", len(p))
	}
	seq := binary.LittleEndian.Uint64(p)
	if !bytes.Equal(p, payloadFor(seq)) {
		return seq, fmt.Errorf("payload %d does not match its pattern", seq)
	}
	return seq, nil
}

func runChild(dir string) int {
	db, err := Open(Options{Dir: dir, SegmentSize: 256 << 10, MaxSize: 1 << 30})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Timestamps near now, or retention would delete the segments.
	t0 := time.Now()
	for seq := uint64(0); ; seq++ {
		if err := db.Append(t0.Add(time.Duration(seq)*time.Second), payloadFor(seq)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
	}
}

func scanAll(t *testing.T, dir string) ([]time.Time, [][]byte, ScanStats) {
	t.Helper()
	var ts []time.Time
	var ps [][]byte
	st, err := Scan(dir, time.Time{}, time.Time{}, func(t time.Time, p []byte) error {
		ts = append(ts, t)
		ps = append(ps, bytes.Clone(p))
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return ts, ps, st
}

func TestRoundTripAndRange(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1_756_360_800, 0)
	clock := func() time.Time { return t0.Add(time.Hour) }
	db, err := Open(Options{Dir: dir, SegmentSize: 4096, Now: clock, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.Append(t0.Add(time.Duration(i)*time.Second), payloadFor(uint64(i%5))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ts, ps, st := scanAll(t, dir)
	if len(ts) != 100 || st.Torn != 0 {
		t.Fatalf("read %d records, %d torn; want 100, 0", len(ts), st.Torn)
	}
	if st.Segments < 10 {
		t.Errorf("only %d segments for ~100 KiB with 4 KiB segments: rotation not working", st.Segments)
	}
	for i := range ts {
		if !ts[i].Equal(t0.Add(time.Duration(i) * time.Second)) {
			t.Fatalf("record %d at %v", i, ts[i])
		}
		if _, err := checkPayload(ps[i]); err != nil {
			t.Fatal(err)
		}
	}
	var got int
	if _, err := Scan(dir, t0.Add(10*time.Second), t0.Add(20*time.Second), func(time.Time, []byte) error { got++; return nil }); err != nil {
		t.Fatal(err)
	}
	if got != 10 {
		t.Errorf("range [10s,20s) gave %d records, want 10", got)
	}

	// Reopen and keep appending after the existing records.
	db, err = Open(Options{Dir: dir, SegmentSize: 4096, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if r := db.Recovered(); r.TruncatedBytes != 0 {
		t.Errorf("clean file reported recovery %+v", r)
	}
	if err := db.Append(t0.Add(100*time.Second), []byte("after")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, ps, _ = scanAll(t, dir)
	if len(ps) != 101 || string(ps[100]) != "after" {
		t.Fatalf("after reopen: %d records, last %q", len(ps), ps[len(ps)-1])
	}
}

// TestTornTailEveryOffset cuts the last record at every byte and checks
// that Open drops exactly the torn record and keeps every complete one.
func TestTornTailEveryOffset(t *testing.T) {
	t0 := time.Unix(1_756_360_800, 0)
	last := []byte("the record being written when the host died")
	recLen := recordHeader + len(last)
	for cut := 0; cut < recLen; cut++ {
		dir := t.TempDir()
		db, err := Open(Options{Dir: dir, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := db.Append(t0.Add(time.Duration(i)*time.Second), payloadFor(uint64(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Append(t0.Add(3*time.Second), last); err != nil {
			t.Fatal(err)
		}
		seg := db.f.Name()
		db.Close()
		info, _ := os.Stat(seg)
		if err := os.Truncate(seg, info.Size()-int64(recLen)+int64(cut)); err != nil {
			t.Fatal(err)
		}
		_, _, st := scanAll(t, dir)
		if (cut > 0) != (st.Torn == 1) {
			t.Errorf("cut %d: reader torn=%d", cut, st.Torn)
		}
		db, err = Open(Options{Dir: dir, NoSync: true})
		if err != nil {
			t.Fatalf("cut %d: open: %v", cut, err)
		}
		if want := int64(cut); db.Recovered().TruncatedBytes != want {
			t.Errorf("cut %d: truncated %d bytes, want %d", cut, db.Recovered().TruncatedBytes, want)
		}
		if err := db.Append(t0.Add(4*time.Second), []byte("next")); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, ps, st := scanAll(t, dir)
		if len(ps) != 4 || string(ps[3]) != "next" || st.Torn != 0 {
			t.Fatalf("cut %d: after repair %d records (torn %d), want 3 good + next", cut, len(ps), st.Torn)
		}
	}
}

func TestCorruptionStopsSegment(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_756_360_800, 0)
	for i := range 5 {
		db.Append(t0.Add(time.Duration(i)*time.Second), payloadFor(uint64(i)))
	}
	seg := db.f.Name()
	db.Close()
	b, _ := os.ReadFile(seg)
	// Flip a payload byte of the third record: the first two survive.
	off := headerSize + 2*recordHeader + len(payloadFor(0)) + len(payloadFor(1)) + recordHeader + 3
	b[off] ^= 0xff
	os.WriteFile(seg, b, 0o644)
	_, ps, st := scanAll(t, dir)
	if len(ps) != 2 || st.Torn != 1 {
		t.Fatalf("got %d records, torn %d; want 2, 1", len(ps), st.Torn)
	}
}

func TestRetentionAndSize(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_756_360_800, 0)
	clock := func() time.Time { return now }
	db, err := Open(Options{Dir: dir, SegmentSize: 8 << 10, MaxSize: 512 << 10, Retention: time.Hour, Now: clock, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 10<<10)
	// Two hours of records, one a minute, 8 to a segment: the first hour
	// must go, give or take the segment that straddles the cutoff and the
	// one written since the last rotation (retention runs on rotation).
	for i := range 120 {
		now = time.Unix(1_756_360_800, 0).Add(time.Duration(i) * time.Minute)
		if err := db.Append(now, big[:1000]); err != nil {
			t.Fatal(err)
		}
	}
	ts, _, _ := scanAll(t, dir)
	if oldest := now.Sub(ts[0]); oldest > time.Hour+16*time.Minute {
		t.Errorf("oldest record is %v old with 1h retention", oldest)
	}
	// Then 5 MiB within one minute: size must stay near MaxSize.
	for range 500 {
		if err := db.Append(now, big); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	segs, _ := listSegments(dir)
	var total int64
	for _, s := range segs {
		total += s.size
	}
	if total > 512<<10+16<<10 {
		t.Errorf("total %d bytes, budget 512 KiB (+1 segment)", total)
	}
	if _, ps, _ := scanAll(t, dir); len(ps) == 0 {
		t.Error("retention deleted everything")
	}
}

func TestSecondWriterRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another writer") {
		t.Fatalf("second Open: %v, want in-use error", err)
	}
}

// TestKill9MidWrite runs a real writer process, kills it with SIGKILL while
// it appends, then checks that every complete record reads back intact and
// in sequence, and that a torn tail is cut on reopen.
func TestKill9MidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Wait until several segments exist, so the kill lands after
		// rotations with the writer busy.
		segs, _ := listSegments(dir)
		if len(segs) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child wrote only %d segments in 30s; stderr: %s", len(segs), readFile(stderr.Name()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v; stderr: %s", err, readFile(stderr.Name()))
	}

	check := func(stage string) int {
		_, ps, _ := scanAll(t, dir)
		for i, p := range ps {
			seq, err := checkPayload(p)
			if err != nil {
				t.Fatalf("%s: record %d: %v", stage, i, err)
			}
			if seq != uint64(i) {
				t.Fatalf("%s: record %d has sequence %d: a complete record was lost", stage, i, seq)
			}
		}
		return len(ps)
	}
	n := check("after kill")
	if n == 0 {
		t.Fatal("no records survived")
	}

	// Whether the kill split a write is up to the scheduler; make the worst
	// case certain by adding half of the next record to the tail.
	segs, _ := listSegments(dir)
	tail := filepath.Join(dir, segs[len(segs)-1].name)
	rec := EncodeRecord(nil, time.Unix(0, 1), payloadFor(uint64(n)))
	f, err := os.OpenFile(tail, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(rec[:len(rec)/2])
	f.Close()

	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	if r := db.Recovered(); r.TruncatedBytes < int64(len(rec)/2) {
		t.Errorf("reopen cut %d bytes, want at least the %d-byte torn record", r.TruncatedBytes, len(rec)/2)
	}
	if err := db.Append(time.Now(), payloadFor(uint64(n))); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if m := check("after reopen"); m != n+1 {
		t.Fatalf("after reopen and one append: %d records, want %d", m, n+1)
	}
	t.Logf("%d records in %d segments survived kill -9", n, len(segs))
}

func FuzzDecodeRecords(f *testing.F) {
	t0 := time.Unix(1_756_360_800, 0)
	var seed []byte
	// Small seeds: the fuzzer slows to a crawl on inputs of tens of KiB.
	for i := range 3 {
		seed = EncodeRecord(seed, t0.Add(time.Duration(i)*time.Second), []byte(fmt.Sprintf("{\"sample\":%d,\"cpu\":0.5}", i)))
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-5])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var total int
		n, err := DecodeRecords(bytes.NewReader(b), func(ts time.Time, p []byte) error {
			total += recordHeader + len(p)
			// Every record handed out must re-encode to the same bytes.
			re := EncodeRecord(nil, ts, p)
			if !bytes.Equal(re, b[total-len(re):total]) {
				t.Fatalf("record does not re-encode to its input bytes")
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if err == nil && total != len(b) {
			t.Fatalf("clean end after %d of %d bytes (%d records)", total, len(b), n)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run("sync="+strconv.FormatBool(sync), func(b *testing.B) {
			db, err := Open(Options{Dir: b.TempDir(), NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			p := payloadFor(3)[:1500]
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for i := 0; b.Loop(); i++ {
				if err := db.Append(time.Unix(int64(i), 0), p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
