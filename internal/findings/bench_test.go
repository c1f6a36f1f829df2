package findings

import (
	"testing"

	"github.com/headroom-dev/headroom/internal/findings/findingstest"
)

// BenchmarkObserve measures the per-record cost the collector adds to the
// log engine, on a generated forum log (pages, images, an exporter, a
// crawler).
func BenchmarkObserve(b *testing.B) {
	recs := findingstest.Generate(findingstest.Options{Seed: 1, Days: 3, PageViewsPerHour: 100, Exporter: true, Crawler: true})
	c := NewCollector(Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Observe(&recs[i%len(recs)])
	}
}

func BenchmarkAnalyze(b *testing.B) {
	recs := findingstest.Generate(findingstest.Options{Seed: 1, Days: 14, PageViewsPerHour: 60, Exporter: true})
	c := NewCollector(Options{})
	for i := range recs {
		c.Observe(&recs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Analyze(c, AnalyzeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
