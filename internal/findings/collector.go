package findings

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/dims"
)

// Options configure a Collector. Zero values choose the defaults noted.
type Options struct {
	// TopK is how many values per dimension each time bucket keeps (the
	// heavy hitters); 0 means 12.
	TopK int
	// MaxBuckets bounds the time series: when the log spans more, buckets
	// widen (1m, 5m, 15m, 30m, 1h, 3h, …); 0 means 1024.
	MaxBuckets int
	// RefetchWindow is how soon a second fetch of the same object by the
	// same client counts as repeated; 0 means 5m.
	RefetchWindow time.Duration
	// RefetchSlots sizes the table of recent fetches (rounded up to a power
	// of two). A collision forgets a fetch, so repeats are undercounted,
	// never invented, and when it overflows the collector samples pairs
	// instead; 0 means 1<<17 (2 MiB).
	RefetchSlots int
	// Samples is how many (client-facing, upstream) time points the scatter
	// plot keeps; 0 means 2000.
	Samples int
	// Seed makes sampling reproducible.
	Seed uint64
}

func (o Options) withDefaults() Options {
	if o.TopK <= 0 {
		o.TopK = 12
	}
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = 1024
	}
	if o.MaxBuckets < 8 {
		o.MaxBuckets = 8
	}
	if o.RefetchWindow <= 0 {
		o.RefetchWindow = 5 * time.Minute
	}
	if o.RefetchSlots <= 0 {
		o.RefetchSlots = 1 << 17
	}
	o.RefetchSlots = 1 << bitsFor(o.RefetchSlots)
	if o.Samples <= 0 {
		o.Samples = 2000
	}
	return o
}

func bitsFor(n int) int {
	b := 0
	for 1<<b < n {
		b++
	}
	return b
}

// widths is the ladder of bucket widths in seconds; each divides the next,
// so widening a series only sums neighbours.
var widths = []int64{60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400}

// Fine histograms of durations: 10 ms bins up to 2 minutes; a client timeout
// is a spike a few bins wide.
const (
	histStep  = 10 * time.Millisecond
	histBins  = 12001
	whoStep   = 50 * time.Millisecond // bins of the aborted-line attribution
	whoBins   = 2401
	latBins   = 48 // per-bucket latency histogram: √2 steps from 1 ms
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
	errWho     *topK          // "dim\x00value" of 5xx lines
	slowWho    *topK          // "dim\x00value" weighted by client-facing ms
	limWho     *topK          // "dim\x00value" of 429 lines
}

// recentFetch is one slot of the repeated-fetch table.
type recentFetch struct {
	fp uint64
	at int64 // unix ns
}

// Point is one sampled request for the scatter of client-facing against
// upstream time.
type Point struct {
	Request  float64 // seconds
	Upstream float64 // seconds; meaningful when HasUpstream
	// HasUpstream is false when the log had no upstream time for the line.
	HasUpstream bool
	Status      int
}

// Collector gathers, record by record, what the detectors need, in memory
// bounded by its Options whatever the size of the log. One Collector per
// engine worker; Merge folds them together at the end.
type Collector struct {
	opt     Options
	loc     *time.Location
	width   int64
	buckets map[int64]*bucket
	minIdx  int64
	maxIdx  int64

	records  int64
	untimed  int64 // no time, or one too far from the rest (maxSpan)
	timed    int64
	anchor   int64 // unix ns of the 100th timed record
	bytes    int64
	first    int64 // unix ns
	last     int64
	hosts    *topK
	referers *topK // all requests, by requests

	// Durations.
	reqHist   []int64 // all lines with a client-facing time
	abortHist []int64 // aborted or upstream-less lines
	upHist    []int64 // upstream times of lines the client did not abort
	withUp    int64
	withoutUp int64
	upTotal   int64 // µs
	rtTotal   int64 // µs
	rtLines   int64
	// Lines whose client-facing time is shorter than the upstream's work.
	shortClient, shortClientGap int64
	gapWho                      *topK // "dim\x00value" weighted by the gap in µs
	// Lines with an upstream-less error that took long enough to have been
	// proxied: the seed's `404 4.668 - -`.
	missingUp, missingUpTime int64
	status499                int64
	abortWho                 *topK // "u|k|p" + bin + value; W lines, A logged µs, B upstream µs
	abortFirst, abortLast    []int64

	// Automated agents and static objects.
	botReq, botBytes       int64
	bots                   *topK // UA by bytes, A requests
	staticReq, staticBytes int64
	staticRef              *topK // referer domain of static objects, by bytes
	staticRefPath          *topK // "domain\x00path template", by bytes

	// Repeated fetches.
	recent                []recentFetch
	repeatReq, repeatByte int64
	repeatWho             [3]*topK // user agent, client, path; by bytes
	sampleShift, maxShift uint     // repeat tracking samples 1 in 2^shift pairs
	tracked, clobbered    int64

	// Scatter sample (reservoir).
	sample []Point
	seen   int64
	rng    *rand.Rand

	buf, scratch []byte
	botCache     botCache
	intern       *interner

	// The record's value in each dimension, computed once per record.
	vals    []byte
	valEnd  [numDims]int
	valOK   [numDims]bool
	valHash [numDims]uint64 // keyHash of each value
	valStr  [numDims]string // the interned value, once valInt says so
	valInt  [numDims]bool
}

