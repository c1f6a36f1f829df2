package hostwatch

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/journal"
)

// scheduledJobs are services that distributions start from a timer of the
// same name. The journal rarely says "triggered by" (timers log nothing when
// they elapse), so this is how the report knows apt-daily-upgrade.service
// was the 06:00-07:00 daily job and not something an operator started.
var scheduledJobs = map[string]bool{
	"apt-daily.service": true, "apt-daily-upgrade.service": true, "unattended-upgrades.service": false,
	"man-db.service": true, "logrotate.service": true, "fstrim.service": true, "motd-news.service": true,
	"fwupd-refresh.service": true, "dpkg-db-backup.service": true, "e2scrub_all.service": true,
	"plocate-updatedb.service": true, "mlocate.service": true, "updatedb.service": true,
	"dnf-makecache.service": true, "systemd-tmpfiles-clean.service": true, "sysstat-collect.service": true,
	"sysstat-summary.service": true, "snapd.snap-repair.service": true, "certbot.service": true,
	"ua-timer.service": true, "update-notifier-download.service": true, "packagekit-offline-update.service": false,
}

// Thresholds for a process to be worth naming in an episode.
const (
	procGrowth  = 16 << 20 // bytes of RSS growth
	procCPU     = 25       // percent of one core
	procIOBytes = 64 << 20 // bytes read and written in the episode
	maxProcs    = 8
	// ioCauseShare is the share of the processes' I/O in a disk episode
	// that makes one unit its cause, journal or not.
	ioCauseShare = 50
)

type episodeInput struct {
	start, end time.Time
	signals    []Signal
	hot        []hot
	samples    []Sample
	entries    []journal.Entry
	host       HostFacts
	lookback   time.Duration
	interval   time.Duration
	loc        *time.Location
	// haveJournal is false when the journal was unavailable or empty, so
	// the summary does not blame "no unit start" on a missing journal.
	haveJournal bool
}

func buildEpisode(g []hot, samples []Sample, entries []journal.Entry, host HostFacts, opts ExplainOptions, interval time.Duration, haveJournal bool) Episode {
	return explainEpisode(episodeInput{
		start: g[0].a.Time, end: g[len(g)-1].b.Time, signals: signals(g), hot: g,
		samples: samples, entries: entries, host: host, lookback: opts.Lookback, interval: interval, loc: opts.Location,
		haveJournal: haveJournal,
	})
}

