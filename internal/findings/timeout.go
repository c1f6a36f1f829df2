package findings

import (
	"github.com/headroom-dev/headroom/internal/accesslog"

	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Client timeouts (seed 03): a client with a fixed timeout abandons every
// request slower than it at the same moment, so aborted or upstream-less
// lines pile up at one request time (the seed's knee at 4.67 s, a 5 s client
// timeout minus connection setup), while the upstream keeps working.
const (
	kneeHalf     = 3   // bins of 10 ms on each side of the peak
	kneeMinLines = 20  // fewer aborted lines than this is anecdote
	kneeMinTime  = 50  // bins: ignore pile-ups under 0.5 s (instant 404s)
	kneeBgHalf   = 100 // bins of background on each side (±1 s)
)

// Fine histograms of durations: 10 ms bins up to 2 minutes; a client timeout
// is a spike a few bins wide.
const (
	histStep = 10 * time.Millisecond
	histBins = 12001
	whoStep  = 50 * time.Millisecond // bins of the aborted-line attribution
	whoBins  = 2401
)

// timeouts finds client timeouts: histograms of client-facing, aborted and
// upstream times, and who the aborted lines were, by 50 ms bin.
type timeouts struct {
	reqHist               []int64 // all lines with a client-facing time (charted)
	abortHist             []int64 // aborted or upstream-less lines
	upHist                []int64 // upstream times of lines the client did not abort
	upTotal               int64   // µs
	rtLines               int64
	abortWho              *topK // "u|k|p" + bin + value; W lines, A logged µs, B upstream µs
	abortFirst, abortLast []int64
}

func newTimeouts() *timeouts {
	return &timeouts{
		reqHist:    make([]int64, histBins),
		abortHist:  make([]int64, histBins),
		upHist:     make([]int64, histBins),
		abortWho:   newTopK(96),
		abortFirst: make([]int64, whoBins),
		abortLast:  make([]int64, whoBins),
	}
}

func (d *timeouts) observe(rec *record) {
	r := rec.Record
	rt, ut := r.RequestTime, r.UpstreamTime
	if rt > 0 || r.HasUpstreamTime {
		d.rtLines++
		d.reqHist[histBin(rt, histStep, histBins)]++
	}
	if r.HasUpstreamTime {
		d.upTotal += ut.Microseconds()
		if r.Status != 499 {
			d.upHist[histBin(ut, histStep, histBins)]++
		}
	}
	if !abortedLike(r) {
		return
	}
	d.abortHist[histBin(rt, histStep, histBins)]++
	wb := histBin(rt, whoStep, whoBins)
	if !r.Time.IsZero() {
		s := r.Time.Unix()
		if d.abortFirst[wb] == 0 || s < d.abortFirst[wb] {
			d.abortFirst[wb] = s
		}
		d.abortLast[wb] = max(d.abortLast[wb], s)
	}
	var up int64
	if r.HasUpstreamTime {
		up = ut.Microseconds()
	}
	v := rec.v
	for _, dim := range []Dimension{DimUserAgent, DimKey, DimPath, DimClient, DimStatus} {
		v.buf = append(v.buf[:0], byte('0'+dim), 0)
		v.buf = appendUint(v.buf, uint64(wb))
		v.buf = append(v.buf, 0)
		if val, ok := v.value(dim); ok {
			v.buf = append(v.buf, val...)
			addBytes(d.abortWho, v.buf, 1, rt.Microseconds(), up)
		}
	}
}

func (d *timeouts) merge(other detector) {
	o := other.(*timeouts)
	for i := range d.reqHist {
		d.reqHist[i] += o.reqHist[i]
		d.abortHist[i] += o.abortHist[i]
		d.upHist[i] += o.upHist[i]
	}
	d.upTotal += o.upTotal
	d.rtLines += o.rtLines
	d.abortWho.Merge(o.abortWho, mergeAB)
	for i := range d.abortFirst {
		if f := o.abortFirst[i]; f != 0 && (d.abortFirst[i] == 0 || f < d.abortFirst[i]) {
			d.abortFirst[i] = f
		}
		d.abortLast[i] = max(d.abortLast[i], o.abortLast[i])
	}
}

// find reports the client timeout and leaves its knee to the detectors and
// charts that use it.
func (d *timeouts) find(a *analysis) ([]Finding, error) {
	f, knee := d.clientTimeout(a.c)
	a.knee = knee
	return one(f), nil
}

func histBin(d time.Duration, step time.Duration, n int) int {
	if d < 0 {
		return 0
	}
	i := int64(d / step)
	if i >= int64(n) {
		return n - 1
	}
	return int(i)
}

// abortedLike is a line whose client left or whose upstream never answered
// although the request was not served locally: 499, or an error with no
// upstream time after a wait no static file needs.
func abortedLike(r *accesslog.Record) bool {
	if r.Status == 499 {
		return true
	}
	return r.Status >= 400 && !r.HasUpstreamTime && r.UpstreamStatus == 0 && r.RequestTime >= time.Second
}

// findKnee returns the request time aborted lines pile up at, the lines in
// the pile-up and its bin range, or ok=false.
func findKnee(h []int64) (knee float64, n int64, lo, hi int, ok bool) {
	var above int64
	for i := kneeMinTime; i < len(h)-1; i++ { // the last bin is the overflow
		above += h[i]
	}
	if above < kneeMinLines {
		return 0, 0, 0, 0, false
	}
	win := func(a, b int) int64 {
		var s int64
		for i := max(a, 0); i <= min(b, len(h)-2); i++ {
			s += h[i]
		}
		return s
	}
	best, bestN := -1, int64(0)
	for i := kneeMinTime; i < len(h)-1; i++ {
		if s := win(i-kneeHalf, i+kneeHalf); s > bestN {
			best, bestN = i, s
		}
	}
	if best < 0 {
		return 0, 0, 0, 0, false
	}
	bgLines := win(best-kneeBgHalf, best+kneeBgHalf) - bestN
	bgBins := float64(2*kneeBgHalf - 2*kneeHalf)
	expected := float64(bgLines) / bgBins * float64(2*kneeHalf+1)
	if bestN < kneeMinLines || float64(bestN) < 0.2*float64(above) || float64(bestN) < 5*expected+5 {
		return 0, 0, 0, 0, false
	}
	var wsum float64
	for i := best - kneeHalf; i <= best+kneeHalf; i++ {
		wsum += float64(h[i]) * (float64(i) + 0.5) * histStep.Seconds()
	}
	return wsum / float64(bestN), bestN, best - kneeHalf, best + kneeHalf, true
}

// clientTimeout returns the client_timeout finding and the knee in seconds
// (0 when none).
func (d *timeouts) clientTimeout(c *Collector) (*Finding, float64) {
	knee, n, lo, hi, ok := findKnee(d.abortHist)
	if !ok {
		return nil, 0
	}
	// The attribution summary uses 50 ms bins: widen to whole ones.
	wlo := int(time.Duration(lo) * histStep / whoStep)
	whi := int(time.Duration(hi) * histStep / whoStep)
	type agg struct {
		lines, loggedUs, upUs int64
	}
	byDim := map[Dimension]map[string]*agg{}
	var first, last int64
	for b := wlo; b <= whi && b < whoBins; b++ {
		if f := d.abortFirst[b]; f != 0 && (first == 0 || f < first) {
			first = f
		}
		last = max(last, d.abortLast[b])
	}
	for e := range d.abortWho.All() {
		d, rest, ok := strings.Cut(e.Key, "\x00")
		if !ok || len(d) != 1 {
			continue
		}
		binS, value, ok := strings.Cut(rest, "\x00")
		if !ok {
			continue
		}
		bin, err := strconv.Atoi(binS)
		if err != nil || bin < wlo || bin > whi {
			continue
		}
		dim := Dimension(d[0] - '0')
		if byDim[dim] == nil {
			byDim[dim] = map[string]*agg{}
		}
		a := byDim[dim][value]
		if a == nil {
			a = &agg{}
			byDim[dim][value] = a
		}
		a.lines += e.W - e.Err
		a.loggedUs += e.V.A
		a.upUs += e.V.B
	}
	var inWin int64 // lines in the 50 ms-aligned window, the shares' denominator
	for b := int(time.Duration(wlo) * whoStep / histStep); b < int(time.Duration(whi+1)*whoStep/histStep) && b < histBins; b++ {
		inWin += d.abortHist[b]
	}
	inWin = max(inWin, n)
	type top struct {
		dim   Dimension
		value string
		a     *agg
	}
	tops := func(d Dimension) []top {
		var out []top
		for v, a := range byDim[d] {
			out = append(out, top{d, v, a})
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].a.lines != out[j].a.lines {
				return out[i].a.lines > out[j].a.lines
			}
			return out[i].value < out[j].value
		})
		return out
	}
	var contributors []Contributor
	var ev []string
	var leadUA, leadKey string
	for _, d := range []Dimension{DimUserAgent, DimKey, DimStatus, DimPath, DimClient} {
		for i, t := range tops(d) {
			share := float64(t.a.lines) / float64(inWin)
			if i == 3 || share < 0.1 {
				break
			}
			if i == 0 && d == DimUserAgent {
				leadUA = t.value
			}
			if i == 0 && d == DimKey {
				leadKey = t.value
			}
			contributors = append(contributors, Contributor{Dimension: d.String(), Value: t.value, Share: round3(share)})
		}
	}
	// Worker time: what the log says these requests cost, and what they
	// really did.
	var upUs, loggedUs, tracked int64
	for _, t := range tops(DimUserAgent) {
		upUs += t.a.upUs
		loggedUs += t.a.loggedUs
		tracked += t.a.lines
	}
	logged := knee * float64(n)
	if tracked > 0 {
		logged = float64(loggedUs) / 1e6 * float64(inWin) / float64(tracked)
	}
	var real float64
	var realNote string
	switch {
	case upUs > 0 && tracked > 0:
		real = float64(upUs) / 1e6 * float64(inWin) / float64(tracked)
		realNote = fmt.Sprintf("the upstream worked %s on them (logged upstream time), %.1f× what the client-facing time says", seconds(real), real/math.Max(logged, 1e-9))
	default:
		// No upstream time on these lines: estimate from completed
		// requests longer than the knee, which is what these would have
		// been had the client waited.
		var m int64
		var sum float64
		kb := int(knee / histStep.Seconds())
		for i := kb; i < histBins; i++ {
			m += d.upHist[i]
			sum += float64(d.upHist[i]) * (float64(i) + 0.5) * histStep.Seconds()
		}
		if m >= 10 {
			mu := sum / float64(m)
			real = mu * float64(inWin)
			realNote = fmt.Sprintf("the log has no upstream time for them; the %s completed requests that ran past %s took %s on average, so these cost ~%s of worker time or more (they were cut off, not finished)", human(float64(m)), seconds(knee), seconds(mu), seconds(real))
		} else {
			real = logged
			realNote = fmt.Sprintf("the log has no upstream time for them, so their real cost is unknown: at least %s (the upstream was still working when the client left); log $upstream_response_time with proxy_ignore_client_abort on, or put headroom proxy in front, to know it", seconds(logged))
		}
	}
	who := "clients"
	switch {
	case leadUA != "" && leadUA != "(none)":
		who = fmt.Sprintf("user agent %q", leadUA)
	case leadKey != "":
		who = fmt.Sprintf("key %s", leadKey)
	}
	statuses := ""
	if sts := tops(DimStatus); len(sts) > 0 {
		var parts []string
		for i, t := range sts {
			if i == 3 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s ×%s", t.value, human(float64(t.a.lines))))
		}
		statuses = " (" + strings.Join(parts, ", ") + ")"
	}
	title := fmt.Sprintf("Client timeout at %.2f s: %s gives up on %s requests the upstream keeps working on", knee, who, human(float64(inWin)))
	ev = append(ev,
		fmt.Sprintf("%s aborted or upstream-less lines%s pile up at %.2f–%.2f s, %s the surrounding density",
			human(float64(inWin)), statuses, float64(lo)*histStep.Seconds(), float64(hi+1)*histStep.Seconds(), times(pileRatio(d.abortHist, lo, hi))),
		fmt.Sprintf("logged client-facing time of those lines: %s; %s", seconds(logged), realNote),
	)
	for _, t := range tops(DimPath) {
		ev = append(ev, fmt.Sprintf("most of them on %s (%s)", t.value, pct(float64(t.a.lines)/float64(inWin))))
		break
	}
	totalWork := float64(d.upTotal)/1e6 + math.Max(real-float64(upUs)/1e6, 0)
	impact := 0.0
	if totalWork > 0 {
		impact = math.Min(real/totalWork, 1)
	}
	impact = math.Max(impact, float64(inWin)/math.Max(float64(d.rtLines), 1))
	f := &Finding{
		Kind:         KindClientTimeout,
		Title:        title,
		Contributors: contributors,
		Evidence:     ev,
		Action: fmt.Sprintf("%s times out at ~%.1f s while its requests take longer: ask its owner to raise the timeout or make smaller requests. "+
			"Set proxy_ignore_client_abort on so the upstream finishes and nginx logs its real time, and charge budgets on upstream time per key (headroom proxy) so abandoned requests still count.",
			capitalize(who), math.Ceil(knee*2)/2),
		basis:       d.rtLines,
		Impact:      round3(impact),
		KneeSeconds: math.Round(knee*1000) / 1000,
	}
	if first != 0 {
		f.Window = Window{Start: time.Unix(first, 0).In(c.locOrUTC()), End: time.Unix(last, 0).In(c.locOrUTC())}
	}
	return f, knee
}

func times(r float64) string {
	if r > 100 {
		return "over 100×"
	}
	return fmt.Sprintf("%.0f×", r)
}

func pileRatio(h []int64, lo, hi int) float64 {
	var in, around int64
	for i := max(lo-kneeBgHalf, 0); i <= min(hi+kneeBgHalf, len(h)-2); i++ {
		if i >= lo && i <= hi {
			in += h[i]
		} else {
			around += h[i]
		}
	}
	bins := float64(hi - lo + 1)
	bg := float64(around) / float64(2*kneeBgHalf)
	if bg <= 0 {
		bg = 1.0 / float64(2*kneeBgHalf)
	}
	return float64(in) / bins / bg
}
