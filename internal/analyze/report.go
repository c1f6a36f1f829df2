package analyze

import (
	"encoding/json"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/findings"
)

// Report is the JSON form of a Result (`headroom logs analyze --json`).
// records, malformed and findings are the fields DESIGN.md promises; the
// rest are the engine's aggregates.
type Report struct {
	Records           int64           `json:"records"`
	Malformed         int64           `json:"malformed"`
	MalformedExamples []MalformedLine `json:"malformed_examples"`
	// Findings are the detectors' conclusions (internal/findings), most
	// important first; an empty list when Options.Findings was nil.
	Findings []findings.Finding `json:"findings"`
	// Detail is the detectors' whole report (the series and samples the
	// HTML report charts); nil when Options.Findings was nil.
	Detail *findings.Report `json:"-"`

	Lines       int64          `json:"lines"`
	FilteredOut int64          `json:"filtered_out"`
	Inputs      []InputSummary `json:"inputs"`
	Filters     *FiltersJSON   `json:"filters,omitempty"`
	Window      *WindowJSON    `json:"window"`
	Totals      TotalsJSON     `json:"totals"`

	DistinctClients uint64                   `json:"distinct_clients"`
	Quantiles       map[string]QuantilesJSON `json:"quantiles"`
	Series          SeriesJSON               `json:"series"`
	Status          []StatusJSON             `json:"status"`
	Top             map[string]TopJSON       `json:"top"`
	Groups          *GroupsJSON              `json:"groups,omitempty"`
	// RequestsByHourOfDay counts requests by UTC hour (0-23), and
	// RequestsByDay by UTC day, oldest first: the HTML report's charts.
	RequestsByHourOfDay []int64   `json:"requests_by_hour_of_day"`
	RequestsByDay       []DayJSON `json:"requests_by_day"`
	// LatencyByEndpoint are the heaviest endpoints' (by worker time, or
	// by requests in a log without it) latency quantiles; empty when the
	// log has neither request nor upstream times.
	LatencyByEndpoint []EndpointLatencyJSON `json:"latency_by_endpoint"`

	ElapsedSeconds float64 `json:"elapsed_seconds"`
	LinesPerSecond float64 `json:"lines_per_second"`
}

// DayJSON is one UTC day's requests.
type DayJSON struct {
	Day      string `json:"day"`
	Requests int64  `json:"requests"`
}

// EndpointLatencyJSON is one endpoint's latency quantiles: of request time
// when the log has it, of upstream time over the requests that had one.
type EndpointLatencyJSON struct {
	Endpoint      string         `json:"endpoint"`
	Requests      int64          `json:"requests"`
	WorkerSeconds float64        `json:"worker_seconds"`
	RequestTime   *QuantilesJSON `json:"request_time,omitempty"`
	UpstreamTime  *QuantilesJSON `json:"upstream_time,omitempty"`
}

// WindowJSON is a time range in RFC 3339.
type WindowJSON struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// FiltersJSON echoes the filters that shaped the report.
type FiltersJSON struct {
	Where string     `json:"where,omitempty"`
	Since *time.Time `json:"since,omitempty"`
	Until *time.Time `json:"until,omitempty"`
}

// TotalsJSON sums every record that passed the filters.
type TotalsJSON struct {
	Requests      int64   `json:"requests"`
	Bytes         int64   `json:"bytes"`
	WorkerSeconds float64 `json:"worker_seconds"`
	Errors5xx     int64   `json:"errors_5xx"`
	Errors4xx     int64   `json:"errors_4xx"`
	ClientClosed  int64   `json:"client_closed_499"`
}

// QuantilesJSON are seconds, within 1% (DDSketch).
type QuantilesJSON struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// SeriesJSON is the time series, one point per bucket, empty buckets
// included.
type SeriesJSON struct {
	Bucket        string      `json:"bucket"`
	BucketSeconds int64       `json:"bucket_seconds"`
	Points        []PointJSON `json:"points"`
}

// PointJSON is one bucket.
type PointJSON struct {
	Start         time.Time `json:"start"`
	Requests      int64     `json:"requests"`
	Bytes         int64     `json:"bytes"`
	WorkerSeconds float64   `json:"worker_seconds"`
	Errors        int64     `json:"errors"`
}

// RowJSON is one value of a dimension.
type RowJSON struct {
	Value         string  `json:"value"`
	Family        string  `json:"family,omitempty"`
	Requests      int64   `json:"requests"`
	Share         float64 `json:"share"` // of requests, or of the measure the list is sorted by
	Bytes         int64   `json:"bytes"`
	WorkerSeconds float64 `json:"worker_seconds"`
	Errors        int64   `json:"errors"`
}