// interned is the current record's value in dimension d as a string shared
// through the interner, looked up at most once per record however many
// summaries take it in.
func (c *Collector) interned(d Dimension) string {
	if !c.valInt[d] {
		v, _ := c.value(d)
		c.valStr[d] = c.intern.get(v, c.valHash[d])
		c.valInt[d] = true
	}
	return c.valStr[d]
}

// count adds the current record's value in dimension d to t.
func (c *Collector) count(t *topK, d Dimension, w, a, b int64) {
	v, _ := c.value(d)
	if h := c.valHash[d]; !t.hit(v, h, w, a, b) {
		t.insert(c.interned(d), h, w, a, b)
	}
}

// botCache remembers, per distinct user agent (bounded: forgotten when
// full), whether it is automated. Keyed like the interner.
type botCache struct {
	h   []uint64
	ua  []string
	bot []bool
	n   int
}

const botCacheMax = 4096

func (bc *botCache) lookup(ua []byte, h uint64) (bot, ok bool, i int) {
	if bc.h == nil {
		bc.h, bc.ua, bc.bot = make([]uint64, 2*botCacheMax), make([]string, 2*botCacheMax), make([]bool, 2*botCacheMax)
	}
	mask := uint64(len(bc.h) - 1)
	i = int(h & mask)
	for ; bc.ua[i] != ""; i = (i + 1) & int(mask) {
		if bc.h[i] == h && bc.ua[i] == string(ua) {
			return bc.bot[i], true, i
		}
	}
	return false, false, i
}

// store records the verdict for ua (not empty), whose lookup missed at i.
func (bc *botCache) store(ua string, h uint64, bot bool, i int) {
	if bc.n >= botCacheMax {
		clear(bc.h)
		clear(bc.ua)
		clear(bc.bot)
		bc.n = 0
		mask := len(bc.h) - 1
		for i = int(h) & mask; bc.ua[i] != ""; i = (i + 1) & mask {
		}
	}
	bc.h[i], bc.ua[i], bc.bot[i] = h, ua, bot
	bc.n++
}

// computeValues fills the per-record dimension values that every part of
// Observe slices from.
func (c *Collector) computeValues(r *accesslog.Record) {
	c.vals = c.vals[:0]
	for d := range numDims {
		c.vals, c.valOK[d] = appendValue(c.vals, d, r.Client, r.Key, r.UserAgent, r.Method, r.Path, r.Referer, r.Status)
		c.valEnd[d] = len(c.vals)
		start := 0
		if d > 0 {
			start = c.valEnd[d-1]
		}
		c.valHash[d] = keyHash(c.vals[start:])
		c.valInt[d] = false
	}
}

// value is the current record's value in dimension d (valid until the next
// record) and whether it has one.
func (c *Collector) value(d Dimension) ([]byte, bool) {
	start := 0
	if d > 0 {
		start = c.valEnd[d-1]
	}
	return c.vals[start:c.valEnd[d]], c.valOK[d]
}

