package hostwatch

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

// WatchOptions configure Watch. Zero values are documented per field.
type WatchOptions struct {
	// Data is the recording directory (required).
	Data string
	// Interval between samples; zero means 5 s.
	Interval time.Duration
	// Retention and MaxSize bound the recording; zero means 7 days and
	// 64 MiB.
	Retention time.Duration
	MaxSize   int64
	// Sampler configures what is read.
	Sampler SamplerOptions
	// NoSync skips the fsync after each sample (tests); the default keeps
	// the last samples before a crash.
	NoSync bool
	// Log receives one line at start, repairs and each new kind of read
	// error; nil discards.
	Log io.Writer
	// Tick, when set, replaces the ticker: a sample is taken per receive.
	// Tests drive it; nil means a real ticker at Interval.
	Tick <-chan time.Time
}

// WatchStats say what a Watch run did.
type WatchStats struct {
	Samples int
	Bytes   int64
	Errors  int
}

// Watch samples until ctx is done, appending each sample to the recording.
func Watch(ctx context.Context, opts WatchOptions) (WatchStats, error) {
	var st WatchStats
	if opts.Data == "" {
		return st, fmt.Errorf("no --data directory for the recording")
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = tsdb.DefaultRetention
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = tsdb.DefaultMaxSize
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	sampler, err := NewSampler(opts.Sampler)
	if err != nil {
		return st, err
	}
	db, err := tsdb.Open(tsdb.Options{Dir: opts.Data, MaxSize: opts.MaxSize, Retention: opts.Retention, NoSync: opts.NoSync, Now: opts.Sampler.Now})
	if err != nil {
		return st, fmt.Errorf("open recording: %w", err)
	}
	defer db.Close()
	if r := db.Recovered(); r.TruncatedBytes > 0 {
		fmt.Fprintf(logw, "recording: cut a torn tail of %d bytes from %s (the last writer died mid-sample)\n", r.TruncatedBytes, r.Segment)
	}
	fmt.Fprintf(logw, "recording a sample every %s to %s (keeping %s, at most %s)\n", opts.Interval, opts.Data, human(opts.Retention), mib(uint64(opts.MaxSize)))

	tick := opts.Tick
	if tick == nil {
		t := time.NewTicker(opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	seen := map[string]bool{}
	var buf []byte
	sample := func() error {
		s := sampler.Sample()
		for _, e := range s.Errors {
			st.Errors++
			// Log each kind of failure once, not every 5 s forever.
			k := e
			if i := strings.Index(e, ":"); i > 0 {
				k = e[:i]
			}
			if !seen[k] {
				seen[k] = true
				fmt.Fprintf(logw, "sample: %s (recorded in the sample; further errors of this kind are not logged)\n", e)
			}
		}
		b, err := EncodeSample(buf[:0], s)
		if err != nil {
			return err
		}
		buf = b
		if err := db.Append(s.Time, buf); err != nil {
			return err
		}
		st.Samples++
		st.Bytes += int64(len(buf))
		return nil
	}
	if err := sample(); err != nil {
		return st, err
	}
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return st, db.Close()
		case _, ok := <-tick:
			if !ok {
				return st, db.Close()
			}
			if err := sample(); err != nil {
				// A full disk should not stop the watcher for good: say it
				// once per distinct error and keep trying.
				if err.Error() != lastErr {
					fmt.Fprintf(logw, "sample not recorded: %v\n", err)
					lastErr = err.Error()
				}
			}
		}
	}
}

// DefaultDataDir is where the recording lives when --data is not given:
// the systemd unit's StateDirectory for root, the XDG state directory
// otherwise.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/headroom/host"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "headroom", "host")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "headroom", "host")
	}
	return filepath.Join(os.TempDir(), "headroom-host")
}

// ParseSpan reads a retention such as "7d", "36h" or "2w".
func ParseSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("retention %q: want a duration such as 7d, 36h or 2w", s)
	if s == "" {
		return 0, bad
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[s[len(s)-1]]
	if unit > 0 {
		v, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil || v <= 0 {
			return 0, bad
		}
		return time.Duration(v * float64(unit)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}

// ParseSize reads a size such as "64MB", "64MiB", "1G" or "500k"; both
// decimal and binary suffixes are read as binary, which is what people
// mean for a disk budget.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	bad := fmt.Errorf("size %q: want a size such as 64MB, 512KiB or 1G", s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*float64(mult) > 1<<50 {
		return 0, bad
	}
	n := int64(v * float64(mult))
	if n < 64<<10 {
		return 0, fmt.Errorf("size %q: at least 64KiB, or retention has nothing to work with", s)
	}
	return n, nil
}
