package accesslog

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

var filepathGlob = filepath.Glob

// BenchmarkParse measures each parser over its golden lines (valid ones):
// bytes/s and allocations per line (which must be 0).
func BenchmarkParse(b *testing.B) {
	for _, c := range []struct{ name, path string }{
		{"combined", "testdata/golden/combined-elastic-apache-2015.log"},
		{"headroom", "testdata/golden/headroom-crafted.log"},
		{"ingress", "testdata/golden/ingress-beats.log"},
		{"s3", "testdata/golden/s3-beats.log"},
		{"alb", "testdata/golden/alb-beats.log"},
		{"json", "testdata/golden/json-crafted.log"},
		{"nginx-pipe", "testdata/golden/pipe-crafted.log"},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := formatFor(b, c.path)
			data, err := os.ReadFile(c.path)
			if err != nil {
				b.Fatal(err)
			}
			p := f.NewParser()
			var r Record
			var lines [][]byte
			size := 0
			for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				if p.Parse(l, &r) == nil {
					lines = append(lines, l)
					size += len(l) + 1
				}
			}
			b.SetBytes(int64(size) / int64(len(lines)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = p.Parse(lines[i%len(lines)], &r)
			}
		})
	}
}
