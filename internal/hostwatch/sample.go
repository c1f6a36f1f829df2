// Package hostwatch samples a Linux host from /proc, records the samples in
// a crash-safe local time series (package tsdb), and explains spikes and
// saturation in them with what the systemd journal says started at that
// moment (package journal).
//
// It answers seed 02: a small EC2 instance showed a packet spike, CPU at
// 100%, then died. The cause, found by hand with free, ss, journalctl and
// /proc/net/dev, was the daily apt upgrade timer starting PackageKit and
// fwupd on a box with no swap. `headroom host explain` makes that one
// command.
//
// Everything reads /proc through prometheus/procfs with the root passed in,
// so fixture trees under testdata stand in for the machine.
package hostwatch

import (
	"time"
)

// Sample is one look at the host. Counters are cumulative, as the kernel
// keeps them; Rates turns two samples into per-second figures. Fields that
// could not be read are left zero and named in Errors: partial failure is
// data, not a reason to drop the sample.
type Sample struct {
	Time     time.Time `json:"t"`
	BootTime int64     `json:"boot,omitempty"` // unix seconds
	CPUs     int       `json:"cpus,omitempty"`
	CPU      CPUTimes  `json:"cpu"`
	Mem      Memory    `json:"mem"`
	// PSI is nil when the kernel has no /proc/pressure (CONFIG_PSI off or
	// booted with psi=0).
	PSI       *Pressure  `json:"psi,omitempty"`
	Load      [3]float64 `json:"load"`
	Net       []NetIf    `json:"net,omitempty"`
	ProcCount int        `json:"nproc,omitempty"`
	// Procs are the top processes by memory and by CPU, a bounded few.
	Procs     []Proc     `json:"procs,omitempty"`
	Listeners []Listener `json:"listen,omitempty"`
	// Filesystems are the mounted filesystems (real ones unless the
	// sampler was asked for all), by mount point; Disks the block devices
	// with any I/O since boot, by name.
	Filesystems []Filesystem `json:"fs,omitempty"`
	Disks       []Disk       `json:"disks,omitempty"`
	// IOUnreadable counts processes whose /proc/<pid>/io could not be read
	// (it needs root, or the process's own user): their I/O is unknown.
	IOUnreadable int      `json:"io_unread,omitempty"`
	Errors       []string `json:"errors,omitempty"`
}

// CPUTimes are seconds since boot summed over all CPUs (/proc/stat).
type CPUTimes struct {
	User    float64 `json:"user"`
	Nice    float64 `json:"nice"`
	System  float64 `json:"sys"`
	Idle    float64 `json:"idle"`
	Iowait  float64 `json:"iowait"`
	IRQ     float64 `json:"irq"`
	SoftIRQ float64 `json:"softirq"`
	// Steal is time the hypervisor gave to someone else: how an exhausted
	// CPU credit balance shows on a burstable (t2/t3) instance.
	Steal float64 `json:"steal"`
}

func (c CPUTimes) total() float64 {
	return c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
}

// Memory is /proc/meminfo in bytes.
type Memory struct {
	Total     uint64 `json:"total"`
	Free      uint64 `json:"free"`
	Available uint64 `json:"avail"`
	Buffers   uint64 `json:"buffers"`
	Cached    uint64 `json:"cached"`
	SwapTotal uint64 `json:"swap_total"`
	SwapFree  uint64 `json:"swap_free"`
}

// Used is memory in use by everything the kernel cannot give back at once.
func (m Memory) Used() uint64 {
	if m.Available > m.Total {
		return 0
	}
	return m.Total - m.Available
}

// Pressure is /proc/pressure/{cpu,memory,io}.
type Pressure struct {
	CPU    PSI `json:"cpu"`
	Memory PSI `json:"memory"`
	IO     PSI `json:"io"`
}

// PSI is one pressure file. Totals are microseconds stalled since boot; they
// catch stalls too short to move the 10-second average between samples.
type PSI struct {
	SomeAvg10 float64 `json:"some10"`
	FullAvg10 float64 `json:"full10"`
	SomeTotal uint64  `json:"some"`
	FullTotal uint64  `json:"full"`
}

// NetIf is one line of /proc/net/dev.
type NetIf struct {
	Name      string `json:"name"`
	RxBytes   uint64 `json:"rxb"`
	TxBytes   uint64 `json:"txb"`
	RxPackets uint64 `json:"rxp"`
	TxPackets uint64 `json:"txp"`
	RxDropped uint64 `json:"rxd"`
	TxDropped uint64 `json:"txd"`
}

// Proc is one process in a sample.
type Proc struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// Unit is the systemd unit from the process's cgroup
	// (apt-daily-upgrade.service), so a process can be tied to the journal's
	// "Starting …" line without guessing from names.
	Unit string `json:"unit,omitempty"`
	RSS  uint64 `json:"rss"`
	// CPUSeconds is user+system time since the process started.
	CPUSeconds float64 `json:"cpus"`
	// CPUPercent is of one core over the interval since the previous
	// sample; zero in a first sample.
	CPUPercent float64 `json:"cpu_pct"`
	// ReadBps and WriteBps are the bytes per second it made the block
	// layer read and write over the interval (/proc/<pid>/io read_bytes,
	// write_bytes): page-cache writes are charged to the process that
	// dirtied them, not to the kernel thread that writes them back.
	ReadBps  float64 `json:"rd_bps,omitempty"`
	WriteBps float64 `json:"wr_bps,omitempty"`
}