// NewCollector returns an empty Collector.
func NewCollector(opt Options) *Collector {
	opt = opt.withDefaults()
	return &Collector{
		opt:           opt,
		width:         widths[0],
		buckets:       make(map[int64]*bucket),
		hosts:         newTopK(16),
		referers:      newTopK(64),
		reqHist:       make([]int64, histBins),
		abortHist:     make([]int64, histBins),
		upHist:        make([]int64, histBins),
		abortWho:      newTopK(96),
		gapWho:        newTopK(32),
		abortFirst:    make([]int64, whoBins),
		abortLast:     make([]int64, whoBins),
		bots:          newTopK(32),
		staticRef:     newTopK(64),
		staticRefPath: newTopK(64),
		recent:        make([]recentFetch, opt.RefetchSlots),
		repeatWho:     [3]*topK{newTopK(32), newTopK(32), newTopK(32)},
		rng:           rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15)),
		intern:        newInterner(1 << 15),
	}
}

// Records is how many records the collector observed.
func (c *Collector) Records() int64 { return c.records }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
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

// abortedLike is a line whose client left or whose upstream never answered
// although the request was not served locally: 499, or an error with no
// upstream time after a wait no static file needs.
func abortedLike(r *accesslog.Record) bool {
	if r.Status == 499 {
		return true
	}
	return r.Status >= 400 && !r.HasUpstreamTime && r.UpstreamStatus == 0 && r.RequestTime >= time.Second
}

// maxSpan is how far from the log's bulk (the 100th timed record) a record
// may be and still be charted: a year of logs either way.
const maxSpan = int64(366 * 24 * time.Hour)

// Observe adds one record. r's strings may alias a reused buffer: whatever
// the collector keeps is copied.
func (c *Collector) Observe(r *accesslog.Record) {
	c.records++
	c.bytes += r.BytesSent
	if r.Host != "" {
		c.hosts.add(r.Host, 1, 0, 0)
	}
	// The repeated-fetch slot is found first: the table is too big for the
	// caches, and its load then completes while the values are computed.
	// Only observeRepeat writes the table, so what is read here is what
	// it would read.
	slot, fp, old := c.repeatSlot(r)
	c.computeValues(r)
	c.observeTimes(r)
	c.observeStatic(r)
	if y := r.Time.Year(); y < 1970 || y > 2200 {
		// No time, or one no access log holds: beyond 2262 nanoseconds
		// since 1970 overflow, and JSON cannot write years past 9999.
		c.untimed++
		return
	}
	ns := r.Time.UnixNano()
	if c.loc == nil {
		c.loc = r.Time.Location()
		c.first, c.last = ns, ns
	}
	if c.timed++; c.timed == 100 {
		c.anchor = ns // well inside the bulk of the log, most likely
	}
	if d := ns - c.anchor; c.timed > 100 && (d > maxSpan || d < -maxSpan) {
		// A stray timestamp years away (a broken clock, a mangled line)
		// would widen every bucket to days; it is counted, not charted.
		c.untimed++
		return
	}
	c.first, c.last = min(c.first, ns), max(c.last, ns)
	b := c.bucketFor(r.Time.Unix())
	c.observeBucket(b, r)
	if slot != nil {
		c.observeRepeat(b, r, ns, slot, fp, old)
	}
	c.observeSample(r)
}

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
	b.repReq += o.repReq
	b.repBytes += o.repBytes
	for d := range numDims {
		b.byReq[d] = mergeTopK(b.byReq[d], o.byReq[d], k)
		b.byBytes[d] = mergeTopK(b.byBytes[d], o.byBytes[d], k)
	}
	b.errWho = mergeTopK(b.errWho, o.errWho, 2*k)
	b.slowWho = mergeTopK(b.slowWho, o.slowWho, 2*k)
	b.limWho = mergeTopK(b.limWho, o.limWho, 2*k)
}

func mergeTopK(a, b *topK, k int) *topK {
	if b == nil {
		return a
	}
	if a == nil {
		a = newTopK(k)
	}
	a.merge(b)
	return a
}

