package hostwatch

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
	"github.com/prometheus/procfs/blockdevice"
)

// userHZ is the kernel's clock tick for /proc/<pid>/stat times; 100 on
// every Linux architecture headroom targets (procfs assumes the same).
const userHZ = 100

// SamplerOptions configure a Sampler. The zero value samples this machine.
type SamplerOptions struct {
	// ProcRoot is the /proc mount to read; "" means /proc. Tests pass a
	// fixture tree.
	ProcRoot string
	// TopN bounds the processes kept per sample: the top N by memory plus
	// the top N by CPU. Zero means 8.
	TopN int
	// Now is the clock stamped on samples; nil means time.Now.
	Now func() time.Time
	// SocketRescan is the least time between full /proc/*/fd scans to find
	// the owner of a listening socket not seen before. Zero means 1 minute.
	SocketRescan time.Duration
	// ListenerInterval is how often the socket tables are re-read; samples
	// in between carry the last list. Reading /proc/net/tcp costs the
	// kernel time per socket, and a busy web server has thousands (this
	// build machine: 2,700 sockets, 7 ms per read), while listeners change
	// rarely. Zero means 1 minute; negative means every sample.
	ListenerInterval time.Duration
	// MountInterval is how often the mount table is re-read; statfs runs
	// every sample. Zero means 1 minute; negative means every sample.
	MountInterval time.Duration
	// AllFilesystems keeps tmpfs, overlay and the other pseudo filesystems
	// that are skipped by default.
	AllFilesystems bool
	// StatFS reads a filesystem's space and inodes; nil means statfs(2).
	// Tests with a fixture mount table give the figures of their scenario.
	StatFS StatFSFunc
	// StatFSTimeout bounds statfs on a filesystem not on a local block
	// device (NFS, FUSE); zero means 2 s.
	StatFSTimeout time.Duration
}

// Sampler reads samples. It keeps the previous per-process CPU times (for
// CPU%) and the socket-owner map between calls, so it is not safe for
// concurrent use.
type Sampler struct {
	fs   procfs.FS
	opts SamplerOptions
	root string

	prevCPU  map[procKey]uint
	prevTime time.Time
	units    map[procKey]string
	owners   map[uint64]owner // socket inode -> process
	lastScan time.Time

	listened      time.Time
	lastListeners []Listener

	prevIO map[procKey]procIO

	block      *blockdevice.FS
	mountsRead time.Time
	mounts     []mountPoint
	mountRoot  string
	// stuck are the guarded mounts whose statfs has not returned; the
	// goroutine that runs it clears the mark, so it has its own lock.
	stuckMu sync.Mutex
	stuck   map[string]bool
}

type procIO struct{ read, write uint64 }

type procKey struct {
	pid   int
	start uint64
}

type owner struct {
	pid  int
	comm string
}

// ErrNoProc means the /proc root is missing: not Linux, or a container
// without /proc mounted.
var ErrNoProc = errors.New("no /proc")

// NewSampler checks the /proc root and returns a Sampler.
func NewSampler(opts SamplerOptions) (*Sampler, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = procfs.DefaultMountPoint
	}
	if opts.TopN <= 0 {
		opts.TopN = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SocketRescan <= 0 {
		opts.SocketRescan = time.Minute
	}
	if opts.ListenerInterval == 0 {
		opts.ListenerInterval = time.Minute
	}
	if opts.MountInterval == 0 {
		opts.MountInterval = time.Minute
	}
	if opts.StatFS == nil {
		opts.StatFS = statFS
	}
	if opts.StatFSTimeout <= 0 {
		opts.StatFSTimeout = 2 * time.Second
	}
	pfs, err := procfs.NewFS(opts.ProcRoot)
	if err != nil {
		hint := ""
		if runtime.GOOS != "linux" {
			hint = fmt.Sprintf(" (this is %s; headroom host reads Linux's /proc)", runtime.GOOS)
		}
		return nil, fmt.Errorf("%w at %s%s: %w", ErrNoProc, opts.ProcRoot, hint, err)
	}
	s := &Sampler{
		fs: pfs, opts: opts, root: opts.ProcRoot,
		prevCPU: map[procKey]uint{}, units: map[procKey]string{}, owners: map[uint64]owner{},
		prevIO: map[procKey]procIO{}, stuck: map[string]bool{},
	}
	// Only /proc/diskstats is read; the constructor also wants a sysfs
	// root, which the /proc root stands in for (never read).
	if b, err := blockdevice.NewFS(opts.ProcRoot, opts.ProcRoot); err == nil {
		s.block = &b
	}
	return s, nil
}

