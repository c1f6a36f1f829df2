package findings

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/timearg"
)

// Compare is a period of interest and the baseline it is compared with.
type Compare struct {
	Period   Window
	Baseline Window
}

// ParseCompare reads the --compare flag: "T1..T2" compares that period with
// the preceding period of equal length; "T1..T2,B1..B2" compares T1..T2 with
// the explicit baseline B1..B2. Each T is an RFC 3339 time or a duration ago
// (timearg.Parse).
func ParseCompare(s string, now time.Time, loc *time.Location) (Compare, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Compare{}, errors.New("--compare: empty; give T1..T2 (compared with the period before it) or T1..T2,B1..B2 (B1..B2 is the baseline)")
	}
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return Compare{}, fmt.Errorf("--compare %q: at most two ranges, T1..T2 or T1..T2,B1..B2", s)
	}
	period, err := parseRange(parts[0], now, loc)
	if err != nil {
		return Compare{}, fmt.Errorf("--compare %q: period: %w", s, err)
	}
	c := Compare{Period: period}
	if len(parts) == 2 {
		c.Baseline, err = parseRange(parts[1], now, loc)
		if err != nil {
			return Compare{}, fmt.Errorf("--compare %q: baseline: %w", s, err)
		}
	} else {
		d := period.End.Sub(period.Start)
		c.Baseline = Window{Start: period.Start.Add(-d), End: period.Start}
	}
	return c, nil
}

