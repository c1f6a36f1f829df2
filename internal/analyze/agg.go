package analyze

import (
	"slices"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/axiomhq/hyperloglog"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/dims"
)

// Dimensions the engine ranks values of.
const (
	dimClient = iota
	dimPrefix
	dimKey
	dimUAFamily
	dimUA
	dimReferer
	dimTemplate
	dimMethod
	dimPool
	dimOS       // operating system family, from the user agent
	dimNotFound // paths answered 404
	numDims
)

// dimNames are the dimensions' names in reports and JSON.
var dimNames = [numDims]string{"client", "prefix", "key", "ua_family", "user_agent", "referer_domain", "path_template", "method", "pool", "os", "not_found"}

// sketchAccuracy is DDSketch's relative accuracy: quantiles within 1%.
const (
	sketchAccuracy = 0.01
	sketchBins     = 2048
)

func newSketch() *ddsketch.DDSketch {
	s, err := ddsketch.LogCollapsingLowestDenseDDSketch(sketchAccuracy, sketchBins)
	if err != nil { // only for an invalid accuracy, which is a constant
		panic(err)
	}
	return s
}

// aggregate is one worker's share of the analysis; shards are merged at the
// end. Its memory is bounded: top tables prune, the series coarsens, the
// sketches have fixed sizes.
type aggregate struct {
	total     counters
	errors4xx int64
	gaveUp    int64 // 499: the client closed the connection first
	minT      time.Time
	maxT      time.Time
	series    *series
	tops      [numDims]*topTable
	status    [1000]counters
	hourOfDay [24]int64       // requests by UTC hour of day
	days      map[int64]int64 // requests by UTC day (unix day number), at most maxDays
	reqTime   *ddsketch.DDSketch
	upTime    *ddsketch.DDSketch
	anyReqT   bool
	clients   *hyperloglog.Sketch
	by        []field
	groups    *topTable
	scratch   []byte
	shared    dims.Shared // the current record's, for the findings collector
}

func newAggregate(capacity int, by []field) *aggregate {
	a := &aggregate{
		series:  newSeries(),
		reqTime: newSketch(),
		upTime:  newSketch(),
		clients: hyperloglog.New14(),
		days:    map[int64]int64{},
		by:      by,
		scratch: make([]byte, 0, 1024),
	}
	for i := range a.tops {
		a.tops[i] = newTopTable(capacity)
	}
	if len(by) > 0 {
		a.groups = newTopTable(capacity)
	}
	return a
}

// maxDays bounds the requests-by-day table (ten years of daily logs); a
// day past it (a stray timestamp) is not charted.
const maxDays = 3660

// groupSep separates the values of a --by pair inside one key.
const groupSep = "\x00"