func explainEpisode(in episodeInput) Episode {
	ep := Episode{Start: in.start, End: in.end, Signals: in.signals, Timeline: []Event{}}
	if ep.Signals == nil {
		ep.Signals = []Signal{}
	}

	// Suspects: services started in the run-up or during the episode,
	// minus those that had already stopped by the time it began.
	started := map[string]time.Time{}
	stoppedAt := map[string]time.Time{}
	uses := map[string]*UnitUse{}
	use := func(u string) *UnitUse {
		if uses[u] == nil {
			uses[u] = &UnitUse{Unit: u}
		}
		return uses[u]
	}
	from := in.start.Add(-in.lookback)
	for _, e := range in.entries {
		if e.Time.Before(from) || e.Time.After(in.end.Add(in.lookback)) {
			continue
		}
		switch e.Kind {
		case journal.UnitStarting, journal.UnitStarted:
			if !strings.HasSuffix(e.Unit, ".service") || e.Time.After(in.end) {
				continue
			}
			if t, ok := started[e.Unit]; !ok || e.Time.Before(t) {
				started[e.Unit] = e.Time
			}
		case journal.UnitStopped, journal.UnitFailed:
			if _, ok := stoppedAt[e.Unit]; !ok {
				stoppedAt[e.Unit] = e.Time
			}
		case journal.UnitResources:
			u := use(e.Unit)
			u.CPU, u.MemoryPeak = max(u.CPU, Seconds(e.CPU)), max(u.MemoryPeak, e.MemoryPeak)
		}
	}
	for u, t := range started {
		if s, ok := stoppedAt[u]; ok && s.After(t) && s.Before(in.start) {
			delete(started, u)
		}
	}
	var units []string
	for u := range started {
		units = append(units, u)
	}
	sort.Slice(units, func(i, j int) bool {
		if !started[units[i]].Equal(started[units[j]]) {
			return started[units[i]].Before(started[units[j]])
		}
		return units[i] < units[j]
	})

	// Process growth: from the last sample before the first suspect
	// started (or before the episode) to the episode's peak.
	baseT := in.start
	if len(units) > 0 && started[units[0]].Before(baseT) {
		baseT = started[units[0]]
	}
	ep.Processes = procChanges(in.samples, baseT, in.end)
	for _, p := range ep.Processes {
		if p.Unit == "" {
			continue
		}
		u := use(p.Unit)
		if p.RSSPeak > p.RSSBefore {
			u.RSSGrowth += p.RSSPeak - p.RSSBefore
		}
		u.Comms = append(u.Comms, p.Comm)
	}

	ep.Disk = diskUse(in.hot)
	// A saturated device names its own cause: the unit that did most of
	// its I/O, whether or not the journal saw it start (a service that has
	// run for days can start writing hard; a journal may be missing).
	var ioUnit string
	seenOnly := false // the unit's start is from the samples, not the journal
	if d := ep.Disk; d != nil && len(d.By) > 0 && d.By[0].Unit != "" && d.By[0].Share >= ioCauseShare {
		ioUnit = d.By[0].Unit
		if _, ok := started[ioUnit]; ok {
			units = append([]string{ioUnit}, slicesDelete(units, ioUnit)...)
		} else {
			started[ioUnit], seenOnly = firstSeen(in.samples, ioUnit, in.start, in.end), true
			units = append([]string{ioUnit}, units...)
		}
	}

	if len(units) > 0 {
		root := units[0]
		c := &Cause{Unit: root, Started: started[root], Trigger: timerFor(root, in.entries)}
		c.Use = *use(root)
		c.Use.Started = c.Started
		for _, u := range units[1:] {
			x := *use(u)
			x.Started = started[u]
			c.With = append(c.With, x)
		}
		c.Seen = root == ioUnit && seenOnly
		c.Evidence = causeEvidence(c, in, ep.Disk, root == ioUnit)
		ep.Cause = c
	}

	ep.Timeline = timeline(in, ep)
	ep.Outcome = outcome(in)
	ep.Summary = summary(ep, in)
	return ep
}

// timerFor names the timer that started a service: one seen in the journal,
// else the distribution's same-named timer for known daily jobs.
func timerFor(unit string, entries []journal.Entry) string {
	timer := strings.TrimSuffix(unit, ".service") + ".timer"
	for _, e := range entries {
		if e.Unit == timer {
			return timer
		}
	}
	if scheduledJobs[unit] {
		return timer
	}
	return ""
}

func procChanges(samples []Sample, baseT, end time.Time) []ProcChange {
	type key struct {
		pid  int
		comm string
	}
	var base *Sample
	for i := range samples {
		if !samples[i].Time.After(baseT) {
			base = &samples[i]
		}
	}
	before := map[key]uint64{}
	if base != nil {
		for _, p := range base.Procs {
			before[key{p.PID, p.Comm}] = p.RSS
		}
	}
	peak := map[key]*ProcChange{}
	var order []key
	for i, s := range samples {
		if s.Time.Before(baseT) || s.Time.After(end) {
			continue
		}
		dt := sampleSpan(samples, i)
		for _, p := range s.Procs {
			k := key{p.PID, p.Comm}
			pc, ok := peak[k]
			if !ok {
				b, seen := before[k]
				pc = &ProcChange{PID: p.PID, Comm: p.Comm, Unit: p.Unit, RSSBefore: b, New: !seen && base != nil}
				peak[k] = pc
				order = append(order, k)
			}
			pc.RSSPeak = max(pc.RSSPeak, p.RSS)
			pc.CPUPeak = max(pc.CPUPeak, p.CPUPercent)
			pc.ReadBytes += uint64(p.ReadBps * dt)
			pc.WriteBytes += uint64(p.WriteBps * dt)
			if pc.Unit == "" {
				pc.Unit = p.Unit
			}
		}
	}
	var out []ProcChange
	for _, k := range order {
		pc := peak[k]
		if (pc.RSSPeak > pc.RSSBefore && pc.RSSPeak-pc.RSSBefore >= procGrowth) || pc.CPUPeak >= procCPU || pc.ReadBytes+pc.WriteBytes >= procIOBytes {
			out = append(out, *pc)
		}
	}
	// Memory growth and I/O are both bytes: the process that moved most
	// of either comes first.
	weight := func(p ProcChange) uint64 { return max(growth(p), p.ReadBytes+p.WriteBytes) }
	sort.SliceStable(out, func(i, j int) bool { return weight(out[i]) > weight(out[j]) })
	if len(out) > maxProcs {
		out = out[:maxProcs]
	}
	return out
}

