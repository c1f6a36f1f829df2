package accesslog

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
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

// BenchmarkAppend measures writing one proxied request's line in each
// format, as the guard does per request (a Record and the client address).
func BenchmarkAppend(b *testing.B) {
	r := Record{
		Time: time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC), Key: "fp-3fa94c0d1e2b5a67", Method: "GET",
		Path: "/api/v2/applications/33591900/metrics.json?page=2", Proto: "HTTP/1.1", Host: "api.example.com",
		Status: 200, BytesSent: 128, RequestTime: 1234 * time.Microsecond, UpstreamStatus: 200,
		UpstreamTime: 1100 * time.Microsecond, HasUpstreamTime: true,
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", Pool: "api",
	}
	client := netip.MustParseAddr("203.0.113.7")
	buf := make([]byte, 0, 512)
	b.Run("headroom", func(b *testing.B) {
		b.ReportAllocs()
		cpu := testenv.StartCPU()
		for b.Loop() {
			e := Entry{Record: r}
			e.SetClient(client)
			buf = AppendHeadroom(buf[:0], &e)
		}
		cpu.Report(b)
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		cpu := testenv.StartCPU()
		for b.Loop() {
			e := Entry{Record: r, Outcome: "ok", RequestID: "8f3a9c0d1e2b5a67000000000000002a"}
			e.SetClient(client)
			buf = AppendJSON(buf[:0], &e)
		}
		cpu.Report(b)
	})
}
