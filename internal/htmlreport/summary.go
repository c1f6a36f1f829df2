package htmlreport

import (
	"fmt"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
	"github.com/go-echarts/go-echarts/v2/render"

	"github.com/headroom-dev/headroom/internal/analyze"
)

// The report's overview, from the engine's tables (Options.Summary): the
// headline figures, requests by hour of day and by day, and the top-N
// tables a GoAccess user looks for (issue 16).

type headline struct{ Label, Value string }

type table struct {
	ID, Title, Note string
	Columns         []string
	Rows            [][]string
}

type summaryView struct {
	Headline []headline
	Tables   []table
}

// topOrder is the order of the top tables, with their titles.
var topOrder = []struct{ dim, title string }{
	{"path_template", "Endpoints (path templates)"},
	{"client", "Clients"},
	{"prefix", "Networks (/24, /48)"},
	{"referer_domain", "Referers"},
	{"not_found", "404s (paths answered 404)"},
	{"ua_family", "Agent families"},
	{"os", "Operating systems"},
	{"user_agent", "User agents"},
	{"key", "Keys"},
	{"pool", "Pools"},
	{"method", "Methods"},
}

func viewSummary(s *analyze.Report, generatedIn time.Duration) *summaryView {
	if s == nil {
		return nil
	}
	v := &summaryView{}
	add := func(label, value string) { v.Headline = append(v.Headline, headline{label, value}) }
	add("requests", commas(s.Records))
	add("lines valid / failed", fmt.Sprintf("%s / %s", commas(s.Lines-s.Malformed), commas(s.Malformed)))
	if s.FilteredOut > 0 {
		add("filtered out", commas(s.FilteredOut))
	}
	add("distinct clients", "≈"+commas(int64(s.DistinctClients)))
	add("bytes out", bytesOf(float64(s.Totals.Bytes)))
	if s.Totals.WorkerSeconds > 0 {
		add("worker time", secondsOf(s.Totals.WorkerSeconds))
	}
	add("5xx / 4xx", fmt.Sprintf("%s / %s", commas(s.Totals.Errors5xx), commas(s.Totals.Errors4xx)))
	if s.Window != nil {
		add("time span", fmt.Sprintf("%s → %s (%s)", s.Window.Start.UTC().Format("2006-01-02 15:04"), s.Window.End.UTC().Format("2006-01-02 15:04 UTC"), spanOf(s.Window.End.Sub(s.Window.Start))))
	}
	if s.ElapsedSeconds > 0 {
		add("parse time", fmt.Sprintf("%s (%s lines/s)", secondsOf(s.ElapsedSeconds), commas(int64(s.LinesPerSecond))))
	}
	if q, ok := s.Quantiles["request_time"]; ok && q.Count > 0 {
		add("request time p50 / p95 / p99", fmt.Sprintf("%s / %s / %s", secondsOf(q.P50), secondsOf(q.P95), secondsOf(q.P99)))
	}
	if q, ok := s.Quantiles["upstream_time"]; ok && q.Count > 0 {
		add("upstream time p50 / p95 / p99", fmt.Sprintf("%s / %s / %s (%s requests)", secondsOf(q.P50), secondsOf(q.P95), secondsOf(q.P99), commas(q.Count)))
	}

	if len(s.Status) > 0 {
		t := table{ID: "status", Title: "Status codes", Columns: []string{"status", "requests", "share", "bytes"}}
		for _, r := range s.Status {
			t.Rows = append(t.Rows, []string{fmt.Sprint(r.Status), commas(r.Requests), pctOf(r.Share), bytesOf(float64(r.Bytes))})
		}
		v.Tables = append(v.Tables, t)
	}
	if top, ok := s.Top["path_template"]; ok && s.Totals.WorkerSeconds > 0 && len(top.ByWorkerTime) > 0 {
		t := table{ID: "worker-by-endpoint", Title: "Worker time by endpoint", Note: "upstream time; mean per request of the endpoint's requests",
			Columns: []string{"endpoint", "worker time", "share", "requests", "mean per request"}}
		for _, r := range top.ByWorkerTime {
			mean := "–"
			if r.Requests > 0 {
				mean = secondsOf(r.WorkerSeconds / float64(r.Requests))
			}
			t.Rows = append(t.Rows, []string{r.Value, secondsOf(r.WorkerSeconds), pctOf(r.Share), commas(r.Requests), mean})
		}
		v.Tables = append(v.Tables, t)
	}
	if t, ok := latencyTable(s.LatencyByEndpoint); ok {
		v.Tables = append(v.Tables, t)
	}
	for _, o := range topOrder {
		top, ok := s.Top[o.dim]
		if !ok || len(top.ByRequests) == 0 {
			continue
		}
		t := table{ID: "top-" + o.dim, Title: o.title + " by requests", Columns: []string{o.dim, "requests", "share", "bytes", "worker", "5xx"}}
		if o.dim == "not_found" {
			t.Columns[0] = "path"
		}
		if o.dim == "user_agent" {
			t.Columns = []string{"family", "user agent", "requests", "share", "bytes", "worker", "5xx"}
		}
		if top.Approximate {
			t.Note = fmt.Sprintf("approximate: rare values were dropped, counts are at most %s requests low", commas(top.ErrorBound))
		}
		for _, r := range top.ByRequests {
			row := []string{shorten(r.Value, 120), commas(r.Requests), pctOf(r.Share), bytesOf(float64(r.Bytes)), secondsOf(r.WorkerSeconds), commas(r.Errors)}
			if o.dim == "user_agent" {
				row = append([]string{r.Family}, row...)
			}
			t.Rows = append(t.Rows, row)
		}
		v.Tables = append(v.Tables, t)
	}
	return v
}

