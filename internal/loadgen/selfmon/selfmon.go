// Package selfmon samples the load generator's own resources: the CPU its
// process used and waited for, the host's CPU, and the traffic on the network
// interface that routes to the target. A load test's numbers describe the
// server only while none of these is exhausted (seed 04: a home link capped
// every run at 10 MB/s and the team blamed the server for days).
//
// Reading is apart from computing: Sampler.Read only reads /proc (its root is
// a parameter, so fixture trees stand in for the machine) and Usage, a pure
// function of two readings, turns counters into rates.
package selfmon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/prometheus/procfs"
)

// Reading is one look at the cumulative counters.
type Reading struct {
	At time.Time
	// ProcCPU is the CPU time (user+system) the process has used, in seconds.
	ProcCPU float64
	// ThreadRun and ThreadWait hold, per thread id, the nanoseconds each
	// thread ran and waited runnable on a run queue (/proc/self/task/*/
	// schedstat). Waiting while runnable is the mark of a CPU-starved
	// generator, which plain CPU usage does not show when it shares a core.
	ThreadRun, ThreadWait map[int]uint64
	// HostBusy and HostTotal are the host's busy and total CPU seconds, all
	// CPUs summed (/proc/stat).
	HostBusy, HostTotal float64
	// Iface is the interface read; RxBytes and TxBytes its counters.
	Iface            string
	RxBytes, TxBytes uint64
	// Errs lists what could not be read; the rest of the reading is good
	// (partial failure is data).
	Errs []error
}

// Usage is what happened between two readings.
type Usage struct {
	Elapsed time.Duration
	// ProcCores is the CPU the process used, in cores (1.5 = one and a half
	// cores busy all the time).
	ProcCores float64
	// WaitCores is the time the process's threads spent runnable but not
	// running, in cores: CPU it wanted and did not get.
	WaitCores float64
	// HostBusy is the fraction of all the host's CPUs that was busy, 0..1.
	HostBusy float64
	// RxBytesPerSec and TxBytesPerSec are the interface's throughput.
	RxBytesPerSec, TxBytesPerSec float64
	// Known tells which fields could be computed.
	ProcKnown, SchedKnown, HostKnown, NetKnown bool
}

// Compute returns the usage between prev and cur. Counters that went
// backwards (a thread that exited, an interface that was reset) count as
// zero rather than as negative usage.
func Compute(prev, cur Reading) Usage {
	u := Usage{Elapsed: cur.At.Sub(prev.At)}
	secs := u.Elapsed.Seconds()
	if secs <= 0 {
		return u
	}
	if cur.ProcCPU > 0 && cur.ProcCPU >= prev.ProcCPU {
		u.ProcCores = (cur.ProcCPU - prev.ProcCPU) / secs
		u.ProcKnown = true
	}
	if cur.ThreadRun != nil && prev.ThreadRun != nil {
		var wait uint64
		for tid, w := range cur.ThreadWait {
			if p, ok := prev.ThreadWait[tid]; ok && w >= p {
				wait += w - p
			} else if !ok {
				wait += w // a thread born during the interval
			}
		}
		u.WaitCores = float64(wait) / 1e9 / secs
		u.SchedKnown = true
	}
	if cur.HostTotal > prev.HostTotal && prev.HostTotal > 0 {
		dt := cur.HostTotal - prev.HostTotal
		db := cur.HostBusy - prev.HostBusy
		if db < 0 {
			db = 0
		}
		// Busy and total are sums of separately rounded per-field seconds:
		// over a window of a few ticks the ratio can exceed 1 by a rounding
		// error, which a verdict must not read as more than saturated.
		u.HostBusy = min(db/dt, 1)
		u.HostKnown = true
	}
	if cur.Iface != "" && cur.Iface == prev.Iface && cur.RxBytes >= prev.RxBytes && cur.TxBytes >= prev.TxBytes {
		u.RxBytesPerSec = float64(cur.RxBytes-prev.RxBytes) / secs
		u.TxBytesPerSec = float64(cur.TxBytes-prev.TxBytes) / secs
		u.NetKnown = true
	}
	return u
}

