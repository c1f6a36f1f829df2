package findings

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// AnalyzeOptions tune the detectors. The zero value infers everything from
// the log.
type AnalyzeOptions struct {
	// SiteHosts are the site's own host names (referers from them are not
	// hotlinks). Empty means inferred from the Host field and the most
	// common referer domain.
	SiteHosts []string
	// Compare, when set, adds a comparison finding between its windows.
	Compare *Compare
}

// Report is what Analyze found, plus the series the HTML report draws.
type Report struct {
	Findings []Finding
	Records  int64
	Start    time.Time
	End      time.Time
	Location *time.Location
	Charts   Charts
}

// Charts is the data behind the HTML report's charts.
type Charts struct {
	BucketWidth time.Duration
	Times       []time.Time
	Requests    []float64
	Bytes       []float64
	Work        []float64 // worker time per bucket, seconds
	// Marks are change points to draw on the time series.
	Marks []Mark
	// Stack is the per-bucket requests of the top values of one dimension.
	Stack Stack
	// Scatter is a uniform sample of (client-facing, upstream) times.
	Scatter []Point
	// Histogram of client-facing request times.
	Histogram Histogram
}

// Mark is a labelled instant on the time series.
type Mark struct {
	At    time.Time
	Label string
}

// Stack is a stacked series of a dimension's top values.
type Stack struct {
	Dimension string
	Values    []string
	Series    [][]float64 // Series[i][t]: value i in bucket t
	Other     []float64
}

// Histogram is a histogram of request times with its knee, if any.
type Histogram struct {
	StepSeconds float64
	Counts      []int64
	Aborted     []int64 // the aborted or upstream-less lines among Counts
	KneeSeconds float64 // 0 when there is no knee
}

// Analyze runs every detector over c and ranks the findings. It only reads
// c (the report shares nothing with it), so a collector may go on observing
// and be analyzed again, as `logs analyze --follow` does; not concurrently.
func Analyze(c *Collector, opt AnalyzeOptions) (*Report, error) {
	rep := &Report{Records: c.records, Location: c.loc}
	if c.loc != nil {
		rep.Start = time.Unix(0, c.first).In(c.loc)
		rep.End = time.Unix(0, c.last).In(c.loc)
	}
	a := &analysis{c: c, opt: opt}
	var fs []Finding
	for _, d := range c.detectors {
		found, err := d.find(a)
		if err != nil {
			return nil, err
		}
		fs = append(fs, found...)
	}
	rank(fs, c.records)
	if fs == nil {
		fs = []Finding{}
	}
	rep.Findings = fs
	rep.Charts = c.charts(fs, a.knee)
	return rep, nil
}

// sumDim adds up dimension d over buckets [from, to) of the series: the
// weight of each tracked value in metric m.
func sumDim(bs []*bucket, d Dimension, m metric, from, to int) map[string]float64 {
	out := map[string]float64{}
	for i := max(from, 0); i < min(to, len(bs)); i++ {
		b := bs[i]
		if b == nil {
			continue
		}
		t := m.summary(b, d)
		if t == nil {
			continue
		}
		for e := range t.All() {
			// Space-Saving over-estimates a newcomer by its inherited error;
			// the lower bound keeps a churning tail from looking like a change.
			out[e.Key] += float64(e.W - e.Err)
		}
	}
	return out
}

func total(bs []*bucket, m metric, from, to int) float64 {
	var s float64
	for i := max(from, 0); i < min(to, len(bs)); i++ {
		if b := bs[i]; b != nil {
			s += m.of(b)
		}
	}
	return s
}

// metric is what a level shift or comparison measures.
type metric int

const (
	metricRequests metric = iota
	metricBytes
	metricWork // worker time (workOf), µs
)

// of is the bucket's total in the metric.
func (m metric) of(b *bucket) float64 {
	switch m {
	case metricBytes:
		return float64(b.bytes)
	case metricWork:
		return float64(b.work)
	}
	return float64(b.req)
}

// summary is the bucket's heavy hitters of dimension d weighted by the
// metric (nil when none).
func (m metric) summary(b *bucket, d Dimension) *topK {
	switch m {
	case metricBytes:
		return b.byBytes[d]
	case metricWork:
		return b.byWork[d]
	}
	return b.byReq[d]
}

// String is the metric's name in findings (Finding.Metric).
func (m metric) String() string {
	return [...]string{"requests", "bytes", "worker_time"}[m]
}

