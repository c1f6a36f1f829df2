package findings

import (
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/dims"
	"github.com/headroom-dev/headroom/internal/heavy"
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
	o.RefetchSlots = 1 << bits.Len(uint(o.RefetchSlots-1)) // the power of two at or above it
	if o.Samples <= 0 {
		o.Samples = 2000
	}
	return o
}

// Collector is the findings' one pass over a log: record by record, it
// computes each record's dimension values once, adds the record to the
// timeline, and hands it to every detector, in memory bounded by its
// Options whatever the size of the log. One Collector per engine worker;
// Merge folds them together at the end.
type Collector struct {
	opt Options
	loc *time.Location

	// The timeline (timeline.go).
	width   int64
	buckets map[int64]*bucket
	minIdx  int64
	maxIdx  int64

	records int64
	untimed int64 // no time, or one too far from the rest (maxSpan)
	timed   int64
	anchor  int64 // unix ns of the 100th timed record
	bytes   int64
	first   int64 // unix ns
	last    int64

	vals        values // the current record's dimension values
	cur         record // the current record as the detectors see it
	sawUpstream bool   // an upstream time was seen (workOf)

	// The detectors, in the order their findings are gathered; timeouts
	// and repeats are also named for what only they provide (the charts'
	// histogram, the repeat counts of the level-shift evidence, the
	// early table load).
	detectors []detector
	timeouts  *timeouts
	repeats   *repeats

	// Scatter sample (reservoir, scatter.go).
	sample []Point
	seen   int64
	rng    *rand.Rand
}

// NewCollector returns an empty Collector.
func NewCollector(opt Options) *Collector {
	opt = opt.withDefaults()
	c := &Collector{
		opt:      opt,
		width:    widths[0],
		buckets:  make(map[int64]*bucket),
		vals:     values{intern: heavy.NewInterner(1 << 15)},
		timeouts: newTimeouts(),
		repeats:  newRepeats(opt),
		rng:      rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15)),
	}
	c.detectors = []detector{
		comparison{}, levelShifts{}, newLatencyShifts(), c.timeouts, newAccounting(), c.repeats,
		newCrawlers(), newHotlinks(), errorBursts{}, rateLimits{}, latencyBursts{},
	}
	return c
}

// Records is how many records the collector observed.
func (c *Collector) Records() int64 { return c.records }

// maxSpan is how far from the log's bulk (the 100th timed record) a record
// may be and still be charted: a year of logs either way.
const maxSpan = int64(366 * 24 * time.Hour)

// Observe adds one record. r's strings may alias a reused buffer: whatever
// the collector keeps is copied.
func (c *Collector) Observe(r *accesslog.Record) { c.ObserveShared(r, nil) }

// ObserveShared is Observe for a record whose endpoint and referer domain
// another consumer of the pass already computed (the engine's tables);
// shared nil computes them.
func (c *Collector) ObserveShared(r *accesslog.Record, shared *dims.Shared) {
	c.records++
	c.bytes += r.BytesSent
	c.repeats.start(r)
	c.vals.compute(r, shared)
	// The record lives in the collector, not on the stack: handed to the
	// detectors through an interface, a local would escape to the heap on
	// every line.
	rec := &c.cur
	*rec = record{Record: r, v: &c.vals}
	if ns, ok := c.chartable(r); ok {
		c.first, c.last = min(c.first, ns), max(c.last, ns)
		rec.b, rec.ns = c.bucketFor(r.Time.Unix()), ns
		c.observeBucket(rec.b, r)
	}
	for _, d := range c.detectors {
		d.observe(rec)
	}
	if rec.b != nil {
		c.observeSample(r)
	}
	rec.Record = nil // r may alias a reused buffer
}

// chartable reports whether r goes on the timeline, and its time in unix
// nanoseconds; records that do not are counted as untimed.
func (c *Collector) chartable(r *accesslog.Record) (int64, bool) {
	if y := r.Time.Year(); y < 1970 || y > 2200 {
		// No time, or one no access log holds: beyond 2262 nanoseconds
		// since 1970 overflow, and JSON cannot write years past 9999.
		c.untimed++
		return 0, false
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
		return 0, false
	}
	return ns, true
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
	if o.loc != nil {
		if c.loc == nil {
			c.loc, c.first, c.last, c.anchor = o.loc, o.first, o.last, o.anchor
		}
		c.timed += o.timed
		c.first, c.last = min(c.first, o.first), max(c.last, o.last)
	}
	c.mergeTimeline(o)
	for i, d := range c.detectors {
		d.merge(o.detectors[i])
	}
	c.mergeSample(o)
	o.buckets = nil
}

func (c *Collector) logWindow() Window {
	if c.loc == nil {
		return Window{}
	}
	return Window{Start: time.Unix(0, c.first).In(c.loc), End: time.Unix(0, c.last).In(c.loc)}
}

func (c *Collector) locOrUTC() *time.Location {
	if c.loc == nil {
		return time.UTC
	}
	return c.loc
}
