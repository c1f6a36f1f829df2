package hostwatch

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/hostwatch/tsdb"
)

// BenchmarkSample is one sample of this machine's /proc, as watch takes it
// every interval (after the first, so per-process CPU% and the socket
// owner cache are warm, as in steady state).
func BenchmarkSample(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads Linux /proc")
	}
	s, err := NewSampler(SamplerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s.Sample()
	b.ReportAllocs()
	for b.Loop() {
		s.Sample()
	}
}

// BenchmarkSampleFixture samples the seed fixture tree: a small host's
// /proc (a dozen processes), independent of what else runs here.
func BenchmarkSampleFixture(b *testing.B) {
	root := filepath.Join(b.TempDir(), "proc")
	at := time.Date(2025, 8, 28, 6, 24, 0, 0, time.UTC)
	tree := &procTree{root: root, boot: seedBoot1, procCPU: map[int]float64{}, started: map[int]int{}}
	t := &testing.T{}
	tree.write(t, at, 0, seedState(at))
	s, err := NewSampler(SamplerOptions{ProcRoot: root})
	if err != nil {
		b.Fatal(err)
	}
	s.Sample()
	b.ReportAllocs()
	for b.Loop() {
		s.Sample()
	}
}

// BenchmarkRecord is what watch does per tick after sampling: encode and
// append with fsync.
func BenchmarkRecord(b *testing.B) {
	s, err := NewSampler(SamplerOptions{})
	if err != nil {
		b.Skip(err)
	}
	smp := s.Sample()
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "fsync"
		}
		b.Run(name, func(b *testing.B) {
			db, err := tsdb.Open(tsdb.Options{Dir: b.TempDir(), NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = EncodeSample(buf[:0], smp)
				if err := db.Append(smp.Time, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "bytes/sample")
		})
	}
}
