package hostwatch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/procfs"
	"github.com/prometheus/procfs/blockdevice"
)

// Filesystem is one mounted filesystem's space and inodes, as statfs(2)
// gives them and df(1) prints them.
type Filesystem struct {
	Mount  string `json:"mount"`
	Source string `json:"src,omitempty"`
	Type   string `json:"type"`
	// Disk names the device in Sample.Disks that holds it (the whole disk
	// for a partition), "" when it is not on a local block device.
	Disk string `json:"disk,omitempty"`
	// Size, Free and Avail are bytes. Free includes the blocks reserved for
	// root; Avail is what everyone else can still write, the figure that
	// hits zero when "No space left on device" starts.
	Size  uint64 `json:"size"`
	Free  uint64 `json:"free"`
	Avail uint64 `json:"avail"`
	// Inodes is zero where the filesystem has no fixed inode table (btrfs).
	Inodes   uint64 `json:"inodes,omitempty"`
	IFree    uint64 `json:"ifree,omitempty"`
	ReadOnly bool   `json:"ro,omitempty"`
}

// Used is the bytes in use, root's reserve not counted as used.
func (f Filesystem) Used() uint64 {
	if f.Free > f.Size {
		return 0
	}
	return f.Size - f.Free
}

// UsedPct is df's Use%: used over what users can have (used + avail), so a
// filesystem whose reserve is all that is left reads 100%.
func (f Filesystem) UsedPct() float64 {
	u := f.Used()
	if u+f.Avail == 0 {
		return 0
	}
	return 100 * float64(u) / float64(u+f.Avail)
}

// InodesUsedPct is df -i's IUse%; zero without an inode table.
func (f Filesystem) InodesUsedPct() float64 {
	if f.Inodes == 0 || f.IFree > f.Inodes {
		return 0
	}
	return 100 * float64(f.Inodes-f.IFree) / float64(f.Inodes)
}

// Disk is one block device's cumulative counters from /proc/diskstats.
type Disk struct {
	Name string `json:"name"`
	Dev  string `json:"dev"` // major:minor
	// Reads and Writes are completed requests; sectors are 512 bytes
	// whatever the device's own sector size.
	Reads        uint64 `json:"r"`
	Writes       uint64 `json:"w"`
	ReadSectors  uint64 `json:"rs"`
	WriteSectors uint64 `json:"ws"`
	// ReadMs and WriteMs are the time requests spent, queue included;
	// IOMs is the time the device had any request in flight (utilization);
	// WeightedMs is that time weighted by the number in flight (queue size).
	ReadMs     uint64 `json:"rms"`
	WriteMs    uint64 `json:"wms"`
	IOMs       uint64 `json:"ioms"`
	WeightedMs uint64 `json:"wtms"`
	InFlight   uint64 `json:"inflight,omitempty"`
}

// DiskRate is a device's activity between two samples, as iostat -x shows it.
type DiskRate struct {
	Name     string  `json:"name"`
	ReadsPS  float64 `json:"reads_per_s"`
	WritesPS float64 `json:"writes_per_s"`
	ReadBps  float64 `json:"read_bytes_per_s"`
	WriteBps float64 `json:"write_bytes_per_s"`
	// AwaitMs is the average time of a completed request, queueing
	// included; zero when none completed.
	AwaitMs float64 `json:"await_ms"`
	// Util is the share of the interval with a request in flight, 0-100.
	// On a device that serves many requests at once (NVMe, a cloud
	// volume) 100% is busy, not necessarily saturated: the await says.
	Util float64 `json:"util"`
	// Queue is the average number of requests in flight (aqu-sz).
	Queue float64 `json:"queue"`
}

// diskRate computes a's to b's activity over dt seconds; false when the
// counters went backwards (device re-attached).
func diskRate(a, b Disk, dt float64) (DiskRate, bool) {
	if dt <= 0 || b.Reads < a.Reads || b.Writes < a.Writes || b.ReadSectors < a.ReadSectors || b.WriteSectors < a.WriteSectors || b.IOMs < a.IOMs {
		return DiskRate{Name: b.Name}, false
	}
	r := DiskRate{Name: b.Name}
	ios := float64(b.Reads - a.Reads + b.Writes - a.Writes)
	r.ReadsPS = float64(b.Reads-a.Reads) / dt
	r.WritesPS = float64(b.Writes-a.Writes) / dt
	r.ReadBps = float64(b.ReadSectors-a.ReadSectors) * 512 / dt
	r.WriteBps = float64(b.WriteSectors-a.WriteSectors) * 512 / dt
	if ios > 0 && b.ReadMs+b.WriteMs >= a.ReadMs+a.WriteMs {
		r.AwaitMs = float64(b.ReadMs+b.WriteMs-a.ReadMs-a.WriteMs) / ios
	}
	r.Util = clamp(100 * float64(b.IOMs-a.IOMs) / (dt * 1000))
	if b.WeightedMs >= a.WeightedMs {
		r.Queue = float64(b.WeightedMs-a.WeightedMs) / (dt * 1000)
	}
	return r, true
}