// Options configure a Sampler.
type Options struct {
	// ProcRoot is where procfs is mounted; "" means /proc.
	ProcRoot string
	// PID is the process to watch; 0 means this process.
	PID int
	// Iface is the network interface to read; "" means no interface.
	Iface string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sampler reads the counters of one process and one interface.
type Sampler struct {
	fs  procfs.FS
	pid int
	o   Options
}

// New returns a Sampler; it fails only when the proc root cannot be used.
func New(o Options) (*Sampler, error) {
	root := o.ProcRoot
	if root == "" {
		root = procfs.DefaultMountPoint
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		return nil, fmt.Errorf("selfmon: open %s: %w", root, err)
	}
	pid := o.PID
	if pid == 0 {
		pid = os.Getpid()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sampler{fs: fs, pid: pid, o: o}, nil
}

// Read takes one reading. Whatever cannot be read is listed in Errs and
// left zero.
func (s *Sampler) Read() Reading {
	r := Reading{At: s.o.Now(), Iface: s.o.Iface}
	if p, err := s.fs.Proc(s.pid); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("process %d: %w", s.pid, err))
	} else if st, err := p.Stat(); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("process stat: %w", err))
	} else {
		r.ProcCPU = st.CPUTime()
	}
	if threads, err := s.fs.AllThreads(s.pid); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("threads: %w", err))
	} else {
		r.ThreadRun = make(map[int]uint64, len(threads))
		r.ThreadWait = make(map[int]uint64, len(threads))
		for _, t := range threads {
			ss, err := t.Schedstat()
			if err != nil {
				// A thread can exit between listing and reading; a kernel
				// without schedstats has none at all.
				if !errors.Is(err, os.ErrNotExist) {
					r.Errs = append(r.Errs, fmt.Errorf("thread %d schedstat: %w", t.PID, err))
				}
				continue
			}
			r.ThreadRun[t.PID] = ss.RunningNanoseconds
			r.ThreadWait[t.PID] = ss.WaitingNanoseconds
		}
		if len(r.ThreadRun) == 0 {
			r.ThreadRun, r.ThreadWait = nil, nil
		}
	}
	if st, err := s.fs.Stat(); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("host stat: %w", err))
	} else {
		c := st.CPUTotal
		idle := c.Idle + c.Iowait
		busy := c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
		r.HostBusy, r.HostTotal = busy, busy+idle
	}
	if s.o.Iface != "" {
		if nd, err := s.fs.NetDev(); err != nil {
			r.Errs = append(r.Errs, fmt.Errorf("net/dev: %w", err))
		} else if l, ok := nd[s.o.Iface]; !ok {
			r.Errs = append(r.Errs, fmt.Errorf("interface %s not in net/dev", s.o.Iface))
		} else {
			r.RxBytes, r.TxBytes = l.RxBytes, l.TxBytes
		}
	}
	return r
}

// InterfaceFor names the local network interface that traffic to host (an
// IP or name, no port) leaves by: "lo" for loopback targets. It asks the
// kernel's routing table by connecting a UDP socket, which sends nothing.
func InterfaceFor(host string) (string, error) {
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("resolve %s: %w", host, err)
	}
	ip := ips[0]
	if ip.IsLoopback() {
		return loopbackName()
	}
	c, err := net.Dial("udp", net.JoinHostPort(ip.String(), "9"))
	if err != nil {
		return "", fmt.Errorf("route to %s: %w", ip, err)
	}
	local := c.LocalAddr().(*net.UDPAddr).IP
	c.Close()
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(local) {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface holds %s, the source address towards %s", local, ip)
}

func loopbackName() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "lo", nil
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			return ifc.Name, nil
		}
	}
	return "lo", nil
}

// LinkSpeed returns the interface's nominal speed in bytes per second from
// sysfs, or 0 when the kernel does not know it (loopback, most virtual
// interfaces).
func LinkSpeed(sysRoot, iface string) float64 {
	if sysRoot == "" {
		sysRoot = "/sys"
	}
	b, err := os.ReadFile(sysRoot + "/class/net/" + iface + "/speed")
	if err != nil {
		return 0
	}
	var mbit float64
	if _, err := fmt.Sscan(string(b), &mbit); err != nil || mbit <= 0 {
		return 0
	}
	return mbit * 1e6 / 8
}
