package findings

import (
	"math"
	"slices"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// The timeline is the Collector's series of time buckets, shared by every
// detector that looks at change over time (level shifts, bursts, rate
// limiting, --compare): per bucket, the counts and the heavy hitters of
// each dimension by requests and by bytes.

// widths is the ladder of bucket widths in seconds; each divides the next,
// so widening a series only sums neighbours.
var widths = []int64{60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400}

// Per-bucket latency histograms and the floor of a slow request.
const (
	latBins   = 48 // √2 steps from 1 ms
	slowFloor = 250 * time.Millisecond
)

// bucket holds one time slice of the log.
type bucket struct {
	req, bytes int64
	errs       int64 // 5xx
	aborted    int64 // 499
	limited    int64 // 429
	rtSum      int64 // µs
	lat        [latBins]uint32
	repReq     int64
	repBytes   int64
	byReq      [numDims]*topK // weight requests, A bytes
	byBytes    [numDims]*topK // weight bytes, A requests
	work       int64          // worker time, µs (workOf)
	byWork     [numDims]*topK // weight worker µs, A requests; only workDims
	errWho     *topK          // "dim\x00value" of 5xx lines
	slowWho    *topK          // "dim\x00value" weighted by client-facing ms
	limWho     *topK          // "dim\x00value" of 429 lines
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func latBin(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 1 {
		return 0
	}
	i := 1 + int(2*math.Log2(ms))
	return min(i, latBins-1)
}

// latBinUpper is the upper edge of a latency bin in seconds.
func latBinUpper(i int) float64 {
	if i == 0 {
		return 0.001
	}
	return math.Pow(2, float64(i)/2) / 1000
}

func isServerError(status int) bool { return status >= 500 && status <= 599 }

func (c *Collector) bucketFor(sec int64) *bucket {
	idx := floorDiv(sec, c.width)
	if len(c.buckets) == 0 {
		c.minIdx, c.maxIdx = idx, idx
	}
	for max(c.maxIdx, idx)-min(c.minIdx, idx)+1 > int64(c.opt.MaxBuckets) {
		c.widen()
		idx = floorDiv(sec, c.width)
	}
	c.minIdx, c.maxIdx = min(c.minIdx, idx), max(c.maxIdx, idx)
	b := c.buckets[idx]
	if b == nil {
		b = &bucket{}
		c.buckets[idx] = b
	}
	return b
}

// sortedKeys orders bucket merges: summaries trimmed after each merge
// depend on the order, and the same log must give the same findings.
func sortedKeys(m map[int64]*bucket) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func nextWidth(w int64) int64 {
	for _, x := range widths {
		if x > w {
			return x
		}
	}
	return 2 * w
}

// widen moves the series to the next width of the ladder.
func (c *Collector) widen() { c.widenTo(nextWidth(c.width)) }

func (c *Collector) widenTo(w int64) {
	if w <= c.width {
		return
	}
	f := w / c.width
	nb := make(map[int64]*bucket, len(c.buckets)/int(f)+1)
	for _, idx := range sortedKeys(c.buckets) {
		b := c.buckets[idx]
		ni := floorDiv(idx, f)
		if x := nb[ni]; x != nil {
			x.merge(b, c.opt.TopK)
		} else {
			nb[ni] = b
		}
	}
	c.buckets = nb
	c.width = w
	c.minIdx, c.maxIdx = floorDiv(c.minIdx, f), floorDiv(c.maxIdx, f)
}

func (b *bucket) merge(o *bucket, k int) {
	b.req += o.req
	b.bytes += o.bytes
	b.errs += o.errs
	b.aborted += o.aborted
	b.limited += o.limited
	b.rtSum += o.rtSum
	for i := range b.lat {
		b.lat[i] += o.lat[i]
	}
	b.work += o.work
	b.repReq += o.repReq
	b.repBytes += o.repBytes
	for d := range numDims {
		b.byReq[d] = mergeTopK(b.byReq[d], o.byReq[d], k)
		b.byBytes[d] = mergeTopK(b.byBytes[d], o.byBytes[d], k)
		b.byWork[d] = mergeTopK(b.byWork[d], o.byWork[d], k)
	}
	b.errWho = mergeTopK(b.errWho, o.errWho, 2*k)
	b.slowWho = mergeTopK(b.slowWho, o.slowWho, 2*k)
	b.limWho = mergeTopK(b.limWho, o.limWho, 2*k)
}

// workDims are the dimensions worker time is attributed to per bucket: who
// (agent, key, network) and what (endpoint). Logs without request or
// upstream times never fill them.
var workDims = [...]Dimension{DimUserAgent, DimKey, DimClient, DimPath}

// workOf is a record's worker time in µs: what the upstream spent on it,
// or, in a log that has no upstream times at all (the application server's
// own), its request time. In a proxy's log an upstream-less line is a
// static file or a refusal served by the proxy, no worker's time, so once a
// collector has seen an upstream time it counts only those.
func (c *Collector) workOf(r *accesslog.Record) int64 {
	if r.HasUpstreamTime {
		c.sawUpstream = true
		return max(r.UpstreamTime.Microseconds(), 0)
	}
	if c.sawUpstream {
		return 0
	}
	return max(r.RequestTime.Microseconds(), 0)
}

func mergeTopK(a, b *topK, k int) *topK {
	if b == nil {
		return a
	}
	if a == nil {
		a = newTopK(k)
	}
	a.Merge(b, mergeAB)
	return a
}

func (c *Collector) observeBucket(b *bucket, r *accesslog.Record) {
	v := &c.vals
	b.req++
	b.bytes += r.BytesSent
	if isServerError(r.Status) {
		b.errs++
	}
	if r.Status == 499 {
		b.aborted++
	}
	if r.RequestTime > 0 {
		b.rtSum += r.RequestTime.Microseconds()
		b.lat[latBin(r.RequestTime)]++
	}
	k := c.opt.TopK
	for d := range numDims {
		if !v.valOK[d] {
			continue
		}
		if b.byReq[d] == nil {
			b.byReq[d], b.byBytes[d] = newTopKIn(k, v.intern), newTopKIn(k, v.intern)
		}
		v.count(b.byReq[d], d, 1, r.BytesSent, 0)
		if r.BytesSent > 0 {
			v.count(b.byBytes[d], d, r.BytesSent, 1, 0)
		}
	}
	if w := c.workOf(r); w > 0 {
		b.work += w
		for _, d := range workDims {
			if b.byWork[d] == nil {
				b.byWork[d] = newTopKIn(k, v.intern)
			}
			v.count(b.byWork[d], d, w, 1, 0)
		}
	}
	if isServerError(r.Status) {
		if b.errWho == nil {
			b.errWho = newTopKIn(2*k, v.intern)
		}
		v.addComposite(b.errWho, 1, DimPath, DimStatus, DimUserAgent, DimClient, DimKey)
	}
	if r.Status == 429 {
		b.limited++
		if b.limWho == nil {
			b.limWho = newTopKIn(2*k, v.intern)
		}
		v.addComposite(b.limWho, 1, DimKey, DimClient, DimUserAgent, DimPath)
	}
	if r.RequestTime >= slowFloor {
		if b.slowWho == nil {
			b.slowWho = newTopKIn(2*k, v.intern)
		}
		v.addComposite(b.slowWho, r.RequestTime.Milliseconds(), DimPath, DimUserAgent, DimClient, DimKey)
	}
}

// series returns the buckets from minIdx to maxIdx (nil for empty ones).
func (c *Collector) series() []*bucket {
	if len(c.buckets) == 0 {
		return nil
	}
	out := make([]*bucket, c.maxIdx-c.minIdx+1)
	for idx, b := range c.buckets {
		out[idx-c.minIdx] = b
	}
	return out
}

func (c *Collector) bucketTime(i int) time.Time {
	return time.Unix((c.minIdx+int64(i))*c.width, 0).In(c.loc)
}

// mergeTimeline brings both series to a common width, then to a span that
// fits, and folds o's buckets into c's.
func (c *Collector) mergeTimeline(o *Collector) {
	w := max(c.width, o.width)
	c.widenTo(w)
	o.widenTo(w)
	if len(o.buckets) == 0 {
		return
	}
	if len(c.buckets) == 0 {
		c.minIdx, c.maxIdx = o.minIdx, o.maxIdx
	}
	lo, hi := min(c.minIdx, o.minIdx), max(c.maxIdx, o.maxIdx)
	for hi-lo+1 > int64(c.opt.MaxBuckets) {
		c.widen()
		o.widenTo(c.width)
		lo, hi = min(c.minIdx, o.minIdx), max(c.maxIdx, o.maxIdx)
	}
	c.minIdx, c.maxIdx = lo, hi
	for _, idx := range sortedKeys(o.buckets) {
		b := o.buckets[idx]
		if x := c.buckets[idx]; x != nil {
			x.merge(b, c.opt.TopK)
		} else {
			c.buckets[idx] = b
		}
	}
}
