// Package store keeps the guard's usage ledger beyond one process's memory.
//
// The embedded store is the ledger itself, in memory, plus File: a
// snapshot of every key's usage and restriction written to a local file
// periodically and at shutdown, and read back at start, so a restart (a
// deploy, a crash) neither forgives a key that was over budget nor lifts its
// restriction.
//
// File's two methods, Restore and Save, are the whole contract the guard
// relies on (guard.Snapshotter).
//
// Redis (redis.go) is the fleet store: several proxies share each key's
// budget and restrictions through one Redis (a single server, Sentinel or
// a Cluster). It implements the same pair (Restore pulls the fleet's state
// at start, Save pushes the last changes at shutdown) plus guard.Syncer:
// a loop that grants the ledger leases, slices of each key's remaining
// budget, atomically in Redis (lease.go, docs/fleet.md), publishes and
// applies restrictions as they happen, and every second pushes this
// proxy's usage and merges the fleet's (budget.Ledger's ExportChanges and
// MergeRemote). Redis is never on the request path; while it is away each
// proxy spends its leases, then an even share of each budget.
package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
)

// FileOptions configures a File.
type FileOptions struct {
	// Path is the snapshot file. Its directory must exist and be writable
	// (temporary files are created next to it, so the final rename is
	// atomic).
	Path string
	// Clock dates the names of snapshots moved aside. Nil: budget.SystemClock.
	Clock budget.Clock
}

// File snapshots a budget.Ledger to a local file. It is safe for
// concurrent use: saves are serialized.
type File struct {
	path  string
	clock budget.Clock
	mu    sync.Mutex
}

// NewFile returns a File for opts.
func NewFile(opts FileOptions) (*File, error) {
	if opts.Path == "" {
		return nil, errors.New("store: snapshot path is empty: give a file path (e.g. /var/lib/headroom/usage.snapshot)")
	}
	clk := opts.Clock
	if clk == nil {
		clk = budget.SystemClock{}
	}
	return &File{path: opts.Path, clock: clk}, nil
}

// Path returns the snapshot file's path.
func (f *File) Path() string { return f.path }

// ErrMovedAside is returned (wrapped) by Restore when the snapshot could not
// be used (damaged, or written by an incompatible version) and was renamed
// so the next Save does not overwrite the evidence. The ledger is unchanged:
// the caller carries on with empty usage.
var ErrMovedAside = errors.New("snapshot moved aside")

// Restore loads the snapshot into l. A missing snapshot is not an error (the
// first start). A snapshot that cannot be used is renamed to
// PATH.corrupt-TIME (or PATH.version-TIME for another version's format)
// and reported with an error wrapping ErrMovedAside and the reason; it is
// never fatal to the caller's data, which stays as it was.
func (f *File) Restore(l *budget.Ledger) error {
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open usage snapshot: %w", err)
	}
	rerr := l.ReadSnapshot(bufio.NewReaderSize(fh, 256<<10))
	fh.Close()
	if rerr == nil {
		return nil
	}
	kind := "corrupt"
	if errors.Is(rerr, budget.ErrSnapshotVersion) {
		kind = "version"
	} else if !errors.Is(rerr, budget.ErrCorruptSnapshot) {
		return fmt.Errorf("read usage snapshot %s: %w", f.path, rerr)
	}
	aside := fmt.Sprintf("%s.%s-%s", f.path, kind, f.clock.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(f.path, aside); err != nil {
		return fmt.Errorf("usage snapshot %s is unusable (%v) and could not be moved aside: %w", f.path, rerr, err)
	}
	return fmt.Errorf("usage snapshot %s is unusable (%v); %w to %s, starting with empty usage", f.path, rerr, ErrMovedAside, aside)
}

// Save writes l's state to the snapshot file atomically: to a temporary
// file in the same directory, fsynced, then renamed over the old snapshot,
// and the directory fsynced, so a crash at any point leaves either the old
// snapshot or the new one, never a torn file.
func (f *File) Save(l *budget.Ledger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir, base := filepath.Split(f.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return fmt.Errorf("save usage snapshot: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if err := l.WriteSnapshot(bw); err != nil {
		return fmt.Errorf("save usage snapshot %s: %w", f.path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save usage snapshot %s: %w", f.path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save usage snapshot %s: fsync: %w", f.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save usage snapshot %s: %w", f.path, err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("save usage snapshot: %w", err)
	}
	ok = true
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Run saves l every interval until done is closed, then once more (the
// shutdown snapshot). Errors are passed to report (nil: ignored) and do not
// stop the loop: a full disk now may have room later. `headroom proxy`
// does this in guard.Run; Run is for embedders such as `headroom demo`.
func (f *File) Run(done <-chan struct{}, l *budget.Ledger, interval time.Duration, report func(error)) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	save := func() {
		if err := f.Save(l); err != nil && report != nil {
			report(err)
		}
	}
	for {
		select {
		case <-done:
			save()
			return
		case <-t.C:
			save()
		}
	}
}