func parseRange(s string, now time.Time, loc *time.Location) (Window, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "..")
	if !ok {
		return Window{}, fmt.Errorf("%q is not a range: write START..END, e.g. 2019-04-04..2019-04-05 or 2h..1h", s)
	}
	start, err := timearg.Parse(a, now, loc)
	if err != nil {
		return Window{}, fmt.Errorf("start: %w", err)
	}
	end, err := timearg.Parse(b, now, loc)
	if err != nil {
		return Window{}, fmt.Errorf("end: %w", err)
	}
	if !end.After(start) {
		return Window{}, fmt.Errorf("range %q ends (%s) before it starts (%s)", s, end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	return Window{Start: start, End: end}, nil
}

// comparison attributes the change between the two windows of --compare.
type comparison struct{ timelineOnly }

func (comparison) find(a *analysis) ([]Finding, error) {
	if a.opt.Compare == nil {
		return nil, nil
	}
	f, err := a.c.compare(*a.opt.Compare)
	if err != nil {
		return nil, err
	}
	return []Finding{f}, nil
}

// compare attributes the change between the baseline and the period.
func (c *Collector) compare(cmp Compare) (Finding, error) {
	bs := c.series()
	if len(bs) == 0 {
		return Finding{}, errors.New("--compare: the log has no timed records to compare")
	}
	first, last := c.bucketTime(0), c.bucketTime(len(bs)).Add(-time.Nanosecond)
	idx := func(t time.Time) int {
		return int(floorDiv(t.Unix(), c.width) - c.minIdx)
	}
	// Round the period's end up so a window shorter than a bucket still
	// covers one.
	idxEnd := func(t time.Time) int {
		return int(floorDiv(t.Unix()+c.width-1, c.width) - c.minIdx)
	}
	a0, a1 := idx(cmp.Baseline.Start), idxEnd(cmp.Baseline.End)
	b0, b1 := idx(cmp.Period.Start), idxEnd(cmp.Period.End)
	span := fmt.Sprintf("the log spans %s – %s", first.Format(time.RFC3339), last.Format(time.RFC3339))
	if a1 <= 0 || a0 >= len(bs) {
		return Finding{}, fmt.Errorf("--compare: the baseline %s – %s is outside the log (%s)", cmp.Baseline.Start.Format(time.RFC3339), cmp.Baseline.End.Format(time.RFC3339), span)
	}
	if b1 <= 0 || b0 >= len(bs) {
		return Finding{}, fmt.Errorf("--compare: the period %s – %s is outside the log (%s)", cmp.Period.Start.Format(time.RFC3339), cmp.Period.End.Format(time.RFC3339), span)
	}
	var ev []string
	clip := func(name string, lo, hi *int) {
		if *lo < 0 || *hi > len(bs) {
			ev = append(ev, fmt.Sprintf("the %s reaches outside the log (%s): rates use the part inside it", name, span))
		}
		*lo, *hi = max(*lo, 0), min(*hi, len(bs))
	}
	clip("baseline", &a0, &a1)
	clip("period", &b0, &b1)

	// Lead with whichever of requests, bytes and worker time moved more;
	// worker time only when it moved beyond what volume explains.
	reqAt := attribute(bs, c.width, metricRequests, a0, a1, b0, b1)
	byteAt := attribute(bs, c.width, metricBytes, a0, a1, b0, b1)
	workAt := attribute(bs, c.width, metricWork, a0, a1, b0, b1)
	attr, m := reqAt, metricRequests
	if logRatio(byteAt) > logRatio(reqAt)+math.Log(1.1) {
		attr, m = byteAt, metricBytes
	}
	hasWork := workAt.rateA > 0 || workAt.rateB > 0
	if hasWork && logRatio(workAt) > max(logRatio(reqAt), logRatio(byteAt))+math.Log(1.1) {
		attr, m = workAt, metricWork
	}
	unit := m.unit()
	direction := "increase"
	if attr.rateB < attr.rateA {
		direction = "decrease"
	}
	title := fmt.Sprintf("%s %s in %s vs baseline %s", capitalize(unit), factor(attr.rateA, attr.rateB), fmtWindow(cmp.Period, c.loc), fmtWindow(cmp.Baseline, c.loc))
	if h := attr.headline(direction); h != "" {
		title += ": " + h
	}
	rates := fmt.Sprintf("requests/hour: %s → %s; bytes out/hour: %s → %s", human(reqAt.rateA), human(reqAt.rateB), humanBytes(byteAt.rateA), humanBytes(byteAt.rateB))
	if hasWork {
		rates += fmt.Sprintf("; worker time/hour: %s → %s", seconds(workAt.rateA/1e6), seconds(workAt.rateB/1e6))
	}
	ev = append([]string{rates}, ev...)
	aligned := func(t time.Time) bool { return t.Unix()%c.width == 0 && t.Nanosecond() == 0 }
	if !aligned(cmp.Period.Start) || !aligned(cmp.Period.End) || !aligned(cmp.Baseline.Start) || !aligned(cmp.Baseline.End) {
		ev = append(ev, fmt.Sprintf("windows rounded to the series' %s buckets", fmtSpan(time.Duration(c.width)*time.Second)))
	}
	for _, dim := range []Dimension{DimUserAgent, DimKey, DimClient, DimPath, DimReferer, DimStatus, DimMethod} {
		n := 0
		for _, ch := range attr.byDim[dim] {
			if n == 2 || ch.shareChange < 0.1 {
				break
			}
			if ch.informative() {
				ev = append(ev, ch.describe(m))
				n++
			}
		}
	}
	if hasWork && m != metricWork {
		// Who brought the worker time, the same way (issue 16: the
		// question an API's operator asks first).
		for _, dim := range workDims {
			for i, ch := range workAt.byDim[dim] {
				if i == 2 || ch.shareChange < 0.1 {
					break
				}
				if ch.informative() {
					ev = append(ev, "of the worker time, "+ch.describe(metricWork))
				}
			}
		}
	}
	metric := m.String()
	return Finding{
		Kind:         KindComparison,
		Title:        title,
		Window:       cmp.Period,
		Contributors: attr.contributors(),
		Evidence:     ev,
		Action:       "The contributors are ranked by how much of the change they explain; a value new in the period (from nothing) or grown several times is where to look first.",
		Impact:       round3(math.Abs(attr.rateB-attr.rateA) / math.Max(math.Max(attr.rateA, attr.rateB), 1)),
		Metric:       metric,
	}, nil
}

func logRatio(a attribution) float64 {
	return math.Abs(math.Log1p(a.rateB) - math.Log1p(a.rateA))
}

func fmtWindow(w Window, loc *time.Location) string {
	s, e := w.Start, w.End
	if loc != nil {
		s, e = s.In(loc), e.In(loc)
	}
	return s.Format("2006-01-02 15:04") + ".." + e.Format("2006-01-02 15:04 MST")
}