// Listener is a socket accepting connections (TCP LISTEN) or datagrams
// (unconnected UDP).
type Listener struct {
	Proto string `json:"proto"`
	Addr  string `json:"addr"`
	Port  int    `json:"port"`
	Inode uint64 `json:"inode,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Comm  string `json:"comm,omitempty"`
}

// AllInterfaces says whether the socket is bound to 0.0.0.0 or ::, the
// listeners a too-open security group exposes (seed 02's first suspect).
func (l Listener) AllInterfaces() bool { return l.Addr == "0.0.0.0" || l.Addr == "::" }

// Rates are the per-second and percentage figures between two samples.
type Rates struct {
	From, To time.Time
	// CPU shares of all CPUs' time, 0-100.
	Busy, User, System, Iowait, Steal float64
	// PSI shares of wall time, 0-100, from the total counters.
	CPUSome, MemSome, MemFull, IOSome, IOFull float64
	HasPSI                                    bool
	// Network, all interfaces but loopback.
	RxBytes, TxBytes, RxPackets, TxPackets, Drops float64
	// PerIf is bytes/s received per interface, loopback excluded.
	PerIf map[string]float64
	// Disks are the block devices' rates, by name.
	Disks []DiskRate
}

// BusiestDisk is the device with the highest utilization, if any.
func (r Rates) BusiestDisk() (DiskRate, bool) {
	var best DiskRate
	found := false
	for _, d := range r.Disks {
		if !found || d.Util > best.Util {
			best, found = d, true
		}
	}
	return best, found
}

// RatesBetween computes Rates from a to b (a earlier). It reports false when
// the interval is empty or the counters went backwards (a reboot between
// samples), where no rate is meaningful.
func RatesBetween(a, b Sample) (Rates, bool) {
	dt := b.Time.Sub(a.Time).Seconds()
	r := Rates{From: a.Time, To: b.Time}
	if dt <= 0 || (a.BootTime != 0 && b.BootTime != 0 && a.BootTime != b.BootTime) {
		return r, false
	}
	if tot := b.CPU.total() - a.CPU.total(); tot > 0 {
		pct := func(x, y float64) float64 { return clamp(100 * (y - x) / tot) }
		r.User = pct(a.CPU.User+a.CPU.Nice, b.CPU.User+b.CPU.Nice)
		r.System = pct(a.CPU.System+a.CPU.IRQ+a.CPU.SoftIRQ, b.CPU.System+b.CPU.IRQ+b.CPU.SoftIRQ)
		r.Iowait = pct(a.CPU.Iowait, b.CPU.Iowait)
		r.Steal = pct(a.CPU.Steal, b.CPU.Steal)
		r.Busy = clamp(100 - pct(a.CPU.Idle+a.CPU.Iowait, b.CPU.Idle+b.CPU.Iowait))
	}
	if a.PSI != nil && b.PSI != nil {
		r.HasPSI = true
		us := dt * 1e6
		d := func(x, y uint64) float64 {
			if y < x {
				return 0
			}
			return clamp(100 * float64(y-x) / us)
		}
		r.CPUSome = d(a.PSI.CPU.SomeTotal, b.PSI.CPU.SomeTotal)
		r.MemSome = d(a.PSI.Memory.SomeTotal, b.PSI.Memory.SomeTotal)
		r.MemFull = d(a.PSI.Memory.FullTotal, b.PSI.Memory.FullTotal)
		r.IOSome = d(a.PSI.IO.SomeTotal, b.PSI.IO.SomeTotal)
		r.IOFull = d(a.PSI.IO.FullTotal, b.PSI.IO.FullTotal)
	}
	prev := make(map[string]NetIf, len(a.Net))
	for _, n := range a.Net {
		prev[n.Name] = n
	}
	r.PerIf = map[string]float64{}
	for _, n := range b.Net {
		p, ok := prev[n.Name]
		if !ok || n.Name == "lo" {
			continue
		}
		rate := func(x, y uint64) float64 {
			if y < x {
				return 0 // counter reset (interface re-created)
			}
			return float64(y-x) / dt
		}
		rx := rate(p.RxBytes, n.RxBytes)
		r.PerIf[n.Name] = rx
		r.RxBytes += rx
		r.TxBytes += rate(p.TxBytes, n.TxBytes)
		r.RxPackets += rate(p.RxPackets, n.RxPackets)
		r.TxPackets += rate(p.TxPackets, n.TxPackets)
		r.Drops += rate(p.RxDropped+p.TxDropped, n.RxDropped+n.TxDropped)
	}
	prevDisk := make(map[string]Disk, len(a.Disks))
	for _, d := range a.Disks {
		prevDisk[d.Name] = d
	}
	for _, d := range b.Disks {
		if p, ok := prevDisk[d.Name]; ok {
			if dr, ok := diskRate(p, d, dt); ok {
				r.Disks = append(r.Disks, dr)
			}
		}
	}
	return r, true
}

func clamp(x float64) float64 {
	return max(0, min(100, x))
}