// pseudoFS are the filesystem types that hold no data a full disk could
// stop: kernel interfaces, memory-backed mounts, and read-only images that
// always read 100% (snaps, ISO images). Skipped unless asked for; the list
// follows node_exporter's filesystem collector, plus tmpfs and overlay,
// which issue 18 names.
var pseudoFS = map[string]bool{
	"autofs": true, "binfmt_misc": true, "bpf": true, "cgroup": true, "cgroup2": true, "configfs": true,
	"debugfs": true, "devpts": true, "devtmpfs": true, "efivarfs": true, "fusectl": true, "hugetlbfs": true,
	"iso9660": true, "mqueue": true, "nsfs": true, "overlay": true, "proc": true, "procfs": true, "pstore": true,
	"ramfs": true, "rpc_pipefs": true, "securityfs": true, "selinuxfs": true, "squashfs": true, "erofs": true,
	"sysfs": true, "tracefs": true, "tmpfs": true, "fuse.lxcfs": true, "fuse.gvfsd-fuse": true, "fuse.portal": true,
	"nfsd": true, "aufs": true, "shm": true, "ramfs.tmpfs": true,
}

// pseudoMount are mount points under which nothing is a disk worth
// watching, whatever its type (a container runtime's private mounts).
var pseudoMount = regexp.MustCompile(`^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+|var/lib/kubelet/pods/.+)($|/)`)

// ignoredDisk are block devices whose activity is not a disk's: RAM disks,
// loop devices (snaps), floppies, and partitions, which would count their
// disk's I/O twice.
var ignoredDisk = regexp.MustCompile(`^(z?ram\d+|loop\d+|fd\d+|nbd\d+|((h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+)$`)

// partitionOf maps a partition's name to its disk's: sda1 → sda,
// nvme0n1p2 → nvme0n1, mmcblk0p1 → mmcblk0.
var partitionOf = regexp.MustCompile(`^((?:h|s|v|xv)d[a-z]+|nvme\d+n\d+|mmcblk\d+)p?\d+$`)

// FSStat is what statfs(2) says of a filesystem, in bytes and inodes.
type FSStat struct {
	Size, Free, Avail, Inodes, IFree uint64
}

// StatFSFunc reads a filesystem's figures at path.
type StatFSFunc func(path string) (FSStat, error)

// mountPoint is a row of the mount table kept between samples.
type mountPoint struct {
	fs Filesystem
	// path is where statfs is called: the mount point as seen from the
	// mount namespace the table came from.
	path string
	// guarded mounts are not on a local block device (NFS, FUSE): statfs on
	// a dead server blocks, so it runs with a timeout.
	guarded bool
	dev     string
}

// disks reads /proc/diskstats and the filesystems of the mount table.
func (s *Sampler) disks(smp *Sample, now time.Time, fail func(string, error)) {
	byDev := map[string]string{} // major:minor of a disk or partition -> recorded disk name
	if s.block != nil {
		stats, err := s.block.ProcDiskstats()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// No diskstats (some container sandboxes): no devices, not a failure.
		case err != nil:
			fail("disks (/proc/diskstats)", err)
		default:
			smp.Disks, byDev = diskRows(stats)
		}
	}
	if !s.mountsRead.IsZero() && now.Sub(s.mountsRead) < s.opts.MountInterval && now.After(s.mountsRead) {
		// The mount table changes rarely; statfs is what moves.
	} else {
		s.mountsRead = now
		mounts, err := s.mountTable()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				fail("filesystems (mountinfo)", err)
			}
			s.mounts = nil
		} else {
			s.mounts = selectMounts(mounts, s.mountRoot, s.opts.AllFilesystems)
		}
	}
	for _, m := range s.mounts {
		f := m.fs
		f.Disk = byDev[m.dev]
		st, err := s.statfs(m)
		if err != nil {
			fail("filesystem "+f.Mount, err)
			continue
		}
		f.Size, f.Free, f.Avail, f.Inodes, f.IFree = st.Size, st.Free, st.Avail, st.Inodes, st.IFree
		if f.Size == 0 {
			continue // nothing to fill (an empty autofs placeholder, say)
		}
		smp.Filesystems = append(smp.Filesystems, f)
	}
}