// Sample reads everything it can. What it cannot read is named in
// Sample.Errors and the rest is still returned.
func (s *Sampler) Sample() Sample {
	now := s.opts.Now()
	smp := Sample{Time: now}
	fail := func(what string, err error) {
		smp.Errors = append(smp.Errors, fmt.Sprintf("%s: %v", what, err))
	}

	if st, err := s.fs.Stat(); err != nil {
		fail("cpu (/proc/stat)", err)
	} else {
		smp.BootTime = int64(st.BootTime)
		smp.CPUs = len(st.CPU)
		c := st.CPUTotal
		smp.CPU = CPUTimes{User: c.User, Nice: c.Nice, System: c.System, Idle: c.Idle,
			Iowait: c.Iowait, IRQ: c.IRQ, SoftIRQ: c.SoftIRQ, Steal: c.Steal}
	}

	if mi, err := s.fs.Meminfo(); err != nil {
		fail("memory (/proc/meminfo)", err)
	} else {
		v := func(p *uint64) uint64 {
			if p == nil {
				return 0
			}
			return *p
		}
		smp.Mem = Memory{Total: v(mi.MemTotalBytes), Free: v(mi.MemFreeBytes), Available: v(mi.MemAvailableBytes),
			Buffers: v(mi.BuffersBytes), Cached: v(mi.CachedBytes), SwapTotal: v(mi.SwapTotalBytes), SwapFree: v(mi.SwapFreeBytes)}
	}

	smp.PSI = s.pressure(fail)

	if la, err := s.fs.LoadAvg(); err != nil {
		fail("load (/proc/loadavg)", err)
	} else {
		smp.Load = [3]float64{la.Load1, la.Load5, la.Load15}
	}

	if nd, err := s.fs.NetDev(); err != nil {
		fail("network (/proc/net/dev)", err)
	} else {
		for _, l := range nd {
			smp.Net = append(smp.Net, NetIf{Name: l.Name, RxBytes: l.RxBytes, TxBytes: l.TxBytes,
				RxPackets: l.RxPackets, TxPackets: l.TxPackets, RxDropped: l.RxDropped, TxDropped: l.TxDropped})
		}
		sort.Slice(smp.Net, func(i, j int) bool { return smp.Net[i].Name < smp.Net[j].Name })
	}

	s.processes(&smp, now, fail)
	s.listeners(&smp, now, fail)
	s.disks(&smp, now, fail)
	return smp
}

func (s *Sampler) pressure(fail func(string, error)) *Pressure {
	var p Pressure
	for _, r := range []struct {
		name string
		dst  *PSI
	}{{"cpu", &p.CPU}, {"memory", &p.Memory}, {"io", &p.IO}} {
		st, err := s.fs.PSIStatsForResource(r.name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Not a failure of this sample: the kernel has no PSI.
				return nil
			}
			fail("pressure "+r.name, err)
			return nil
		}
		if st.Some != nil {
			r.dst.SomeAvg10, r.dst.SomeTotal = st.Some.Avg10, st.Some.Total
		}
		if st.Full != nil {
			r.dst.FullAvg10, r.dst.FullTotal = st.Full.Avg10, st.Full.Total
		}
	}
	return &p
}

type procRow struct {
	key            procKey
	comm           string
	rss            uint64
	ticks          uint
	pct            float64
	readBps, wrBps float64
}