// sampleSpan is the time the rates in samples[i] cover: since the sample
// before it, if that one is of the same boot; zero otherwise.
func sampleSpan(samples []Sample, i int) float64 {
	if i == 0 {
		return 0
	}
	a, b := samples[i-1], samples[i]
	if a.BootTime != 0 && b.BootTime != 0 && a.BootTime != b.BootTime {
		return 0
	}
	return max(0, b.Time.Sub(a.Time).Seconds())
}

// diskUse finds the device that saturated in an episode and who did the
// I/O in its saturated intervals, from the per-process counters of
// /proc/<pid>/io in each sample.
func diskUse(g []hot) *DiskUse {
	var du *DiskUse
	var awaitSum float64
	var awaitN int
	type acc struct {
		share IOShare
		seen  map[string]bool
	}
	by := map[string]*acc{}
	var order []string
	var total uint64
	for _, h := range g {
		if _, ok := h.kinds[SigDisk]; !ok {
			continue
		}
		d, _ := h.r.BusiestDisk()
		if du == nil {
			du = &DiskUse{Device: d.Name}
		}
		dt := h.b.Time.Sub(h.a.Time).Seconds()
		if d.Util > du.PeakUtil {
			du.PeakUtil, du.Device = round2(d.Util), d.Name
		}
		awaitSum += d.AwaitMs
		awaitN++
		devR, devW := d.ReadBps*dt, d.WriteBps*dt
		du.ReadBytes += uint64(devR)
		du.WriteBytes += uint64(devW)
		// Each process's reads and writes count up to what this device did
		// in the interval (creditTo): I/O to another disk is not blamed here.
		rs, ws := make([]float64, len(h.b.Procs)), make([]float64, len(h.b.Procs))
		for n, p := range h.b.Procs {
			rs[n], ws[n] = p.ReadBps*dt, p.WriteBps*dt
		}
		rs, ws = creditTo(devR, rs, dt), creditTo(devW, ws, dt)
		for n, p := range h.b.Procs {
			rd, wr := uint64(rs[n]), uint64(ws[n])
			if rd+wr == 0 {
				continue
			}
			k := p.Unit
			if k == "" {
				k = "process " + p.Comm // outside any unit: the command is the name there is
			}
			a, ok := by[k]
			if !ok {
				a = &acc{share: IOShare{Unit: p.Unit}, seen: map[string]bool{}}
				by[k] = a
				order = append(order, k)
			}
			a.share.ReadBytes += rd
			a.share.WriteBytes += wr
			if name := fmt.Sprintf("%s[%d]", p.Comm, p.PID); !a.seen[name] {
				a.seen[name] = true
				a.share.Processes = append(a.share.Processes, name)
			}
			total += rd + wr
		}
	}
	if du == nil {
		return nil
	}
	du.AwaitMs = round2(awaitSum / float64(awaitN))
	du.By = []IOShare{}
	for _, k := range order {
		sh := by[k].share
		if total > 0 {
			sh.Share = round2(100 * float64(sh.ReadBytes+sh.WriteBytes) / float64(total))
		}
		du.By = append(du.By, sh)
	}
	sort.SliceStable(du.By, func(i, j int) bool { return du.By[i].Share > du.By[j].Share })
	if len(du.By) > 5 {
		du.By = du.By[:5]
	}
	return du
}

// ioShareText is "tar[2210] in backup.service: 96% of the processes' I/O (read 5.1 GiB, wrote 20 MiB)".
func ioShareText(sh IOShare) string {
	who := strings.Join(sh.Processes[:min(3, len(sh.Processes))], ", ")
	if len(sh.Processes) > 3 {
		who += fmt.Sprintf(" and %d more", len(sh.Processes)-3)
	}
	if sh.Unit != "" {
		who += " in " + sh.Unit
	}
	return fmt.Sprintf("%s: %s of the processes' I/O (read %s, wrote %s)", who, pctString(sh.Share), mib(sh.ReadBytes), mib(sh.WriteBytes))
}

