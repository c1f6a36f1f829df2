package hostwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/journal"
)

// FailedUnitsFunc lists failed systemd units; journal.FailedUnits runs
// systemctl.
type FailedUnitsFunc func(ctx context.Context) ([]journal.Unit, error)

// SnapshotOptions configure TakeSnapshot.
type SnapshotOptions struct {
	// ProcRoot is the /proc to read; "" means /proc.
	ProcRoot string
	// Wait is the time between the two samples that give CPU% and
	// network rates; zero means 1 s.
	Wait time.Duration
	// TopN is the number of processes listed by memory and by CPU; zero
	// means 8.
	TopN int
	// FailedUnits lists failed units; nil skips that check.
	FailedUnits FailedUnitsFunc
	// Journal, when FailedUnits fails, is searched for units that failed
	// in the last day; nil skips it.
	Journal Journal
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// After waits between the two samples; nil means time.After. Tests
	// with a fixture tree move their clock and tree in it.
	After func(time.Duration) <-chan time.Time
	// AllFilesystems and StatFS are passed to the Sampler.
	AllFilesystems bool
	StatFS         StatFSFunc
}

// Snapshot is seed 02's manual checks (free, ss -tulpn, top, /proc/net/dev,
// systemctl --failed) in one structure.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Source is empty for a live snapshot; for one read from a recording
	// (host show --at), it says which recording and sample.
	Source    string     `json:"source,omitempty"`
	Host      HostFacts  `json:"host"`
	Memory    Memory     `json:"memory"`
	Load      [3]float64 `json:"load"`
	CPU       CPUShare   `json:"cpu"`
	PSI       *Pressure  `json:"pressure,omitempty"`
	Net       []NetRate  `json:"interfaces"`
	TopMemory []Proc     `json:"top_memory"`
	TopCPU    []Proc     `json:"top_cpu"`
	Listeners []Listener `json:"listeners"`
	// Filesystems are the mounted filesystems' space and inodes; Disks the
	// devices' I/O over the snapshot's interval; TopIO the processes that
	// read or wrote most in it.
	Filesystems []Filesystem `json:"filesystems"`
	Disks       []DiskRate   `json:"disks"`
	TopIO       []Proc       `json:"top_io"`
	Failed      []FailedOne  `json:"failed_units"`
	Notes       []string     `json:"notes"`
	Errors      []string     `json:"errors,omitempty"`
}

// CPUShare is CPU use over the snapshot's wait, in percent of all CPUs.
type CPUShare struct {
	Over   Seconds `json:"over_s"`
	Busy   float64 `json:"busy"`
	User   float64 `json:"user"`
	System float64 `json:"system"`
	Iowait float64 `json:"iowait"`
	Steal  float64 `json:"steal"`
}

// NetRate is an interface's counters and its current rates.
type NetRate struct {
	NetIf
	RxBps float64 `json:"rx_bytes_per_s"`
	TxBps float64 `json:"tx_bytes_per_s"`
}

// FailedOne is a failed unit and where we learned of it.
type FailedOne struct {
	Unit   string    `json:"unit"`
	Detail string    `json:"detail"`
	Time   time.Time `json:"time,omitzero"`
	Source string    `json:"source"`
}

// TakeSnapshot samples twice, Wait apart, and gathers failed units.
func TakeSnapshot(ctx context.Context, opts SnapshotOptions) (*Snapshot, error) {
	if opts.Wait <= 0 {
		opts.Wait = time.Second
	}
	if opts.TopN <= 0 {
		opts.TopN = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	sm, err := NewSampler(SamplerOptions{ProcRoot: opts.ProcRoot, TopN: opts.TopN, Now: opts.Now,
		AllFilesystems: opts.AllFilesystems, StatFS: opts.StatFS})
	if err != nil {
		return nil, err
	}
	a := sm.Sample()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-opts.After(opts.Wait):
	}
	b := sm.Sample()
	snap := SnapshotFrom(a, b)
	snap.Failed, snap.Notes = failedUnits(ctx, opts.FailedUnits, opts.Journal, snap.Time)
	snap.Notes = append(snap.Notes, snapshotNotes(snap, b)...)
	return snap, nil
}

