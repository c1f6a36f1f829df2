package findings

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Latency-quantile level shifts (issue 16): an endpoint several times
// slower after a deploy, or whose slowest 1% became slow while its mean
// barely moved, is a lasting change of that endpoint's latency quantiles.
// Each endpoint keeps one latency histogram per hour (the timeline's √2
// bins), its p50 and p99 per hour are searched for steps exactly as
// requests, bytes and worker time are (steps), and a step is written up
// with the endpoint's request rate on both sides: a change in its latency
// with no change in its volume is a regression of that endpoint.
//
// Memory is bounded: at most latMaxEndpoints endpoints (the first seen
// that did upstream work) and latMaxHours hourly histograms each, about
// 10 MB at worst; what falls outside is counted, not kept.
const (
	latMaxEndpoints = 32
	latMaxHours     = 24 * 62
	latHour         = int64(3600e9)
)

// latQuantiles are the quantiles searched, with the fewest requests an
// hour must hold for its estimate to count.
var latQuantiles = []struct {
	q      float64
	minReq int
	metric string
}{
	{0.5, 10, "latency_p50"},
	{0.99, 100, "latency_p99"},
}

type latEndpoint struct {
	hours  map[int64]*[latBins]uint32 // by unix hour
	curIdx int64
	cur    *[latBins]uint32
	work   int64 // µs, for the endpoint's share of worker time
}

type latencyShifts struct {
	eps         map[string]*latEndpoint
	sawUpstream bool
	dropped     int64 // records of endpoints or hours beyond the bounds
}

func newLatencyShifts() *latencyShifts {
	return &latencyShifts{eps: map[string]*latEndpoint{}}
}

// latencyOf is the record's worker latency by workOf's rule: the upstream
// time, or the request time in a log with no upstream times at all.
func (l *latencyShifts) latencyOf(rec *record) (time.Duration, bool) {
	if rec.HasUpstreamTime {
		l.sawUpstream = true
		return rec.UpstreamTime, rec.UpstreamTime >= 0
	}
	if l.sawUpstream || rec.RequestTime <= 0 {
		return 0, false
	}
	return rec.RequestTime, true
}

func (l *latencyShifts) observe(rec *record) {
	if rec.b == nil {
		return
	}
	d, ok := l.latencyOf(rec)
	if !ok {
		return
	}
	path, ok := rec.v.value(DimPath)
	if !ok {
		return
	}
	e := l.eps[string(path)]
	if e == nil {
		if len(l.eps) >= latMaxEndpoints {
			l.dropped++
			return
		}
		e = &latEndpoint{hours: map[int64]*[latBins]uint32{}, curIdx: math.MinInt64}
		l.eps[string(path)] = e
	}
	h := floorDiv(rec.ns, latHour)
	if h != e.curIdx {
		hist := e.hours[h]
		if hist == nil {
			if len(e.hours) >= latMaxHours {
				l.dropped++
				return
			}
			hist = new([latBins]uint32)
			e.hours[h] = hist
		}
		e.curIdx, e.cur = h, hist
	}
	e.cur[latBin(d)]++
	e.work += max(d.Microseconds(), 0)
}

func (l *latencyShifts) merge(other detector) {
	o := other.(*latencyShifts)
	l.sawUpstream = l.sawUpstream || o.sawUpstream
	l.dropped += o.dropped
	// Sorted, so that which endpoints are kept beyond the bound does not
	// depend on map order.
	keys := make([]string, 0, len(o.eps))
	for k := range o.eps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		oe := o.eps[k]
		e := l.eps[k]
		if e == nil {
			if len(l.eps) >= latMaxEndpoints {
				for _, hist := range oe.hours {
					for _, v := range hist {
						l.dropped += int64(v)
					}
				}
				continue
			}
			l.eps[k] = oe
			continue
		}
		e.work += oe.work
		for h, hist := range oe.hours {
			if mine := e.hours[h]; mine != nil {
				for i, v := range hist {
					mine[i] += v
				}
			} else {
				e.hours[h] = hist
			}
		}
		e.curIdx, e.cur = math.MinInt64, nil
	}
}

