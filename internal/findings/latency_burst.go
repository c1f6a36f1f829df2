package findings

import (
	"fmt"
	"math"
	"strings"
)

// latencyBursts finds windows whose 95th percentile request time ran far
// above the log's usual.
type latencyBursts struct{ timelineOnly }

func (latencyBursts) find(a *analysis) ([]Finding, error) { return a.c.latencyBursts(), nil }

func p95(lat *[latBins]uint32) (float64, int64) {
	var n int64
	for _, v := range lat {
		n += int64(v)
	}
	if n == 0 {
		return 0, 0
	}
	var acc int64
	for i, v := range lat {
		acc += int64(v)
		if float64(acc) >= 0.95*float64(n) {
			return latBinUpper(i), n
		}
	}
	return latBinUpper(latBins - 1), n
}

// latencyBursts reports windows whose 95th percentile request time ran far
// above the log's usual.
func (c *Collector) latencyBursts() []Finding {
	bs := c.series()
	ps := make([]float64, len(bs))
	var typical []float64
	for i, b := range bs {
		if b == nil {
			continue
		}
		p, n := p95(&b.lat)
		if n >= 20 {
			ps[i] = p
			typical = append(typical, p)
		}
	}
	if len(typical) < 4 {
		return nil
	}
	base := median(typical)
	flag := make([]bool, len(bs))
	for i := range bs {
		flag[i] = ps[i] > 0 && ps[i] >= math.Max(3*base, base+1)
	}
	var out []Finding
	for _, r := range topRuns(runs(flag), 2, func(r burst) float64 {
		var s float64
		for i := r.from; i < r.to; i++ {
			s += ps[i]
		}
		return s
	}) {
		var lat [latBins]uint32
		var slowMs float64
		for i := r.from; i < r.to; i++ {
			if bs[i] == nil {
				continue
			}
			for j, v := range bs[i].lat {
				lat[j] += v
			}
			if bs[i].slowWho != nil {
				for e := range bs[i].slowWho.All() {
					if strings.HasPrefix(e.Key, string([]byte{byte('0' + DimPath), 0})) {
						slowMs += float64(e.W - e.Err)
					}
				}
			}
		}
		p, n := p95(&lat)
		contributors, lines := compositeShares(bs, r.from, r.to, func(b *bucket) *topK { return b.slowWho },
			[]Dimension{DimPath, DimUserAgent, DimKey, DimClient}, slowMs, 0.2)
		w := Window{Start: c.bucketTime(r.from), End: c.bucketTime(r.to)}
		title := fmt.Sprintf("Latency burst: p95 %s (usually %s) %s", seconds(p), seconds(base), fmtWindow(w, c.loc))
		if len(contributors) > 0 {
			title += fmt.Sprintf(", time spent mostly on %s %s", contributors[0].Dimension, contributors[0].Value)
		}
		ev := []string{fmt.Sprintf("%s requests in the window, p95 %s against a median bucket p95 of %s", human(float64(n)), seconds(p), seconds(base))}
		for _, l := range lines {
			ev = append(ev, "of the time in requests ≥ 250 ms, "+l)
		}
		out = append(out, Finding{
			Kind:         KindLatencyBurst,
			Title:        title,
			Window:       w,
			Contributors: contributors,
			Evidence:     ev,
			Action:       "Check what the upstream was waiting on in that window (database, dependency, CPU); if one key or path holds the time, its requests are likely starving the rest (headroom proxy budgets worker time per key).",
			Impact:       round3(0.3 * (1 - base/p)),
			basis:        n,
		})
	}
	return out
}