// diskRows keeps the devices worth showing and maps every device number,
// partitions included, to the disk recorded for it.
func diskRows(stats []blockdevice.Diskstats) ([]Disk, map[string]string) {
	names := map[string]bool{}
	for _, d := range stats {
		names[d.DeviceName] = true
	}
	byDev := map[string]string{}
	var out []Disk
	for _, d := range stats {
		dev := fmt.Sprintf("%d:%d", d.MajorNumber, d.MinorNumber)
		if m := partitionOf.FindStringSubmatch(d.DeviceName); m != nil && names[m[1]] && m[1] != d.DeviceName {
			byDev[dev] = m[1]
		}
		if ignoredDisk.MatchString(d.DeviceName) {
			continue
		}
		if d.ReadIOs == 0 && d.WriteIOs == 0 && d.IOsInProgress == 0 {
			continue // never used: an unattached nbd, an empty drive
		}
		byDev[dev] = d.DeviceName
		out = append(out, Disk{Name: d.DeviceName, Dev: dev, Reads: d.ReadIOs, Writes: d.WriteIOs,
			ReadSectors: d.ReadSectors, WriteSectors: d.WriteSectors, ReadMs: d.ReadTicks, WriteMs: d.WriteTicks,
			IOMs: d.IOsTotalTicks, WeightedMs: d.WeightedIOTicks, InFlight: d.IOsInProgress})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	// A partition whose disk was dropped (all-zero counters cannot be, but
	// an ignored one can) maps to nothing rather than to a missing row.
	for dev, name := range byDev {
		if ignoredDisk.MatchString(name) {
			delete(byDev, dev)
		}
	}
	return out, byDev
}

// mountTable reads PID 1's mount table, which is the host's even when
// headroom runs in a private mount namespace (the systemd unit's
// PrivateTmp), and falls back to its own.
func (s *Sampler) mountTable() ([]*procfs.MountInfo, error) {
	if m, err := s.fs.GetProcMounts(1); err == nil {
		// Its mount points are reached through /proc/1/root, which takes
		// ptrace rights over PID 1 (CAP_SYS_PTRACE in the unit). Without
		// them, the same paths seen from here are the best there is: in
		// the common case, the same namespace.
		s.mountRoot = s.opts.ProcRoot + "/1/root"
		if _, err := os.Stat(s.mountRoot + "/"); err != nil {
			s.mountRoot = ""
		}
		return m, nil
	}
	s.mountRoot = ""
	return s.fs.GetMounts()
}

// selectMounts turns the mount table into the filesystems to statfs: real
// ones only (unless all), each filesystem once even when bind-mounted in
// several places (its own root's mount, at the shortest mount point, wins).
func selectMounts(mounts []*procfs.MountInfo, root string, all bool) []mountPoint {
	byDev := map[string]int{}
	var out []mountPoint
	var roots []string
	for _, m := range mounts {
		if !all && (pseudoFS[m.FSType] || pseudoMount.MatchString(m.MountPoint)) {
			continue
		}
		_, ro := m.Options["ro"]
		mp := mountPoint{
			fs:   Filesystem{Mount: m.MountPoint, Source: m.Source, Type: m.FSType, ReadOnly: ro},
			path: root + m.MountPoint, dev: m.MajorMinorVer,
			guarded: !strings.HasPrefix(m.Source, "/dev/"),
		}
		if i, ok := byDev[m.MajorMinorVer]; ok {
			own, prevOwn := m.Root == "/", roots[i] == "/"
			if (own && !prevOwn) || (own == prevOwn && len(mp.fs.Mount) < len(out[i].fs.Mount)) {
				out[i], roots[i] = mp, m.Root
			}
			continue
		}
		byDev[m.MajorMinorVer] = len(out)
		out = append(out, mp)
		roots = append(roots, m.Root)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].fs.Mount < out[j].fs.Mount })
	return out
}

// statfs calls the StatFS function; for a guarded mount in a goroutine,
// given up on after StatFSTimeout. A mount whose call has not returned is
// skipped, and said to be, until it does: one hung NFS server must not
// stop the sampler, nor pile up a goroutine per sample.
func (s *Sampler) statfs(m mountPoint) (FSStat, error) {
	if !m.guarded {
		return s.opts.StatFS(m.path)
	}
	s.stuckMu.Lock()
	if s.stuck[m.path] {
		s.stuckMu.Unlock()
		return FSStat{}, fmt.Errorf("statfs %s has not returned for over %s (a dead network server?); skipped until it does", m.path, s.opts.StatFSTimeout)
	}
	s.stuck[m.path] = true
	s.stuckMu.Unlock()
	type result struct {
		st  FSStat
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := s.opts.StatFS(m.path)
		s.stuckMu.Lock()
		delete(s.stuck, m.path)
		s.stuckMu.Unlock()
		ch <- result{st, err}
	}()
	t := time.NewTimer(s.opts.StatFSTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-t.C:
		return FSStat{}, fmt.Errorf("statfs %s did not answer within %s (a dead network server?)", m.path, s.opts.StatFSTimeout)
	}
}
