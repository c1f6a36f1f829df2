package findings

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Level-shift detection.
//
// Seed 01's traffic "doubled while precisely following the signature of our
// daily user-traffic": the change is multiplicative and rides on a daily
// cycle. So the hourly series is taken in log space and its daily profile
// (the median deviation of each hour of day from a centred one-day moving
// average) is subtracted; change points are searched on what remains by
// binary segmentation with a count-weighted CUSUM statistic, and the profile
// is learnt again with the steps taken out. Each change, judged between its
// neighbours, is reported only when it is at least 10% (issue 16), significant against
// the residual noise, lasting (the first and last thirds after it both
// differ from before), clear of day-to-day variation (daily means, t ≥ 4),
// and either explained by some client, key, network or referer out of
// proportion or larger than 1.5×. Logs shorter than two days have no profile
// to learn: only abrupt steps count there.
const (
	minShiftRatio = 1.1
	minShiftStat  = 8.0
)

// shiftSeries is the series the detector works on: hourly when buckets are
// at most an hour wide, else the buckets themselves.
type shiftSeries struct {
	width  int64 // seconds per point
	start  int64 // unix seconds of point 0
	req    []float64
	bytes  []float64
	work   []float64 // worker µs
	period int       // points per day, 0 when the log is too short for seasonality
}

func (c *Collector) shiftSeries() shiftSeries {
	bs := c.series()
	w := c.width
	f := int64(1)
	// Hourly points when the log spans days (the daily cycle is then
	// removable); the native buckets otherwise, so a ten-minute log still
	// has a series.
	if w < 3600 && 3600%w == 0 && (c.last-c.first) >= 2*86400e9 {
		f = 3600 / w
	}
	s := shiftSeries{width: w * f, start: floorDiv(c.minIdx, f) * w * f}
	n := int(floorDiv(c.maxIdx, f) - floorDiv(c.minIdx, f) + 1)
	if len(bs) == 0 {
		return shiftSeries{}
	}
	s.req = make([]float64, n)
	s.bytes = make([]float64, n)
	s.work = make([]float64, n)
	base := floorDiv(c.minIdx, f)
	for i, b := range bs {
		if b == nil {
			continue
		}
		j := floorDiv(c.minIdx+int64(i), f) - base
		s.req[j] += float64(b.req)
		s.bytes[j] += float64(b.bytes)
		s.work[j] += float64(b.work)
	}
	// The log rarely starts or ends on a point's boundary: a partial first
	// or last point would look like a change.
	firstSec, lastSec := floorDiv(c.first, 1e9), floorDiv(c.last, 1e9)
	lo, hi := 0, n
	if firstSec > s.start {
		lo = 1
	}
	if lastSec < s.start+int64(n)*s.width-1 {
		hi = n - 1
	}
	if hi-lo < 4 {
		return shiftSeries{}
	}
	s.req, s.bytes, s.work = s.req[lo:hi], s.bytes[lo:hi], s.work[lo:hi]
	s.start += int64(lo) * s.width
	if 86400%s.width == 0 && int64(len(s.req))*s.width >= 2*86400 {
		s.period = int(86400 / s.width)
	}
	return s
}

// deseasonalize returns log(1+x) minus its daily profile.
func deseasonalize(x []float64, period int, phase int) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = math.Log1p(v)
	}
	return deseasonalizeLog(y, period, phase)
}

