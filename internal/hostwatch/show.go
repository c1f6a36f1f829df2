package hostwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

// ShowOptions configure reading a recording back (`headroom host show`).
type ShowOptions struct {
	// Data is the recording written by watch (required).
	Data string
	// Journal, when set, is searched for units that failed in the day
	// before the moment shown, as snapshot does when systemctl cannot
	// answer; nil leaves failed units out.
	Journal Journal
}

// ErrNoSamples means the recording has nothing for the time asked.
var ErrNoSamples = errors.New("no samples")

// SnapshotAt is the snapshot view of the host at a recorded moment: from
// the last sample at or before at and the one before it, the same figures
// `host snapshot` printed then (its rates are over the recording's
// interval instead of snapshot's --wait).
func SnapshotAt(ctx context.Context, opts ShowOptions, at time.Time) (*Snapshot, error) {
	if err := haveRecording(opts.Data); err != nil {
		return nil, err
	}
	// Two samples before at are all that is needed; look back an hour
	// first, the whole recording if that finds none (a host down longer).
	var a, b *Sample
	for _, from := range []time.Time{at.Add(-time.Hour), {}} {
		samples, err := readSamples(opts.Data, from, at.Add(1))
		if err != nil {
			return nil, err
		}
		if n := len(samples); n > 0 {
			b = &samples[n-1]
			if n > 1 {
				a = &samples[n-2]
			}
			break
		}
	}
	if b == nil {
		first, _, err := recordingSpan(opts.Data)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w at or before %s in %s: the recording starts at %s", ErrNoSamples, at.Format(time.RFC3339), opts.Data, first.Format(time.RFC3339))
	}
	if a == nil {
		a = b // the very first sample: counters, but no rates
	}
	snap := SnapshotFrom(*a, *b)
	snap.Source = fmt.Sprintf("recording %s, the sample at %s", opts.Data, b.Time.UTC().Format(time.RFC3339))
	snap.Failed, snap.Notes = failedUnits(ctx, nil, opts.Journal, snap.Time)
	if opts.Journal == nil {
		snap.Notes = append(snap.Notes, "failed units: not in the recording; give the journal (--journal FILE from journalctl -o json) to list the units that failed in the day before")
	}
	if gap := at.Sub(b.Time); gap > 0 && a != b && gap > 3*b.Time.Sub(a.Time) {
		snap.Notes = append(snap.Notes, fmt.Sprintf("the last sample before %s is %s older: watch was not running, or the host was down", at.Format(time.RFC3339), human(gap)))
	}
	if a == b || !sameBoot(*a, *b) {
		snap.Notes = append(snap.Notes, "this is the first sample after watch started or the host booted: no rates")
	}
	snap.Notes = append(snap.Notes, snapshotNotes(snap, *b)...)
	if snap.Notes == nil {
		snap.Notes = []string{}
	}
	return snap, nil
}

func sameBoot(a, b Sample) bool {
	return a.BootTime == 0 || b.BootTime == 0 || a.BootTime == b.BootTime
}

func haveRecording(dir string) error {
	if dir == "" {
		return errors.New("no --data directory for the recording")
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("read recording: %w (is `headroom host watch --data %s` running? see deploy/headroom-host.service)", err, dir)
	}
	return nil
}

// recordingSpan is the first and last record time of a recording.
func recordingSpan(dir string) (first, last time.Time, err error) {
	_, err = tsdb.Scan(dir, time.Time{}, time.Time{}, func(ts time.Time, _ []byte) error {
		if first.IsZero() || ts.Before(first) {
			first = ts
		}
		if ts.After(last) {
			last = ts
		}
		return nil
	})
	if err == nil && first.IsZero() {
		err = fmt.Errorf("%w: the recording %s is empty", ErrNoSamples, dir)
	}
	return first, last, err
}

// ReadRange returns the recorded samples with from <= t <= to, in time
// order. It reads while watch appends (the recording takes no lock for
// readers).
func ReadRange(dir string, from, to time.Time) ([]Sample, error) {
	if err := haveRecording(dir); err != nil {
		return nil, err
	}
	return readSamples(dir, from, to.Add(1))
}

// TimelineRow is one step of `host show --from --to`: the worst of each
// figure over the samples in it.
type TimelineRow struct {
	Start   time.Time `json:"start"`
	Samples int       `json:"samples"`
	// CPU, MemPressure (some) and IOPressure (full) are the highest
	// interval shares, 0-100; MemAvail the lowest available memory.
	CPU         float64 `json:"cpu_busy"`
	Steal       float64 `json:"steal"`
	MemAvail    uint64  `json:"mem_available"`
	MemPressure float64 `json:"memory_pressure"`
	IOPressure  float64 `json:"io_pressure"`
	RxBps       float64 `json:"rx_bytes_per_s"`
	TxBps       float64 `json:"tx_bytes_per_s"`
	// Disk is the busiest device and its utilization.
	Disk     string  `json:"disk,omitempty"`
	DiskUtil float64 `json:"disk_util"`
	// FS is the fullest filesystem at the end of the step.
	FS        string  `json:"fs,omitempty"`
	FSUsedPct float64 `json:"fs_used_pct"`
	// TopCPU and TopIO are the process that used most CPU and did most
	// I/O in the step.
	TopCPU string `json:"top_cpu,omitempty"`
	TopIO  string `json:"top_io,omitempty"`
	// Boot is set when the host booted in the step.
	Boot time.Time `json:"boot,omitzero"`
}

// Timeline is the compact view of a range.
type Timeline struct {
	From, To time.Time
	Step     time.Duration
	Interval time.Duration
	Samples  int
	Rows     []TimelineRow
}

