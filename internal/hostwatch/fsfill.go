package hostwatch

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// FSFinding is a filesystem filling up, or already nearly full, in the
// explained window: issue 18's commonest reason a small host stops
// serving ("No space left on device" from the database, the logger, apt).
type FSFinding struct {
	Mount    string `json:"mount"`
	Source   string `json:"source"`
	Type     string `json:"type"`
	Disk     string `json:"disk,omitempty"`
	Severity string `json:"severity"` // warning or critical
	// Inodes is true when what runs out is inodes, not bytes; the figures
	// below are then counts of inodes.
	Inodes  bool    `json:"inodes,omitempty"`
	Size    uint64  `json:"size"`
	Avail   uint64  `json:"avail"`
	UsedPct float64 `json:"used_pct"`
	// Growth is how much was used up over the window, first sample to last.
	Growth uint64 `json:"growth"`
	// Rate is what is used up per second at the current rate: the slope
	// of the last RateOver of samples; zero when not filling.
	Rate     float64 `json:"rate_per_s"`
	RateOver Window  `json:"rate_over"`
	// TimeLeft is Avail at Rate; absent when not filling. FullAt is when
	// it reached zero in the window, or when it will at the current rate.
	TimeLeft *Seconds  `json:"time_left_s,omitempty"`
	FullAt   time.Time `json:"full_at,omitzero"`
	Full     bool      `json:"full"`
	// Writers are the processes that wrote most while it filled (to any
	// device: /proc/<pid>/io does not say which), Units the same by unit.
	Writers []Writer `json:"writers"`
	Units   []Writer `json:"units"`
	// DiskWritten is what the filesystem's device wrote in those intervals,
	// to set the writers' bytes against.
	DiskWritten uint64 `json:"disk_written,omitempty"`
	Summary     string `json:"summary"`
	Action      string `json:"action"`
}

// Writer is a process or unit and the bytes it wrote while a filesystem
// filled, counted up to what the filesystem lost (see fillWriters).
type Writer struct {
	PID   int    `json:"pid,omitempty"`
	Comm  string `json:"comm,omitempty"`
	Unit  string `json:"unit,omitempty"`
	Bytes uint64 `json:"bytes"`
}

// Thresholds for a filesystem finding.
const (
	// fillHorizon: a filesystem that will be full within this, at the
	// current rate, is a finding even if it is half empty now.
	fillHorizon = 48 * time.Hour
	// rateSpan is how far back "the current rate" looks.
	rateSpan = 10 * time.Minute
	// minFillGrowth is the least use over the window, as a share of the
	// size, that is filling rather than noise (a log rotated, a cache).
	minFillGrowth = 0.002
	criticalLeft  = time.Hour
	criticalPct   = 98
)

type fsPoint struct {
	t     time.Time
	f     Filesystem
	i     int // index in the samples
	disks []Disk
}

// fsFindings looks at every filesystem in the window's samples.
func fsFindings(samples []Sample, since, until time.Time, loc *time.Location) []FSFinding {
	series := map[string][]fsPoint{}
	var keys []string
	for i, s := range samples {
		if s.Time.Before(since) || s.Time.After(until) {
			continue
		}
		for _, f := range s.Filesystems {
			k := f.Mount + "\x00" + f.Source
			if _, ok := series[k]; !ok {
				keys = append(keys, k)
			}
			series[k] = append(series[k], fsPoint{s.Time, f, i, s.Disks})
		}
	}
	sort.Strings(keys)
	out := []FSFinding{}
	for _, k := range keys {
		pts := series[k]
		if pts[len(pts)-1].f.ReadOnly {
			continue
		}
		if f, ok := fsFinding(pts, samples, false, loc); ok {
			out = append(out, f)
		}
		if f, ok := fsFinding(pts, samples, true, loc); ok {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity == "critical" && out[j].Severity != "critical" })
	return out
}