// SnapshotFrom builds the snapshot view from two samples, a before b: what
// TakeSnapshot shows of the host now, and `host show --at` of a recorded
// moment. Failed units and notes are left to the caller.
func SnapshotFrom(a, b Sample) *Snapshot {
	snap := &Snapshot{
		Time: b.Time, Memory: b.Mem, Load: b.Load, PSI: b.PSI, Errors: b.Errors,
		Host:      HostFacts{MemTotal: b.Mem.Total, SwapTotal: b.Mem.SwapTotal, CPUs: b.CPUs, BootTime: bootTime(b.BootTime)},
		Listeners: b.Listeners, Failed: []FailedOne{}, Notes: []string{},
		Filesystems: b.Filesystems, Disks: []DiskRate{},
	}
	if snap.Listeners == nil {
		snap.Listeners = []Listener{}
	}
	if snap.Filesystems == nil {
		snap.Filesystems = []Filesystem{}
	}
	r, ok := RatesBetween(a, b)
	if ok {
		snap.CPU = CPUShare{Over: Seconds(b.Time.Sub(a.Time).Round(time.Millisecond)), Busy: r.Busy, User: r.User, System: r.System, Iowait: r.Iowait, Steal: r.Steal}
		snap.Disks = append(snap.Disks, r.Disks...)
	}
	prev := map[string]NetIf{}
	for _, n := range a.Net {
		prev[n.Name] = n
	}
	dt := b.Time.Sub(a.Time).Seconds()
	for _, n := range b.Net {
		nr := NetRate{NetIf: n}
		if p, ok := prev[n.Name]; ok && dt > 0 && n.RxBytes >= p.RxBytes && n.TxBytes >= p.TxBytes {
			nr.RxBps, nr.TxBps = float64(n.RxBytes-p.RxBytes)/dt, float64(n.TxBytes-p.TxBytes)/dt
		}
		snap.Net = append(snap.Net, nr)
	}
	top := func(less func(x, y Proc) bool, keep func(Proc) bool) []Proc {
		ps := append([]Proc(nil), b.Procs...)
		sort.SliceStable(ps, func(i, j int) bool { return less(ps[i], ps[j]) })
		out := []Proc{}
		for _, p := range ps {
			if len(out) < 5 && keep(p) {
				out = append(out, p)
			}
		}
		return out
	}
	snap.TopMemory = top(func(x, y Proc) bool { return x.RSS > y.RSS }, func(p Proc) bool { return p.RSS > 0 })
	snap.TopCPU = top(func(x, y Proc) bool { return x.CPUPercent > y.CPUPercent }, func(p Proc) bool { return p.CPUPercent > 0 })
	snap.TopIO = top(func(x, y Proc) bool { return x.ReadBps+x.WriteBps > y.ReadBps+y.WriteBps }, func(p Proc) bool { return p.ReadBps+p.WriteBps > 0 })
	return snap
}

// fullPct is the use at which a filesystem is worth a note on its own,
// whatever its rate: the last tenth goes fast.
const fullPct = 90

// snapshotNotes are the notes that follow from the snapshot itself.
func snapshotNotes(snap *Snapshot, b Sample) []string {
	notes := hostNotes(snap.Host, allInterfaces(snap.Listeners))
	for _, f := range snap.Filesystems {
		if f.ReadOnly {
			continue
		}
		if p := f.UsedPct(); p >= fullPct {
			notes = append(notes, fmt.Sprintf("%s is %s full (%s left of %s): see what fills it with `headroom host explain`", f.Mount, pctString(p), mib(f.Avail), mib(f.Size)))
		}
		if p := f.InodesUsedPct(); p >= fullPct {
			notes = append(notes, fmt.Sprintf("%s has used %s of its inodes (%d left): many small files (a cache, a mail queue, sessions) will soon fail with \"No space left on device\" despite free space", f.Mount, pctString(p), f.IFree))
		}
	}
	var unknown int
	for _, l := range snap.Listeners {
		if l.Comm == "" {
			unknown++
		}
	}
	if unknown > 0 {
		notes = append(notes, fmt.Sprintf("%d listening sockets have no known owner: the /proc/<pid>/fd of their processes could not be read (run as root; a container's host may forbid it even then)", unknown))
	}
	if b.IOUnreadable > 0 {
		notes = append(notes, fmt.Sprintf("the I/O of %s could not be read (/proc/<pid>/io needs root or the process's own user)", plural(b.IOUnreadable, "process", "processes")))
	}
	return notes
}