// niceSteps are the row widths a timeline picks from.
var niceSteps = []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute,
	5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// maxRows is about a screen of timeline.
const maxRows = 60

// BuildTimeline groups samples into steps of step (zero picks one that
// fits the range in about a screen).
func BuildTimeline(samples []Sample, from, to time.Time, step time.Duration) Timeline {
	tl := Timeline{From: from, To: to, Samples: len(samples), Interval: typicalInterval(samples)}
	if step <= 0 {
		step = niceSteps[len(niceSteps)-1]
		for _, s := range niceSteps {
			if s >= tl.Interval && to.Sub(from)/s <= maxRows {
				step = s
				break
			}
		}
	}
	tl.Step = step
	var cur *TimelineRow
	type topAcc struct {
		val  float64
		name string
	}
	var topCPU, topIO topAcc
	flush := func() {
		if cur != nil {
			cur.TopCPU, cur.TopIO = topCPU.name, topIO.name
			tl.Rows = append(tl.Rows, *cur)
		}
		cur, topCPU, topIO = nil, topAcc{}, topAcc{}
	}
	for i, s := range samples {
		start := s.Time.Truncate(step) // rows on the clock's round times
		if cur == nil || !cur.Start.Equal(start) {
			flush()
			cur = &TimelineRow{Start: start, MemAvail: s.Mem.Available}
		}
		cur.Samples++
		cur.MemAvail = min(cur.MemAvail, s.Mem.Available)
		if i > 0 && samples[i-1].BootTime != 0 && s.BootTime != samples[i-1].BootTime {
			cur.Boot = bootTime(s.BootTime)
		}
		cur.FS, cur.FSUsedPct = "", 0
		for _, f := range s.Filesystems {
			if p := f.UsedPct(); !f.ReadOnly && (cur.FS == "" || p > cur.FSUsedPct) {
				cur.FS, cur.FSUsedPct = f.Mount, p
			}
		}
		for _, p := range s.Procs {
			if p.CPUPercent > topCPU.val {
				topCPU = topAcc{p.CPUPercent, fmt.Sprintf("%s %s", p.Comm, pctString(p.CPUPercent))}
			}
			if v := p.ReadBps + p.WriteBps; v > topIO.val {
				topIO = topAcc{v, fmt.Sprintf("%s %s/s", p.Comm, mib(uint64(v)))}
			}
		}
		if i == 0 {
			continue
		}
		r, ok := RatesBetween(samples[i-1], s)
		if !ok {
			continue
		}
		cur.CPU, cur.Steal = max(cur.CPU, r.Busy), max(cur.Steal, r.Steal)
		cur.MemPressure, cur.IOPressure = max(cur.MemPressure, r.MemSome), max(cur.IOPressure, r.IOFull)
		cur.RxBps, cur.TxBps = max(cur.RxBps, r.RxBytes), max(cur.TxBps, r.TxBytes)
		if d, ok := r.BusiestDisk(); ok && (cur.Disk == "" || d.Util > cur.DiskUtil) {
			cur.Disk, cur.DiskUtil = d.Name, d.Util
		}
	}
	flush()
	return tl
}

// WriteTimeline prints a timeline for a person: one row per step, gaps in
// the recording as one line each.
func WriteTimeline(w io.Writer, tl Timeline, source string, loc *time.Location) error {
	b := &strings.Builder{}
	day := "2006-01-02 15:04 MST"
	fmt.Fprintf(b, "headroom host show: %s to %s\n", inLoc(tl.From, loc).Format(day), inLoc(tl.To, loc).Format(day))
	fmt.Fprintf(b, "source: %s, %d samples", source, tl.Samples)
	if tl.Interval > 0 {
		fmt.Fprintf(b, " every %s", tl.Interval.Round(time.Millisecond))
	}
	fmt.Fprintf(b, "; one row per %s, the worst of each figure in it\n\n", stepString(tl.Step))
	if len(tl.Rows) == 0 {
		b.WriteString("no samples in this range\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("time        cpu steal  mem avail  mem psi  io psi     net rx     net tx  busiest disk     fullest fs         top CPU               top I/O\n")
	for i, r := range tl.Rows {
		if i > 0 {
			prev := tl.Rows[i-1]
			if gap := r.Start.Sub(prev.Start); gap > tl.Step {
				fmt.Fprintf(b, "%s  no samples for %s (watch not running, or the host down)\n", clock(prev.Start.Add(tl.Step), loc), human(gap-tl.Step))
			}
		}
		disk := "-"
		if r.Disk != "" {
			disk = fmt.Sprintf("%s %s", r.Disk, pctString(r.DiskUtil))
		}
		fs := "-"
		if r.FS != "" {
			fs = fmt.Sprintf("%s %s", r.FS, pctString(r.FSUsedPct))
		}
		line := fmt.Sprintf("%s  %4s  %4s  %9s  %7s  %6s  %7s/s  %7s/s  %-15s  %-17s  %-20s  %s", clock(r.Start, loc), pctString(r.CPU), pctString(r.Steal), mib(r.MemAvail),
			pctString(r.MemPressure), pctString(r.IOPressure), mib(uint64(r.RxBps)), mib(uint64(r.TxBps)), disk, fs, orDash(r.TopCPU), orDash(r.TopIO))
		if !r.Boot.IsZero() {
			line += "  (booted " + clock(r.Boot, loc) + ")"
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sortedKeys is a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stepString is "30 s", "2 min", "1 h": a timeline's row width.
func stepString(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}
