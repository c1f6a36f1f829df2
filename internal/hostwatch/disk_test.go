package hostwatch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// The disk scenario (issue 18), rendered as /proc trees like the seed: an
// 8 GiB host whose app, myapp.service (java), logs 0.8 MiB/s onto a 20 GiB
// root filesystem with 4 GiB left at 02:00, and whose nightly
// backup.service (tar | gzip) reads the root disk flat out from 02:30 to
// 02:40, writing the archive to a second disk. The mount table is a real
// cloud host's, with the pseudo filesystems a sampler must skip.
var (
	diskBoot  = time.Date(2026, 3, 14, 0, 12, 0, 0, time.UTC)
	diskT0    = time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)
	backupOn  = diskT0.Add(30 * time.Minute)
	backupOff = diskT0.Add(40 * time.Minute)
)

const (
	diskMemKB = 8 << 20
	rootSize  = 20 << 30
	// rootWrite is what lands on / per second: the app's log, the
	// database and the journal.
	appWrite  = 0.8 * (1 << 20)
	pgWrite   = 100 << 10
	jrnWrite  = 20 << 10
	rootWrite = appWrite + pgWrite + jrnWrite
	tarRead   = 110 << 20
	gzipWrite = 30 << 20
)

const diskMountinfo = `1 0 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw,discard,errors=remount-ro
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4008420k,nr_inodes=1002105,mode=755
25 1 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=804268k,mode=755
26 1 259:2 / /boot/efi rw,relatime shared:3 - vfat /dev/nvme0n1p15 rw,fmask=0077,dmask=0077
27 1 259:3 / /backup rw,relatime shared:4 - xfs /dev/nvme1n1 rw,attr2,inode64
28 1 7:0 / /snap/core20/2318 ro,nodev,relatime shared:6 - squashfs /dev/loop0 ro
29 1 0:46 / /var/lib/docker/overlay2/3f1c/merged rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC
30 1 259:1 /var/lib/docker/volumes/pg/_data /srv/pg rw,relatime - ext4 /dev/nvme0n1p1 rw,discard
31 1 0:50 / /mnt/share rw,relatime - nfs4 10.0.0.5:/export rw,vers=4.2
32 25 0:26 / /run/user/1000 rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=804264k,mode=700
33 1 259:4 / /mnt/iso ro,relatime - ext4 /dev/nvme2n1 ro
`

var diskDevices = []fdev{
	{"loop0", 7, 0, 900}, {"loop1", 7, 1, 0},
	{"nvme0n1", 259, 0, 40000}, {"nvme0n1p1", 259, 1, 39000}, {"nvme0n1p15", 259, 2, 300},
	{"nvme1n1", 259, 3, 2000}, {"nvme2n1", 259, 4, 500}, {"zram0", 252, 0, 100},
}

// diskState is the host at t.
func diskState(t time.Time) fstate {
	st := fstate{user: 0.08, sys: 0.03, rxBps: 4000, txBps: 9000, rxPps: 40,
		procs: []fproc{
			{1, "systemd", "init.scope", 12 << 10, 0.002, nil},
			{312, "systemd-journal", "systemd-journald.service", 30 << 10, 0.004, nil},
			{688, "sshd", "ssh.service", 8 << 10, 0, []uint64{14512, 14514}},
			{2100, "java", "myapp.service", 900 << 10, 0.15, []uint64{16620}},
			{2200, "postgres", "postgresql@15-main.service", 300 << 10, 0.05, nil},
		},
		io: map[int][2]float64{312: {0, jrnWrite}, 2100: {0, appWrite}, 2200: {50 << 10, pgWrite}},
		disks: map[string]fdisk{
			"nvme0n1": {rps: 5, wps: 40, rbps: 50 << 10, wbps: rootWrite, util: 0.04, awaitMs: 0.6, queue: 0.03},
			"nvme1n1": {rps: 0.1, wps: 0.2, rbps: 400, wbps: 800, util: 0.001, awaitMs: 0.4},
		},
	}
	if !t.Before(backupOn) && t.Before(backupOff.Add(time.Second)) {
		st.procs = append(st.procs, fproc{3300, "tar", "backup.service", 20 << 10, 0.3, nil}, fproc{3301, "gzip", "backup.service", 8 << 10, 0.6, nil})
		st.io[3300] = [2]float64{tarRead, 0}
		st.io[3301] = [2]float64{0, gzipWrite}
		st.disks["nvme0n1"] = fdisk{rps: 880, wps: 40, rbps: tarRead + 50<<10, wbps: rootWrite, util: 0.99, awaitMs: 36, queue: 31}
		st.disks["nvme1n1"] = fdisk{rps: 0.1, wps: 240, rbps: 400, wbps: gzipWrite, util: 0.42, awaitMs: 1.8, queue: 0.5}
		st.user, st.sys, st.iowait = 0.35, 0.1, 0.3
		st.ioSome = 0.7
	}
	return st
}

