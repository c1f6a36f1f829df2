package findings

import (
	"fmt"
	"math"
	"time"
)

// errorBursts finds windows where 5xx responses ran far above the log's
// usual error rate.
type errorBursts struct{ timelineOnly }

func (errorBursts) find(a *analysis) ([]Finding, error) { return a.c.errorBursts(), nil }

// errorBursts reports windows where 5xx responses ran far above the log's
// usual error rate.
func (c *Collector) errorBursts() []Finding {
	bs := c.series()
	var rates []float64
	var totalErr, totalReq int64
	for _, b := range bs {
		if b == nil {
			continue
		}
		totalErr += b.errs
		totalReq += b.req
		if b.req >= 20 {
			rates = append(rates, float64(b.errs)/float64(b.req))
		}
	}
	if totalErr < 10 {
		return nil
	}
	base := math.Max(median(rates), 0.001)
	flag := make([]bool, len(bs))
	for i, b := range bs {
		if b == nil || b.req == 0 {
			continue
		}
		exp := float64(b.req) * base
		flag[i] = b.errs >= 5 && float64(b.errs) >= 4*exp+5 && float64(b.errs)/float64(b.req) >= 0.05
	}
	var out []Finding
	for _, r := range topRuns(runs(flag), 2, func(r burst) float64 {
		var ex float64
		for i := r.from; i < r.to; i++ {
			if bs[i] != nil {
				ex += float64(bs[i].errs) - float64(bs[i].req)*base
			}
		}
		return ex
	}) {
		var errs, req int64
		for i := r.from; i < r.to; i++ {
			if bs[i] != nil {
				errs += bs[i].errs
				req += bs[i].req
			}
		}
		rate := float64(errs) / math.Max(float64(req), 1)
		contributors, lines := compositeShares(bs, r.from, r.to, func(b *bucket) *topK { return b.errWho },
			[]Dimension{DimPath, DimStatus, DimUserAgent, DimClient, DimKey}, float64(errs), 0.2)
		w := Window{Start: c.bucketTime(r.from), End: c.bucketTime(r.to)}
		title := fmt.Sprintf("Error burst: %s 5xx responses (%s of requests, usually %s) %s", human(float64(errs)), pct(rate), pct(base), fmtWindow(w, c.loc))
		if len(contributors) > 0 {
			title += fmt.Sprintf(", mostly %s %s", contributors[0].Dimension, contributors[0].Value)
		}
		ev := []string{fmt.Sprintf("%s of %s requests failed with 5xx in the window; the median %s bucket has %s", human(float64(errs)), human(float64(req)), fmtSpan(time.Duration(c.width)*time.Second), pct(base))}
		for _, l := range lines {
			ev = append(ev, "of the errors, "+l)
		}
		out = append(out, Finding{
			Kind:         KindErrorBurst,
			Title:        title,
			Window:       w,
			Contributors: contributors,
			Evidence:     ev,
			Action:       "Look at the upstream for that window (its logs, a deploy, a dependency, saturation); if one client or path dominates the errors, start there.",
			Impact:       round3(math.Min(0.5*rate+float64(errs)/float64(totalReq), 1)),
			basis:        req,
		})
	}
	return out
}
