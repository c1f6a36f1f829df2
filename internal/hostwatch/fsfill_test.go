package hostwatch

import (
	"strings"
	"testing"
	"time"
)

// TestFSFindings: the filesystem findings on series built by hand, one
// case per way a filesystem is worth a line (or is not).
func TestFSFindings(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)
	const size = 10 << 30
	// series gives a filesystem's figures at minute i of an hour.
	type fig struct{ avail, ifree uint64 }
	for _, tc := range []struct {
		name     string
		ro       bool
		at       func(i int) fig
		want     []string // substrings of the one finding's summary; nil: no finding
		severity string
		inodes   bool
	}{
		{"steady and roomy", false, func(int) fig { return fig{6 << 30, 500000} }, nil, "", false},
		{"noise on a roomy disk", false, func(i int) fig { return fig{6<<30 - uint64(i%3)<<20, 500000} }, nil, "", false},
		{"filling, a day left", false, func(i int) fig { return fig{uint64(4<<30 - i*(3<<20)), 500000} },
			[]string{"filling at 180 MiB an hour", "full in about"}, "warning", false},
		{"filling, minutes left", false, func(i int) fig { return fig{uint64(700<<20 - i*(10<<20)), 500000} },
			[]string{"full in about 10 min"}, "critical", false},
		{"nearly full, not growing", false, func(int) fig { return fig{400 << 20, 500000} },
			[]string{"is 96% full", "not growing in this window"}, "warning", false},
		{"ran out", false, func(i int) fig { return fig{uint64(max(0, 300<<20-i*(10<<20))), 500000} },
			[]string{"it ran out at 02:30:00", "No space left on device"}, "critical", false},
		{"read-only and full", true, func(int) fig { return fig{0, 0} }, nil, "", false},
		{"inodes running out", false, func(i int) fig { return fig{6 << 30, uint64(20000 - i*300)} },
			[]string{"of its inodes used", "2000 inodes left of 655k inodes", "full in about 7 min"}, "critical", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var samples []Sample
			for i := 0; i <= 60; i++ {
				f := tc.at(i)
				samples = append(samples, Sample{Time: t0.Add(time.Duration(i) * time.Minute), Filesystems: []Filesystem{{
					Mount: "/var", Source: "/dev/sdb1", Type: "ext4", Size: size, Free: f.avail, Avail: f.avail,
					Inodes: 655360, IFree: f.ifree, ReadOnly: tc.ro}}})
			}
			got := fsFindings(samples, t0, t0.Add(time.Hour), time.UTC)
			if tc.want == nil {
				if len(got) != 0 {
					t.Fatalf("finding where none is due: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d findings, want 1: %+v", len(got), got)
			}
			f := got[0]
			if f.Severity != tc.severity || f.Inodes != tc.inodes {
				t.Errorf("severity %s inodes %v, want %s %v", f.Severity, f.Inodes, tc.severity, tc.inodes)
			}
			for _, w := range tc.want {
				if !strings.Contains(f.Summary, w) {
					t.Errorf("summary lacks %q:\n%s", w, f.Summary)
				}
			}
			if f.Action == "" {
				t.Error("no action")
			}
		})
	}
}
