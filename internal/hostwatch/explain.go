package hostwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/journal"
	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

// Journal is what the explainer needs from the journal. journal.Reader
// (journalctl) and FileJournal (a saved `journalctl -o json`) provide it.
type Journal interface {
	Entries(ctx context.Context, since, until time.Time, fn func(journal.Entry) error) (journal.Result, error)
}

var (
	_ Journal = journal.Reader{}
	_ Journal = FileJournal{}
)

// FileJournal reads journal JSON lines from a file, keeping the entries in
// the asked window: for a journal exported from a host that is gone.
type FileJournal struct{ Path string }

// Entries implements Journal.
func (f FileJournal) Entries(_ context.Context, since, until time.Time, fn func(journal.Entry) error) (journal.Result, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return journal.Result{}, fmt.Errorf("%w: open %s: %w", journal.ErrUnavailable, f.Path, err)
	}
	defer fh.Close()
	st, err := journal.Parse(fh, func(e journal.Entry) error {
		if e.Time.Before(since) || e.Time.After(until) {
			return nil
		}
		return fn(e)
	})
	return journal.Result{Stats: st}, err
}

// ExplainOptions configure Explain. Zero values are documented per field.
type ExplainOptions struct {
	// Data is the recording written by watch; "" or an empty directory
	// means no recording, and the explainer falls back to what the kernel
	// and the journal still hold.
	Data string
	// Since and Until bound the window; zero Until means now, zero Since
	// means 24 h before Until.
	Since, Until time.Time
	// Journal supplies the timeline; nil means none (reported as a note).
	Journal Journal
	// ProcRoot is read for facts about the host now (listeners, swap,
	// pressure totals, boot time); "" means /proc.
	ProcRoot string
	// Lookback is how far before an episode a unit start is still a
	// suspect; zero means 15 minutes.
	Lookback time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Location is the zone of the times in the plain-language summary;
	// nil means time.Local.
	Location *time.Location
}

// Report is the explainer's answer, in the shape --json prints.
type Report struct {
	Window   Window    `json:"window"`
	Source   string    `json:"source"`
	Samples  int       `json:"samples"`
	Interval Seconds   `json:"interval_s,omitempty"`
	Host     HostFacts `json:"host"`
	Episodes []Episode `json:"episodes"`
	// Filesystems are the filesystems filling up or nearly full.
	Filesystems []FSFinding `json:"filesystems"`
	// Listeners are the sockets open on all interfaces.
	Listeners []Listener    `json:"listeners_all_interfaces"`
	Journal   JournalStatus `json:"journal"`
	Notes     []string      `json:"notes"`
}

// Window is a time range.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Seconds is a duration that JSON shows as seconds (a number), the unit
// every headroom --json output uses for time spans.
type Seconds time.Duration

// MarshalJSON implements json.Marshaler.
func (d Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64)), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("seconds: %w", err)
	}
	*d = Seconds(f * float64(time.Second))
	return nil
}

// HostFacts are what the report knows about the machine.
type HostFacts struct {
	MemTotal  uint64    `json:"mem_total"`
	SwapTotal uint64    `json:"swap_total"`
	CPUs      int       `json:"cpus"`
	BootTime  time.Time `json:"boot_time,omitzero"`
}

