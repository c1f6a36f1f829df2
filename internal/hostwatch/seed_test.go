package hostwatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

// The seed 02 scenario, rendered as a series of /proc trees: a t2.micro
// (1 CPU, 957 MiB, no swap) serving a REST API in Docker, where at 06:20
// apt-daily-upgrade.service starts, PackageKit and fwupd follow, the package
// downloads spike eth0, memory runs out, CPU sits at 100% in reclaim, CPU
// credits run out (steal), the OOM killer takes packagekitd at 06:28:40,
// the last sample is 06:29:30, and the host is rebooted at 06:40:05.
//
// Only the inputs are written here; every number in the report comes from
// sampling these trees with the real Sampler (procfs) and explaining the
// recording with the journal in testdata/seed/journal.json.

const (
	seedMemKB   = 980148 // 957 MiB
	kernelKB    = 150 << 10
	ticksPerSec = 100
)

var (
	seedBoot1 = time.Date(2025, 8, 28, 5, 59, 40, 0, time.UTC)
	seedBoot2 = time.Date(2025, 8, 28, 6, 40, 5, 0, time.UTC)
)

type fproc struct {
	pid        int
	comm, unit string
	rssKB      int
	cpu        float64 // share of the CPU this interval, 0-1
	sockets    []uint64
}

type fstate struct {
	user, sys, iowait, steal float64 // shares 0-1 of the interval
	memSome, memFull, ioSome float64 // PSI shares
	rxBps, txBps, rxPps      float64
	procs                    []fproc
	// disks is each device's activity this interval (devices absent are
	// idle); io is each process's read and write bytes/s.
	disks map[string]fdisk
	io    map[int][2]float64
}

// fdisk is a device's activity over an interval.
type fdisk struct {
	rps, wps, rbps, wbps float64
	util                 float64 // share 0-1 of the interval busy
	awaitMs, queue       float64
}

// fdev is a line of /proc/diskstats.
type fdev struct {
	name         string
	major, minor int
	// base is the number of reads and writes since boot before the
	// scenario: a device with none is one the sampler drops.
	base float64
}

// seedState is the host at time t.
func seedState(t time.Time) fstate {
	min := t.Sub(time.Date(2025, 8, 28, 6, 20, 0, 0, time.UTC)).Minutes() // minutes since 06:20
	base := []fproc{
		{1, "systemd", "init.scope", 12 << 10, 0.002, nil},
		{312, "systemd-journal", "systemd-journald.service", 22 << 10, 0.002, nil},
		{688, "sshd", "ssh.service", 8 << 10, 0, []uint64{14512, 14514}},
		{702, "systemd-resolve", "systemd-resolved.service", 12 << 10, 0, []uint64{13801, 13802}},
		{955, "dockerd", "docker.service", 72 << 10, 0.01, nil},
		{930, "containerd", "containerd.service", 42 << 10, 0.005, nil},
		{1320, "docker-proxy", "docker.service", 4 << 10, 0, []uint64{16620}},
		{1388, "java", "docker-4f1e.scope", 380 << 10, 0.03, nil},
		{760, "snapd", "snapd.service", 26 << 10, 0, nil},
	}
	st := fstate{user: 0.04, sys: 0.01, rxBps: 3000, txBps: 2500, rxPps: 25, procs: base}
	if t.After(seedBoot2) {
		return st // after the reboot: quiet again
	}
	ramp := func(from, to, start, end float64) float64 {
		switch {
		case min <= start:
			return from
		case min >= end:
			return to
		}
		return from + (to-from)*(min-start)/(end-start)
	}
	if min >= 0.5 {
		st.procs = append(st.procs, fproc{1702, "unattended-upgr", "apt-daily-upgrade.service", int(ramp(60, 118, 0.5, 3)) << 10, 0.25, nil})
		st.user, st.sys = 0.55, 0.15
	}
	if min >= 0.5 && min < 8.7 { // killed by the OOM killer at 06:28:40
		st.procs = append(st.procs, fproc{1840, "packagekitd", "packagekit.service", int(ramp(45, 197, 0.5, 4)) << 10, 0.2, nil})
	}
	if min >= 2 && min < 6.5 { // fwupd.service stops at 06:26:30
		st.procs = append(st.procs, fproc{1911, "fwupd", "fwupd.service", int(ramp(90, 150, 2, 3.5)) << 10, 0.15, nil})
	}
	if min >= 0.5 && min < 3 { // package downloads
		st.rxBps, st.txBps, st.rxPps = 6.5e6, 2e5, 4800
	}
	if min >= 2.5 { // out of memory: reclaim and thrash
		st.user, st.sys, st.iowait = 0.36, 0.61, 0.02
		st.memSome, st.memFull, st.ioSome = 0.62, 0.41, 0.22
	}
	if min >= 7 { // CPU credits gone: the hypervisor throttles to baseline
		st.user, st.sys, st.steal = 0.22, 0.45, 0.31
	}
	return st
}

