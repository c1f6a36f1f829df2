// Package tailfile follows a growing log file the way `tail -F` does and
// hands its whole lines to a callback, for `headroom sidecar` reading
// nginx's buffered access log (`access_log FILE fmt buffer=64k flush=1s`):
// measured, one syslog datagram per request costs nginx 28% of its
// throughput, a buffered file about 5%.
//
// It polls with stat(2) and reads with pread(2) into one reused buffer: at
// the end of the file it waits Options.Poll, then reads again and looks at
// the path. What it handles:
//
//   - Rename rotation (logrotate's create mode): the path names a new file
//     while nginx keeps writing the old one until it is sent USR1, so the
//     old file is read on until the new one has data and two further polls
//     have found nothing new in the old one, or until the old one has been
//     quiet for the grace period (see rotateQuiet and graceFor); then the
//     old file's unfinished last line is delivered as it is and the new file
//     is read from its start.
//   - The file deleted (with or without a new one created): the same, and
//     when the grace period passes with nothing at the path Run closes
//     the old file and waits for the path, logging once.
//   - Copytruncate: the file is shorter than what was read, so it is read
//     again from its start (Stats.Truncations), its unfinished last line
//     delivered first as at a rotation. A truncation followed by
//     writes past the old offset before the next poll cannot be told from
//     growth by size alone, as for tail; copytruncate loses lines anyway
//     (those written between the copy and the truncation), so create mode
//     is the one to use.
//   - A missing file: Run waits for it (logged once, not per poll) and
//     reads it from its start when it appears, whatever FromStart says: all
//     of it was written after Run began.
//   - Starting at the end of a file that ends in the middle of a line (a
//     write under way): the rest of that line is skipped, not delivered as
//     a line of its own.
//
// Lines longer than Options.MaxLine are skipped whole and counted, empty
// lines skipped; a line is delivered without its '\n' or a trailing '\r'.
package tailfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Options configures Follow.
type Options struct {
	Path      string        // the file to follow (required)
	FromStart bool          // read what the file already holds; default: start at its end
	Poll      time.Duration // how often to look for new data at EOF and for rotation; 0: 100ms
	MaxLine   int           // longest line delivered; longer ones are skipped whole and counted; 0: 64 KiB
	Logger    *slog.Logger  // rotations, truncations, a missing file (once, not per poll); nil: slog.Default()
}

// Stats are what Follow has seen so far. Follower.Stats returns a copy,
// safe to take while Run runs; Run updates the counters once per read (up
// to 256 KiB), not once per line.
type Stats struct {
	Lines       uint64 // lines delivered to fn
	Overlong    uint64 // lines longer than MaxLine, skipped
	Rotations   uint64 // times Run moved on to another file at the path (rotated, or deleted and created again)
	Truncations uint64 // times the file was found shorter than what was read (copytruncate), and read again from its start
	Offset      int64  // where in the current file the lines delivered or skipped end (an unfinished line not counted)
	Size        int64  // the current file's size when Run last looked (every poll)
}

// Behind is how many bytes of the current file were not delivered yet, as
// of Run's last look: a consumer slower than the writer shows here first.
func (s Stats) Behind() int64 { return max(s.Size-s.Offset, 0) }

const (
	defaultPoll    = 100 * time.Millisecond
	defaultMaxLine = 64 << 10
	// bufSize is the read size: nginx flushes 64 KiB at a time, and a
	// sidecar that fell behind catches up in large reads.
	bufSize = 256 << 10
	// rotateQuiet is how many polls in a row must find nothing new in the
	// old file, after the path's new file was seen with data, before Run
	// moves on. nginx's workers reopen their logs each on its own after
	// USR1, each first flushing its buffer into the old file, so the first
	// line in the new file does not mean the old one is finished; the
	// reopens come within milliseconds of each other, and two polls (the
	// first of which reads the old file after the new data was seen)
	// cover them.
	rotateQuiet = 2
)

// graceFor is how many quiet polls of the old file, after a rotation with
// the path's new file still empty (or no file at the path), make Run give
// up the old file: 20 polls and at least 2 s, longer than the flush=1s
// nginx is told to use, so that an nginx not yet sent USR1 that flushes
// once a second is not taken for finished. Until then nothing is lost by
// waiting (the new file has nothing to read); after it, what nginx still
// writes into the old file is.
func graceFor(poll time.Duration) int {
	return int(max(20, (2*time.Second+poll-1)/poll))
}