// JournalStatus says how the journal read went.
type JournalStatus struct {
	Entries   int      `json:"entries"`
	Malformed int      `json:"malformed"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// Episode is one stretch of saturation or spikes and what explains it.
type Episode struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Signals []Signal  `json:"signals"`
	Cause   *Cause    `json:"cause"`
	// Summary is the plain-language line.
	Summary   string       `json:"summary"`
	Processes []ProcChange `json:"processes,omitempty"`
	Timeline  []Event      `json:"timeline"`
	// Outcome says how it ended when that was not quietly: the recording
	// stopping and the host booting again.
	Outcome string `json:"outcome,omitempty"`
	// Disk is the busiest device when one was saturated, and who did its
	// I/O.
	Disk *DiskUse `json:"disk,omitempty"`
}

// DiskUse is an episode's saturated device and who kept it busy.
type DiskUse struct {
	Device   string  `json:"device"`
	PeakUtil float64 `json:"peak_util"`
	// AwaitMs is the average request time over the saturated intervals.
	AwaitMs    float64 `json:"await_ms"`
	ReadBytes  uint64  `json:"read_bytes"`
	WriteBytes uint64  `json:"write_bytes"`
	// By are the units (or, outside any unit, the processes) that did the
	// processes' I/O in those intervals, largest first.
	By []IOShare `json:"by"`
}

// IOShare is one unit's part of the I/O that processes did on the
// device, each counted up to what the device did (see diskUse).
type IOShare struct {
	Unit       string   `json:"unit,omitempty"`
	Processes  []string `json:"processes"`
	ReadBytes  uint64   `json:"read_bytes"`
	WriteBytes uint64   `json:"write_bytes"`
	// Share is of all the processes' I/O in the intervals, 0-100.
	Share float64 `json:"share"`
}

// Cause is the unit that started the episode, with the units it brought.
type Cause struct {
	Unit    string    `json:"unit"`
	Trigger string    `json:"trigger,omitempty"`
	Started time.Time `json:"started"`
	// Seen is true when Started is when its processes first appeared in
	// the samples: the journal had no start for it.
	Seen bool `json:"started_from_samples,omitempty"`
	// With are the units started after it, while it ran.
	With     []UnitUse `json:"with,omitempty"`
	Use      UnitUse   `json:"use"`
	Evidence []string  `json:"evidence"`
}

// UnitUse is what a unit used: from systemd's resource summary when it
// stopped, and from the growth of its processes in the samples.
type UnitUse struct {
	Unit       string    `json:"unit"`
	Started    time.Time `json:"started,omitzero"`
	MemoryPeak uint64    `json:"memory_peak,omitempty"`
	CPU        Seconds   `json:"cpu_s,omitempty"`
	RSSGrowth  uint64    `json:"rss_growth,omitempty"`
	Comms      []string  `json:"processes,omitempty"`
}

// ProcChange is a process that grew or burned CPU during the episode.
type ProcChange struct {
	PID       int     `json:"pid"`
	Comm      string  `json:"comm"`
	Unit      string  `json:"unit,omitempty"`
	RSSBefore uint64  `json:"rss_before"`
	RSSPeak   uint64  `json:"rss_peak"`
	CPUPeak   float64 `json:"cpu_peak_pct"`
	New       bool    `json:"new"`
	// ReadBytes and WriteBytes are what it read and wrote in the episode.
	ReadBytes  uint64 `json:"read_bytes,omitempty"`
	WriteBytes uint64 `json:"write_bytes,omitempty"`
}

// Event is one line of an episode's timeline.
type Event struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"` // journal or sample
	Kind   string    `json:"kind"`
	Unit   string    `json:"unit,omitempty"`
	Text   string    `json:"text"`
}