func growth(p ProcChange) uint64 {
	if p.RSSPeak < p.RSSBefore {
		return 0
	}
	return p.RSSPeak - p.RSSBefore
}

// firstSeen is when a unit's processes first appear in the samples up to
// end, or fallback.
func firstSeen(samples []Sample, unit string, fallback, end time.Time) time.Time {
	for _, s := range samples {
		if s.Time.After(end) {
			break
		}
		for _, p := range s.Procs {
			if p.Unit == unit {
				return s.Time
			}
		}
	}
	return fallback
}

func slicesDelete(xs []string, x string) []string {
	out := make([]string, 0, len(xs))
	for _, v := range xs {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

func causeEvidence(c *Cause, in episodeInput, disk *DiskUse, byIO bool) []string {
	var ev []string
	if byIO {
		ev = append(ev, fmt.Sprintf("%s was %s busy (average wait %.0f ms); %s", disk.Device, pctString(disk.PeakUtil), disk.AwaitMs, ioShareText(disk.By[0])))
	}
	lead := in.start.Sub(c.Started)
	switch {
	case c.Seen:
		ev = append(ev, fmt.Sprintf("its processes first appear in the samples at %s (the journal has no start for it)", clock(c.Started, in.loc)))
	case len(in.hot) > 0 && !c.Started.After(in.hot[0].b.Time):
		ev = append(ev, fmt.Sprintf("%s started at %s, within the first interval of the episode, before the other units", c.Unit, clock(c.Started, in.loc)))
	case lead > 0:
		ev = append(ev, fmt.Sprintf("%s started at %s, %s before the first saturated interval, and was still running", c.Unit, clock(c.Started, in.loc), human(lead)))
	default:
		ev = append(ev, fmt.Sprintf("%s started at %s, during the episode", c.Unit, clock(c.Started, in.loc)))
	}
	if c.Trigger != "" {
		ev = append(ev, fmt.Sprintf("it is the scheduled job of %s", c.Trigger))
	}
	for _, u := range append([]UnitUse{c.Use}, c.With...) {
		var parts []string
		if u.RSSGrowth > 0 {
			parts = append(parts, fmt.Sprintf("its processes (%s) grew %s in the samples", strings.Join(dedupe(u.Comms), ", "), mib(u.RSSGrowth)))
		}
		if u.MemoryPeak > 0 || u.CPU > 0 {
			parts = append(parts, fmt.Sprintf("systemd accounted %s CPU and a %s memory peak when it stopped", time.Duration(u.CPU).Round(100*time.Millisecond), mib(u.MemoryPeak)))
		}
		if len(parts) > 0 {
			who := u.Unit
			if u.Unit != c.Unit {
				who = fmt.Sprintf("%s (started %s)", u.Unit, clock(u.Started, in.loc))
			}
			ev = append(ev, who+": "+strings.Join(parts, "; "))
		}
	}
	return ev
}

func timeline(in episodeInput, ep Episode) []Event {
	var ev []Event
	from, to := in.start.Add(-in.lookback), in.end.Add(in.lookback)
	for _, e := range in.entries {
		if e.Time.Before(from) || e.Time.After(to) {
			continue
		}
		if !notable(e) {
			continue
		}
		text := e.Message
		if e.Ident != "" && e.Ident != "systemd" {
			text = e.Ident + ": " + text
		}
		ev = append(ev, Event{Time: e.Time, Source: "journal", Kind: string(e.Kind), Unit: e.Unit, Text: text})
	}
	seen := map[string]bool{}
	for _, h := range in.hot {
		kinds := make([]string, 0, len(h.kinds))
		for k := range h.kinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			if seen[k] {
				continue
			}
			seen[k] = true
			ev = append(ev, Event{Time: h.b.Time, Source: "sample", Kind: k, Text: sampleText(k, h)})
		}
	}
	firstSeen := map[int]time.Time{}
	for _, s := range in.samples {
		for _, p := range s.Procs {
			if _, ok := firstSeen[p.PID]; !ok {
				firstSeen[p.PID] = s.Time
			}
		}
	}
	for _, p := range ep.Processes {
		if !p.New {
			continue
		}
		unit := ""
		if p.Unit != "" {
			unit = " in " + p.Unit
		}
		ev = append(ev, Event{Time: firstSeen[p.PID], Source: "sample", Kind: "process", Unit: p.Unit,
			Text: fmt.Sprintf("new process %s[%d]%s, growing to %s", p.Comm, p.PID, unit, mib(p.RSSPeak))})
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].Time.Before(ev[j].Time) })
	return ev
}

