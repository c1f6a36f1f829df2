package tailfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkFollow reads a pre-written file of 200-byte lines from its
// start, as a sidecar catching up does: one op is one Run over the whole
// file (its context done before it starts, so it reads to the end and
// returns). lines/s is the throughput, allocs/op the allocations of a Run
// (none of them per line).
func BenchmarkFollow(b *testing.B) {
	const lines = 100_000
	line := strings.Repeat("x", 199) + "\n"
	path := filepath.Join(b.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte(strings.Repeat(line, lines)), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.SetBytes(int64(lines * len(line)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		f, err := New(Options{Path: path, FromStart: true})
		if err != nil {
			b.Fatal(err)
		}
		n = 0
		if err := f.Run(ctx, func([]byte) { n++ }); err != nil {
			b.Fatal(err)
		}
		if n != lines {
			b.Fatalf("%d lines, want %d", n, lines)
		}
	}
	b.ReportMetric(float64(b.N)*lines/b.Elapsed().Seconds(), "lines/s")
}