// TopJSON ranks one dimension three ways. Approximate is true when the
// table had to drop rare values; counts are then lower bounds, at most
// ErrorBound requests below the truth. ErrorBound adds up, over every prune
// of the table (in every worker's shard and in their merge), the largest
// request count that prune dropped: a value dropped in several prunes loses
// at most that sum (see heavy.Prune).
type TopJSON struct {
	ByRequests   []RowJSON `json:"by_requests"`
	ByBytes      []RowJSON `json:"by_bytes"`
	ByWorkerTime []RowJSON `json:"by_worker_time"`
	Approximate  bool      `json:"approximate"`
	ErrorBound   int64     `json:"error_bound_requests,omitempty"`
}

// StatusJSON counts one status.
type StatusJSON struct {
	Status        int     `json:"status"`
	Requests      int64   `json:"requests"`
	Share         float64 `json:"share"`
	Bytes         int64   `json:"bytes"`
	WorkerSeconds float64 `json:"worker_seconds"`
}

// GroupsJSON is the --by table.
type GroupsJSON struct {
	By   []string       `json:"by"`
	Rows []GroupRowJSON `json:"rows"`
}

// GroupRowJSON is one group.
type GroupRowJSON struct {
	Values        []string `json:"values"`
	Requests      int64    `json:"requests"`
	Share         float64  `json:"share"`
	Bytes         int64    `json:"bytes"`
	WorkerSeconds float64  `json:"worker_seconds"`
	Errors        int64    `json:"errors"`
}

// maxSeriesPoints bounds the JSON series and the sparklines' source.
const maxSeriesPoints = 1500

func share(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(int64(float64(part)/float64(whole)*10000+0.5)) / 10000
}

func bucketName(sec int64) string {
	switch sec {
	case 60:
		return "minute"
	case 3600:
		return "hour"
	case 86400:
		return "day"
	case 7 * 86400:
		return "week"
	}
	return (time.Duration(sec) * time.Second).String()
}

// Report builds the report: the tables and, when Options.Findings was set,
// what the detectors concluded (an error only for a --compare window the
// log does not cover). It only reads the result, so a run that goes on
// (--follow) may report again.
func (r *Result) Report() (*Report, error) {
	a := r.agg
	fs := []findings.Finding{}
	var detail *findings.Report
	if r.collector != nil {
		var err error
		if detail, err = findings.Analyze(r.collector, *r.opts.Findings); err != nil {
			return nil, err
		}
		fs = detail.Findings
	}
	rep := &Report{
		Records:           a.total.Requests,
		Malformed:         r.Malformed,
		MalformedExamples: r.MalformedExamples,
		Findings:          fs,
		Detail:            detail,
		Lines:             r.Lines,
		FilteredOut:       r.Filtered,
		Inputs:            r.Inputs,
		Totals: TotalsJSON{
			Requests: a.total.Requests, Bytes: a.total.Bytes,
			WorkerSeconds: nsToSec(a.total.WorkerNs), Errors5xx: a.total.Errors,
			Errors4xx: a.errors4xx, ClientClosed: a.gaveUp,
		},
		DistinctClients: a.clients.Estimate(),
		Quantiles:       map[string]QuantilesJSON{},
		Top:             map[string]TopJSON{},
		ElapsedSeconds:  r.Elapsed.Seconds(),
	}
	if rep.MalformedExamples == nil {
		rep.MalformedExamples = []MalformedLine{}
	}
	if a.total.Requests == 0 {
		rep.DistinctClients = 0
	}
	if r.Elapsed > 0 {
		rep.LinesPerSecond = float64(r.Lines) / r.Elapsed.Seconds()
	}
	if o := r.opts; o.Where != nil || !o.Since.IsZero() || !o.Until.IsZero() {
		rep.Filters = &FiltersJSON{}
		if o.Where != nil {
			rep.Filters.Where = o.Where.String()
		}
		if !o.Since.IsZero() {
			t := o.Since.UTC()
			rep.Filters.Since = &t
		}
		if !o.Until.IsZero() {
			t := o.Until.UTC()
			rep.Filters.Until = &t
		}
	}
	if !a.minT.IsZero() {
		rep.Window = &WindowJSON{Start: a.minT, End: a.maxT}
	}
	if a.anyReqT {
		rep.Quantiles["request_time"] = quantiles(a.reqTime)
	}
	if a.upTime.GetCount() > 0 {
		rep.Quantiles["upstream_time"] = quantiles(a.upTime)
	}
	pts := a.series.dense(maxSeriesPoints)
	rep.Series = SeriesJSON{Bucket: bucketName(a.series.width), BucketSeconds: a.series.width, Points: make([]PointJSON, 0, len(pts))}
	for _, p := range pts {
		rep.Series.Points = append(rep.Series.Points, PointJSON{
			Start: time.Unix(p.Start, 0).UTC(), Requests: p.Requests, Bytes: p.Bytes,
			WorkerSeconds: nsToSec(p.WorkerNs), Errors: p.Errors,
		})
	}
	rep.RequestsByHourOfDay = a.hourOfDay[:]
	rep.RequestsByDay = []DayJSON{}
	days := make([]int64, 0, len(a.days))
	for d := range a.days {
		days = append(days, d)
	}
	slices.Sort(days)
	for _, d := range days {
		rep.RequestsByDay = append(rep.RequestsByDay, DayJSON{Day: time.Unix(d*86400, 0).UTC().Format(time.DateOnly), Requests: a.days[d]})
	}
	rep.Status = []StatusJSON{}
	for _, s := range a.statusRows() {
		rep.Status = append(rep.Status, StatusJSON{Status: s.Status, Requests: s.Requests,
			Share: share(s.Requests, a.total.Requests), Bytes: s.Bytes, WorkerSeconds: nsToSec(s.WorkerNs)})
	}
	n := r.opts.TopN
	for d := 0; d < numDims; d++ {
		t := a.tops[d]
		if t.Len() == 0 {
			continue
		}
		tj := TopJSON{
			ByRequests:   rows(t.Top(n, byRequests), a.total.Requests, byRequests, d),
			ByBytes:      rows(t.Top(n, byBytes), a.total.Bytes, byBytes, d),
			ByWorkerTime: rows(t.Top(n, byWorker), a.total.WorkerNs, byWorker, d),
			Approximate:  t.Pruned(),
		}
		if t.Pruned() {
			tj.ErrorBound = t.Bound(0)
		}
		rep.Top[dimNames[d]] = tj
	}
	rep.LatencyByEndpoint = endpointLatencies(a, n)
	if a.groups != nil {
		g := &GroupsJSON{Rows: []GroupRowJSON{}}
		for _, f := range a.by {
			g.By = append(g.By, f.name)
		}
		for _, e := range a.groups.Top(max(n, 20), byRequests) {
			g.Rows = append(g.Rows, GroupRowJSON{
				Values: strings.Split(e.Key, groupSep), Requests: e.V.Requests,
				Share: share(e.V.Requests, a.total.Requests), Bytes: e.V.Bytes,
				WorkerSeconds: nsToSec(e.V.WorkerNs), Errors: e.V.Errors,
			})
		}
		rep.Groups = g
	}
	return rep, nil
}