func sampleText(kind string, h hot) string {
	r, m := h.r, h.b.Mem
	switch kind {
	case SigCPU:
		return fmt.Sprintf("CPU %s busy (%s system, %s iowait, %s steal)", pctString(r.Busy), pctString(r.System), pctString(r.Iowait), pctString(r.Steal))
	case SigSteal:
		return fmt.Sprintf("CPU steal %s: the hypervisor is withholding CPU (burstable instance out of credits?)", pctString(r.Steal))
	case SigMemory:
		return fmt.Sprintf("memory available %s of %s, swap %s", mib(m.Available), mib(m.Total), swapString(m))
	case SigMemoryPressure:
		return fmt.Sprintf("memory pressure: some task stalled %s of the time, all tasks %s", pctString(r.MemSome), pctString(r.MemFull))
	case SigIOPressure:
		return fmt.Sprintf("io pressure: all tasks stalled on io %s of the time", pctString(r.IOFull))
	case SigSwap:
		return "swap " + swapString(m)
	case SigNetwork:
		return fmt.Sprintf("network spike: rx %s/s, tx %s/s, %.0f packets/s (%s)", mib(uint64(r.RxBytes)), mib(uint64(r.TxBytes)), r.RxPackets+r.TxPackets, busiestIf(r.PerIf))
	case SigDisk:
		d, _ := r.BusiestDisk()
		return fmt.Sprintf("disk %s %s busy: %.0f reads/s, %.0f writes/s, read %s/s, write %s/s, average wait %.0f ms", d.Name, pctString(d.Util),
			d.ReadsPS, d.WritesPS, mib(uint64(d.ReadBps)), mib(uint64(d.WriteBps)), d.AwaitMs)
	}
	return kind
}

func swapString(m Memory) string {
	if m.SwapTotal == 0 {
		return "none"
	}
	return fmt.Sprintf("%s of %s used", mib(m.SwapTotal-min(m.SwapFree, m.SwapTotal)), mib(m.SwapTotal))
}

// outcome notices a recording that stops inside the episode and resumes
// after a reboot: the host died (seed 02's ending).
func outcome(in episodeInput) string {
	var last, next *Sample
	for i := range in.samples {
		s := &in.samples[i]
		if !s.Time.After(in.end) {
			last = s
		} else if next == nil {
			next = s
		}
	}
	if last == nil {
		return ""
	}
	if next == nil {
		return fmt.Sprintf("still saturated at the last sample (%s)", clock(last.Time, in.loc))
	}
	gap := next.Time.Sub(last.Time)
	rebooted := next.BootTime != 0 && last.BootTime != 0 && next.BootTime != last.BootTime
	if rebooted {
		return fmt.Sprintf("the recording stops at %s while saturated and resumes at %s after a boot at %s: the host went down",
			clock(last.Time, in.loc), clock(next.Time, in.loc), clock(bootTime(next.BootTime), in.loc))
	}
	if in.interval > 0 && gap > 3*in.interval {
		return fmt.Sprintf("no samples from %s to %s (%s): the sampler itself was starved or stopped", clock(last.Time, in.loc), clock(next.Time, in.loc), human(gap))
	}
	return ""
}