// unit names the metric in sentences.
func (m metric) unit() string {
	return [...]string{"requests", "bytes out", "worker time"}[m]
}

// format renders an amount of the metric.
func (m metric) format(v float64) string {
	switch m {
	case metricBytes:
		return humanBytes(v)
	case metricWork:
		return seconds(v / 1e6)
	}
	return human(v)
}

// change is one dimension value's part in a change between two windows.
type change struct {
	dim         Dimension
	value       string
	before      float64 // rate per hour
	after       float64
	delta       float64
	shareChange float64
	shareBefore float64 // of the baseline's total
}

// informative tells whether a value explains the change out of proportion
// to its usual share: "status 200 explains 100%" when every request is a
// 200 says nothing. The path is the "what" and is kept when it dominates.
func (ch change) informative() bool {
	if ch.shareChange < 0.1 {
		return false
	}
	if ch.dim == DimPath && ch.shareChange >= 0.5 {
		return true
	}
	return ch.shareChange >= ch.shareBefore+0.1
}

// attribution compares windows A (before) and B (after) of the series, as
// rates per hour so windows of different lengths compare, and returns the
// values that explain the change, most explanatory first within each
// dimension.
type attribution struct {
	rateA, rateB float64
	byDim        [numDims][]change
}

func attribute(bs []*bucket, width int64, m metric, a0, a1, b0, b1 int) attribution {
	hA := float64(a1-a0) * float64(width) / 3600
	hB := float64(b1-b0) * float64(width) / 3600
	var at attribution
	if hA <= 0 || hB <= 0 {
		return at
	}
	at.rateA = total(bs, m, a0, a1) / hA
	at.rateB = total(bs, m, b0, b1) / hB
	diff := at.rateB - at.rateA
	for d := range numDims {
		va := sumDim(bs, d, m, a0, a1)
		vb := sumDim(bs, d, m, b0, b1)
		var cs []change
		seen := map[string]bool{}
		for _, m := range []map[string]float64{vb, va} {
			for v := range m {
				if seen[v] {
					continue
				}
				seen[v] = true
				ch := change{dim: d, value: v, before: va[v] / hA, after: vb[v] / hB}
				ch.delta = ch.after - ch.before
				if at.rateA > 0 {
					ch.shareBefore = ch.before / at.rateA
				}
				if diff != 0 {
					ch.shareChange = ch.delta / diff
				}
				cs = append(cs, ch)
			}
		}
		sort.Slice(cs, func(i, j int) bool {
			if cs[i].shareChange != cs[j].shareChange {
				return cs[i].shareChange > cs[j].shareChange
			}
			return cs[i].value < cs[j].value
		})
		at.byDim[d] = cs
	}
	return at
}

// who and what pick the lead contributors: "who" among user agent, key,
// client and referer (which clients), "what" the path template.
var whoDims = []Dimension{DimUserAgent, DimKey, DimClient, DimReferer}

func (at attribution) lead(dims []Dimension) (change, bool) {
	var best change
	found := false
	for _, d := range dims {
		if len(at.byDim[d]) == 0 {
			continue
		}
		c := at.byDim[d][0]
		if !c.informative() {
			continue
		}
		// Prefer the earlier dimension unless a later one explains clearly more.
		if !found || c.shareChange > best.shareChange+0.1 {
			best, found = c, true
		}
	}
	return best, found && best.shareChange >= 0.2
}