func (a *aggregate) observe(r *accesslog.Record) {
	c := counters{Requests: 1, Bytes: r.BytesSent}
	if r.HasUpstreamTime && r.UpstreamTime > 0 {
		c.WorkerNs = int64(r.UpstreamTime)
	}
	switch {
	case r.Status >= 500:
		c.Errors = 1
	case r.Status == 499:
		a.gaveUp++
		a.errors4xx++
	case r.Status >= 400:
		a.errors4xx++
	}
	a.total.add(&c)
	if !r.Time.IsZero() {
		if a.minT.IsZero() || r.Time.Before(a.minT) {
			a.minT = r.Time
		}
		if r.Time.After(a.maxT) {
			a.maxT = r.Time
		}
		sec := r.Time.Unix()
		a.series.at(sec).add(&c)
		day := sec / 86400
		if sec < 0 && sec%86400 != 0 {
			day--
		}
		a.hourOfDay[(sec-day*86400)/3600]++
		if _, ok := a.days[day]; ok || len(a.days) < maxDays {
			a.days[day]++
		}
	}
	if r.Status >= 0 && r.Status < len(a.status) {
		a.status[r.Status].add(&c)
	}
	cl, isNew := a.tops[dimClient].Get(r.Client)
	if isNew {
		// Work done once per distinct client, not per line: its network
		// is cached with it, and the distinct count only needs to see it
		// once (inserting again after a prune is harmless).
		a.scratch = dims.AppendClientNetwork(a.scratch[:0], r.Client)
		cl.V.aux = string(a.scratch)
		a.clients.Insert([]byte(r.Client))
	}
	cl.V.add(&c)
	observeAux(a.tops[dimPrefix], cl, &c)
	if r.Key != "" {
		observe(a.tops[dimKey], r.Key, &c)
	}
	ua, isNew := a.tops[dimUA].Get(r.UserAgent)
	if isNew {
		// The family is worked out once per distinct agent and cached
		// with it: classifying every line costs more than the lookup.
		ua.V.aux = strings.Clone(dims.AgentFamily(r.UserAgent))
		ua.V.os = dims.OSFamily(r.UserAgent) // a constant: no copy needed
	}
	ua.V.add(&c)
	observeAux(a.tops[dimUAFamily], ua, &c)
	observeLinked(a.tops[dimOS], ua.V.os, &ua.V.osLink, &c)
	if r.Status == 404 {
		// The path without its query: what was not found.
		p := r.Path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		observe(a.tops[dimNotFound], dims.Truncate(p), &c)
	}
	// The record's referer domain and endpoint, kept for the findings
	// collector of the same worker (dims.Shared): computed once per record.
	a.shared.Referer = dims.AppendRefererDomain(a.shared.Referer[:0], r.Referer)
	observe(a.tops[dimReferer], unsafeString(a.shared.Referer), &c)
	a.shared.Template = dims.AppendPathTemplate(a.shared.Template[:0], r.Path)
	tpl := observe(a.tops[dimTemplate], unsafeString(a.shared.Template), &c)
	if tpl.V.lat == nil {
		tpl.V.lat = &latency{req: newSketch()}
	}
	tpl.V.lat.observe(r)
	if r.Method != "" {
		observe(a.tops[dimMethod], r.Method, &c)
	}
	if r.Pool != "" {
		observe(a.tops[dimPool], r.Pool, &c)
	}
	if r.RequestTime > 0 {
		a.anyReqT = true
	}
	_ = a.reqTime.Add(r.RequestTime.Seconds())
	if r.HasUpstreamTime {
		_ = a.upTime.Add(r.UpstreamTime.Seconds())
	}
	if a.groups != nil {
		b := a.scratch[:0]
		for i, f := range a.by {
			if i > 0 {
				b = append(b, groupSep...)
			}
			start := len(b)
			var v string
			v, b = f.str(r, b)
			if len(b) == start { // the value was not written into b
				b = append(b, v...)
			}
		}
		a.scratch = b
		observe(a.groups, unsafeString(b), &c)
	}
}

func (a *aggregate) merge(o *aggregate) {
	a.total.add(&o.total)
	a.errors4xx += o.errors4xx
	a.gaveUp += o.gaveUp
	if !o.minT.IsZero() && (a.minT.IsZero() || o.minT.Before(a.minT)) {
		a.minT = o.minT
	}
	if o.maxT.After(a.maxT) {
		a.maxT = o.maxT
	}
	a.series.merge(o.series)
	for i := range a.tops {
		a.tops[i].Merge(o.tops[i], mergeTop)
	}
	for i := range a.status {
		a.status[i].add(&o.status[i])
	}
	for i := range a.hourOfDay {
		a.hourOfDay[i] += o.hourOfDay[i]
	}
	for d, n := range o.days {
		if _, ok := a.days[d]; ok || len(a.days) < maxDays {
			a.days[d] += n
		}
	}
	_ = a.reqTime.MergeWith(o.reqTime)
	_ = a.upTime.MergeWith(o.upTime)
	a.anyReqT = a.anyReqT || o.anyReqT
	_ = a.clients.Merge(o.clients)
	if a.groups != nil && o.groups != nil {
		a.groups.Merge(o.groups, mergeTop)
	}
}

// statusRows returns the statuses seen, most frequent first.
func (a *aggregate) statusRows() []statusRow {
	var rows []statusRow
	for st, c := range a.status {
		if c.Requests > 0 {
			rows = append(rows, statusRow{Status: st, counters: c})
		}
	}
	slices.SortFunc(rows, func(x, y statusRow) int {
		if c := cmpDesc(x.Requests, y.Requests); c != 0 {
			return c
		}
		return x.Status - y.Status
	})
	return rows
}

type statusRow struct {
	Status int
	counters
}

// latency is one endpoint's request time and upstream time distributions
// (DDSketch, like the totals'): the per-endpoint quantiles of issue 16.
// The upstream sketch exists once the endpoint had an upstream time.
type latency struct {
	req, up *ddsketch.DDSketch
}

func (l *latency) observe(r *accesslog.Record) {
	_ = l.req.Add(r.RequestTime.Seconds())
	if r.HasUpstreamTime {
		if l.up == nil {
			l.up = newSketch()
		}
		_ = l.up.Add(r.UpstreamTime.Seconds())
	}
}

func (l *latency) merge(o *latency) {
	_ = l.req.MergeWith(o.req)
	if o.up != nil {
		if l.up == nil {
			l.up = newSketch()
		}
		_ = l.up.MergeWith(o.up)
	}
}