// Follower follows one file. Its Run is called once.
type Follower struct {
	o     Options
	log   *slog.Logger
	grace int // quiet polls; tests shorten it

	lines, overlong, rotations, truncations atomic.Uint64
	offset, size                            atomic.Int64
}

// New validates o and returns a Follower; it does not open the file yet.
func New(o Options) (*Follower, error) {
	if o.Path == "" {
		return nil, errors.New("tailfile: no path")
	}
	if o.Poll < 0 {
		return nil, fmt.Errorf("tailfile: poll %v is negative", o.Poll)
	}
	if o.MaxLine < 0 {
		return nil, fmt.Errorf("tailfile: max line %d is negative", o.MaxLine)
	}
	if o.Poll == 0 {
		o.Poll = defaultPoll
	}
	if o.MaxLine == 0 {
		o.MaxLine = defaultMaxLine
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Follower{o: o, log: log.With("path", o.Path), grace: graceFor(o.Poll)}, nil
}

// Stats returns what Run has seen so far.
func (f *Follower) Stats() Stats {
	return Stats{
		Lines:       f.lines.Load(),
		Overlong:    f.overlong.Load(),
		Rotations:   f.rotations.Load(),
		Truncations: f.truncations.Load(),
		Offset:      f.offset.Load(),
		Size:        f.size.Load(),
	}
}

// Run calls fn for each complete line (without its '\n' or a trailing
// '\r'; the slice is valid only during the call; fn is called from one
// goroutine, in file order) until ctx is done; then it reads once more to
// the current end of the file (its size at that moment), delivers the
// complete lines found, and returns nil. It returns an error only for a
// failure it cannot wait out: a file it may not open, a failed read or
// stat; not for a missing file, which it waits for, logging once.
func (f *Follower) Run(ctx context.Context, fn func(line []byte)) error {
	return f.RunBatched(ctx, fn, nil)
}

// RunBatched is Run for a consumer that gathers lines and acts on them in
// batches: after each read's lines (at most one buffer, 256 KiB) it calls
// flush, from the same goroutine as fn, so no line waits for another read
// or poll to be acted on. flush may be nil.
func (f *Follower) RunBatched(ctx context.Context, fn func(line []byte), flush func()) error {
	r := &run{f: f, fn: fn, flush: flush, s: newSplitter(bufSize, f.o.MaxLine), timer: time.NewTimer(f.o.Poll)}
	defer r.timer.Stop()
	defer r.close()
	first := true
	for {
		if r.file == nil {
			ok, err := r.open(first && !f.o.FromStart)
			if err != nil {
				return err
			}
			if !ok {
				if !r.missing {
					r.missing = true
					f.log.Warn("tailfile: the file is missing; waiting for it")
				}
				first = false
				if !r.wait(ctx) {
					return nil
				}
				continue
			}
			if r.missing {
				r.missing = false
				f.log.Info("tailfile: the file is there now")
			}
			if r.hadFile {
				f.rotations.Add(1)
			}
			first = false
			r.hadFile = true
		}
		got, err := r.read(ctx)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if got {
			r.quiet = 0
		} else {
			r.quiet++
		}
		moved, err := r.check()
		if err != nil {
			return err
		}
		if moved {
			continue
		}
		if !r.wait(ctx) {
			_, err := r.read(ctx)
			return err
		}
	}
}

// run is the state of one Run.
type run struct {
	f     *Follower
	fn    func([]byte)
	flush func() // after a read's lines; nil: none
	s     *splitter
	timer *time.Timer

	file    *os.File
	info    fs.FileInfo // file's, to tell whether the path still names it
	off     int64       // how far file has been read
	hadFile bool        // a file was open before (the next one is a rotation)
	missing bool        // the missing file was logged

	// While the path names another file than the one open (or none).
	rotating bool
	newSeen  bool // the path's new file was seen with data
	quiet    int  // polls in a row that found nothing new in file
}

// open opens the path, at its end when atEnd, and reports false for a
// missing file.
func (r *run) open(atEnd bool) (bool, error) {
	file, err := os.Open(r.f.o.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tailfile: %w", err)
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return false, fmt.Errorf("tailfile: %w", err)
	}
	r.file, r.info, r.off = file, info, 0
	r.rotating, r.newSeen, r.quiet = false, false, 0
	if atEnd && info.Size() > 0 {
		r.off = info.Size()
		// Starting in the middle of a line (a write under way) would
		// deliver its tail as a line: skip to the next newline instead.
		var last [1]byte
		if _, err := file.ReadAt(last[:], r.off-1); err != nil {
			return false, fmt.Errorf("tailfile: read %s: %w", r.f.o.Path, err)
		}
		if last[0] != '\n' {
			r.s.skip = fragment
		}
	}
	r.f.offset.Store(r.off)
	r.f.size.Store(info.Size())
	return true, nil
}

// read reads the open file to its end and reports whether it found
// anything. When ctx is done, the end is the file's size at that moment,
// so that a writer faster than fn cannot keep Run from returning.
func (r *run) read(ctx context.Context) (bool, error) {
	got := false
	limit := int64(-1)
	for {
		if limit < 0 && ctx.Err() != nil {
			info, err := r.file.Stat()
			if err != nil {
				return got, fmt.Errorf("tailfile: %w", err)
			}
			limit = info.Size()
		}
		p := r.s.space()
		if limit >= 0 {
			if r.off >= limit {
				return got, nil
			}
			p = p[:min(int64(len(p)), limit-r.off)]
		}
		n, err := r.file.ReadAt(p, r.off)
		if n > 0 {
			got = true
			r.off += int64(n)
			r.s.advance(n, r.fn)
			r.account()
		}
		if err == io.EOF || (err == nil && n == 0) {
			return got, nil
		}
		if err != nil {
			return got, fmt.Errorf("tailfile: read %s: %w", r.f.o.Path, err)
		}
	}
}

// account moves the splitter's counts to the Follower's, and ends the
// batch of lines just delivered.
func (r *run) account() {
	if r.s.lines > 0 {
		r.f.lines.Add(r.s.lines)
		r.s.lines = 0
		if r.flush != nil {
			r.flush()
		}
	}
	if r.s.overlong > 0 {
		r.f.overlong.Add(r.s.overlong)
		r.s.overlong = 0
	}
	r.f.offset.Store(r.off - int64(r.s.pending()))
}

// check looks, at the end of the open file, for a truncation and for a
// rotation, and reports whether Run moved on (to the file's start, to
// another file, or to waiting for one).
func (r *run) check() (bool, error) {
	info, err := r.file.Stat()
	if err != nil {
		return false, fmt.Errorf("tailfile: %w", err)
	}
	r.f.size.Store(info.Size())
	if info.Size() < r.off {
		r.f.log.Info("tailfile: the file was truncated; reading it from its start", "size", info.Size(), "offset", r.off)
		r.s.finish(r.fn)
		r.off = 0
		r.f.truncations.Add(1)
		r.account()
		return true, nil
	}
	at, err := os.Stat(r.f.o.Path)
	gone := errors.Is(err, fs.ErrNotExist)
	switch {
	case err != nil && !gone:
		return false, fmt.Errorf("tailfile: %w", err)
	case !gone && os.SameFile(at, r.info):
		r.rotating, r.newSeen = false, false
		return false, nil
	}
	if !r.rotating {
		r.rotating, r.newSeen, r.quiet = true, false, 0
	}
	if !gone && at.Size() > 0 && !r.newSeen {
		r.newSeen, r.quiet = true, 0
	}
	if !(r.newSeen && r.quiet >= rotateQuiet) && r.quiet < r.f.grace {
		return false, nil
	}
	// The old file is finished: its unfinished last line is a line.
	r.s.finish(r.fn)
	r.account()
	r.close()
	if gone {
		r.f.log.Info("tailfile: the file was removed; closed it")
	} else {
		r.f.log.Info("tailfile: the file was rotated; reading the new one from its start")
	}
	return true, nil
}

// wait waits one poll and reports false when ctx is done first.
func (r *run) wait(ctx context.Context) bool {
	r.timer.Reset(r.f.o.Poll)
	select {
	case <-ctx.Done():
		return false
	case <-r.timer.C:
		return true
	}
}

func (r *run) close() {
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
}