func (c *Collector) observeBucket(b *bucket, r *accesslog.Record) {
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
		if !c.valOK[d] {
			continue
		}
		if b.byReq[d] == nil {
			b.byReq[d], b.byBytes[d] = newTopK(k), newTopK(k)
			b.byReq[d].in, b.byBytes[d].in = c.intern, c.intern
		}
		c.count(b.byReq[d], d, 1, r.BytesSent, 0)
		if r.BytesSent > 0 {
			c.count(b.byBytes[d], d, r.BytesSent, 1, 0)
		}
		if d == DimReferer {
			c.count(c.referers, d, 1, r.BytesSent, 0)
		}
	}
	if isServerError(r.Status) {
		if b.errWho == nil {
			b.errWho = newTopK(2 * k)
			b.errWho.in = c.intern
		}
		c.addComposite(b.errWho, 1, DimPath, DimStatus, DimUserAgent, DimClient, DimKey)
	}
	if r.Status == 429 {
		b.limited++
		if b.limWho == nil {
			b.limWho = newTopK(2 * k)
			b.limWho.in = c.intern
		}
		c.addComposite(b.limWho, 1, DimKey, DimClient, DimUserAgent, DimPath)
	}
	if r.RequestTime >= slowFloor {
		if b.slowWho == nil {
			b.slowWho = newTopK(2 * k)
			b.slowWho.in = c.intern
		}
		c.addComposite(b.slowWho, r.RequestTime.Milliseconds(), DimPath, DimUserAgent, DimClient, DimKey)
	}
}

// addComposite counts r under "dimension\x00value" for each of dims in one
// summary, for attributing rare events (errors, slow requests) without a
// summary per dimension.
func (c *Collector) addComposite(t *topK, w int64, dims ...Dimension) {
	for _, d := range dims {
		if v, ok := c.value(d); ok {
			c.buf = append(append(c.buf[:0], byte('0'+d), 0), v...)
			t.addBytes(c.buf, w, 0, 0)
		}
	}
}

func (c *Collector) observeTimes(r *accesslog.Record) {
	rt, ut := r.RequestTime, r.UpstreamTime
	if rt > 0 || r.HasUpstreamTime {
		c.rtLines++
		c.rtTotal += rt.Microseconds()
		c.reqHist[histBin(rt, histStep, histBins)]++
	}
	if r.HasUpstreamTime {
		c.withUp++
		c.upTotal += ut.Microseconds()
		if r.Status != 499 {
			c.upHist[histBin(ut, histStep, histBins)]++
		}
		if ut > rt+time.Millisecond {
			c.shortClient++
			c.shortClientGap += (ut - rt).Microseconds()
			c.addComposite(c.gapWho, (ut - rt).Microseconds(), DimKey, DimUserAgent, DimClient, DimPath)
		}
	} else {
		c.withoutUp++
	}
	if r.Status == 499 {
		c.status499++
	}
	if !abortedLike(r) {
		return
	}
	if !r.HasUpstreamTime {
		c.missingUp++
		c.missingUpTime += rt.Microseconds()
	}
	c.abortHist[histBin(rt, histStep, histBins)]++
	wb := histBin(rt, whoStep, whoBins)
	if !r.Time.IsZero() {
		s := r.Time.Unix()
		if c.abortFirst[wb] == 0 || s < c.abortFirst[wb] {
			c.abortFirst[wb] = s
		}
		c.abortLast[wb] = max(c.abortLast[wb], s)
	}
	var up int64
	if r.HasUpstreamTime {
		up = ut.Microseconds()
	}
	for _, d := range []Dimension{DimUserAgent, DimKey, DimPath, DimClient, DimStatus} {
		c.buf = append(c.buf[:0], byte('0'+d), 0)
		c.buf = appendUint(c.buf, uint64(wb))
		c.buf = append(c.buf, 0)
		if v, ok := c.value(d); ok {
			c.buf = append(c.buf, v...)
			c.abortWho.addBytes(c.buf, 1, rt.Microseconds(), up)
		}
	}
}