func fsFinding(pts []fsPoint, samples []Sample, inodes bool, loc *time.Location) (FSFinding, bool) {
	last := pts[len(pts)-1]
	lf := last.f
	avail := func(f Filesystem) float64 {
		if inodes {
			return float64(f.IFree)
		}
		return float64(f.Avail)
	}
	size, pct := float64(lf.Size), lf.UsedPct()
	if inodes {
		if lf.Inodes == 0 {
			return FSFinding{}, false
		}
		size, pct = float64(lf.Inodes), lf.InodesUsedPct()
	}
	fd := FSFinding{Mount: lf.Mount, Source: lf.Source, Type: lf.Type, Disk: lf.Disk, Inodes: inodes,
		Size: uint64(size), Avail: uint64(avail(lf)), UsedPct: round2(pct), Writers: []Writer{}, Units: []Writer{}}
	if g := avail(pts[0].f) - avail(lf); g > 0 {
		fd.Growth = uint64(g)
	}
	for _, p := range pts {
		if avail(p.f) == 0 {
			fd.Full, fd.FullAt = true, p.t
			break
		}
	}

	// The current rate: least squares over the last rateSpan.
	var xs, ys []float64
	from := last.t.Add(-rateSpan)
	for _, p := range pts {
		if !p.t.Before(from) {
			xs = append(xs, p.t.Sub(last.t).Seconds())
			ys = append(ys, avail(p.f))
		}
	}
	if len(xs) >= 3 {
		if slope := slopeOf(xs, ys); slope < 0 {
			fd.Rate = -slope
			fd.RateOver = Window{last.t.Add(time.Duration(xs[0] * float64(time.Second))), last.t}
		}
	}
	filling := fd.Rate > 0 && float64(fd.Growth) >= minFillGrowth*size
	if filling && !fd.Full {
		left := time.Duration(avail(lf) / fd.Rate * float64(time.Second))
		sec := Seconds(left)
		fd.TimeLeft = &sec
		fd.FullAt = last.t.Add(left)
	}
	soon := fd.TimeLeft != nil && time.Duration(*fd.TimeLeft) <= fillHorizon
	if !fd.Full && !soon && pct < fullPct {
		return FSFinding{}, false
	}
	fd.Severity = "warning"
	if fd.Full || pct >= criticalPct || (fd.TimeLeft != nil && time.Duration(*fd.TimeLeft) <= criticalLeft) {
		fd.Severity = "critical"
	}
	if !inodes {
		fd.Writers, fd.Units, fd.DiskWritten = fillWriters(pts, samples)
	}
	fd.Summary = fsSummary(fd, pts[0], loc)
	fd.Action = fsAction(fd)
	return fd, true
}

// fillWriters sums, over the intervals in which the filesystem lost
// space, what each process and unit wrote, and what its device wrote.
func fillWriters(pts []fsPoint, samples []Sample) ([]Writer, []Writer, uint64) {
	type pk struct {
		pid  int
		comm string
	}
	procs := map[pk]*Writer{}
	units := map[string]*Writer{}
	var diskBytes uint64
	disk := pts[len(pts)-1].f.Disk
	for j := 1; j < len(pts); j++ {
		a, b := pts[j-1], pts[j]
		if b.f.Avail >= a.f.Avail {
			continue
		}
		fill := float64(a.f.Avail - b.f.Avail)
		for i := a.i + 1; i <= b.i; i++ {
			dt := sampleSpan(samples, i)
			ws := make([]float64, len(samples[i].Procs))
			for n, p := range samples[i].Procs {
				ws[n] = max(0, p.WriteBps) * dt
			}
			credit := creditTo(fill*dt/max(dt, b.t.Sub(a.t).Seconds()), ws, dt)
			for n, p := range samples[i].Procs {
				if credit[n] <= 0 {
					continue
				}
				n := uint64(credit[n])
				k := pk{p.PID, p.Comm}
				if procs[k] == nil {
					procs[k] = &Writer{PID: p.PID, Comm: p.Comm, Unit: p.Unit}
				}
				procs[k].Bytes += n
				if p.Unit != "" {
					if units[p.Unit] == nil {
						units[p.Unit] = &Writer{Unit: p.Unit}
					}
					units[p.Unit].Bytes += n
				}
			}
		}
		if disk != "" {
			if da, ok := findDisk(a.disks, disk); ok {
				if db, ok := findDisk(b.disks, disk); ok && db.WriteSectors >= da.WriteSectors {
					diskBytes += (db.WriteSectors - da.WriteSectors) * 512
				}
			}
		}
	}
	top := func(m map[pk]*Writer) []Writer {
		out := []Writer{}
		for _, w := range m {
			out = append(out, *w)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Bytes != out[j].Bytes {
				return out[i].Bytes > out[j].Bytes
			}
			return out[i].PID < out[j].PID
		})
		return out[:min(3, len(out))]
	}
	ws := top(procs)
	us := []Writer{}
	for _, w := range units {
		us = append(us, *w)
	}
	sort.Slice(us, func(i, j int) bool {
		if us[i].Bytes != us[j].Bytes {
			return us[i].Bytes > us[j].Bytes
		}
		return us[i].Unit < us[j].Unit
	})
	return ws, us[:min(3, len(us))], diskBytes
}