// latencyTable shows the endpoints' latency quantiles, with the columns of
// the times the log has.
func latencyTable(rows []analyze.EndpointLatencyJSON) (table, bool) {
	var req, up bool
	for _, r := range rows {
		req = req || r.RequestTime != nil
		up = up || r.UpstreamTime != nil
	}
	if !req && !up {
		return table{}, false
	}
	t := table{ID: "latency-by-endpoint", Title: "Latency by endpoint", Columns: []string{"endpoint", "requests"},
		Note: "quantiles within 1%; upstream time over the requests that had one"}
	if req {
		t.Columns = append(t.Columns, "request p50", "p90", "p99")
	}
	if up {
		t.Columns = append(t.Columns, "upstream p50", "p90", "p99", "with upstream")
	}
	q := func(x *analyze.QuantilesJSON, count bool) []string {
		if x == nil {
			if count {
				return []string{"–", "–", "–", "0"}
			}
			return []string{"–", "–", "–"}
		}
		out := []string{secondsOf(x.P50), secondsOf(x.P90), secondsOf(x.P99)}
		if count {
			out = append(out, commas(x.Count))
		}
		return out
	}
	for _, r := range rows {
		row := []string{shorten(r.Endpoint, 120), commas(r.Requests)}
		if req {
			row = append(row, q(r.RequestTime, false)...)
		}
		if up {
			row = append(row, q(r.UpstreamTime, true)...)
		}
		t.Rows = append(t.Rows, row)
	}
	return t, true
}

// summaryCharts are the requests by hour of day and by day; left out when
// the log has no timed records.
func summaryCharts(s *analyze.Report) []builtChart {
	if s == nil || s.Window == nil {
		return nil
	}
	var out []builtChart
	var any int64
	for _, n := range s.RequestsByHourOfDay {
		any += n
	}
	if any > 0 && len(s.RequestsByHourOfDay) == 24 {
		labels := make([]string, 24)
		vals := make([]opts.BarData, 24)
		for h, n := range s.RequestsByHourOfDay {
			labels[h] = fmt.Sprintf("%02d", h)
			vals[h] = opts.BarData{Value: n}
		}
		out = append(out, builtChart{"Requests by hour of day", "UTC hours, all days added up", barChart("hours", labels, vals)})
	}
	if len(s.RequestsByDay) > 1 {
		labels := make([]string, len(s.RequestsByDay))
		vals := make([]opts.BarData, len(s.RequestsByDay))
		for i, d := range s.RequestsByDay {
			labels[i] = d.Day
			vals[i] = opts.BarData{Value: d.Requests}
		}
		out = append(out, builtChart{"Requests by day", "UTC days with requests", barChart("days", labels, vals)})
	}
	return out
}

func barChart(id string, labels []string, vals []opts.BarData) render.Renderer {
	bar := charts.NewBar()
	bar.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: id, Width: "100%", Height: "260px", Renderer: "canvas"}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "requests", Type: "value"}),
		charts.WithAnimation(false),
	)
	bar.SetXAxis(labels)
	bar.AddSeries("requests", vals)
	return bar
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func pctOf(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func bytesOf(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func secondsOf(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 120:
		return fmt.Sprintf("%.2f s", s)
	}
	return (time.Duration(s) * time.Second).String()
}

func spanOf(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	}
	return d.Round(time.Second).String()
}