// quantile estimates the q-quantile of a histogram in seconds,
// interpolating within the bin in log space; n is the histogram's count.
func quantile(hist *[latBins]uint32, n int64, q float64) float64 {
	target := q * float64(n)
	var acc float64
	for i, v := range hist {
		if v == 0 {
			continue
		}
		if acc+float64(v) >= target {
			lo, hi := 0.0005, latBinUpper(i)
			if i > 0 {
				lo = latBinUpper(i - 1)
			}
			frac := (target - acc) / float64(v)
			return lo * math.Pow(hi/lo, frac)
		}
		acc += float64(v)
	}
	return latBinUpper(latBins - 1)
}

func (l *latencyShifts) find(a *analysis) ([]Finding, error) {
	c := a.c
	if c.loc == nil || len(l.eps) == 0 {
		return nil, nil
	}
	// Whole hours only: a partial first or last hour holds fewer requests,
	// not different ones, but its quantiles are noisier.
	first := floorDiv(c.first, latHour) + 1
	last := floorDiv(c.last+1, latHour) - 1 // the last whole hour
	n := int(last - first + 1)
	if n < 6 {
		return nil, nil
	}
	period, phase := 0, 0
	if n >= 48 {
		period = 24
		phase = int((first%24 + 24) % 24)
	}
	minSeg := max(3, n/10)
	if period > 0 {
		minSeg = period / 2
	}
	var totalWork int64
	for _, e := range l.eps {
		totalWork += e.work
	}
	keys := make([]string, 0, len(l.eps))
	for k := range l.eps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Finding
	for _, path := range keys {
		e := l.eps[path]
		counts := make([]float64, n)
		for i := range counts {
			if hist := e.hours[first+int64(i)]; hist != nil {
				for _, v := range hist {
					counts[i] += float64(v)
				}
			}
		}
		type cand struct {
			d detectedShift
			q int
		}
		var cands []cand
		for qi, lq := range latQuantiles {
			x := make([]float64, n)
			w := make([]float64, n)
			have := 0
			prev := math.NaN()
			for i := range x {
				if counts[i] >= float64(lq.minReq) {
					x[i] = quantile(e.hours[first+int64(i)], int64(counts[i]), lq.q) * 1e6
					w[i] = counts[i]
					prev = x[i]
					have++
				} else {
					x[i] = prev // carried forward, weighing nothing
				}
			}
			if have < n/2 || have < 6 {
				continue
			}
			// Hours before the first estimate take the first one.
			firstVal := math.NaN()
			for _, v := range x {
				if !math.IsNaN(v) {
					firstVal = v
					break
				}
			}
			for i := range x {
				if !math.IsNaN(x[i]) {
					break
				}
				x[i] = firstVal
			}
			for _, d := range steps(x, w, period, phase, 3600, minSeg) {
				cands = append(cands, cand{d, qi})
			}
		}
		// p50 and p99 often move together: one finding per change, led
		// by the larger step.
		slices.SortStableFunc(cands, func(a, b cand) int {
			return -cmpFloat(math.Abs(a.d.cp.delta), math.Abs(b.d.cp.delta))
		})
		var kept []cand
		for _, cd := range cands {
			dup := false
			for _, k := range kept {
				if abs(k.d.cp.at-cd.d.cp.at) <= max(period/4, 2) && k.d.cp.delta*cd.d.cp.delta > 0 {
					dup = true
				}
			}
			if !dup {
				kept = append(kept, cd)
			}
		}
		for _, k := range kept {
			out = append(out, l.finding(c, path, e, first, n, counts, k.d, k.q, period, totalWork))
		}
	}
	return out, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// finding writes up a latency step of one endpoint.
func (l *latencyShifts) finding(c *Collector, path string, e *latEndpoint, first int64, n int, counts []float64, d detectedShift, qi, period int, totalWork int64) Finding {
	// Equal stretches on both sides, whole days when seasonal.
	span := min(d.cp.at-d.lo, d.hi-d.cp.at)
	if period > 0 && span >= period {
		span -= span % period
	}
	sum := func(from, to int) (hist [latBins]uint32, req float64) {
		for i := max(from, 0); i < min(to, n); i++ {
			if h := e.hours[first+int64(i)]; h != nil {
				for j, v := range h {
					hist[j] += v
				}
			}
			req += counts[i]
		}
		return hist, req
	}
	histA, reqA := sum(d.cp.at-span, d.cp.at)
	histB, reqB := sum(d.cp.at, d.cp.at+span)
	hours := float64(span)
	lq := latQuantiles[qi]
	qA := quantile(&histA, int64(reqA), lq.q)
	qB := quantile(&histB, int64(reqB), lq.q)
	meanOf := func(h *[latBins]uint32, req float64) float64 {
		// The mean from the bins' geometric centres: precise enough to
		// say whether the mean moved with the quantile.
		var s float64
		for i, v := range h {
			lo := 0.0005
			if i > 0 {
				lo = latBinUpper(i - 1)
			}
			s += float64(v) * math.Sqrt(lo*latBinUpper(i))
		}
		return s / math.Max(req, 1)
	}
	mA, mB := meanOf(&histA, reqA), meanOf(&histB, reqB)
	changeAt := time.Unix((first+int64(d.cp.at))*3600, 0).In(c.loc)
	name := fmt.Sprintf("p%g", lq.q*100)
	unchanged := reqA > 0 && reqB > 0 && math.Abs(math.Log(reqB/reqA)) <= math.Log(1.15)
	title := fmt.Sprintf("Latency %s of %s %s from %s: %s → %s", name, path, factor(qA, qB), changeAt.Format("Mon 2006-01-02 15:04 MST"), seconds(qA), seconds(qB))
	if unchanged {
		title += ", with no change in its requests"
	}
	ev := []string{
		fmt.Sprintf("path %s: requests/hour %s → %s (%s), p50 %s → %s, p99 %s → %s, mean %s → %s, over %s on each side of the change",
			path, human(reqA/hours), human(reqB/hours), factor(reqA, reqB),
			seconds(quantile(&histA, int64(reqA), 0.5)), seconds(quantile(&histB, int64(reqB), 0.5)),
			seconds(quantile(&histA, int64(reqA), 0.99)), seconds(quantile(&histB, int64(reqB), 0.99)),
			seconds(mA), seconds(mB), fmtSpan(time.Duration(span)*time.Hour)),
	}
	seasonal := "no daily profile removed (log shorter than two days)"
	if period > 0 {
		seasonal = "daily profile removed"
	}
	ev = append(ev, fmt.Sprintf("found on the 1h %s series of the endpoint, %s: step %.2f× at %.0fσ of residual noise; began %s (±1h)",
		lq.metric, seasonal, math.Exp(d.cp.delta), d.cp.stat, changeAt.Format("2006-01-02 15:04 MST")))
	if qB > qA && mB/mA < 1.2 {
		ev = append(ev, fmt.Sprintf("the mean moved only %s: the change is in the tail, which a mean or a worker-time total hides", factor(mA, mB)))
	}
	if d.hi < n {
		end := time.Unix((first+int64(d.hi))*3600, 0).In(c.loc)
		ev = append(ev, fmt.Sprintf("until about %s, when its latency changed again", end.Format("2006-01-02 15:04 MST")))
	}
	if l.dropped > 0 {
		ev = append(ev, fmt.Sprintf("latency kept for the first %d endpoints with worker time and %d hours each; %s records beyond that not searched", latMaxEndpoints, latMaxHours, human(float64(l.dropped))))
	}
	action := "The endpoint's latency moved with its load: check what its callers changed, and whether the upstream saturates at that rate."
	if unchanged {
		action = "A regression of that endpoint (a deploy, a query plan, a dependency, a cache gone cold): compare its code and dependencies before and after the change; the guard's per-key budgets (headroom proxy) keep one slow endpoint's callers from holding every worker meanwhile."
	}
	// Impact on the common scale: the share of the quantile's time that is
	// new, weighed by the endpoint's share of all worker time, and halved
	// like the other latency findings: one endpoint's latency matters
	// through the workers it holds.
	share := 1.0
	if totalWork > 0 {
		share = float64(e.work) / float64(totalWork)
	}
	impact := 0.5 * math.Abs(1-math.Min(qA, qB)/math.Max(qA, qB)) * share
	end := time.Unix(0, c.last).In(c.loc)
	if d.hi < n {
		end = time.Unix((first+int64(d.hi))*3600, 0).In(c.loc)
	}
	return Finding{
		Kind:         KindLevelShift,
		Title:        title,
		Window:       Window{Start: changeAt, End: end},
		Contributors: []Contributor{{Dimension: DimPath.String(), Value: path, Share: 1}},
		Evidence:     ev,
		Action:       action,
		Impact:       round3(impact),
		ChangeAt:     &changeAt,
		Metric:       lq.metric,
		basis:        int64(reqB),
	}
}
