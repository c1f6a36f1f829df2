package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
)

var t0 = time.Unix(1_700_000_000, 0)

var lim = budget.Limits{Budget: 10 * time.Second, Window: time.Minute, RestrictFor: 5 * time.Minute}

func newFile(t *testing.T, clk budget.Clock) *File {
	t.Helper()
	f, err := NewFile(FileOptions{Path: filepath.Join(t.TempDir(), "usage.snapshot"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRestartRestoresUsageAndRestrictions(t *testing.T) {
	clk := budget.NewManualClock(t0)
	f := newFile(t, clk)

	before := budget.New(budget.Options{Clock: clk})
	if err := f.Restore(before); err != nil {
		t.Fatalf("first start, no snapshot yet: %v", err)
	}
	// "heavy" goes over budget and is restricted; "light" used 3 s; "slow"
	// has a request still running when the process stops.
	_, tk := before.Admit("heavy", lim)
	clk.Advance(11 * time.Second)
	if d := before.Finish(tk, 11*time.Second); !d.NewlyRestricted {
		t.Fatalf("heavy should be restricted: %+v", d)
	}
	_, tk = before.Admit("light", lim)
	before.Finish(tk, 3*time.Second)
	_, _ = before.Admit("slow", lim)
	clk.Advance(4 * time.Second)
	if err := f.Save(before); err != nil {
		t.Fatal(err)
	}

	clk.Advance(20 * time.Second) // the restart
	after := budget.New(budget.Options{Clock: clk})
	if err := f.Restore(after); err != nil {
		t.Fatal(err)
	}
	heavy := after.Status("heavy", lim)
	if heavy.RestrictedUntil.IsZero() || heavy.WorkerSeconds != 11 {
		t.Errorf("heavy after restart: %+v, want restricted with 11 worker-seconds", heavy)
	}
	if d, _ := after.Admit("heavy", lim); d.Outcome != budget.Restricted {
		t.Errorf("heavy admitted after restart: %+v", d)
	}
	if light := after.Status("light", lim); light.WorkerSeconds != 3 || !light.RestrictedUntil.IsZero() {
		t.Errorf("light after restart: %+v, want 3 worker-seconds, not restricted", light)
	}
	if slow := after.Status("slow", lim); slow.WorkerSeconds != 4 {
		t.Errorf("slow after restart: %+v, want the 4 s its request had run", slow)
	}
	// The restriction still ends when it was meant to.
	clk.Set(t0.Add(11*time.Second + 5*time.Minute))
	if d, _ := after.Admit("heavy", lim); d.Outcome != budget.Allowed {
		t.Errorf("heavy still refused after its restriction ended: %+v", d)
	}
}

func TestUnusableSnapshotIsMovedAside(t *testing.T) {
	good := func(t *testing.T) []byte {
		clk := budget.NewManualClock(t0)
		l := budget.New(budget.Options{Clock: clk})
		_, tk := l.Admit("k", lim)
		l.Finish(tk, time.Second)
		f := newFile(t, clk)
		if err := f.Save(l); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f.Path())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		content func(t *testing.T) []byte
		suffix  string
	}{
		{"truncated", func(t *testing.T) []byte { b := good(t); return b[:len(b)-3] }, ".corrupt-"},
		{"garbage", func(*testing.T) []byte { return []byte("not a snapshot\n") }, ".corrupt-"},
		{"empty", func(*testing.T) []byte { return nil }, ".corrupt-"},
		{"other version", func(t *testing.T) []byte { b := good(t); b[len("HRLEDGER")] = 99; return b }, ".version-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := budget.NewManualClock(t0)
			f := newFile(t, clk)
			content := tc.content(t)
			if err := os.WriteFile(f.Path(), content, 0o600); err != nil {
				t.Fatal(err)
			}
			l := budget.New(budget.Options{Clock: clk})
			err := f.Restore(l)
			if !errors.Is(err, ErrMovedAside) {
				t.Fatalf("err = %v, want ErrMovedAside", err)
			}
			aside := f.Path() + tc.suffix + "20231114T221320Z"
			if !strings.Contains(err.Error(), aside) {
				t.Errorf("error does not name where the file went: %v", err)
			}
			got, rerr := os.ReadFile(aside)
			if rerr != nil || string(got) != string(content) {
				t.Fatalf("moved-aside file: %v (content kept: %v)", rerr, string(got) == string(content))
			}
			if _, err := os.Stat(f.Path()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the unusable snapshot is still in place: %v", err)
			}
			if l.Len() != 0 {
				t.Errorf("ledger changed by an unusable snapshot: %d keys", l.Len())
			}
			// The next save works and the one after restores.
			if err := f.Save(l); err != nil {
				t.Fatal(err)
			}
			if err := f.Restore(budget.New(budget.Options{Clock: clk})); err != nil {
				t.Fatalf("restore after a fresh save: %v", err)
			}
		})
	}
}

func TestSaveIsAtomic(t *testing.T) {
	clk := budget.NewManualClock(t0)
	f := newFile(t, clk)
	l := budget.New(budget.Options{Clock: clk})
	_, tk := l.Admit("k", lim)
	l.Finish(tk, 2*time.Second)
	for range 3 {
		if err := f.Save(l); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(f.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "usage.snapshot" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only usage.snapshot (no temporary files left)", names)
	}

	// A save that cannot complete leaves the previous snapshot intact.
	before, _ := os.ReadFile(f.Path())
	dir := filepath.Dir(f.Path())
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, tk = l.Admit("k", lim)
	l.Finish(tk, 5*time.Second)
	if os.Geteuid() != 0 { // root writes anyway
		if err := f.Save(l); err == nil {
			t.Fatal("save into a read-only directory succeeded")
		}
	}
	after, _ := os.ReadFile(f.Path())
	if os.Geteuid() != 0 && string(before) != string(after) {
		t.Fatal("a failed save changed the snapshot")
	}
}

func TestRunSavesAtShutdown(t *testing.T) {
	clk := budget.NewManualClock(t0)
	f := newFile(t, clk)
	l := budget.New(budget.Options{Clock: clk})
	_, tk := l.Admit("k", lim)
	l.Finish(tk, 7*time.Second)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		f.Run(done, l, time.Hour, func(err error) { t.Error(err) })
		close(finished)
	}()
	close(done)
	<-finished
	l2 := budget.New(budget.Options{Clock: clk})
	if err := f.Restore(l2); err != nil {
		t.Fatal(err)
	}
	if st := l2.Status("k", lim); st.WorkerSeconds != 7 {
		t.Fatalf("restored %+v, want 7 worker-seconds", st)
	}
}

func TestNewFileNeedsAPath(t *testing.T) {
	if _, err := NewFile(FileOptions{}); err == nil || !strings.Contains(err.Error(), "path") {
		t.Fatalf("err = %v, want one naming the missing path", err)
	}
}

func TestRestoreUnreadable(t *testing.T) {
	f := newFile(t, nil)
	if err := os.Mkdir(f.Path(), 0o700); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	err := f.Restore(budget.New(budget.Options{}))
	if err == nil || errors.Is(err, ErrMovedAside) {
		t.Fatalf("err = %v, want a read error", err)
	}
}