func (s *Sampler) processes(smp *Sample, now time.Time, fail func(string, error)) {
	procs, err := s.fs.AllProcs()
	if err != nil {
		fail("processes", err)
		return
	}
	dt := now.Sub(s.prevTime).Seconds()
	havePrev := !s.prevTime.IsZero() && dt > 0
	cur := make(map[procKey]uint, len(procs))
	curIO := make(map[procKey]procIO, len(procs))
	rows := make([]procRow, 0, len(procs))
	var unreadable int
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			// Processes exit between listing and reading; only count it.
			unreadable++
			continue
		}
		k := procKey{p.PID, st.Starttime}
		ticks := st.UTime + st.STime
		cur[k] = ticks
		row := procRow{key: k, comm: st.Comm, rss: uint64(st.ResidentMemory()), ticks: ticks}
		if prev, ok := s.prevCPU[k]; ok && havePrev && ticks >= prev {
			row.pct = 100 * float64(ticks-prev) / userHZ / dt
		}
		// Every process's I/O is read, not only the top ones': the
		// process that fills a disk is often small and idle on the CPU.
		if pio, err := p.IO(); err == nil {
			io := procIO{pio.ReadBytes, pio.WriteBytes}
			curIO[k] = io
			if prev, ok := s.prevIO[k]; ok && havePrev && io.read >= prev.read && io.write >= prev.write {
				row.readBps, row.wrBps = float64(io.read-prev.read)/dt, float64(io.write-prev.write)/dt
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			// EACCES without root; ENOENT is a process gone, or a kernel
			// without I/O accounting, neither of which hides anything.
			smp.IOUnreadable++
		}
		rows = append(rows, row)
	}
	s.prevCPU, s.prevIO, s.prevTime = cur, curIO, now
	smp.ProcCount = len(rows)
	if len(rows) == 0 && unreadable > 0 {
		fail("processes", fmt.Errorf("none of %d /proc/<pid>/stat readable", unreadable))
	}

	n := s.opts.TopN
	keep := map[procKey]bool{}
	sort.Slice(rows, func(i, j int) bool { return rows[i].rss > rows[j].rss })
	for i := 0; i < len(rows) && i < n; i++ {
		if rows[i].rss > 0 {
			keep[rows[i].key] = true
		}
	}
	byCPU := append([]procRow(nil), rows...)
	sort.SliceStable(byCPU, func(i, j int) bool { return byCPU[i].pct > byCPU[j].pct })
	for i := 0; i < len(byCPU) && i < n && byCPU[i].pct > 0; i++ {
		keep[byCPU[i].key] = true
	}
	sort.SliceStable(byCPU, func(i, j int) bool {
		return byCPU[i].readBps+byCPU[i].wrBps > byCPU[j].readBps+byCPU[j].wrBps
	})
	for i := 0; i < len(byCPU) && i < n && byCPU[i].readBps+byCPU[i].wrBps > 0; i++ {
		keep[byCPU[i].key] = true
	}
	units := make(map[procKey]string, len(keep))
	for _, r := range rows {
		if !keep[r.key] {
			continue
		}
		unit, ok := s.units[r.key]
		if !ok {
			unit = s.unitOf(r.key.pid)
		}
		units[r.key] = unit
		smp.Procs = append(smp.Procs, Proc{PID: r.key.pid, Comm: r.comm, Unit: unit, RSS: r.rss,
			CPUSeconds: float64(r.ticks) / userHZ, CPUPercent: round2(r.pct), ReadBps: math.Round(r.readBps), WriteBps: math.Round(r.wrBps)})
	}
	s.units = units // forget exited processes
}

// unitOf reads the systemd unit from /proc/<pid>/cgroup: the last path
// element that names a unit (system.slice/apt-daily-upgrade.service).
func (s *Sampler) unitOf(pid int) string {
	p, err := s.fs.Proc(pid)
	if err != nil {
		return ""
	}
	cgs, err := p.Cgroups()
	if err != nil {
		return ""
	}
	for _, cg := range cgs {
		if u := UnitFromCgroup(cg.Path); u != "" {
			return u
		}
	}
	return ""
}

// UnitFromCgroup returns the innermost systemd unit in a cgroup path, or ""
// (e.g. "/system.slice/fwupd.service" → "fwupd.service").
func UnitFromCgroup(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		switch path.Ext(parts[i]) {
		case ".service", ".scope", ".socket", ".mount", ".swap":
			return parts[i]
		}
	}
	return ""
}