// deseasonalizeLog removes the daily profile from a series already in log
// space.
func deseasonalizeLog(y []float64, period int, phase int) []float64 {
	if period < 2 {
		return y
	}
	// Centred moving average over one period (trend, step included).
	n := len(y)
	pre := make([]float64, n+1)
	for i, v := range y {
		pre[i+1] = pre[i] + v
	}
	dev := make([][]float64, period)
	for i := range y {
		lo, hi := i-period/2, i-period/2+period
		if lo < 0 || hi > n {
			continue
		}
		ma := (pre[hi] - pre[lo]) / float64(period)
		h := (i + phase) % period
		dev[h] = append(dev[h], y[i]-ma)
	}
	prof := make([]float64, period)
	for h := range prof {
		prof[h] = median(dev[h])
	}
	z := make([]float64, n)
	for i, v := range y {
		z[i] = v - prof[(i+phase)%period]
	}
	return z
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// changePoint is a detected step in a deseasonalized series.
type changePoint struct {
	at    int     // first point after the change
	delta float64 // log-ratio after/before
	stat  float64 // CUSUM statistic in units of residual noise
}

// findChange searches z for the most significant single step, with at least
// minSeg points on each side. w weighs each point by its count: the log of
// a count of n varies by about 1/√n, so quiet night hours must not move
// the change point as much as busy ones.
func findChange(z, w []float64, minSeg int, fixed ...int) (changePoint, bool) {
	n := len(z)
	if len(fixed) == 0 && (n < 2*minSeg || minSeg < 1) {
		return changePoint{}, false
	}
	pz := make([]float64, n+1)
	pw := make([]float64, n+1)
	for i, v := range z {
		pz[i+1] = pz[i] + w[i]*v
		pw[i+1] = pw[i] + w[i]
	}
	best, bestC := -1, 0.0
	from, to := minSeg, n-minSeg
	if len(fixed) > 0 {
		from, to = fixed[0], fixed[0] // measure this point only
	}
	for t := from; t <= to; t++ {
		w1, w2 := pw[t], pw[n]-pw[t]
		if w1 <= 0 || w2 <= 0 {
			continue
		}
		m1, m2 := pz[t]/w1, (pz[n]-pz[t])/w2
		cs := math.Abs(m2-m1) * math.Sqrt(w1*w2/pw[n])
		if cs > bestC {
			best, bestC = t, cs
		}
	}
	if best < 0 {
		return changePoint{}, false
	}
	w1, w2 := pw[best], pw[n]-pw[best]
	m1, m2 := pz[best]/w1, (pz[n]-pz[best])/w2
	// Noise: the weighted residuals around the fitted step (robust MAD),
	// which include the day-to-day variation real traffic has beyond
	// counting noise.
	res := make([]float64, n)
	for i, v := range z {
		m := m1
		if i >= best {
			m = m2
		}
		res[i] = math.Abs(v-m) * math.Sqrt(w[i])
	}
	sigma := median(res) / 0.6745
	sigma = max(sigma, 0.5) // at least Poisson noise
	stat := math.Abs(m2-m1) / (sigma * math.Sqrt(1/w1+1/w2))
	return changePoint{at: best, delta: m2 - m1, stat: stat}, true
}

// lasting checks that the first and last thirds after the change both
// differ from before by at least half the step, in its direction.
func lasting(z []float64, cp changePoint) bool {
	before := mean(z[:cp.at])
	post := z[cp.at:]
	third := max(len(post)/3, 1)
	first := mean(post[:third]) - before
	last := mean(post[len(post)-third:]) - before
	half := cp.delta / 2
	if cp.delta > 0 {
		return first >= half && last >= half
	}
	return first <= half && last <= half
}

// abrupt tells whether most of the step happens at once: the medians of
// the half hours on each side of the change differ by most of the step, and
// by well over the point-to-point noise. A daily ramp spreads over hours.
func abrupt(z []float64, cp changePoint, width int64) bool {
	k := max(3, int((30*60+width-1)/width))
	if cp.at < k || cp.at+k > len(z) {
		return false
	}
	jump := median(z[cp.at:cp.at+k]) - median(z[cp.at-k:cp.at])
	d := make([]float64, len(z)-1)
	for i := range d {
		d[i] = math.Abs(z[i+1] - z[i])
	}
	sd := median(d) / 0.6745
	if jump/cp.delta < 0.7 || math.Abs(jump) < 4*sd/math.Sqrt(float64(k)) {
		return false
	}
	// A ramp rises as much in the half hour before and after as across
	// the change; a step is flat on both sides.
	if cp.at >= 2*k {
		if pre := median(z[cp.at-k:cp.at]) - median(z[cp.at-2*k:cp.at-k]); math.Abs(pre) > 0.35*math.Abs(jump) {
			return false
		}
	}
	if cp.at+2*k <= len(z) {
		if post := median(z[cp.at+k:cp.at+2*k]) - median(z[cp.at:cp.at+k]); math.Abs(post) > 0.35*math.Abs(jump) {
			return false
		}
	}
	return true
}

// daysAgree checks a seasonal change against day-to-day variation, which
// hourly noise understates: real days differ by ±10% or more, and one
// busy day at the end of a log is not a new level. With at least two whole
// days on each side, the step must stand out of the spread of daily means
// (t ≥ 4); with less after it, only a large (≥ 1.5×) abrupt step counts.
func daysAgree(z []float64, cp changePoint, period int) bool {
	var before, after []float64
	for d := 0; (d+1)*period <= len(z); d++ {
		lo, hi := d*period, (d+1)*period
		switch {
		case hi <= cp.at:
			before = append(before, mean(z[lo:hi]))
		case lo >= cp.at:
			after = append(after, mean(z[lo:hi]))
		}
	}
	if len(before) < 2 || len(after) < 2 {
		return math.Abs(cp.delta) >= math.Log(1.5) && abrupt(z, cp, 86400/int64(period))
	}
	mb, ma := median(before), median(after)
	var res []float64
	for _, v := range before {
		res = append(res, math.Abs(v-mb))
	}
	for _, v := range after {
		res = append(res, math.Abs(v-ma))
	}
	sd := max(median(res)/0.6745, 0.02)
	t := (ma - mb) / (sd * math.Sqrt(1/float64(len(before))+1/float64(len(after))))
	return math.Abs(t) >= 4 && t*cp.delta > 0 && math.Abs(ma-mb) >= math.Log(minShiftRatio)*0.8
}

// refineChange locates the change in the share of traffic of one
// contributor, within radius buckets of around, and returns the bucket it
// began in.
func refineChange(bs []*bucket, lead change, m metric, around, radius int) (int, bool) {
	lo, hi := max(around-radius, 0), min(around+radius, len(bs))
	if hi-lo < 6 {
		return 0, false
	}
	share := make([]float64, 0, hi-lo)
	w := make([]float64, 0, hi-lo)
	for i := lo; i < hi; i++ {
		b := bs[i]
		var tot, v float64
		if b != nil {
			tk := m.summary(b, lead.dim)
			tot = m.of(b)
			if e := tk.Find(lead.value); e != nil {
				v = float64(e.W - e.Err)
			}
		}
		if tot <= 0 {
			share = append(share, 0)
			w = append(w, 0)
			continue
		}
		share = append(share, v/tot)
		w = append(w, float64(b.req)) // a share of n requests varies as 1/√n
	}
	cp, ok := findChange(share, w, 2)
	if !ok || cp.delta*lead.delta <= 0 {
		return 0, false
	}
	return lo + cp.at, true
}

type detectedShift struct {
	cp     changePoint
	m      metric
	lo, hi int // the neighbouring changes (or the series' ends)
}

// levelShifts finds lasting changes in requests, bytes and worker time on
// the timeline.
type levelShifts struct{ timelineOnly }

func (levelShifts) find(a *analysis) ([]Finding, error) { return a.c.levelShifts(), nil }

func (c *Collector) levelShifts() []Finding {
	s := c.shiftSeries()
	if len(s.req) < 6 {
		return nil
	}
	phase := 0
	if s.period > 0 {
		phase = int(floorDiv(s.start, s.width) % int64(s.period))
	}
	minSeg := max(3, len(s.req)/10)
	if s.period > 0 {
		minSeg = max(s.period/2, 3)
	}
	w := make([]float64, len(s.req))
	for i, v := range s.req {
		w[i] = v + 1 // bytes vary with requests: weigh both by requests
	}
	var found []detectedShift
	for _, m := range []metric{metricRequests, metricBytes, metricWork} {
		x := s.req
		switch m {
		case metricBytes:
			x = s.bytes
		case metricWork:
			x = s.work
			if mean(x) == 0 {
				continue // no request or upstream times in the log
			}
		}
		for _, d := range steps(x, w, s.period, phase, s.width, minSeg) {
			d.m = m
			found = append(found, d)
		}
	}
	// Requests, bytes and worker time usually move together: one finding
	// per change, led by the larger step of requests and bytes; worker time
	// leads only when it moved beyond what volume explains (20% more per
	// request), else the finding names who brought the volume.
	tol := max(s.period/4, 2)
	score := func(d detectedShift) float64 {
		if d.m == metricWork {
			return math.Abs(d.cp.delta) - math.Log(1.2)
		}
		return math.Abs(d.cp.delta)
	}
	var keep []detectedShift
	for _, d := range found {
		dup := false
		for j, k := range keep {
			if abs(k.cp.at-d.cp.at) <= tol && k.cp.delta*d.cp.delta > 0 {
				dup = true
				if score(d) > score(k) {
					keep[j] = d
				}
			}
		}
		if !dup {
			keep = append(keep, d)
		}
	}
	var out []Finding
	for _, d := range keep {
		if f, ok := c.shiftFinding(s, d); ok {
			out = append(out, f)
		}
	}
	return out
}

// steps finds the lasting changes of x (a positive series, taken in log
// space) by the rules above: binary segmentation, then each candidate
// judged between its neighbours. w weighs each point by its count. The
// latency-quantile shifts run the same search as requests, bytes and
// worker time.
func steps(x, w []float64, period, phase int, width int64, minSeg int) []detectedShift {
	var out []detectedShift
	z := deseasonalize(x, period, phase)
	cps := segment(z, w, 0, len(z), minSeg, 3, nil)
	if len(cps) > 0 && period > 0 {
		// The moving average smears each step over a day, which bends
		// the profile near it; learn the profile again with the steps
		// taken out, and look once more.
		z = reseasonalize(x, z, cps, period, phase)
		cps = segment(z, w, 0, len(z), minSeg, 3, nil)
	}
	slices.Sort(cps)
	// Judge each change against its neighbours only (a rise that a
	// fix undid a week later is still a change, for that week); drop
	// the candidates that fail and judge the rest again, since a
	// spurious split shortens its neighbours' evidence.
	judge := func(i int) (detectedShift, bool) {
		at, lo, hi := cps[i], 0, len(z)
		if i > 0 {
			lo = cps[i-1]
		}
		if i+1 < len(cps) {
			hi = cps[i+1]
		}
		cp, ok := stepAt(z[lo:hi], w[lo:hi], at-lo)
		if !ok || cp.stat < minShiftStat || math.Abs(cp.delta) < math.Log(minShiftRatio) || !lasting(z[lo:hi], cp) {
			return detectedShift{}, false
		}
		if period == 0 && !abrupt(z[lo:hi], cp, width) {
			// Without two days to learn the daily cycle from, the
			// morning rise is a change too; only a step that happens
			// at once is told apart from it.
			return detectedShift{}, false
		}
		if period > 0 && !daysAgree(z[lo:hi], cp, period) {
			return detectedShift{}, false
		}
		cp.at = at
		return detectedShift{cp: cp, lo: lo, hi: hi}, true
	}
	for dropped := true; dropped; {
		dropped = false
		for i := range cps {
			if _, ok := judge(i); !ok {
				cps = slices.Delete(cps, i, i+1)
				dropped = true
				break
			}
		}
	}
	for i := range cps {
		if d, ok := judge(i); ok {
			out = append(out, d)
		}
	}
	return out
}

// segment is binary segmentation: the most significant change in
// z[lo:hi], then the same on each side, depth levels deep. It returns the
// candidates; levelShifts judges each against its neighbours.
func segment(z, w []float64, lo, hi, minSeg, depth int, out []int) []int {
	if depth == 0 || hi-lo < 2*minSeg {
		return out
	}
	cp, ok := findChange(z[lo:hi], w[lo:hi], minSeg)
	// Significance alone decides whether to split: a rise undone a week
	// later shows, over the whole log, as one small step at either end;
	// its size is judged once its neighbours are known.
	if !ok || cp.stat < minShiftStat {
		return out
	}
	out = append(out, lo+cp.at)
	out = segment(z, w, lo, lo+cp.at, minSeg, depth-1, out)
	return segment(z, w, lo+cp.at, hi, minSeg, depth-1, out)
}

// reseasonalize learns the daily profile of x again with the steps at cps
// taken out (a piecewise-constant level from z) and returns x's log minus
// that profile.
func reseasonalize(x, z []float64, cps []int, period, phase int) []float64 {
	bounds := append([]int{0}, cps...)
	slices.Sort(bounds)
	bounds = append(bounds, len(z))
	level := make([]float64, len(z))
	for i := 0; i+1 < len(bounds); i++ {
		m := mean(z[bounds[i]:bounds[i+1]])
		for j := bounds[i]; j < bounds[i+1]; j++ {
			level[j] = m
		}
	}
	y := make([]float64, len(x))
	adj := make([]float64, len(x))
	for i, v := range x {
		y[i] = math.Log1p(v)
		adj[i] = y[i] - level[i]
	}
	za := deseasonalizeLog(adj, period, phase)
	out := make([]float64, len(x))
	for i := range y {
		out[i] = y[i] - (adj[i] - za[i])
	}
	return out
}

// stepAt measures the step at a given point of z: its size and statistic,
// as findChange would.
func stepAt(z, w []float64, at int) (changePoint, bool) {
	if at <= 0 || at >= len(z) {
		return changePoint{}, false
	}
	return findChange(z, w, 0, at)
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// shiftFinding attributes a detected change and writes it up. ok is false
// for a modest change (under 1.5×) that no client, key, network or referer
// explains out of proportion: day-to-day swings scale everyone alike, while
// the changes worth a finding (seed 01's client fetching twice, a new
// integration, a crawler) have a "who".
func (c *Collector) shiftFinding(s shiftSeries, d detectedShift) (Finding, bool) {
	at := s.start + int64(d.cp.at)*s.width
	// Compare equal stretches on both sides, whole days when seasonal, so
	// the daily cycle weighs the same on both.
	l := min(d.cp.at-d.lo, d.hi-d.cp.at)
	if s.period > 0 && l >= s.period {
		l -= l % s.period
	}
	a0, a1 := at-int64(l)*s.width, at
	b0, b1 := at, at+int64(l)*s.width
	bs := c.series()
	idx := func(sec int64) int { return int(floorDiv(sec, c.width) - c.minIdx) }
	reqAt := attribute(bs, c.width, metricRequests, idx(a0), idx(a1), idx(b0), idx(b1))
	byteAt := attribute(bs, c.width, metricBytes, idx(a0), idx(a1), idx(b0), idx(b1))
	attr := reqAt
	switch d.m {
	case metricBytes:
		attr = byteAt
	case metricWork:
		attr = attribute(bs, c.width, metricWork, idx(a0), idx(a1), idx(b0), idx(b1))
	}
	metric, unit := d.m.String(), d.m.unit()
	direction := "increase"
	if d.cp.delta < 0 {
		direction = "decrease"
	}
	changeAt := time.Unix(at, 0).In(c.loc)
	precision := time.Duration(s.width) * time.Second
	refinedBy := ""
	if lead, ok := attr.lead(whoDims); ok {
		// The total moves by a fraction; the leading contributor's share
		// of traffic jumps, with no daily cycle to remove. Its own change
		// point, on the native buckets, says more precisely when it began.
		if i, ok := refineChange(bs, lead, d.m, idx(at), int(86400/c.width)); ok {
			changeAt = c.bucketTime(i)
			precision = time.Duration(c.width) * time.Second
			refinedBy = fmt.Sprintf(", from the share of %s %s", lead.dim.label(), quoteValue(lead.value))
		}
	}
	// A change in one endpoint's worker time with no change in its
	// requests is a regression of that endpoint, whoever calls it.
	regression, hasRegression := endpointRegression(d.m, attr, reqAt)
	if _, ok := attr.lead(whoDims); !ok && !hasRegression && math.Abs(d.cp.delta) < math.Log(1.5) {
		return Finding{}, false
	}
	title := fmt.Sprintf("%s %s from %s", capitalize(unit), factor(attr.rateA, attr.rateB), changeAt.Format("Mon 2006-01-02 15:04 MST"))
	if h := attr.headline(direction); h != "" {
		title += ": " + h
	}
	if hasRegression {
		title += fmt.Sprintf(", with no change in its requests: %s → %s per request",
			seconds(regression.perA/1e6), seconds(regression.perB/1e6))
	}
	span := time.Duration(l) * time.Duration(s.width) * time.Second
	rates := fmt.Sprintf("requests/hour %s → %s (%s), bytes out/hour %s → %s (%s)",
		human(reqAt.rateA), human(reqAt.rateB), factor(reqAt.rateA, reqAt.rateB),
		humanBytes(byteAt.rateA), humanBytes(byteAt.rateB), factor(byteAt.rateA, byteAt.rateB))
	if d.m == metricWork {
		rates += fmt.Sprintf(", worker time/hour %s → %s (%s)", seconds(attr.rateA/1e6), seconds(attr.rateB/1e6), factor(attr.rateA, attr.rateB))
	}
	ev := []string{rates + fmt.Sprintf(", over %s on each side of the change", fmtSpan(span))}
	seasonal := "no daily profile removed (log shorter than two days)"
	if s.period > 0 {
		seasonal = "daily profile removed"
	}
	step := fmtSpan(time.Duration(s.width) * time.Second)
	ev = append(ev, fmt.Sprintf("found on the %s %s series, %s: step %.2f× at %.0fσ of residual noise; began %s (±%s%s)",
		step, metric, seasonal, math.Exp(d.cp.delta), d.cp.stat, changeAt.Format("2006-01-02 15:04 MST"), fmtSpan(precision), refinedBy))
	for _, dim := range []Dimension{DimUserAgent, DimKey, DimClient, DimPath, DimReferer, DimStatus, DimMethod} {
		n := 0
		for _, ch := range attr.byDim[dim] {
			if n == 2 || ch.shareChange < 0.1 {
				break
			}
			if ch.informative() {
				ev = append(ev, ch.describe(d.m))
				n++
			}
		}
	}
	// Repeat fetches before and after: seed 01's doubling with unchanged
	// users is what a client fetching everything twice looks like.
	var repA, repB float64
	for i := max(idx(a0), 0); i < min(idx(a1), len(bs)); i++ {
		if b := bs[i]; b != nil {
			repA += float64(b.repReq)
			if d.m == metricBytes {
				repA += float64(b.repBytes - b.repReq)
			}
		}
	}
	for i := max(idx(b0), 0); i < min(idx(b1), len(bs)); i++ {
		if b := bs[i]; b != nil {
			repB += float64(b.repReq)
			if d.m == metricBytes {
				repB += float64(b.repBytes - b.repReq)
			}
		}
	}
	hours := span.Hours()
	action := "Find what changed for the leading contributor at that moment (a client release, a new integration or crawler, a cache or CDN change); if the extra traffic is unwanted, rate-limit or block it by that value."
	if hasRegression {
		ev = append(ev, fmt.Sprintf("path %s: %s → %s requests/hour (%s), %s → %s worker time per request: the endpoint itself became %s",
			regression.value, human(regression.reqA), human(regression.reqB), factor(regression.reqA, regression.reqB),
			seconds(regression.perA/1e6), seconds(regression.perB/1e6), slower(regression.perA, regression.perB)))
		action = "A regression of that endpoint (a deploy, a query plan, a dependency, a cache gone cold): compare its code and dependencies before and after the change; the guard's per-key budgets (headroom proxy) keep one slow endpoint's callers from holding every worker meanwhile."
	}
	if hours > 0 && attr.rateB > attr.rateA && d.m != metricWork {
		f := human
		if d.m == metricBytes {
			f = humanBytes
		}
		dRep := (repB - repA) / hours
		if share := dRep / (attr.rateB - attr.rateA); share >= 0.2 {
			ev = append(ev, fmt.Sprintf("repeat fetches (same client, same object within %s): %s → %s %s/hour, %s of the increase",
				fmtSpan(c.opt.RefetchWindow), f(repA/hours), f(repB/hours), unit, pct(share)))
			action = "The same clients now fetch the same objects again within minutes: check the caching headers (Cache-Control, ETag) of those paths and the leading client's cache; a client fetching everything twice doubles traffic while users stay the same."
		}
	}
	// The change lasts until the next one, or to the end of the log.
	end := time.Unix(0, c.last).In(c.loc)
	if d.hi < len(s.req) {
		end = time.Unix(s.start+int64(d.hi)*s.width, 0).In(c.loc)
		ev = append(ev, fmt.Sprintf("until about %s, when traffic changed again (see the other level_shift finding)", end.Format("2006-01-02 15:04 MST")))
	}
	impact := math.Abs(attr.rateB-attr.rateA) / math.Max(math.Max(attr.rateA, attr.rateB), 1)
	return Finding{
		Kind:         KindLevelShift,
		Title:        title,
		Window:       Window{Start: changeAt, End: end},
		Contributors: attr.contributors(),
		Evidence:     ev,
		Action:       action,
		Impact:       round3(impact),
		ChangeAt:     &changeAt,
		Metric:       metric,
	}, true
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func fmtSpan(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// regression is an endpoint whose worker time per request changed while
// its requests did not.
type regression struct {
	value      string
	reqA, reqB float64 // requests per hour
	perA, perB float64 // worker µs per request
}

// endpointRegression tells whether a worker-time change is led by one
// endpoint (at least half of it) whose request rate moved by under 15%
// while its worker time per request moved by over 20%.
func endpointRegression(m metric, work, req attribution) (regression, bool) {
	if m != metricWork {
		return regression{}, false
	}
	p, ok := work.lead([]Dimension{DimPath})
	if !ok || p.shareChange < 0.5 {
		return regression{}, false
	}
	var r regression
	r.value = p.value
	for _, ch := range req.byDim[DimPath] {
		if ch.value == p.value {
			r.reqA, r.reqB = ch.before, ch.after
			break
		}
	}
	if r.reqA <= 0 || r.reqB <= 0 || math.Abs(math.Log(r.reqB/r.reqA)) > math.Log(1.15) {
		return regression{}, false
	}
	r.perA, r.perB = p.before/r.reqA, p.after/r.reqB
	if r.perA <= 0 || math.Abs(math.Log(r.perB/r.perA)) < math.Log(1.2) {
		return regression{}, false
	}
	return r, true
}

func slower(a, b float64) string {
	if b >= a {
		return fmt.Sprintf("%.1f× slower", b/a)
	}
	return fmt.Sprintf("%.1f× faster", a/b)
}
