package tailfile

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPoll is short so that the tests run quickly; nothing asserts on time.
const testPoll = 5 * time.Millisecond

// following is one Run in the background, collecting its lines and logs.
type following struct {
	f      *Follower
	logs   *records
	cancel context.CancelFunc
	done   chan error

	mu  sync.Mutex
	got []string
}

// follow starts Run on o (Poll and Logger filled in); tweak, if not nil,
// changes the Follower before Run (a shorter grace). The Run is stopped at
// the end of the test, and must return nil.
func follow(t *testing.T, o Options, tweak func(*Follower)) *following {
	t.Helper()
	logs := &records{}
	if o.Poll == 0 {
		o.Poll = testPoll
	}
	o.Logger = slog.New(logs)
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &following{f: f, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() {
		h.done <- f.Run(ctx, func(line []byte) {
			h.mu.Lock()
			h.got = append(h.got, string(line))
			h.mu.Unlock()
		})
	}()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop cancels the Run, waits for it and returns the lines it delivered.
func (h *following) stop(t *testing.T) []string {
	t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(h.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after its context was cancelled")
	}
	return h.lines()
}

func (h *following) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// waitLines waits until the lines delivered are want, and fails at once
// when they stop being a prefix of it.
func (h *following) waitLines(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.lines()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("lines %q, want %q", got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s lines %q, want %q", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor waits (10 s at the most) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s still not: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// records is a slog.Handler keeping the messages logged.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// count is how many messages containing s were logged.
func (r *records) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

func write(t *testing.T, path, s string) {
	t.Helper()
	w := appender(t, path)
	if _, err := w.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// appender opens path for appending as nginx does (O_APPEND, created if
// missing); the test closes it at its end.
func appender(t *testing.T, path string) *os.File {
	t.Helper()
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func writeTo(t *testing.T, w *os.File, s string) {
	t.Helper()
	if _, err := w.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, o := range []Options{
		{},
		{Path: "x", Poll: -time.Second},
		{Path: "x", MaxLine: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) did not fail", o)
		}
	}
	f, err := New(Options{Path: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if f.o.Poll != defaultPoll || f.o.MaxLine != defaultMaxLine || f.grace != 20 {
		t.Errorf("defaults: poll %v, max line %d, grace %d", f.o.Poll, f.o.MaxLine, f.grace)
	}
}

func TestGraceCoversNginxFlush(t *testing.T) {
	for _, poll := range []time.Duration{time.Millisecond, 100 * time.Millisecond, time.Second} {
		if g := time.Duration(graceFor(poll)) * poll; g < 2*time.Second {
			t.Errorf("poll %v: grace %d polls is %v, less than 2 s", poll, graceFor(poll), g)
		}
	}
}

func TestStart(t *testing.T) {
	for _, c := range []struct {
		name      string
		before    string // in the file when Run starts
		fromStart bool
		after     string // appended once Run has opened it
		want      []string
	}{
		{"at end", "a\nb\n", false, "c\n", []string{"c"}},
		{"from start", "a\nb\n", true, "c\n", []string{"a", "b", "c"}},
		// A write under way when Run starts: its tail is not a line.
		{"at end mid-line", "a\nhal", false, "f\nb\n", []string{"b"}},
		{"from start mid-line", "a\nhal", true, "f\nb\n", []string{"a", "half", "b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			write(t, path, c.before)
			h := follow(t, Options{Path: path, FromStart: c.fromStart}, nil)
			opened := int64(len(c.before))
			if c.fromStart {
				opened = int64(strings.LastIndexByte(c.before, '\n') + 1)
			}
			waitFor(t, "Run has opened the file", func() bool { return h.f.Stats().Offset == opened })
			write(t, path, c.after)
			h.waitLines(t, c.want...)
			if got := h.stop(t); !slices.Equal(got, c.want) {
				t.Errorf("lines %q, want %q", got, c.want)
			}
			if s := h.f.Stats(); s.Lines != uint64(len(c.want)) || s.Offset != int64(len(c.before)+len(c.after)) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestLinesInPieces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	write(t, path, "")
	h := follow(t, Options{Path: path, FromStart: true}, nil)
	w := appender(t, path)
	// One write, so that the read delivering "a" also saw "hel".
	writeTo(t, w, "a\nhel")
	h.waitLines(t, "a")
	if s := h.f.Stats(); s.Offset != 2 {
		t.Errorf("offset %d with an unfinished line, want 2", s.Offset)
	}
	writeTo(t, w, "l")
	writeTo(t, w, "o\nwor")
	h.waitLines(t, "a", "hello")
	writeTo(t, w, "ld\n")
	h.waitLines(t, "a", "hello", "world")
}

func TestLineShapes(t *testing.T) {
	for _, c := range []struct {
		name     string
		maxLine  int
		data     string
		want     []string
		overlong uint64
	}{
		{"crlf", 0, "a\r\nb\r\n", []string{"a", "b"}, 0},
		{"lone cr inside", 0, "a\rb\n", []string{"a\rb"}, 0},
		{"empty lines", 0, "\na\n\n\r\nb\n\n", []string{"a", "b"}, 0},
		{"overlong", 10, "short\n" + strings.Repeat("x", 30) + "\nnext\n", []string{"short", "next"}, 1},
		{"just fits", 3, "abc\nabc\r\nabcd\n", []string{"abc", "abc"}, 1},
		// Longer than the read buffer: skipped across reads.
		{"overlong past the buffer", 0, "a\n" + strings.Repeat("y", 3*bufSize+7) + "\nb\n", []string{"a", "b"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			write(t, path, "")
			h := follow(t, Options{Path: path, FromStart: true, MaxLine: c.maxLine}, nil)
			write(t, path, c.data)
			h.waitLines(t, c.want...)
			waitFor(t, "the whole file read", func() bool { return h.f.Stats().Offset == int64(len(c.data)) })
			if s := h.f.Stats(); s.Overlong != c.overlong || s.Lines != uint64(len(c.want)) {
				t.Errorf("stats %+v, want %d lines, %d overlong", s, len(c.want), c.overlong)
			}
		})
	}
}

// TestRenameRotation is logrotate's create mode beside nginx: the file is
// renamed and a new one created, nginx writes the old one until it is sent
// USR1, flushing its buffer there (with an unfinished line, to see it
// delivered when the old file is finished), then writes the new one.
func TestRenameRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	nginx := appender(t, path)
	writeTo(t, nginx, "1\n")
	// The grace is long: only the new file's data may end the old file.
	h := follow(t, Options{Path: path, FromStart: true}, func(f *Follower) { f.grace = 1 << 30 })
	h.waitLines(t, "1")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(t, path, "") // create
	writeTo(t, nginx, "2\n")
	h.waitLines(t, "1", "2") // read from the old file while the new one is empty
	writeTo(t, nginx, "3\nunfinished")
	nginx.Close() // USR1
	write(t, path, "4\n")
	h.waitLines(t, "1", "2", "3", "unfinished", "4")
	write(t, path, "5\n")
	h.waitLines(t, "1", "2", "3", "unfinished", "4", "5")
	if s := h.f.Stats(); s.Rotations != 1 || s.Truncations != 0 || s.Offset != 4 {
		t.Errorf("stats %+v", s)
	}
	if n := h.logs.count("rotated"); n != 1 {
		t.Errorf("%d rotation logs, want 1", n)
	}
}

// TestRotationGrace: the new file stays empty, and the old one quiet for
// the grace period: Run moves on to the new file anyway.
func TestRotationGrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	write(t, path, "1\n")
	h := follow(t, Options{Path: path, FromStart: true}, func(f *Follower) { f.grace = 5 })
	h.waitLines(t, "1")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(t, path, "")
	waitFor(t, "Run moved to the new file", func() bool { return h.f.Stats().Rotations == 1 })
	write(t, path, "2\n")
	h.waitLines(t, "1", "2")
}

func TestCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	nginx := appender(t, path)
	writeTo(t, nginx, "1\n2\n")
	h := follow(t, Options{Path: path, FromStart: true}, nil)
	h.waitLines(t, "1", "2")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	writeTo(t, nginx, "3\n") // shorter than what was read: seen as a truncation
	h.waitLines(t, "1", "2", "3")
	writeTo(t, nginx, "4\n")
	h.waitLines(t, "1", "2", "3", "4")
	if s := h.f.Stats(); s.Truncations != 1 || s.Rotations != 0 || s.Offset != 4 {
		t.Errorf("stats %+v", s)
	}
	if n := h.logs.count("truncated"); n != 1 {
		t.Errorf("%d truncation logs, want 1", n)
	}
}

func TestDeletedAndRecreated(t *testing.T) {
	t.Run("recreated while written", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		nginx := appender(t, path)
		writeTo(t, nginx, "1\n")
		h := follow(t, Options{Path: path, FromStart: true}, func(f *Follower) { f.grace = 1 << 30 })
		h.waitLines(t, "1")
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		writeTo(t, nginx, "2\n") // into the deleted file, still read
		h.waitLines(t, "1", "2")
		nginx.Close()
		write(t, path, "3\n")
		h.waitLines(t, "1", "2", "3")
		if s := h.f.Stats(); s.Rotations != 1 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("gone past the grace", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		write(t, path, "1\n")
		h := follow(t, Options{Path: path, FromStart: true}, func(f *Follower) { f.grace = 5 })
		h.waitLines(t, "1")
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "Run closed the deleted file", func() bool { return h.logs.count("missing") == 1 })
		write(t, path, "2\n")
		h.waitLines(t, "1", "2")
		if s := h.f.Stats(); s.Rotations != 1 {
			t.Errorf("stats %+v", s)
		}
		if n := h.logs.count("removed"); n != 1 {
			t.Errorf("%d removal logs, want 1", n)
		}
	})
}

func TestMissingAtStart(t *testing.T) {
	for _, fromStart := range []bool{false, true} {
		t.Run(map[bool]string{false: "at end", true: "from start"}[fromStart], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			h := follow(t, Options{Path: path, FromStart: fromStart}, nil)
			waitFor(t, "the missing file logged", func() bool { return h.logs.count("missing") > 0 })
			time.Sleep(20 * testPoll) // polls that must not log again
			// Created after Run began: read from its start either way.
			write(t, path, "a\n")
			h.waitLines(t, "a")
			if n := h.logs.count("missing"); n != 1 {
				t.Errorf("the missing file logged %d times, want once", n)
			}
			if s := h.f.Stats(); s.Rotations != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestStopReadsToEnd: with its context done before it starts, Run reads
// the file to its end, delivers its complete lines and returns.
func TestStopReadsToEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	write(t, path, "a\nb\nunfinished")
	f, err := New(Options{Path: path, FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var got []string
	if err := f.Run(ctx, func(line []byte) { got = append(got, string(line)) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if s := f.Stats(); s.Offset != 4 || s.Lines != 2 || s.Size != 14 || s.Behind() != 10 {
		t.Errorf("stats %+v (behind %d), want offset 4, 2 lines, size 14, the unfinished 10 bytes behind", s, s.Behind())
	}
}

func TestMissingAndStopped(t *testing.T) {
	f, err := New(Options{Path: filepath.Join(t.TempDir(), "none"), Logger: slog.New(&records{})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Run(ctx, func([]byte) { t.Error("a line from no file") }); err != nil {
		t.Fatal(err)
	}
}

// TestUnreadable: a path Run cannot read (here a directory, which root
// cannot read either) is an error, not something to wait for.
func TestUnreadable(t *testing.T) {
	path := t.TempDir()
	f, err := New(Options{Path: path, FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background(), func([]byte) {}); err == nil {
		t.Error("Run on a directory returned nil")
	}
}

// TestRunBatchedFlushes: every line RunBatched delivers is followed by a
// flush before Run waits for more, including the lines of a file larger
// than one read, of a truncated file's tail, and of the last read at stop.
func TestRunBatchedFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	// More than one read's buffer, so the first read takes several.
	line := strings.Repeat("x", 199) + "\n"
	big := strings.Repeat(line, 2*bufSize/len(line)+10)
	write(t, path, big)
	f, err := New(Options{Path: path, FromStart: true, Poll: testPoll, Logger: slog.New(&records{})})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	lines, flushed, flushes := 0, 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.RunBatched(ctx, func([]byte) {
			mu.Lock()
			lines++
			mu.Unlock()
		}, func() {
			mu.Lock()
			flushed, flushes = lines, flushes+1
			mu.Unlock()
		})
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			mu.Lock()
			good := ok()
			mu.Unlock()
			if good {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d lines, %d flushed, %d flushes", what, lines, flushed, flushes)
			}
			time.Sleep(time.Millisecond)
		}
	}
	n := strings.Count(big, "\n")
	waitFor("the first file's lines flushed", func() bool { return flushed == n })
	if flushes < 3 {
		t.Errorf("%d flushes for %d bytes, want one per read (at least 3)", flushes, len(big))
	}
	waitFor("caught up", func() bool { s := f.Stats(); return s.Size == int64(len(big)) && s.Behind() == 0 })
	// Truncated and written again (copytruncate), then appended to
	// just before the stop.
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("the truncated file's lines flushed", func() bool { return flushed == n+2 })
	write(t, path, "c\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if lines != n+3 || flushed != lines {
		t.Errorf("at stop: %d lines, %d flushed, want %d both", lines, flushed, n+3)
	}
}