// Explain builds the report for a window.
func Explain(ctx context.Context, opts ExplainOptions) (*Report, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lookback <= 0 {
		opts.Lookback = 15 * time.Minute
	}
	if opts.Until.IsZero() {
		opts.Until = opts.Now()
	}
	if opts.Since.IsZero() {
		opts.Since = opts.Until.Add(-24 * time.Hour)
	}
	if !opts.Since.Before(opts.Until) {
		return nil, fmt.Errorf("empty window: --since %s is not before --until %s", opts.Since.Format(time.RFC3339), opts.Until.Format(time.RFC3339))
	}
	rep := &Report{Window: Window{opts.Since, opts.Until}, Episodes: []Episode{}, Filesystems: []FSFinding{}, Listeners: []Listener{}, Notes: []string{}}

	samples, err := readSamples(opts.Data, opts.Since.Add(-opts.Lookback), opts.Until)
	if err != nil {
		return nil, err
	}
	var inWindow int
	for _, s := range samples {
		if !s.Time.Before(opts.Since) {
			inWindow++
		}
	}
	rep.Samples = inWindow

	// What the machine says now: the fallback, and facts a recording of a
	// dead host may lack.
	var live *Sample
	if sm, err := NewSampler(SamplerOptions{ProcRoot: opts.ProcRoot, Now: opts.Now}); err != nil {
		rep.Notes = append(rep.Notes, "no live /proc to read: "+err.Error())
	} else {
		s := sm.Sample()
		live = &s
		for _, e := range s.Errors {
			rep.Notes = append(rep.Notes, "reading /proc now: "+e)
		}
	}

	entries := readJournal(ctx, opts, rep)

	ivs := intervals(samples)
	if len(samples) > 0 {
		last := samples[len(samples)-1]
		rep.Host = HostFacts{MemTotal: last.Mem.Total, SwapTotal: last.Mem.SwapTotal, CPUs: last.CPUs, BootTime: bootTime(last.BootTime)}
		rep.Interval = Seconds(typicalInterval(samples).Round(time.Millisecond))
		rep.Source = fmt.Sprintf("recording %s", opts.Data)
		rep.Listeners = allInterfaces(last.Listeners)
	} else {
		rep.Source = "no recording: kernel counters since boot and the journal"
		if opts.Data != "" {
			rep.Notes = append(rep.Notes, fmt.Sprintf("no samples in %s for this window (is `headroom host watch` running? see deploy/headroom-host.service)", opts.Data))
		}
	}
	if live != nil {
		if rep.Host.MemTotal == 0 {
			rep.Host = HostFacts{MemTotal: live.Mem.Total, SwapTotal: live.Mem.SwapTotal, CPUs: live.CPUs, BootTime: bootTime(live.BootTime)}
			rep.Listeners = allInterfaces(live.Listeners)
		}
		if len(samples) == 0 {
			rep.Notes = append(rep.Notes, kernelNotes(*live, opts)...)
		}
	}

	var groups [][]hot
	if len(ivs) > 0 {
		// Merge bursts a few samples apart into one episode: at short
		// intervals one incident otherwise reads as a dozen.
		groups = episodes(flagIntervals(ivs), max(2*time.Duration(rep.Interval)+time.Second, 15*time.Second))
	}
	for _, g := range groups {
		if g[len(g)-1].b.Time.Before(opts.Since) || g[0].a.Time.After(opts.Until) {
			continue
		}
		rep.Episodes = append(rep.Episodes, buildEpisode(g, samples, entries, rep.Host, opts, time.Duration(rep.Interval), len(entries) > 0))
	}
	if len(samples) == 0 {
		rep.Episodes = append(rep.Episodes, journalEpisodes(entries, rep.Host, opts)...)
	}
	rep.Filesystems = fsFindings(samples, opts.Since, opts.Until, opts.Location)
	rep.Notes = append(rep.Notes, hostNotes(rep.Host, rep.Listeners)...)
	return rep, nil
}

func bootTime(unix int64) time.Time {
	if unix == 0 {
		return time.Time{}
	}
	return time.Unix(unix, 0).UTC()
}