// diskStatFS is what statfs says at t, path by path.
func diskStatFS(t time.Time) map[string]FSStat {
	since := t.Sub(diskT0).Seconds()
	rootAvail := uint64(4<<30 - rootWrite*since)
	backup := min(max(0, t.Sub(backupOn).Seconds()), backupOff.Sub(backupOn).Seconds())
	backupAvail := uint64(80<<30 - gzipWrite*backup)
	return map[string]FSStat{
		"/":          {Size: rootSize, Free: rootAvail + 1<<30, Avail: rootAvail, Inodes: 1310720, IFree: 1003000 - uint64(since/60)},
		"/backup":    {Size: 100 << 30, Free: backupAvail, Avail: backupAvail, Inodes: 52428800, IFree: 52428000},
		"/boot/efi":  {Size: 105 << 20, Free: 98 << 20, Avail: 98 << 20},
		"/mnt/share": {Size: 1 << 40, Free: 400 << 30, Avail: 400 << 30, Inodes: 6e7, IFree: 5e7},
		"/mnt/iso":   {Size: 4 << 30, Free: 0, Avail: 0, Inodes: 1000, IFree: 0},
	}
}

// diskTimes: every 30 s from 01:50 to 03:00.
func diskTimes() []time.Time {
	var ts []time.Time
	for t := diskT0.Add(-10 * time.Minute); !t.After(diskT0.Add(time.Hour)); t = t.Add(30 * time.Second) {
		ts = append(ts, t)
	}
	return ts
}

// diskFixture is the scenario's /proc tree, its clock and statfs.
type diskFixture struct {
	tree *procTree
	mu   sync.Mutex
	now  time.Time
	prev time.Time
}

func newDiskFixture(t *testing.T) *diskFixture {
	root := filepath.Join(t.TempDir(), "proc")
	f := &diskFixture{tree: &procTree{root: root, boot: diskBoot, procCPU: map[int]float64{}, started: map[int]int{},
		memKB: diskMemKB, mountinfo: diskMountinfo, devices: diskDevices}}
	return f
}

// step renders the tree at ts.
func (f *diskFixture) step(t *testing.T, ts time.Time) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	dt := 0.0
	if !f.prev.IsZero() {
		dt = ts.Sub(f.prev).Seconds()
	}
	f.tree.write(t, ts, dt, diskState(ts))
	f.prev, f.now = ts, ts
}

func (f *diskFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *diskFixture) statfs(path string) (FSStat, error) {
	st, ok := diskStatFS(f.clock())[path]
	if !ok {
		return FSStat{}, fmt.Errorf("statfs %s: no such file or directory", path)
	}
	return st, nil
}