func (s *Sampler) listeners(smp *Sample, now time.Time, fail func(string, error)) {
	if !s.listened.IsZero() && now.Sub(s.listened) < s.opts.ListenerInterval && now.After(s.listened) {
		smp.Listeners = append([]Listener(nil), s.lastListeners...)
		return
	}
	s.listened = now
	defer func() { s.lastListeners = smp.Listeners }()
	var unknown bool
	for _, src := range []struct {
		proto string
		read  func() ([]sockLine, error)
	}{
		// procfs deprecates the /proc/net/tcp readers in favour of netlink
		// sock_diag; /proc is kept on purpose, because it is what a fixture
		// tree (and a copied /proc from another host) can stand in for.
		//lint:ignore SA1019 /proc/net/tcp is read on purpose (fixtures), see above
		{"tcp", func() ([]sockLine, error) { l, err := s.fs.NetTCP(); return tcpLines(l), err }},
		//lint:ignore SA1019 as above
		{"tcp6", func() ([]sockLine, error) { l, err := s.fs.NetTCP6(); return tcpLines(l), err }},
		{"udp", func() ([]sockLine, error) { l, err := s.fs.NetUDP(); return udpLines(l), err }},
		{"udp6", func() ([]sockLine, error) { l, err := s.fs.NetUDP6(); return udpLines(l), err }},
	} {
		lines, err := src.read()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // IPv6 disabled, say
			}
			fail("sockets "+src.proto, err)
			continue
		}
		udp := strings.HasPrefix(src.proto, "udp")
		for _, l := range lines {
			// TCP_LISTEN is 0x0A; an unconnected UDP socket (state 7,
			// no remote port) is the UDP equivalent of listening.
			if (!udp && l.state != 0x0A) || (udp && (l.state != 7 || l.remPort != 0)) {
				continue
			}
			ln := Listener{Proto: src.proto, Addr: ipString(l.addr), Port: int(l.port), Inode: l.inode}
			if o, ok := s.owners[l.inode]; ok {
				ln.PID, ln.Comm = o.pid, o.comm
			} else if l.inode != 0 {
				unknown = true
			}
			smp.Listeners = append(smp.Listeners, ln)
		}
	}
	if unknown && now.Sub(s.lastScan) >= s.opts.SocketRescan {
		// Mapping inodes to processes means reading every fd link of every
		// process: the most expensive part of a sample, so only done when a
		// listener appears that we cannot name yet.
		s.lastScan = now
		s.scanOwners(fail)
		for i := range smp.Listeners {
			if o, ok := s.owners[smp.Listeners[i].Inode]; ok {
				smp.Listeners[i].PID, smp.Listeners[i].Comm = o.pid, o.comm
			}
		}
	}
	sort.Slice(smp.Listeners, func(i, j int) bool {
		a, b := smp.Listeners[i], smp.Listeners[j]
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		return a.Addr < b.Addr
	})
}

type sockLine struct {
	addr    net.IP
	port    uint64
	remPort uint64
	state   uint64
	inode   uint64
}

func tcpLines(l procfs.NetTCP) []sockLine {
	out := make([]sockLine, 0, len(l))
	for _, x := range l {
		out = append(out, sockLine{x.LocalAddr, x.LocalPort, x.RemPort, x.St, x.Inode})
	}
	return out
}

func udpLines(l procfs.NetUDP) []sockLine {
	out := make([]sockLine, 0, len(l))
	for _, x := range l {
		out = append(out, sockLine{x.LocalAddr, x.LocalPort, x.RemPort, x.St, x.Inode})
	}
	return out
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	if ip.IsUnspecified() {
		if ip.To4() != nil {
			return "0.0.0.0"
		}
		return "::"
	}
	return ip.String()
}

// scanOwners rebuilds the socket inode -> process map from /proc/*/fd.
// Without root, other users' fds are unreadable; their sockets stay
// unnamed, which the report says rather than hides.
func (s *Sampler) scanOwners(fail func(string, error)) {
	procs, err := s.fs.AllProcs()
	if err != nil {
		fail("socket owners", err)
		return
	}
	owners := map[uint64]owner{}
	for _, p := range procs {
		targets, err := p.FileDescriptorTargets()
		if err != nil {
			continue
		}
		var comm string
		for _, t := range targets {
			rest, ok := strings.CutPrefix(t, "socket:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
			if err != nil {
				continue
			}
			if comm == "" {
				comm, _ = p.Comm()
			}
			if _, dup := owners[ino]; !dup { // inherited sockets: keep the first (lowest) pid
				owners[ino] = owner{pid: p.PID, comm: comm}
			}
		}
	}
	s.owners = owners
}

func round2(x float64) float64 {
	return float64(int64(x*100+0.5)) / 100
}