// readSamples loads the recording; a missing directory is no recording.
func readSamples(dir string, from, to time.Time) ([]Sample, error) {
	if dir == "" {
		return nil, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []Sample
	var bad int
	_, err := tsdb.Scan(dir, from, to, func(ts time.Time, p []byte) error {
		s, err := DecodeSample(p)
		if err != nil {
			bad++
			return nil
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read recording %s: %w", dir, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

func typicalInterval(samples []Sample) time.Duration {
	var ds []float64
	for i := 1; i < len(samples); i++ {
		ds = append(ds, float64(samples[i].Time.Sub(samples[i-1].Time)))
	}
	return time.Duration(median(ds))
}

func readJournal(ctx context.Context, opts ExplainOptions, rep *Report) []journal.Entry {
	if opts.Journal == nil {
		rep.Journal.Error = "no journal given"
		return nil
	}
	var out []journal.Entry
	res, err := opts.Journal.Entries(ctx, opts.Since.Add(-opts.Lookback), opts.Until.Add(opts.Lookback), func(e journal.Entry) error {
		// A day of a busy host's journal is mostly chatter; keep only what
		// a timeline can use, so memory stays bounded by the incidents.
		if notable(e) {
			out = append(out, e)
		}
		return nil
	})
	rep.Journal = JournalStatus{Entries: res.Entries, Malformed: res.Malformed, Warnings: res.Warnings}
	if err != nil {
		rep.Journal.Error = err.Error()
		rep.Notes = append(rep.Notes, "journal: "+err.Error()+"; the timeline has samples only")
	} else if res.Entries == 0 {
		rep.Notes = append(rep.Notes, "journal: no entries in this window (no journal on this host, or a volatile one lost at reboot: set Storage=persistent in journald.conf)")
	}
	if res.Malformed > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("journal: %d malformed lines skipped (%s)", res.Malformed, res.FirstMalformed))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

func allInterfaces(ls []Listener) []Listener {
	out := []Listener{}
	for _, l := range ls {
		if l.AllInterfaces() {
			out = append(out, l)
		}
	}
	return out
}

// smallHost is where running without swap is a gamble: one daily job's
// burst (seed 02: apt, PackageKit, fwupd) is the whole of memory.
const smallHost = 4 << 30

func hostNotes(h HostFacts, ls []Listener) []string {
	var notes []string
	if h.MemTotal > 0 && h.MemTotal <= smallHost && h.SwapTotal == 0 {
		notes = append(notes, fmt.Sprintf("no swap on a %s host: a burst of memory has nowhere to go but reclaim and the OOM killer; add a swap file (e.g. 2 GiB: fallocate, mkswap, swapon, /etc/fstab)", mib(h.MemTotal)))
	}
	if len(ls) > 0 {
		var names []string
		for _, l := range ls {
			names = append(names, listenerString(l))
		}
		notes = append(notes, "listening on all interfaces: "+strings.Join(names, ", ")+"; make sure the firewall or security group admits only what should reach them")
	}
	return notes
}

func listenerString(l Listener) string {
	owner := l.Comm
	if owner == "" {
		owner = "owner unknown"
	} else {
		owner = fmt.Sprintf("%s[%d]", l.Comm, l.PID)
	}
	addr := l.Addr
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	return fmt.Sprintf("%s %s:%d (%s)", l.Proto, addr, l.Port, owner)
}

// kernelNotes reads what survives without a recording: boot time and the
// pressure totals since boot, which catch stalls too short to show in any
// average.
func kernelNotes(s Sample, opts ExplainOptions) []string {
	var notes []string
	boot := bootTime(s.BootTime)
	if !boot.IsZero() {
		up := s.Time.Sub(boot).Round(time.Minute)
		n := fmt.Sprintf("host booted %s (up %s)", boot.Format(time.RFC3339), up)
		if boot.After(opts.Since) {
			n += "; it rebooted after the window began, so what the kernel counts covers only the time since"
		}
		notes = append(notes, n)
		if s.PSI != nil && up > 0 {
			upUS := float64(s.Time.Sub(boot).Microseconds())
			share := func(us uint64) string { return pctString(100 * float64(us) / upUS) }
			notes = append(notes, fmt.Sprintf("pressure since boot: memory some %s (%s stalled), full %s; io some %s, full %s; cpu some %s",
				share(s.PSI.Memory.SomeTotal), time.Duration(s.PSI.Memory.SomeTotal)*time.Microsecond,
				share(s.PSI.Memory.FullTotal), share(s.PSI.IO.SomeTotal), share(s.PSI.IO.FullTotal), share(s.PSI.CPU.SomeTotal)))
		}
	}
	return notes
}