func failedUnits(ctx context.Context, list FailedUnitsFunc, j Journal, now time.Time) ([]FailedOne, []string) {
	out := []FailedOne{}
	var notes []string
	if list != nil {
		units, err := list(ctx)
		if err == nil {
			for _, u := range units {
				out = append(out, FailedOne{Unit: u.Name, Detail: u.Description, Source: "systemctl"})
			}
			return out, notes
		}
		notes = append(notes, "failed units: "+err.Error())
	}
	if j == nil {
		return out, notes
	}
	res, err := j.Entries(ctx, now.Add(-24*time.Hour), now, func(e journal.Entry) error {
		if e.Kind == journal.UnitFailed || (e.Kind == journal.OOMKill && e.Unit != "") {
			out = append(out, FailedOne{Unit: e.Unit, Detail: e.Message, Time: e.Time, Source: "journal"})
		}
		return nil
	})
	switch {
	case err != nil:
		notes = append(notes, "journal: "+err.Error())
	case res.Entries == 0:
		notes = append(notes, "journal: no entries in the last 24 h (no journal on this host?)")
	}
	return out, notes
}

// WriteSnapshot prints a snapshot for a person.
func WriteSnapshot(w io.Writer, s *Snapshot, loc *time.Location) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "headroom host snapshot  %s", inLoc(s.Time, loc).Format("2006-01-02 15:04:05 MST"))
	if !s.Host.BootTime.IsZero() {
		fmt.Fprintf(b, ", up %s", human(s.Time.Sub(s.Host.BootTime)))
	}
	fmt.Fprintf(b, ", %d CPU\n", s.Host.CPUs)
	if s.Source != "" {
		fmt.Fprintf(b, "from the %s\n", s.Source)
	}
	b.WriteString("\n")
	m := s.Memory
	if m.Total > 0 {
		fmt.Fprintf(b, "memory    total %s, used %s, available %s (%s), buff/cache %s\n", mib(m.Total), mib(m.Used()), mib(m.Available),
			pctString(100*float64(m.Available)/float64(m.Total)), mib(m.Buffers+m.Cached))
		fmt.Fprintf(b, "swap      %s\n", swapString(m))
	}
	c := s.CPU
	fmt.Fprintf(b, "cpu       %s busy (%s user, %s system, %s iowait, %s steal) over %s; load %.2f %.2f %.2f\n",
		pctString(c.Busy), pctString(c.User), pctString(c.System), pctString(c.Iowait), pctString(c.Steal), time.Duration(c.Over), s.Load[0], s.Load[1], s.Load[2])
	if p := s.PSI; p != nil {
		fmt.Fprintf(b, "pressure  cpu some %.1f%%; memory some %.1f%% full %.1f%%; io some %.1f%% full %.1f%% (10 s averages)\n",
			p.CPU.SomeAvg10, p.Memory.SomeAvg10, p.Memory.FullAvg10, p.IO.SomeAvg10, p.IO.FullAvg10)
	} else {
		b.WriteString("pressure  not available (kernel without PSI)\n")
	}

	b.WriteString("\nlistening sockets\n")
	if len(s.Listeners) == 0 {
		b.WriteString("  none\n")
	}
	for _, l := range s.Listeners {
		owner := "owner unknown"
		if l.Comm != "" {
			owner = fmt.Sprintf("%s[%d]", l.Comm, l.PID)
		}
		all := ""
		if l.AllInterfaces() {
			all = "  ALL INTERFACES"
		}
		addr := l.Addr
		if strings.Contains(addr, ":") {
			addr = "[" + addr + "]"
		}
		line := fmt.Sprintf("  %-5s %-22s %-24s%s", l.Proto, fmt.Sprintf("%s:%d", addr, l.Port), owner, all)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	procs := func(title string, ps []Proc) {
		fmt.Fprintf(b, "\n%s\n", title)
		if len(ps) == 0 {
			b.WriteString("  none\n")
		}
		for _, p := range ps {
			fmt.Fprintf(b, "  %7d %-16s %9s %6s CPU  %s\n", p.PID, p.Comm, mib(p.RSS), pctString(p.CPUPercent), orDash(p.Unit))
		}
	}
	procs("top processes by memory (RSS)", s.TopMemory)
	procs(fmt.Sprintf("top processes by CPU (over %s, %% of one core)", time.Duration(c.Over)), s.TopCPU)

	fmt.Fprintf(b, "\ntop processes by I/O (over %s)\n", time.Duration(c.Over))
	if len(s.TopIO) == 0 {
		b.WriteString("  none\n")
	}
	for _, p := range s.TopIO {
		fmt.Fprintf(b, "  %7d %-16.16s read %9s/s  write %9s/s  %s\n", p.PID, p.Comm, mib(uint64(p.ReadBps)), mib(uint64(p.WriteBps)), orDash(p.Unit))
	}

	b.WriteString("\nfilesystems\n")
	if len(s.Filesystems) == 0 {
		b.WriteString("  none found\n")
	} else {
		b.WriteString("  mount                   use       used       size       free  inodes  source\n")
	}
	for _, f := range s.Filesystems {
		inodes := "-"
		if f.Inodes > 0 {
			inodes = pctString(f.InodesUsedPct())
		}
		src := f.Source + " " + f.Type
		if f.Disk != "" {
			src += " on " + f.Disk
		}
		if f.ReadOnly {
			src += ", read-only"
		}
		fmt.Fprintf(b, "  %-22s %4s  %9s  %9s  %9s  %6s  %s\n", f.Mount, pctString(f.UsedPct()), mib(f.Used()), mib(f.Size), mib(f.Avail), inodes, src)
	}
	fmt.Fprintf(b, "\ndisks (over %s)\n", time.Duration(c.Over))
	if len(s.Disks) == 0 {
		b.WriteString("  none found\n")
	} else {
		b.WriteString("  device              r/s      w/s     read/s    write/s     await  util\n")
	}
	for _, d := range s.Disks {
		fmt.Fprintf(b, "  %-14s %8.1f %8.1f  %9s  %9s  %5.1f ms  %4s\n", d.Name, d.ReadsPS, d.WritesPS,
			mib(uint64(d.ReadBps)), mib(uint64(d.WriteBps)), d.AwaitMs, pctString(d.Util))
	}

	b.WriteString("\ninterfaces (since boot; rate now)\n")
	for _, n := range s.Net {
		fmt.Fprintf(b, "  %-8s rx %9s %10d pkts %6d drop  tx %9s %10d pkts %6d drop  now rx %s/s tx %s/s\n", n.Name,
			mib(n.RxBytes), n.RxPackets, n.RxDropped, mib(n.TxBytes), n.TxPackets, n.TxDropped, mib(uint64(n.RxBps)), mib(uint64(n.TxBps)))
	}
	b.WriteString("\nfailed units\n")
	if len(s.Failed) == 0 {
		b.WriteString("  none found\n")
	}
	for _, f := range s.Failed {
		when := ""
		if !f.Time.IsZero() {
			when = inLoc(f.Time, loc).Format("01-02 15:04 ")
		}
		fmt.Fprintf(b, "  %s%s  %s (%s)\n", when, f.Unit, f.Detail, f.Source)
	}
	if len(s.Notes) > 0 || len(s.Errors) > 0 {
		b.WriteString("\nnotes\n")
		for _, n := range s.Notes {
			fmt.Fprintf(b, "  - %s\n", n)
		}
		for _, e := range s.Errors {
			fmt.Fprintf(b, "  - could not read %s\n", e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// IsNoProc reports whether err means there is no /proc to read.
func IsNoProc(err error) bool { return errors.Is(err, ErrNoProc) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