func summary(ep Episode, in episodeInput) string {
	var parts []string
	sig := map[string]Signal{}
	for _, s := range ep.Signals {
		sig[s.Kind] = s
	}
	if c := ep.Cause; c != nil {
		s := fmt.Sprintf("%s %s started", hhmm(c.Started, in.loc), c.Unit)
		if c.Seen {
			s = fmt.Sprintf("%s %s (its processes first seen)", hhmm(c.Started, in.loc), c.Unit)
		}
		if c.Trigger != "" {
			s += " by " + c.Trigger
		}
		parts = append(parts, s)
		// Memory growth is the story of a memory episode; in a disk one it
		// is a side note the processes table still shows.
		_, memEp := sig[SigMemory]
		_, memPress := sig[SigMemoryPressure]
		if g := max(c.Use.RSSGrowth, c.Use.MemoryPeak); g > 0 && (ep.Disk == nil || memEp || memPress) {
			parts = append(parts, fmt.Sprintf("%s +%s", strings.Join(dedupe(c.Use.Comms), " and "), mib(g)))
		}
		var names []string
		var total uint64
		for _, u := range c.With {
			g := max(u.RSSGrowth, u.MemoryPeak)
			if g == 0 {
				continue
			}
			names = append(names, strings.TrimSuffix(u.Unit, ".service"))
			total += g
		}
		if len(names) > 0 {
			parts = append(parts, fmt.Sprintf("then %s +%s", joinAnd(names), mib(total)))
		}
	} else if in.haveJournal {
		parts = append(parts, hhmm(ep.Start, in.loc)+" no unit start in the journal explains it")
	} else {
		parts = append(parts, hhmm(ep.Start, in.loc)+" (no journal to say what started)")
	}
	if g := topGrowth(ep.Processes); ep.Cause == nil && g != "" {
		parts = append(parts, g)
	}
	_, memSig := sig[SigMemory]
	if in.host.MemTotal > 0 && in.host.SwapTotal == 0 && (memSig || in.host.MemTotal <= smallHost) {
		parts = append(parts, "no swap")
	}
	if s, ok := sig[SigMemory]; ok {
		parts = append(parts, fmt.Sprintf("memory available down to %s of %s", mib(uint64(s.Peak)), mib(in.host.MemTotal)))
	}
	if s, ok := sig[SigMemoryPressure]; ok {
		parts = append(parts, fmt.Sprintf("memory pressure %s for %s", pctString(s.Peak), human(time.Duration(s.Duration))))
	}
	if s, ok := sig[SigCPU]; ok {
		t := fmt.Sprintf("CPU %s for %s", pctString(s.Peak), human(time.Duration(s.Duration)))
		if _, mp := sig[SigMemoryPressure]; mp {
			t += " in reclaim (" + s.Detail + ")"
		}
		parts = append(parts, t)
	}
	if s, ok := sig[SigSteal]; ok {
		parts = append(parts, fmt.Sprintf("CPU steal %s (credits?)", pctString(s.Peak)))
	}
	if d := ep.Disk; d != nil {
		t := fmt.Sprintf("%s %s busy for %s (%s written, %s read, average wait %.0f ms)", d.Device, pctString(d.PeakUtil),
			human(time.Duration(sig[SigDisk].Duration)), mib(d.WriteBytes), mib(d.ReadBytes), d.AwaitMs)
		if len(d.By) > 0 {
			top := d.By[0]
			who := top.Unit
			if who == "" {
				who = strings.Join(top.Processes[:min(2, len(top.Processes))], ", ")
			} else {
				who += " (" + strings.Join(dedupe(comms(top.Processes)), ", ") + ")"
			}
			t += fmt.Sprintf(", %s of the I/O by %s", pctString(top.Share), who)
		}
		parts = append(parts, t)
	}
	if s, ok := sig[SigIOPressure]; ok {
		t := fmt.Sprintf("io pressure %s", pctString(s.Peak))
		if d := ep.Disk; d != nil {
			t += fmt.Sprintf(": tasks stalled waiting on %s", d.Device)
		} else if d, ok := ioPressureDisk(in.hot); ok {
			t += fmt.Sprintf(" (busiest device %s at %s, average wait %.0f ms)", d.Name, pctString(d.Util), d.AwaitMs)
		}
		parts = append(parts, t)
	}
	if s, ok := sig[SigNetwork]; ok {
		parts = append(parts, fmt.Sprintf("network %s/s on %s", mib(uint64(s.Peak)), s.Detail))
	}
	for _, e := range ep.Timeline {
		if e.Kind == string(journal.OOMKill) && strings.Contains(e.Text, "Killed process") {
			parts = append(parts, hhmm(e.Time, in.loc)+" OOM killer: "+oomVictim(e.Text))
			break
		}
	}
	if strings.Contains(ep.Outcome, "went down") {
		parts = append(parts, "then the host went down")
	}
	return strings.Join(parts, "; ")
}

// comms strips the [pid] from "tar[2210]".
func comms(procs []string) []string {
	out := make([]string, len(procs))
	for i, p := range procs {
		if j := strings.LastIndex(p, "["); j > 0 {
			p = p[:j]
		}
		out[i] = p
	}
	return out
}