// contributors lists, per dimension, the values that explain at least 10% of
// the change (at most three each), biggest first.
func (at attribution) contributors() []Contributor {
	var out []Contributor
	for d := range numDims {
		n := 0
		for _, c := range at.byDim[d] {
			if c.shareChange < 0.1 || n == 3 {
				break
			}
			if !c.informative() {
				continue
			}
			out = append(out, Contributor{Dimension: d.String(), Value: c.value, Share: round3(c.shareChange)})
			n++
		}
	}
	// "Which clients started doing what": who (agent, key, network,
	// referer) first, then what (path, status, method), each by share.
	isWho := func(d string) bool {
		for _, w := range whoDims {
			if w.String() == d {
				return true
			}
		}
		return false
	}
	sort.SliceStable(out, func(i, j int) bool {
		if wi, wj := isWho(out[i].Dimension), isWho(out[j].Dimension); wi != wj {
			return wi
		}
		return out[i].Share > out[j].Share
	})
	return out
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// describe renders a change as an evidence line.
func (ch change) describe(m metric) string {
	f, unit := m.format, m.unit()
	return fmt.Sprintf("%s %s: %s → %s %s/hour (%s%s, %s of the change)",
		ch.dim.label(), quoteValue(ch.value), f(ch.before), f(ch.after), unit, sign(ch.delta), f(math.Abs(ch.delta)), pct(ch.shareChange))
}

func sign(f float64) string {
	if f < 0 {
		return "−"
	}
	return "+"
}

// headline builds "user agent "X" (+95% of the increase) on path /images/*.jpg".
func (at attribution) headline(direction string) string {
	var parts []string
	if w, ok := at.lead(whoDims); ok {
		parts = append(parts, fmt.Sprintf("%s %s explains %s of the %s", w.dim.label(), quoteValue(w.value), pct(w.shareChange), direction))
	}
	if p, ok := at.lead([]Dimension{DimPath}); ok {
		parts = append(parts, fmt.Sprintf("on %s (%s)", p.value, pct(p.shareChange)))
	}
	return strings.Join(parts, ", ")
}

func factor(a, b float64) string {
	if a <= 0 {
		return "from nothing"
	}
	r := b / a
	if r >= 1 {
		return fmt.Sprintf("up %.1f×", r)
	}
	return fmt.Sprintf("down %.0f%%", 100*(1-r))
}

func (c *Collector) charts(fs []Finding, knee float64) Charts {
	bs := c.series()
	ch := Charts{BucketWidth: time.Duration(c.width) * time.Second, Scatter: slices.Clone(c.sample)}
	for i, b := range bs {
		ch.Times = append(ch.Times, c.bucketTime(i))
		if b == nil {
			ch.Requests = append(ch.Requests, 0)
			ch.Bytes = append(ch.Bytes, 0)
			ch.Work = append(ch.Work, 0)
			continue
		}
		ch.Requests = append(ch.Requests, float64(b.req))
		ch.Bytes = append(ch.Bytes, float64(b.bytes))
		ch.Work = append(ch.Work, float64(b.work)/1e6)
	}
	stackDim := DimUserAgent
	for _, f := range fs {
		if f.Kind == KindLevelShift && f.ChangeAt != nil {
			ch.Marks = append(ch.Marks, Mark{At: *f.ChangeAt, Label: "change: " + f.Metric})
			if len(f.Contributors) > 0 && len(ch.Marks) == 1 {
				for d := range numDims {
					if d.String() == f.Contributors[0].Dimension && d != DimPath {
						stackDim = d
					}
				}
			}
		}
	}
	ch.Stack = stackFor(bs, stackDim, 5)
	// Histogram: 50 ms bins up to a little past the knee or the 99.5th
	// percentile, whichever is larger, so the pile-up is visible.
	var n int64
	for _, v := range c.timeouts.reqHist {
		n += v
	}
	limit := 0
	if n > 0 {
		var acc int64
		for i, v := range c.timeouts.reqHist {
			acc += v
			if float64(acc) >= 0.995*float64(n) {
				limit = i
				break
			}
		}
	}
	limit = max(limit, int(knee*1.3/histStep.Seconds()), 100)
	limit = min(limit, histBins-1)
	const group = 5
	ch.Histogram = Histogram{StepSeconds: histStep.Seconds() * group, KneeSeconds: knee}
	for i := 0; i <= limit; i += group {
		var s, a int64
		for j := i; j < i+group && j < histBins; j++ {
			s += c.timeouts.reqHist[j]
			a += c.timeouts.abortHist[j]
		}
		ch.Histogram.Counts = append(ch.Histogram.Counts, s)
		ch.Histogram.Aborted = append(ch.Histogram.Aborted, a)
	}
	return ch
}

func stackFor(bs []*bucket, d Dimension, k int) Stack {
	tot := sumDim(bs, d, metricRequests, 0, len(bs))
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for key, v := range tot {
		all = append(all, kv{key, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	if len(all) > k {
		all = all[:k]
	}
	st := Stack{Dimension: d.String()}
	for _, e := range all {
		st.Values = append(st.Values, e.k)
		st.Series = append(st.Series, make([]float64, len(bs)))
	}
	st.Other = make([]float64, len(bs))
	for t, b := range bs {
		if b == nil {
			continue
		}
		rest := float64(b.req)
		if tk := b.byReq[d]; tk != nil {
			for i, v := range st.Values {
				if e := tk.Find(v); e != nil {
					st.Series[i][t] = float64(e.W - e.Err)
					rest -= float64(e.W - e.Err)
				}
			}
		}
		st.Other[t] = max(rest, 0)
	}
	return st
}
