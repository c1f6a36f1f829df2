package selfmon

import (
	"math"
	"os"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestFixtureTrees reads two fixture /proc trees taken a second apart:
// 1.2 s of process CPU, 0.55 s of run-queue wait (one thread exited, one
// was born), the host two-thirds busy, 11 MB received on lo.
func TestFixtureTrees(t *testing.T) {
	at := time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC)
	read := func(root string, now time.Time) Reading {
		s, err := New(Options{ProcRoot: root, PID: 4242, Iface: "lo", Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		r := s.Read()
		if len(r.Errs) != 0 {
			t.Fatalf("%s: %v", root, r.Errs)
		}
		return r
	}
	r0 := read("testdata/t0", at)
	r1 := read("testdata/t1", at.Add(time.Second))
	if !near(r0.ProcCPU, 2.0) || len(r0.ThreadRun) != 2 {
		t.Errorf("t0: proc CPU %g, threads %v", r0.ProcCPU, r0.ThreadRun)
	}
	u := Compute(r0, r1)
	if !u.ProcKnown || !near(u.ProcCores, 1.2) {
		t.Errorf("proc cores %g (known %v), want 1.2", u.ProcCores, u.ProcKnown)
	}
	if !u.SchedKnown || !near(u.WaitCores, 0.55) {
		t.Errorf("wait cores %g, want 0.55", u.WaitCores)
	}
	if !u.HostKnown || !near(u.HostBusy, 2.0/3) {
		t.Errorf("host busy %g, want 0.667", u.HostBusy)
	}
	if !u.NetKnown || !near(u.RxBytesPerSec, 11e6) || !near(u.TxBytesPerSec, 2e6) {
		t.Errorf("net rx %g tx %g, want 11e6 and 2e6", u.RxBytesPerSec, u.TxBytesPerSec)
	}
}

func TestMissingPiecesAreReportedNotFatal(t *testing.T) {
	s, err := New(Options{ProcRoot: "testdata/t0", PID: 999, Iface: "wlan9"})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Read()
	if len(r.Errs) < 2 {
		t.Errorf("want errors for the missing process and interface, got %v", r.Errs)
	}
	if r.HostTotal == 0 {
		t.Errorf("host CPU should still be read")
	}
	if _, err := New(Options{ProcRoot: "testdata/nowhere"}); err == nil {
		t.Errorf("a missing proc root was accepted")
	}
}

func TestCompute(t *testing.T) {
	at := time.Unix(0, 0)
	tests := []struct {
		name       string
		prev, cur  Reading
		check      func(Usage) bool
		wantString string
	}{
		{"no time passed", Reading{At: at, ProcCPU: 1}, Reading{At: at, ProcCPU: 2},
			func(u Usage) bool { return !u.ProcKnown && !u.NetKnown }, "nothing known"},
		{"counter reset", Reading{At: at, Iface: "lo", RxBytes: 100}, Reading{At: at.Add(time.Second), Iface: "lo", RxBytes: 10},
			func(u Usage) bool { return !u.NetKnown }, "no negative throughput"},
		{"interface changed", Reading{At: at, Iface: "lo", RxBytes: 1}, Reading{At: at.Add(time.Second), Iface: "eth0", RxBytes: 100},
			func(u Usage) bool { return !u.NetKnown }, "no mixed interfaces"},
		{"no schedstat", Reading{At: at, ProcCPU: 1}, Reading{At: at.Add(2 * time.Second), ProcCPU: 2},
			func(u Usage) bool { return u.ProcKnown && near(u.ProcCores, 0.5) && !u.SchedKnown }, "half a core, no wait figure"},
		{"busy rounded above total", Reading{At: at, HostBusy: 10, HostTotal: 20}, Reading{At: at.Add(10 * time.Millisecond), HostBusy: 10.0200000001, HostTotal: 20.02},
			func(u Usage) bool { return u.HostKnown && u.HostBusy == 1 }, "host busy capped at 1"},
	}
	for _, tt := range tests {
		if u := Compute(tt.prev, tt.cur); !tt.check(u) {
			t.Errorf("%s: %+v, want %s", tt.name, u, tt.wantString)
		}
	}
}

// TestRealProc reads this process from the real /proc: the figures must be
// sane, whatever the machine.
func TestRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	iface, err := InterfaceFor("127.0.0.1")
	if err != nil || iface == "" {
		t.Fatalf("InterfaceFor(127.0.0.1) = %q, %v", iface, err)
	}
	s, err := New(Options{Iface: iface})
	if err != nil {
		t.Fatal(err)
	}
	r0 := s.Read()
	// Burn CPU until the kernel's accounting (clock ticks) shows it, rather
	// than for a fixed time that a loaded machine may not honour.
	x := 0
	var r1 Reading
	for deadline := time.Now().Add(10 * time.Second); ; {
		for i := 0; i < 1_000_000; i++ {
			x += i % 7
		}
		if r1 = s.Read(); r1.ProcCPU > r0.ProcCPU && r1.HostBusy > r0.HostBusy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU time accounted after 10 s of spinning: %+v -> %+v", r0, r1)
		}
	}
	if len(r1.Errs) != 0 {
		t.Logf("partial reading: %v", r1.Errs)
	}
	u := Compute(r0, r1)
	if !u.ProcKnown || u.ProcCores < 0 || !u.HostKnown || u.HostBusy < 0 || u.HostBusy > 1 || !u.NetKnown {
		t.Errorf("usage %+v (x=%d)", u, x)
	}
	if LinkSpeed("", iface) < 0 {
		t.Errorf("negative link speed")
	}
}