func appendUint(dst []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

func (c *Collector) observeStatic(r *accesslog.Record) {
	// Agents repeat from line to line: remember the verdicts (bounded).
	// The user agent's value is the agent itself (truncated) unless it has
	// none, and an agent that is empty or "-" is no bot.
	var bot bool
	if r.UserAgent != "" && r.UserAgent != "-" {
		ua, _ := c.value(DimUserAgent)
		h := c.valHash[DimUserAgent]
		var ok bool
		var i int
		if bot, ok, i = c.botCache.lookup(ua, h); !ok {
			bot, c.scratch = dims.Automated(r.UserAgent, c.scratch)
			c.botCache.store(c.interned(DimUserAgent), h, bot, i)
		}
	}
	if bot {
		c.botReq++
		c.botBytes += r.BytesSent
		c.count(c.bots, DimUserAgent, r.BytesSent, 1, 0)
	}
	switch dims.StaticPath(r.Path) {
	case "image", "media", "download":
	default:
		return
	}
	c.staticReq++
	c.staticBytes += r.BytesSent
	ref, _ := c.value(DimReferer)
	path, _ := c.value(DimPath)
	c.count(c.staticRef, DimReferer, r.BytesSent, 1, 0)
	c.buf = append(append(append(c.buf[:0], ref...), 0), path...)
	c.staticRefPath.addBytes(c.buf, r.BytesSent, 1, 0)
}

// repeatSlot returns the slot of the repeated-fetch table r's (client,
// object) pair maps to, the pair's fingerprint and the slot's content, or a
// nil slot when r is no fetch the table tracks.
func (c *Collector) repeatSlot(r *accesslog.Record) (*recentFetch, uint64, recentFetch) {
	if r.Method != "GET" || (r.Status != 200 && r.Status != 206) || r.BytesSent <= 0 {
		return nil, 0, recentFetch{}
	}
	h := hashString(hashString(hashString(0x9e3779b97f4a7c15, r.Client), r.UserAgent), r.Path)
	// Busy sites fetch more distinct objects per window than the table
	// holds: then only a 1-in-2^shift sample of (client, object) pairs is
	// tracked, chosen by hash so a pair is always in or always out, and
	// each repeat found counts 2^shift times.
	if h>>(64-16)&(1<<c.sampleShift-1) != 0 {
		return nil, 0, recentFetch{}
	}
	fp := h | 1 // 0 marks an empty slot
	slot := &c.recent[fp&uint64(len(c.recent)-1)]
	return slot, fp, *slot
}

// observeRepeat counts r, a fetch whose pair has fingerprint fp, against
// the table's slot (whose content was old when repeatSlot read it).
func (c *Collector) observeRepeat(b *bucket, r *accesslog.Record, ns int64, slot *recentFetch, fp uint64, old recentFetch) {
	window := int64(c.opt.RefetchWindow)
	if old.fp == fp {
		gap := ns - old.at
		if gap < 0 {
			gap = -gap
		}
		if gap <= window {
			scale := int64(1) << c.sampleShift
			c.repeatReq += scale
			c.repeatByte += r.BytesSent * scale
			b.repReq += scale
			b.repBytes += r.BytesSent * scale
			for i, d := range []Dimension{DimUserAgent, DimClient, DimPath} {
				c.count(c.repeatWho[i], d, r.BytesSent*scale, scale, 0)
			}
		}
	} else if old.fp != 0 && ns-old.at < window && old.at-ns < window {
		c.clobbered++ // a pair still inside its window was forgotten
	}
	slot.fp, slot.at = fp, ns
	c.tracked++
	if c.tracked == int64(len(c.recent)) { // judge once per table's worth of inserts
		// More than 10% forgotten: sample less, by as many halvings as it
		// takes (each roughly halves the losses), so a busy log is not half
		// read before the table copes.
		for c.clobbered*10 > c.tracked && c.sampleShift < 12 {
			c.sampleShift++
			c.clobbered /= 2
		}
		c.maxShift = max(c.maxShift, c.sampleShift)
		c.tracked, c.clobbered = 0, 0
	}
}

// hashString mixes s into h eight bytes at a time. Not a seeded hash: the
// same log gives the same findings on every run, and a collision only
// forgets a fetch.
func hashString(h uint64, s string) uint64 {
	const m = 0xff51afd7ed558ccd
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		h = (h ^ v) * m
		h ^= h >> 32
	}
	var v uint64
	for j := 0; i < len(s); i, j = i+1, j+8 {
		v |= uint64(s[i]) << j
	}
	h = (h ^ v ^ uint64(len(s))<<56) * m
	return h ^ h>>29
}