// ioPressureDisk is the busiest device in the interval of peak io
// pressure, when no device crossed the saturation line: pressure with an
// idle device points elsewhere (a throttled cloud volume, a slow NFS).
func ioPressureDisk(hs []hot) (DiskRate, bool) {
	var best hot
	found := false
	for _, h := range hs {
		if v, ok := h.kinds[SigIOPressure]; ok && (!found || v > best.kinds[SigIOPressure]) {
			best, found = h, true
		}
	}
	if !found {
		return DiskRate{}, false
	}
	return best.r.BusiestDisk()
}

func oomVictim(msg string) string {
	i := strings.Index(msg, "Killed process ")
	if i < 0 {
		return msg
	}
	rest := msg[i+len("Killed process "):]
	if j := strings.Index(rest, ")"); j >= 0 {
		rest = rest[:j+1]
	}
	return "killed " + rest
}

// journalEpisodes finds episodes with no samples: OOM kills, kernel memory
// messages and failed units, clustered in time.
func journalEpisodes(entries []journal.Entry, host HostFacts, opts ExplainOptions) []Episode {
	var out []Episode
	var cur []journal.Entry
	flush := func() {
		if len(cur) == 0 {
			return
		}
		sig := Signal{Kind: "journal", Unit: "entries", Peak: float64(len(cur)), First: cur[0].Time, Duration: Seconds(cur[len(cur)-1].Time.Sub(cur[0].Time))}
		out = append(out, explainEpisode(episodeInput{start: cur[0].Time, end: cur[len(cur)-1].Time, signals: []Signal{sig},
			entries: entries, host: host, lookback: opts.Lookback, loc: opts.Location, haveJournal: true}))
		cur = nil
	}
	for _, e := range entries {
		if e.Time.Before(opts.Since) || e.Time.After(opts.Until) {
			continue
		}
		if e.Kind != journal.OOMKill && e.Kind != journal.MemoryMessage && e.Kind != journal.UnitFailed {
			continue
		}
		if len(cur) > 0 && e.Time.Sub(cur[len(cur)-1].Time) > 10*time.Minute {
			flush()
		}
		cur = append(cur, e)
	}
	flush()
	return out
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func joinAnd(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

func mib(b uint64) string {
	switch {
	case b >= 10<<30:
		return fmt.Sprintf("%.0f GiB", float64(b)/(1<<30))
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func pctString(x float64) string { return fmt.Sprintf("%.0f%%", x) }

func human(d time.Duration) string {
	switch {
	case d >= 2*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	case d >= 2*time.Minute:
		return fmt.Sprintf("%.0f min", d.Minutes())
	}
	return fmt.Sprintf("%.0f s", d.Seconds())
}

func inLoc(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc)
}

func clock(t time.Time, loc *time.Location) string { return inLoc(t, loc).Format("15:04:05") }
func hhmm(t time.Time, loc *time.Location) string  { return inLoc(t, loc).Format("15:04") }

// topGrowth names the processes that grew most, for an episode with no
// unit to blame: "chromium +1.2 GiB (5 processes), link +466 MiB".
func topGrowth(ps []ProcChange) string {
	type agg struct {
		comm  string
		bytes uint64
		n     int
	}
	var order []string
	by := map[string]*agg{}
	for _, p := range ps {
		a, ok := by[p.Comm]
		if !ok {
			a = &agg{comm: p.Comm}
			by[p.Comm] = a
			order = append(order, p.Comm)
		}
		a.bytes += growth(p)
		a.n++
	}
	sort.SliceStable(order, func(i, j int) bool { return by[order[i]].bytes > by[order[j]].bytes })
	var out []string
	for _, c := range order[:min(3, len(order))] {
		a := by[c]
		if a.bytes < procGrowth {
			continue
		}
		s := fmt.Sprintf("%s +%s", c, mib(a.bytes))
		if a.n > 1 {
			s += fmt.Sprintf(" (%d processes)", a.n)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// notable says whether a journal entry belongs in a timeline: anything
// classified, errors and worse, and the kernel's boot banner (which shows a
// reboot when the samples cannot).
func notable(e journal.Entry) bool {
	if e.Kind != journal.Other {
		return true
	}
	if e.Priority >= 0 && e.Priority <= 3 {
		return true
	}
	return e.Kernel && strings.HasPrefix(e.Message, "Linux version")
}