// procTree writes the /proc files for one state, with cumulative counters
// carried in c.
type procTree struct {
	root     string
	boot     time.Time
	cpu      [5]float64 // user sys idle iowait steal, ticks
	psi      [5]float64 // mem some, mem full, io some, io full, cpu some (µs)
	rx, tx   float64
	rxp, txp float64
	procCPU  map[int]float64
	started  map[int]int // pid -> start time in ticks after boot
	// memKB is MemTotal; zero means the seed's 957 MiB.
	memKB int
	// mountinfo, when set, is written as /proc/1/mountinfo; devices as
	// /proc/diskstats, and then every process gets a /proc/<pid>/io.
	mountinfo string
	devices   []fdev
	dcount    map[string]*[11]float64
	pio       map[int]*[2]float64
}

func (p *procTree) write(t *testing.T, now time.Time, dt float64, st fstate) {
	t.Helper()
	idle := max(0, 1-st.user-st.sys-st.iowait-st.steal)
	for i, share := range []float64{st.user, st.sys, idle, st.iowait, st.steal} {
		p.cpu[i] += share * dt * ticksPerSec
	}
	us := dt * 1e6
	for i, share := range []float64{st.memSome, st.memFull, st.ioSome, st.ioSome / 2, st.user / 2} {
		p.psi[i] += share * us
	}
	p.rx += st.rxBps * dt
	p.tx += st.txBps * dt
	p.rxp += st.rxPps * dt
	p.txp += st.rxPps * 0.6 * dt

	var used int
	for _, pr := range st.procs {
		used += pr.rssKB
	}
	memKB := p.memKB
	if memKB == 0 {
		memKB = seedMemKB
	}
	availKB := max(memKB-kernelKB-used, 38<<10+used%4096)
	files := map[string]string{
		"stat": fmt.Sprintf("cpu  %d 0 %d %d %d 0 0 %d 0 0\ncpu0 %d 0 %d %d %d 0 0 %d 0 0\nintr 0\nctxt 0\nbtime %d\nprocesses 2300\nprocs_running 2\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n",
			int(p.cpu[0]), int(p.cpu[1]), int(p.cpu[2]), int(p.cpu[3]), int(p.cpu[4]),
			int(p.cpu[0]), int(p.cpu[1]), int(p.cpu[2]), int(p.cpu[3]), int(p.cpu[4]), p.boot.Unix()),
		"meminfo": fmt.Sprintf("MemTotal:       %d kB\nMemFree:        %d kB\nMemAvailable:   %d kB\nBuffers:        %d kB\nCached:         %d kB\nSwapCached:            0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
			memKB, availKB/3, availKB, 4<<10, availKB/2),
		"loadavg": fmt.Sprintf("%.2f %.2f %.2f 2/160 2300\n", (st.user+st.sys)*1.5, (st.user+st.sys)*1.2, 0.4),
		"net/dev": "Inter-|   Receive                                                |  Transmit\n" +
			" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
			"    lo:   52311     402    0    0    0     0          0         0    52311     402    0    0    0     0       0          0\n" +
			fmt.Sprintf("  eth0: %d %d 0 0 0 0 0 0 %d %d 0 0 0 0 0 0\n", int64(p.rx), int64(p.rxp), int64(p.tx), int64(p.txp)),
		"net/tcp": "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
			"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 14512 1 0000000000000000 100 0 0 10 0\n" +
			"   1: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 13802 1 0000000000000000 100 0 0 10 0\n" +
			"   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 16620 1 0000000000000000 100 0 0 10 0\n" +
			"   3: 0505A8C0:0016 2800710C:CBB0 01 00000000:00000000 02:0009A1B2 00000000     0        0 18200 4 0000000000000000 20 4 29 10 -1\n",
		"net/tcp6": "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
			"   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 14514 1 0000000000000000 100 0 0 10 0\n",
		"net/udp": "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
			"  101: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 13801 2 0000000000000000 0\n",
		"net/udp6":        "   sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n",
		"pressure/memory": fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=%d\nfull avg10=%.2f avg60=0.00 avg300=0.00 total=%d\n", st.memSome*100, int64(p.psi[0]), st.memFull*100, int64(p.psi[1])),
		"pressure/io":     fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=%d\nfull avg10=%.2f avg60=0.00 avg300=0.00 total=%d\n", st.ioSome*100, int64(p.psi[2]), st.ioSome*50, int64(p.psi[3])),
		"pressure/cpu":    fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=%d\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", st.user*50, int64(p.psi[4])),
	}
	// Processes: remove those gone, write the rest.
	ents, _ := os.ReadDir(p.root)
	alive := map[string]bool{}
	for _, pr := range st.procs {
		alive[fmt.Sprint(pr.pid)] = true
	}
	for _, e := range ents {
		if e.IsDir() && e.Name()[0] >= '0' && e.Name()[0] <= '9' && !alive[e.Name()] {
			os.RemoveAll(filepath.Join(p.root, e.Name()))
		}
	}
	for _, pr := range st.procs {
		p.procCPU[pr.pid] += pr.cpu * dt * ticksPerSec
		ticks := int(p.procCPU[pr.pid])
		start, ok := p.started[pr.pid]
		if !ok {
			start = int(now.Sub(p.boot).Seconds()*ticksPerSec) - 1000
			if pr.pid < 1000 {
				start = 500 + pr.pid // started at boot
			}
			p.started[pr.pid] = start
		}
		// The 52 fields of /proc/<pid>/stat; utime 14, stime 15,
		// starttime 22, rss 24 (pages).
		files[fmt.Sprintf("%d/stat", pr.pid)] = fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 4194560 100 0 0 0 %d %d 0 0 20 0 1 0 %d %d %d 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			pr.pid, pr.comm, pr.pid, pr.pid, ticks*2/3, ticks-ticks*2/3, start, pr.rssKB*1024*3, pr.rssKB/4)
		files[fmt.Sprintf("%d/comm", pr.pid)] = pr.comm + "\n"
		cg := "/system.slice/" + pr.unit
		if pr.unit == "init.scope" {
			cg = "/init.scope"
		}
		files[fmt.Sprintf("%d/cgroup", pr.pid)] = "0::" + cg + "\n"
		fdDir := filepath.Join(p.root, fmt.Sprint(pr.pid), "fd")
		if err := os.MkdirAll(fdDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, ino := range pr.sockets {
			link := filepath.Join(fdDir, fmt.Sprint(3+i))
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(fmt.Sprintf("socket:[%d]", ino), link); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if p.mountinfo != "" {
		files["1/mountinfo"] = p.mountinfo
	}
	if len(p.devices) > 0 {
		if p.dcount == nil {
			p.dcount, p.pio = map[string]*[11]float64{}, map[int]*[2]float64{}
		}
		var ds strings.Builder
		for _, d := range p.devices {
			c := p.dcount[d.name]
			if c == nil {
				c = &[11]float64{d.base, 0, d.base * 8, d.base / 2, d.base, 0, d.base * 16, d.base, 0, d.base, d.base * 2}
				p.dcount[d.name] = c
			}
			a := st.disks[d.name]
			// reads merged sectors ms, writes merged sectors ms, io_ms, weighted_ms
			c[0] += a.rps * dt
			c[2] += a.rbps * dt / 512
			c[3] += a.rps * dt * a.awaitMs
			c[4] += a.wps * dt
			c[6] += a.wbps * dt / 512
			c[7] += a.wps * dt * a.awaitMs
			c[9] += a.util * dt * 1000
			c[10] += a.queue * dt * 1000
			fmt.Fprintf(&ds, "%4d %7d %s %d 0 %d %d %d 0 %d %d %d %d %d 0 0 0 0 %d %d\n", d.major, d.minor, d.name,
				int64(c[0]), int64(c[2]), int64(c[3]), int64(c[4]), int64(c[6]), int64(c[7]), int64(a.queue), int64(c[9]), int64(c[10]), int64(c[4]/50), int64(c[7]/100))
		}
		files["diskstats"] = ds.String()
		for _, pr := range st.procs {
			c := p.pio[pr.pid]
			if c == nil {
				c = &[2]float64{}
				p.pio[pr.pid] = c
			}
			c[0] += st.io[pr.pid][0] * dt
			c[1] += st.io[pr.pid][1] * dt
			files[fmt.Sprintf("%d/io", pr.pid)] = fmt.Sprintf("rchar: %d\nwchar: %d\nsyscr: 100\nsyscw: 100\nread_bytes: %d\nwrite_bytes: %d\ncancelled_write_bytes: 0\n",
				int64(c[0])+4096, int64(c[1])+4096, int64(c[0]), int64(c[1]))
		}
	}
	for name, body := range files {
		path := filepath.Join(p.root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// seedTimes are the sample times: every 30 s from 06:10 to 06:29:30, then
// after the reboot from 06:41 to 06:44:30.
func seedTimes() []time.Time {
	var ts []time.Time
	for t := time.Date(2025, 8, 28, 6, 10, 0, 0, time.UTC); !t.After(time.Date(2025, 8, 28, 6, 29, 30, 0, time.UTC)); t = t.Add(30 * time.Second) {
		ts = append(ts, t)
	}
	for t := time.Date(2025, 8, 28, 6, 41, 0, 0, time.UTC); !t.After(time.Date(2025, 8, 28, 6, 44, 30, 0, time.UTC)); t = t.Add(30 * time.Second) {
		ts = append(ts, t)
	}
	return ts
}

// recordSeed renders the scenario step by step, samples each step with the
// real Sampler and appends it to a recording in dir. It returns the /proc
// root as it stands at the last step.
func recordSeed(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "proc")
	var now time.Time
	tree := &procTree{root: root, boot: seedBoot1, procCPU: map[int]float64{}, started: map[int]int{}}
	sampler, err := NewSampler(SamplerOptions{ProcRoot: root, Now: func() time.Time { return now }, TopN: 6})
	if err != nil {
		tree.write(t, seedTimes()[0], 0, seedState(seedTimes()[0]))
		sampler, err = NewSampler(SamplerOptions{ProcRoot: root, Now: func() time.Time { return now }, TopN: 6})
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := tsdb.Open(tsdb.Options{Dir: dir, NoSync: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prev := time.Time{}
	for _, ts := range seedTimes() {
		now = ts
		dt := 0.0
		if !prev.IsZero() {
			dt = ts.Sub(prev).Seconds()
		}
		if ts.After(seedBoot2) && prev.Before(seedBoot2) {
			// Reboot: counters start again from zero.
			*tree = procTree{root: root, boot: seedBoot2, procCPU: map[int]float64{}, started: map[int]int{}}
			dt = ts.Sub(seedBoot2).Seconds()
		}
		tree.write(t, ts, dt, seedState(ts))
		prev = ts
		s := sampler.Sample()
		if len(s.Errors) > 0 {
			t.Fatalf("sample at %s: %v", ts, s.Errors)
		}
		p, err := EncodeSample(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Append(ts, p); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSamplerOnFixture(t *testing.T) {
	dir := t.TempDir()
	root := recordSeed(t, dir)
	_ = root
	var got []Sample
	if _, err := tsdb.Scan(dir, time.Time{}, time.Time{}, func(_ time.Time, p []byte) error {
		s, err := DecodeSample(p)
		got = append(got, s)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(seedTimes()) {
		t.Fatalf("%d samples recorded, want %d", len(got), len(seedTimes()))
	}
	// 06:24:00: everything running.
	s := got[28]
	if !s.Time.Equal(time.Date(2025, 8, 28, 6, 24, 0, 0, time.UTC)) {
		t.Fatalf("sample 28 at %s", s.Time)
	}
	if s.Mem.Total != seedMemKB*1024 || s.Mem.SwapTotal != 0 || s.CPUs != 1 || s.BootTime != seedBoot1.Unix() {
		t.Errorf("host facts: %+v cpus %d boot %d", s.Mem, s.CPUs, s.BootTime)
	}
	if s.PSI == nil || s.PSI.Memory.SomeAvg10 != 62 {
		t.Errorf("psi %+v", s.PSI)
	}
	units := map[string]string{}
	for _, p := range s.Procs {
		units[p.Comm] = p.Unit
	}
	for comm, unit := range map[string]string{"packagekitd": "packagekit.service", "fwupd": "fwupd.service", "unattended-upgr": "apt-daily-upgrade.service", "java": "docker-4f1e.scope"} {
		if units[comm] != unit {
			t.Errorf("%s in unit %q, want %q (procs %v)", comm, units[comm], unit, units)
		}
	}
	var ls []string
	for _, l := range s.Listeners {
		ls = append(ls, fmt.Sprintf("%s %s:%d %s[%d]", l.Proto, l.Addr, l.Port, l.Comm, l.PID))
	}
	want := "tcp 0.0.0.0:22 sshd[688]|tcp6 :::22 sshd[688]|tcp 127.0.0.53:53 systemd-resolve[702]|udp 127.0.0.53:53 systemd-resolve[702]|tcp 0.0.0.0:8080 docker-proxy[1320]"
	if strings.Join(ls, "|") != want {
		t.Errorf("listeners\n got %s\nwant %s", strings.Join(ls, "|"), want)
	}
	r, ok := RatesBetween(got[27], got[28])
	if !ok || r.Busy < 95 || r.MemSome < 60 || r.MemSome > 64 {
		t.Errorf("rates at 06:24: %+v", r)
	}
	if _, ok := RatesBetween(got[39], got[40]); ok {
		t.Error("rates across the reboot should be refused")
	}
}