func (c *Collector) observeSample(r *accesslog.Record) {
	if r.RequestTime <= 0 && !r.HasUpstreamTime {
		return
	}
	p := Point{Request: r.RequestTime.Seconds(), Upstream: r.UpstreamTime.Seconds(), HasUpstream: r.HasUpstreamTime, Status: r.Status}
	c.seen++
	if len(c.sample) < c.opt.Samples {
		c.sample = append(c.sample, p)
		return
	}
	if j := c.rng.Int64N(c.seen); j < int64(len(c.sample)) {
		c.sample[j] = p
	}
}

// Merge folds o, another worker's collector, into c. o must not be used
// afterwards.
func (c *Collector) Merge(o *Collector) {
	if o == nil || o == c {
		return
	}
	c.records += o.records
	c.untimed += o.untimed
	c.bytes += o.bytes
	c.hosts.merge(o.hosts)
	c.referers.merge(o.referers)
	if o.loc != nil {
		if c.loc == nil {
			c.loc, c.first, c.last, c.anchor = o.loc, o.first, o.last, o.anchor
		}
		c.timed += o.timed
		c.first, c.last = min(c.first, o.first), max(c.last, o.last)
	}
	// Bring both series to a common width, then to a span that fits.
	w := max(c.width, o.width)
	c.widenTo(w)
	o.widenTo(w)
	if len(o.buckets) > 0 {
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
	for i := range c.reqHist {
		c.reqHist[i] += o.reqHist[i]
		c.abortHist[i] += o.abortHist[i]
		c.upHist[i] += o.upHist[i]
	}
	c.withUp += o.withUp
	c.withoutUp += o.withoutUp
	c.upTotal += o.upTotal
	c.rtTotal += o.rtTotal
	c.rtLines += o.rtLines
	c.shortClient += o.shortClient
	c.shortClientGap += o.shortClientGap
	c.missingUp += o.missingUp
	c.missingUpTime += o.missingUpTime
	c.status499 += o.status499
	c.abortWho.merge(o.abortWho)
	c.gapWho.merge(o.gapWho)
	for i := range c.abortFirst {
		if f := o.abortFirst[i]; f != 0 && (c.abortFirst[i] == 0 || f < c.abortFirst[i]) {
			c.abortFirst[i] = f
		}
		c.abortLast[i] = max(c.abortLast[i], o.abortLast[i])
	}
	c.botReq += o.botReq
	c.botBytes += o.botBytes
	c.bots.merge(o.bots)
	c.staticReq += o.staticReq
	c.staticBytes += o.staticBytes
	c.staticRef.merge(o.staticRef)
	c.staticRefPath.merge(o.staticRefPath)
	c.repeatReq += o.repeatReq
	c.repeatByte += o.repeatByte
	c.maxShift = max(c.maxShift, o.maxShift)
	for i := range c.repeatWho {
		c.repeatWho[i].merge(o.repeatWho[i])
	}
	c.mergeSample(o)
	o.buckets = nil
}

// mergeSample keeps a uniform sample of the union: each side contributes in
// proportion to how many points it saw (each reservoir is already uniform,
// so a prefix of a shuffled one is too).
func (c *Collector) mergeSample(o *Collector) {
	total := c.seen + o.seen
	if total == 0 {
		return
	}
	n := min(c.opt.Samples, len(c.sample)+len(o.sample))
	fromC := int(math.Round(float64(n) * float64(c.seen) / float64(total)))
	fromC = min(fromC, len(c.sample))
	fromO := min(n-fromC, len(o.sample))
	c.rng.Shuffle(len(c.sample), func(i, j int) { c.sample[i], c.sample[j] = c.sample[j], c.sample[i] })
	c.rng.Shuffle(len(o.sample), func(i, j int) { o.sample[i], o.sample[j] = o.sample[j], o.sample[i] })
	out := make([]Point, 0, fromC+fromO)
	out = append(out, c.sample[:fromC]...)
	out = append(out, o.sample[:fromO]...)
	c.sample = out
	c.seen = total
}
