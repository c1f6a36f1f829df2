package analyze

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchLog writes n varied combined lines (deterministic) and returns the
// path and its size.
func benchLog(b *testing.B, n int) (string, int64) {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	agents := []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0",
		"python-requests/2.21.0",
	}
	var sb strings.Builder
	t0 := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "10.%d.%d.%d - - [%s] \"GET /t/%d/posts?page=%d HTTP/1.1\" %d %d \"https://forum.example.com/t/%d\" \"%s\"\n",
			r.IntN(4), r.IntN(256), r.IntN(256), t0.Add(time.Duration(i)*50*time.Millisecond).Format("02/Jan/2006:15:04:05 -0700"),
			r.IntN(100000), r.IntN(9), []int{200, 200, 200, 304, 404, 502}[r.IntN(6)], r.IntN(50000), r.IntN(1000), agents[r.IntN(len(agents))])
	}
	p := filepath.Join(b.TempDir(), "access.log")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return p, int64(sb.Len())
}

// BenchmarkEngine measures the whole pipeline (read, parse, filter,
// aggregate, merge) per worker count; bytes/s is the input rate.
func BenchmarkEngine(b *testing.B) {
	path, size := benchLog(b, 200_000)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				res, err := Run(context.Background(), Options{Inputs: []string{path}, Format: "combined", Workers: workers})
				if err != nil || res.Records() != 200_000 {
					b.Fatalf("records %v, err %v", res, err)
				}
			}
			b.ReportMetric(float64(200_000*b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkObserve is parsing plus aggregation of one record, without I/O.
func BenchmarkObserve(b *testing.B) {
	path, _ := benchLog(b, 20_000)
	data, _ := os.ReadFile(path)
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		lines = append(lines, []byte(l))
	}
	rn := &run{opts: Options{Capacity: 4096}, paths: []string{path}}
	w := rn.newWorker()
	p := mustFormat(b, "combined").NewParser()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.agg.observe(recordOf(b, p, lines[i%len(lines)]))
	}
}