func (f *diskFixture) sampler(t *testing.T, opts SamplerOptions) *Sampler {
	t.Helper()
	opts.ProcRoot, opts.Now, opts.StatFS = f.tree.root, f.clock, f.statfs
	s, err := NewSampler(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordDisk records the scenario into dir; at snapAt (if not zero) it
// also takes a snapshot whose two samples are the recording's at
// snapAt-30s and snapAt, and returns it.
func recordDisk(t *testing.T, dir string, snapAt time.Time, j Journal) *Snapshot {
	t.Helper()
	f := newDiskFixture(t)
	times := diskTimes()
	f.step(t, times[0])
	rec := f.sampler(t, SamplerOptions{})
	db, err := tsdb.Open(tsdb.Options{Dir: dir, NoSync: true, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	record := func() {
		s := rec.Sample()
		if len(s.Errors) > 0 {
			t.Fatalf("sample at %s: %v", s.Time, s.Errors)
		}
		p, err := EncodeSample(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Append(s.Time, p); err != nil {
			t.Fatal(err)
		}
	}
	var snap *Snapshot
	for i := 0; i < len(times); i++ {
		if i > 0 {
			f.step(t, times[i])
		}
		record()
		if i+1 < len(times) && times[i+1].Equal(snapAt) {
			// snapshot's first sample reads this tree; its wait is the
			// step to the next one, which the recording samples too.
			snap, err = TakeSnapshot(context.Background(), SnapshotOptions{
				ProcRoot: f.tree.root, Now: f.clock, StatFS: f.statfs, Wait: 30 * time.Second, Journal: j,
				After: func(time.Duration) <-chan time.Time {
					i++
					f.step(t, times[i])
					record()
					c := make(chan time.Time, 1)
					c <- times[i]
					return c
				},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return snap
}

func TestFilesystemsFixture(t *testing.T) {
	f := newDiskFixture(t)
	at := diskT0.Add(30 * time.Minute)
	f.step(t, at)
	s := f.sampler(t, SamplerOptions{}).Sample()
	if len(s.Errors) > 0 {
		t.Fatal(s.Errors)
	}
	var got []string
	for _, fs := range s.Filesystems {
		got = append(got, fmt.Sprintf("%s %s %s disk=%s ro=%v", fs.Mount, fs.Source, fs.Type, fs.Disk, fs.ReadOnly))
	}
	// proc, sysfs, devtmpfs, tmpfs, squashfs and overlay are skipped; the
	// bind mount of / at /srv/pg is the same filesystem, listed once; a
	// partition's disk is the whole device.
	want := []string{
		"/ /dev/nvme0n1p1 ext4 disk=nvme0n1 ro=false",
		"/backup /dev/nvme1n1 xfs disk=nvme1n1 ro=false",
		"/boot/efi /dev/nvme0n1p15 vfat disk=nvme0n1 ro=false",
		"/mnt/iso /dev/nvme2n1 ext4 disk=nvme2n1 ro=true",
		"/mnt/share 10.0.0.5:/export nfs4 disk= ro=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("filesystems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	root := s.Filesystems[0]
	avail := uint64(4<<30 - rootWrite*1800)
	if root.Size != rootSize || root.Avail != avail || root.Used() != rootSize-avail-1<<30 {
		t.Errorf("/ size %d avail %d used %d", root.Size, root.Avail, root.Used())
	}
	// df's Use%: used / (used + avail), root's reserve not available.
	if p, want := root.UsedPct(), 100*float64(rootSize-avail-1<<30)/float64(rootSize-1<<30); math.Abs(p-want) > 1e-9 {
		t.Errorf("/ used %.4f%%, want %.4f%%", p, want)
	}
	if p, want := root.InodesUsedPct(), 100*float64(1310720-(1003000-30))/1310720; math.Abs(p-want) > 1e-9 {
		t.Errorf("/ inodes used %.4f%%, want %.4f%%", p, want)
	}
	if efi := s.Filesystems[2]; efi.Inodes != 0 || efi.InodesUsedPct() != 0 {
		t.Errorf("vfat has no inode table: %+v", efi)
	}
	// Disks: partitions, loop devices and zram are not disks; an unused
	// device is dropped.
	var names []string
	for _, d := range s.Disks {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != "nvme0n1,nvme1n1,nvme2n1" {
		t.Errorf("disks %v", names)
	}

	sm, err := NewSampler(SamplerOptions{ProcRoot: f.tree.root, AllFilesystems: true, StatFS: func(string) (FSStat, error) { return FSStat{Size: 1 << 20, Avail: 1 << 19}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	all := sm.Sample()
	var mounts []string
	for _, fs := range all.Filesystems {
		mounts = append(mounts, fs.Mount)
	}
	if got, want := strings.Join(mounts, " "), "/ /backup /boot/efi /dev /mnt/iso /mnt/share /proc /run /run/user/1000 /snap/core20/2318 /sys /var/lib/docker/overlay2/3f1c/merged"; got != want {
		t.Errorf("all filesystems:\n got %s\nwant %s", got, want)
	}
}

// TestDiskUtilizationFixture: a device's rates from two diskstats samples
// ten seconds apart, against figures worked out by hand.
func TestDiskUtilizationFixture(t *testing.T) {
	root := filepath.Join(t.TempDir(), "proc")
	write := func(line string) {
		os.MkdirAll(root, 0o755)
		if err := os.WriteFile(filepath.Join(root, "diskstats"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 3, 14, 2, 30, 0, 0, time.UTC)
	// reads rmerged rsect rms writes wmerged wsect wms inflight ioms weighted
	write(" 259 0 nvme0n1 1000 10 80000 4000 2000 20 160000 6000 0 50000 90000 0 0 0 0 0 0\n   7 0 loop0 5 0 10 1 0 0 0 0 0 1 1 0 0 0 0 0 0\n")
	s, err := NewSampler(SamplerOptions{ProcRoot: root, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Sample()
	now = now.Add(10 * time.Second)
	// +1000 reads of 80000 sectors in 2000 ms, +3000 writes of 240000
	// sectors in 7000 ms, 9500 ms busy, 20000 ms weighted, 4 in flight.
	write(" 259 0 nvme0n1 2000 10 160000 6000 5000 20 400000 13000 4 59500 110000 0 0 0 0 0 0\n   7 0 loop0 5 0 10 1 0 0 0 0 0 1 1 0 0 0 0 0 0\n")
	b := s.Sample()
	r, ok := RatesBetween(a, b)
	if !ok || len(r.Disks) != 1 {
		t.Fatalf("rates %+v %v", r.Disks, ok)
	}
	want := DiskRate{Name: "nvme0n1", ReadsPS: 100, WritesPS: 300, ReadBps: 80000 * 512 / 10, WriteBps: 240000 * 512 / 10,
		AwaitMs: 9000.0 / 4000, Util: 95, Queue: 2}
	if r.Disks[0] != want {
		t.Errorf("rates\n got %+v\nwant %+v", r.Disks[0], want)
	}
	if b.Disks[0].InFlight != 4 {
		t.Errorf("in flight %d", b.Disks[0].InFlight)
	}
	// A device re-attached between samples (counters reset) has no rate.
	write(" 259 0 nvme0n1 10 0 80 4 20 0 160 6 0 50 90 0 0 0 0 0 0\n")
	now = now.Add(10 * time.Second)
	if r, _ := RatesBetween(b, s.Sample()); len(r.Disks) != 0 {
		t.Errorf("rates across a counter reset: %+v", r.Disks)
	}
}

// TestStatfsGuard: a network filesystem whose server is gone blocks in
// statfs. The sample goes on without it, says so, skips it while the call
// hangs, and reads it again once the call returns.
func TestStatfsGuard(t *testing.T) {
	f := newDiskFixture(t)
	f.step(t, diskT0)
	release := make(chan struct{})
	var hung sync.WaitGroup
	hung.Add(1)
	stat := func(path string) (FSStat, error) {
		if path == "/mnt/share" {
			select {
			case <-release:
			default:
				defer hung.Done()
				<-release
			}
		}
		return f.statfs(path)
	}
	s, err := NewSampler(SamplerOptions{ProcRoot: f.tree.root, Now: f.clock, StatFS: stat, StatFSTimeout: 10 * time.Millisecond, MountInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Sample()
	if len(first.Filesystems) != 4 || len(first.Errors) != 1 || !strings.Contains(first.Errors[0], "did not answer") {
		t.Fatalf("hung mount: %d filesystems, errors %q", len(first.Filesystems), first.Errors)
	}
	second := s.Sample()
	if len(second.Errors) != 1 || !strings.Contains(second.Errors[0], "skipped until it does") {
		t.Fatalf("still hung: errors %q", second.Errors)
	}
	close(release)
	hung.Wait()
	// The hung call's goroutine clears its mark after it returns; wait
	// for that, not for time.
	for i := 0; ; i++ {
		third := s.Sample()
		if len(third.Errors) == 0 {
			if len(third.Filesystems) != 5 {
				t.Fatalf("after release: %d filesystems", len(third.Filesystems))
			}
			break
		}
		if i > 1000 {
			t.Fatalf("mount still skipped after release: %q", third.Errors)
		}
		runtime.Gosched()
	}
}

// TestFilesystemsThisMachine compares the sampler's filesystems on this
// machine with df's, the tool an operator would trust.
func TestFilesystemsThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux /proc")
	}
	df := testenv.RequireBinary(t, "df")
	s, err := NewSampler(SamplerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	smp := s.Sample()
	if len(smp.Filesystems) == 0 {
		t.Fatalf("no filesystems found on this machine (errors %q)", smp.Errors)
	}
	for _, f := range smp.Filesystems {
		if pseudoFS[f.Type] {
			t.Errorf("pseudo filesystem %s (%s) listed", f.Mount, f.Type)
		}
		out, err := exec.Command(df, "-B1", "--output=size,avail,itotal", f.Mount).Output()
		if err != nil {
			t.Errorf("df %s: %v", f.Mount, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		fields := strings.Fields(lines[len(lines)-1])
		if len(fields) != 3 {
			t.Fatalf("df output %q", out)
		}
		size, _ := strconv.ParseUint(fields[0], 10, 64)
		avail, _ := strconv.ParseUint(fields[1], 10, 64)
		itotal, _ := strconv.ParseUint(fields[2], 10, 64)
		if size != f.Size || (fields[2] != "-" && itotal != f.Inodes) {
			t.Errorf("%s: size %d inodes %d, df says %d and %d", f.Mount, f.Size, f.Inodes, size, itotal)
		}
		// Others write while we look: the free space agrees to 1%.
		if diff := math.Abs(float64(avail) - float64(f.Avail)); diff > 0.01*float64(size) {
			t.Errorf("%s: avail %d, df says %d", f.Mount, f.Avail, avail)
		}
	}
}

// TestExplainDiskScenario is issue 18's acceptance test: on the recorded
// scenario, explain finds / filling up with the time left and the app as
// its writer, and the backup saturating the root disk, named as the cause,
// with the io pressure tied to it; with the journal and without.
func TestExplainDiskScenario(t *testing.T) {
	dir := t.TempDir()
	recordDisk(t, dir, time.Time{}, nil)
	if testenv.Update() {
		// Keep a copy for the README's example and the CLI's tests.
		copyRecording(t, dir, filepath.Join("testdata", "disk", "recording"))
	}
	explain := func(j Journal) *Report {
		rep, err := Explain(context.Background(), ExplainOptions{Data: dir, Since: diskT0, Until: diskT0.Add(time.Hour), Journal: j,
			ProcRoot: "testdata/disk/no-proc", Location: time.UTC, Now: func() time.Time { return diskT0.Add(time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	for _, tc := range []struct {
		name string
		j    Journal
	}{
		{"journal", FileJournal{Path: "testdata/disk/journal.json"}},
		{"no journal", FileJournal{Path: "testdata/disk/no-journal.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := explain(tc.j)
			if len(rep.Filesystems) != 1 {
				t.Fatalf("%d filesystem findings, want 1 (/): %+v", len(rep.Filesystems), rep.Filesystems)
			}
			fs := rep.Filesystems[0]
			if fs.Mount != "/" || fs.Severity != "critical" || fs.TimeLeft == nil {
				t.Fatalf("finding %+v", fs)
			}
			// At the last sample (02:59:30), 4 GiB less its writes since
			// 02:00 are left, going at rootWrite.
			left := (4<<30 - rootWrite*3570) / rootWrite
			if got := time.Duration(*fs.TimeLeft).Seconds(); math.Abs(got-left) > 0.02*left {
				t.Errorf("time left %.0f s, want about %.0f s", got, left)
			}
			if len(fs.Writers) == 0 || fs.Writers[0].Comm != "java" || fs.Units[0].Unit != "myapp.service" {
				t.Errorf("writers %+v units %+v", fs.Writers, fs.Units)
			}
			for _, want := range []string{"/ (/dev/nvme0n1p1) is ", "full in about 15 min", "java[2100] in myapp.service"} {
				if !strings.Contains(fs.Summary, want) {
					t.Errorf("summary lacks %q:\n%s", want, fs.Summary)
				}
			}
			if len(rep.Episodes) != 1 {
				t.Fatalf("%d episodes, want 1: %+v", len(rep.Episodes), rep.Episodes)
			}
			ep := rep.Episodes[0]
			if ep.Disk == nil || ep.Disk.Device != "nvme0n1" || len(ep.Disk.By) == 0 || ep.Disk.By[0].Unit != "backup.service" || ep.Disk.By[0].Share < 99 {
				t.Fatalf("disk %+v", ep.Disk)
			}
			if ep.Cause == nil || ep.Cause.Unit != "backup.service" {
				t.Fatalf("cause %+v", ep.Cause)
			}
			for _, want := range []string{"backup.service", "nvme0n1 99% busy", "of the I/O by backup.service (tar", "io pressure 35%: tasks stalled waiting on nvme0n1"} {
				if !strings.Contains(ep.Summary, want) {
					t.Errorf("summary lacks %q:\n%s", want, ep.Summary)
				}
			}
			var txt bytes.Buffer
			if err := WriteExplain(&txt, rep, time.UTC); err != nil {
				t.Fatal(err)
			}
			name := strings.ReplaceAll(tc.name, " ", "-")
			testenv.Golden(t, "testdata/disk/explain-"+name+".golden.txt", bytes.ReplaceAll(txt.Bytes(), []byte(dir), []byte("RECORDING")))
		})
	}
}

// TestShowAtIsSnapshot: `host show --at` on the recording gives what
// `host snapshot` gave at that moment, in text and JSON.
func TestShowAtIsSnapshot(t *testing.T) {
	dir := t.TempDir()
	at := backupOn.Add(5 * time.Minute)
	j := FileJournal{Path: "testdata/disk/journal.json"}
	live := recordDisk(t, dir, at, j)
	if live == nil {
		t.Fatal("no snapshot taken")
	}
	for _, ask := range []time.Time{at, at.Add(29 * time.Second)} {
		shown, err := SnapshotAt(context.Background(), ShowOptions{Data: dir, Journal: j}, ask)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(shown.Source, dir) {
			t.Errorf("source %q", shown.Source)
		}
		shown.Source = ""
		var a, b bytes.Buffer
		WriteJSON(&a, live)
		WriteJSON(&b, shown)
		if a.String() != b.String() {
			t.Errorf("show --at %s differs from the snapshot:\n%s", ask.Format(time.RFC3339), diffLines(a.String(), b.String()))
		}
		a.Reset()
		b.Reset()
		WriteSnapshot(&a, live, time.UTC)
		WriteSnapshot(&b, shown, time.UTC)
		if a.String() != b.String() {
			t.Errorf("text differs:\n%s", diffLines(a.String(), b.String()))
		}
		if ask.Equal(at) {
			testenv.Golden(t, "testdata/disk/show-at.golden.txt", b.Bytes())
		}
	}
	if _, err := SnapshotAt(context.Background(), ShowOptions{Data: dir}, diskT0.Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "the recording starts at") {
		t.Errorf("before the recording: %v", err)
	}
}

func copyRecording(t *testing.T, from, to string) {
	t.Helper()
	os.RemoveAll(to)
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".hrts") {
			b, err := os.ReadFile(filepath.Join(from, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("line %d:\n  snapshot %s\n  show     %s", i+1, x, y))
		}
	}
	return strings.Join(out, "\n")
}

// TestExportRoundTrip: every metric of the recording, exported as CSV and
// as JSON, reads back to the same table.
func TestExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	recordDisk(t, dir, time.Time{}, nil)
	samples, err := ReadRange(dir, diskT0, diskT0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := BuildExport(samples, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Rows) != 121 || len(ex.Metrics) < 40 {
		t.Fatalf("%d rows, %d metrics", len(ex.Rows), len(ex.Metrics))
	}
	// Spot checks against the scenario: the saturated disk, / filling.
	mid := ex.Rows[70] // 02:35
	if !mid.Time.Equal(backupOn.Add(5*time.Minute)) || mid.Values["disk.nvme0n1.util"] != 99 || mid.Values["fs./.avail"] != float64(uint64(4<<30-rootWrite*2100)) {
		t.Errorf("row at %s: util %v avail %v", mid.Time, mid.Values["disk.nvme0n1.util"], mid.Values["fs./.avail"])
	}
	if _, ok := ex.Rows[0].Values["cpu.busy"]; ok {
		t.Error("the first row has a rate")
	}
	for _, loc := range []*time.Location{time.UTC, time.FixedZone("UTC+5:30", 5*3600+1800)} {
		var csvBuf bytes.Buffer
		if err := WriteCSV(&csvBuf, ex, loc); err != nil {
			t.Fatal(err)
		}
		back, err := ReadCSV(&csvBuf)
		if err != nil {
			t.Fatal(err)
		}
		sameExport(t, "csv "+loc.String(), ex, back)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, ex); err != nil {
		t.Fatal(err)
	}
	var back Export
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	sameExport(t, "json", ex, &back)

	some, err := BuildExport(samples, []string{"disk.*.util", "fs./.avail"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(some.Metrics, ","); got != "disk.nvme0n1.util,disk.nvme1n1.util,disk.nvme2n1.util,fs./.avail" {
		t.Errorf("picked metrics %s", got)
	}
	if _, err := BuildExport(samples, []string{"dsik.*"}); err == nil || !strings.Contains(err.Error(), "disk.*.util") {
		t.Errorf("a pattern matching nothing: %v", err)
	}
}

func sameExport(t *testing.T, how string, a, b *Export) {
	t.Helper()
	if !reflect.DeepEqual(a.Metrics, b.Metrics) || len(a.Rows) != len(b.Rows) {
		t.Fatalf("%s: metrics or rows differ: %d/%d metrics, %d/%d rows", how, len(a.Metrics), len(b.Metrics), len(a.Rows), len(b.Rows))
	}
	for i := range a.Rows {
		if !a.Rows[i].Time.Equal(b.Rows[i].Time) || !reflect.DeepEqual(a.Rows[i].Values, b.Rows[i].Values) {
			t.Fatalf("%s: row %d differs:\n%+v\n%+v", how, i, a.Rows[i], b.Rows[i])
		}
	}
}

func TestTimelineDiskScenario(t *testing.T) {
	dir := t.TempDir()
	recordDisk(t, dir, time.Time{}, nil)
	samples, err := ReadRange(dir, diskT0, diskT0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// A gap: as if watch had stopped from 02:10 to 02:20.
	var cut []Sample
	for _, s := range samples {
		if s.Time.Before(diskT0.Add(10*time.Minute)) || !s.Time.Before(diskT0.Add(20*time.Minute)) {
			cut = append(cut, s)
		}
	}
	tl := BuildTimeline(cut, diskT0, diskT0.Add(time.Hour), 0)
	if tl.Step != time.Minute || len(tl.Rows) != 51 {
		t.Fatalf("step %s, %d rows", tl.Step, len(tl.Rows))
	}
	var b bytes.Buffer
	if err := WriteTimeline(&b, tl, "recording RECORDING", time.UTC); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/disk/timeline.golden.txt", b.Bytes())
	if !strings.Contains(b.String(), "02:10:00  no samples for 10 min") {
		t.Errorf("gap not shown:\n%s", b.String())
	}
}

// TestShowWhileWatching: the recording is readable while watch writes it
// (readers take no lock), and stays within its cap.
func TestShowWhileWatching(t *testing.T) {
	f := newDiskFixture(t)
	times := diskTimes()
	f.step(t, times[0])
	// The tree stays as it is (a tree rewritten under a running sampler
	// would be read half old, half new); only the clock moves.
	var mu sync.Mutex
	now := times[0]
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	tick := make(chan time.Time)
	done := make(chan error, 1)
	const capBytes = 64 << 10
	go func() {
		_, err := Watch(context.Background(), WatchOptions{Data: dir, Tick: tick, NoSync: true, MaxSize: capBytes,
			Sampler: SamplerOptions{ProcRoot: f.tree.root, Now: clock, StatFS: f.statfs}})
		done <- err
	}()
	for i := 1; i < len(times); i++ {
		mu.Lock()
		now = times[i]
		mu.Unlock()
		tick <- times[i]
		// Watch takes tick i only once it has recorded the sample before
		// (stamped times[i-1], or times[i] if it read the clock late):
		// that one must be readable now, while watch holds the recording.
		samples, err := ReadRange(dir, time.Time{}, times[i])
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) == 0 || samples[len(samples)-1].Time.Before(times[i-1]) {
			t.Fatalf("tick %d: the sample before it is not readable (%d samples)", i, len(samples))
		}
		if i%40 == 0 {
			if _, err := SnapshotAt(context.Background(), ShowOptions{Data: dir}, times[i-1]); err != nil {
				t.Fatalf("show --at while watching: %v", err)
			}
		}
	}
	close(tick)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var total int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".hrts") {
			total += info.Size()
		}
	}
	// The bound is the cap plus the segment being written (tsdb deletes
	// whole segments; at this cap a segment is 64 KiB, its floor).
	if total > capBytes+64<<10 {
		t.Errorf("recording %d bytes, over its %d cap and a segment", total, capBytes)
	}
	if kept := readRecording(t, dir); len(kept) == 0 || !kept[0].Time.After(times[0]) {
		t.Errorf("retention cut nothing: %d samples kept", len(kept))
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("time,cpu.busy,fs./.avail\n2026-03-14T02:00:00Z,,100\n2026-03-14T02:00:30.5+05:30,12.5,99\n")
	f.Add("time\n")
	f.Add("time,a\nnot a time,1\n")
	f.Fuzz(func(t *testing.T, in string) {
		ex, err := ReadCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := WriteCSV(&b, ex, time.UTC); err != nil {
			t.Fatalf("a read export does not write: %v", err)
		}
		back, err := ReadCSV(&b)
		if err != nil {
			t.Fatalf("written export does not read: %v\n%s", err, b.String())
		}
		if len(back.Rows) != len(ex.Rows) || !reflect.DeepEqual(back.Metrics, ex.Metrics) {
			t.Fatalf("round trip changed the table")
		}
	})
}