func findDisk(ds []Disk, name string) (Disk, bool) {
	for _, d := range ds {
		if d.Name == name {
			return d, true
		}
	}
	return Disk{}, false
}

// creditTo shares what a filesystem or device did in an interval (total
// bytes) among the processes' I/O in it (per, bytes), because
// /proc/<pid>/io does not say where a process's bytes went. A process that
// moved over twice the total (plus 64 KiB/s of slack for writeback lag)
// cannot have moved them mostly here and gets nothing: a backup writing
// 30 MiB/s to another disk does not take the blame for the logger filling
// this one. The rest share the total in proportion, each capped at its own
// bytes, so the credits add up to at most what happened.
func creditTo(total float64, per []float64, dt float64) []float64 {
	out := make([]float64, len(per))
	limit := 2*total + 64<<10*dt
	var sum float64
	for i, v := range per {
		if v > 0 && v <= limit {
			out[i] = v
			sum += v
		}
	}
	if sum > total && sum > 0 {
		for i := range out {
			out[i] *= total / sum
		}
	}
	return out
}

// slopeOf is the least-squares slope of ys over xs.
func slopeOf(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

func fsSummary(fd FSFinding, first fsPoint, loc *time.Location) string {
	amount := func(x float64) string {
		if fd.Inodes {
			return countString(x) + " inodes"
		}
		return mib(uint64(x))
	}
	var b strings.Builder
	what := "full"
	if fd.Inodes {
		what = "of its inodes used"
	}
	fmt.Fprintf(&b, "%s (%s) is %s %s, %s left of %s", fd.Mount, fd.Source, pctString(fd.UsedPct), what, amount(float64(fd.Avail)), amount(float64(fd.Size)))
	switch {
	case fd.Full:
		fmt.Fprintf(&b, "; it ran out at %s: writes fail with \"No space left on device\" since", clock(fd.FullAt, loc))
	case fd.TimeLeft != nil:
		fmt.Fprintf(&b, "; filling at %s an hour (over the last %s; %s since %s): full in about %s, around %s, at this rate",
			amount(fd.Rate*3600), human(fd.RateOver.End.Sub(fd.RateOver.Start)), amount(float64(fd.Growth)), hhmm(first.t, loc),
			human(time.Duration(*fd.TimeLeft)), fullAtString(fd.FullAt, first.t, loc))
	default:
		b.WriteString("; not growing in this window")
	}
	if len(fd.Writers) > 0 {
		var ws []string
		for _, w := range fd.Writers {
			s := fmt.Sprintf("%s[%d]", w.Comm, w.PID)
			if w.Unit != "" {
				s += " in " + w.Unit
			}
			ws = append(ws, s+" "+mib(w.Bytes))
		}
		fmt.Fprintf(&b, "; biggest writers while it filled: %s", strings.Join(ws, ", "))
		if fd.DiskWritten > 0 {
			fmt.Fprintf(&b, " (%s wrote %s in that time)", fd.Disk, mib(fd.DiskWritten))
		}
	}
	return b.String()
}

// fullAtString gives the time, with the date when it is not the day the
// window began.
func fullAtString(t, ref time.Time, loc *time.Location) string {
	if inLoc(t, loc).Format("2006-01-02") != inLoc(ref, loc).Format("2006-01-02") {
		return inLoc(t, loc).Format("2006-01-02 15:04 MST")
	}
	return inLoc(t, loc).Format("15:04 MST")
}

func fsAction(fd FSFinding) string {
	if fd.Inodes {
		return "Find the directory of many small files (du --inodes -x " + fd.Mount + " | sort -n | tail): sessions, a mail queue, a cache; delete what is stale and fix what creates them, or recreate the filesystem with more inodes."
	}
	who := "the writer"
	if len(fd.Units) > 0 {
		who = fd.Units[0].Unit
	} else if len(fd.Writers) > 0 {
		who = fd.Writers[0].Comm
	}
	return fmt.Sprintf("Free space now (journalctl --vacuum-size=200M, old logs and rotated files, apt-get clean), then stop %s from filling it (log level, logrotate, its retention) or grow the volume; see what holds the space with du -xh %s | sort -h | tail.", who, fd.Mount)
}

func countString(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.1fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.0fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
