package findings

import (
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
func (c *Collector) clientTimeout() (*Finding, float64) {
	knee, n, lo, hi, ok := findKnee(c.abortHist)
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
		if f := c.abortFirst[b]; f != 0 && (first == 0 || f < first) {
			first = f
		}
		last = max(last, c.abortLast[b])
	}
	for _, e := range c.abortWho.entries {
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
		a.loggedUs += e.A
		a.upUs += e.B
	}
	var inWin int64 // lines in the 50 ms-aligned window, the shares' denominator
	for b := int(time.Duration(wlo) * whoStep / histStep); b < int(time.Duration(whi+1)*whoStep/histStep) && b < histBins; b++ {
		inWin += c.abortHist[b]
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
			m += c.upHist[i]
			sum += float64(c.upHist[i]) * (float64(i) + 0.5) * histStep.Seconds()
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
			human(float64(inWin)), statuses, float64(lo)*histStep.Seconds(), float64(hi+1)*histStep.Seconds(), times(pileRatio(c.abortHist, lo, hi))),
		fmt.Sprintf("logged client-facing time of those lines: %s; %s", seconds(logged), realNote),
	)
	for _, t := range tops(DimPath) {
		ev = append(ev, fmt.Sprintf("most of them on %s (%s)", t.value, pct(float64(t.a.lines)/float64(inWin))))
		break
	}
	totalWork := float64(c.upTotal)/1e6 + math.Max(real-float64(upUs)/1e6, 0)
	impact := 0.0
	if totalWork > 0 {
		impact = math.Min(real/totalWork, 1)
	}
	impact = math.Max(impact, float64(inWin)/math.Max(float64(c.rtLines), 1))
	f := &Finding{
		Kind:         KindClientTimeout,
		Title:        title,
		Contributors: contributors,
		Evidence:     ev,
		Action: fmt.Sprintf("%s times out at ~%.1f s while its requests take longer: ask its owner to raise the timeout or make smaller requests. "+
			"Set proxy_ignore_client_abort on so the upstream finishes and nginx logs its real time, and charge budgets on upstream time per key (headroom proxy) so abandoned requests still count.",
			capitalize(who), math.Ceil(knee*2)/2),
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

func (c *Collector) locOrUTC() *time.Location {
	if c.loc == nil {
		return time.UTC
	}
	return c.loc
}

// abortAccounting reports lines whose logged times under-state the
// upstream's work: the client-facing time is shorter than the upstream's
// (the client left, the upstream kept going), or an error line waited
// seconds yet has no upstream time (nginx logged when the client left).
func (c *Collector) abortAccounting(knee float64) []Finding {
	var out []Finding
	work := float64(c.upTotal) / 1e6
	action := "In nginx set proxy_ignore_client_abort on (the upstream finishes, and the log gets its real status and time), log $upstream_status and $upstream_response_time (headroom's log format does), and charge rate limits and budgets on upstream time, not $request_time."
	if c.shortClient > 0 && c.withUp > 0 {
		gap := float64(c.shortClientGap) / 1e6
		share := float64(c.shortClient) / float64(c.withUp)
		// Many lines, or a few that hide a real share of the work (a guard's
		// log with a handful of 30 s reports abandoned at 5 s).
		if (c.shortClient >= 10 && share >= 0.001) || (c.shortClient >= 3 && gap >= 0.05*work) {
			ev := []string{
				fmt.Sprintf("on these lines $request_time < $upstream_response_time; %s of status 499 in the log", human(float64(c.status499))),
				fmt.Sprintf("anything that charges the client-facing time under-counts by %s (%s of all upstream time)", seconds(gap), pct(gap/math.Max(work, 1e-9))),
			}
			who, lines := topShares(c.gapWho, []Dimension{DimKey, DimUserAgent, DimClient, DimPath}, float64(c.shortClientGap), 0.2)
			for _, l := range lines {
				ev = append(ev, "of the hidden worker time, "+l)
			}
			out = append(out, Finding{
				Kind:         KindAbortAccounting,
				Title:        fmt.Sprintf("%s lines (%s) ended for the client before the upstream finished: %s of worker time beyond their client-facing time", human(float64(c.shortClient)), pct(share), seconds(gap)),
				Contributors: who,
				Evidence:     ev,
				Window:       c.logWindow(),
				Action:       action,
				Impact:       round3(math.Min(gap/math.Max(work, 1e-9), 1)),
			})
		}
	}
	if c.missingUp >= 10 && c.withUp > 0 {
		t := float64(c.missingUpTime) / 1e6
		ev := []string{
			fmt.Sprintf("%s lines are 499 or an error after ≥ 1 s with upstream status and time '-', though %s other lines carry an upstream time", human(float64(c.missingUp)), human(float64(c.withUp))),
			fmt.Sprintf("their client-facing time adds to %s; the upstream's work on them is missing from the log", seconds(t)),
		}
		if knee > 0 {
			ev = append(ev, fmt.Sprintf("many sit at the client-timeout knee (%.2f s): see the client_timeout finding", knee))
		}
		out = append(out, Finding{
			Kind:     KindAbortAccounting,
			Title:    fmt.Sprintf("%s aborted lines have no upstream time: the worker time they cost is not in the log", human(float64(c.missingUp))),
			Window:   c.logWindow(),
			Evidence: ev,
			Action:   action,
			Impact:   round3(math.Min(t/math.Max(work+t, 1e-9), 1)),
		})
	}
	if c.records >= 100 && c.rtLines == 0 {
		out = append(out, Finding{
			Kind:     KindAbortAccounting,
			Title:    "The log has no request or upstream times: worker time and client timeouts cannot be measured",
			Window:   c.logWindow(),
			Evidence: []string{fmt.Sprintf("none of %s lines has $request_time or $upstream_response_time", human(float64(c.records)))},
			Action:   "Add $request_time $upstream_status $upstream_response_time to the log_format (headroom nginx-config prints one), with proxy_ignore_client_abort on.",
			Impact:   0.01,
			Severity: "info",
		})
	}
	return out
}