func endpointLatencies(a *aggregate, n int) []EndpointLatencyJSON {
	out := []EndpointLatencyJSON{}
	if !a.anyReqT && a.upTime.GetCount() == 0 {
		return out
	}
	measure := byRequests
	if a.total.WorkerNs > 0 {
		measure = byWorker
	}
	for _, e := range a.tops[dimTemplate].Top(n, measure) {
		row := EndpointLatencyJSON{Endpoint: displayValue(dimTemplate, e.Key), Requests: e.V.Requests, WorkerSeconds: nsToSec(e.V.WorkerNs)}
		if e.V.lat != nil {
			if a.anyReqT {
				q := quantiles(e.V.lat.req)
				row.RequestTime = &q
			}
			if e.V.lat.up != nil && e.V.lat.up.GetCount() > 0 {
				q := quantiles(e.V.lat.up)
				row.UpstreamTime = &q
			}
		}
		out = append(out, row)
	}
	return out
}

func byRequests(e *topEntry) int64 { return e.V.Requests }
func byBytes(e *topEntry) int64    { return e.V.Bytes }
func byWorker(e *topEntry) int64   { return e.V.WorkerNs }

func nsToSec(ns int64) float64 {
	return float64(ns/1e6) / 1e3 // millisecond resolution keeps JSON short
}

func rows(es []*topEntry, whole int64, measure func(*topEntry) int64, dim int) []RowJSON {
	out := make([]RowJSON, 0, len(es))
	for _, e := range es {
		row := RowJSON{Value: displayValue(dim, e.Key), Requests: e.V.Requests, Share: share(measure(e), whole),
			Bytes: e.V.Bytes, WorkerSeconds: nsToSec(e.V.WorkerNs), Errors: e.V.Errors}
		if dim == dimUA {
			row.Family = e.V.aux
		}
		out = append(out, row)
	}
	return out
}

// displayValue names empty values: a request without a referer is
// "(none)", not a blank cell.
func displayValue(dim int, v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

func quantiles(s interface {
	GetValuesAtQuantiles([]float64) ([]float64, error)
	GetMaxValue() (float64, error)
	GetCount() float64
}) QuantilesJSON {
	q := QuantilesJSON{Count: int64(s.GetCount())}
	if q.Count == 0 {
		return q
	}
	v, err := s.GetValuesAtQuantiles([]float64{0.5, 0.9, 0.95, 0.99})
	if err == nil {
		q.P50, q.P90, q.P95, q.P99 = round4(v[0]), round4(v[1]), round4(v[2]), round4(v[3])
	}
	if m, err := s.GetMaxValue(); err == nil {
		q.Max = round4(m)
	}
	return q
}

func round4(v float64) float64 { return float64(int64(v*10000+0.5)) / 10000 }

// WriteJSON writes the report as one indented JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(rep)
}
