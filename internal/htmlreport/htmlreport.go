// Package htmlreport writes the HTML report of `headroom logs analyze
// --html FILE`: the findings first, then the charts that back them (the
// traffic series with its change points, the top contributors stacked, the
// scatter of client-facing against upstream time that exposed seed 03's
// knee, and the request-time histogram with the knee marked).
//
// The report is one self-contained file that opens offline: the charts are
// drawn by go-echarts, whose pages normally load echarts from a CDN; here
// the vendored echarts.min.js (assets/, Apache-2.0, see assets/LICENSE-echarts)
// is inlined instead, and only go-echarts' chart snippets (element and
// script) are used.
package htmlreport

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
	"github.com/go-echarts/go-echarts/v2/render"

	"github.com/headroom-dev/headroom/internal/analyze"
	"github.com/headroom-dev/headroom/internal/dims"
	"github.com/headroom-dev/headroom/internal/findings"
)

// echartsJS is echarts 5.6.0's dist/echarts.min.js from the npm package
// (`npm pack echarts@5.6.0`); go-echarts v2.6 targets echarts 5.
//
//go:embed assets/echarts.min.js
var echartsJS string

// Options describe the report's page.
type Options struct {
	// Title heads the page; "" means "headroom logs analyze".
	Title string
	// Sources names the inputs (files), shown under the title.
	Sources []string
	// Generated is the time shown as the report's creation time; zero
	// leaves it out (tests compare output byte for byte).
	Generated time.Time
	// Malformed is the number of lines the engine could not parse.
	Malformed int64
	// Summary, when set, adds the engine's figures: the headline (requests,
	// valid and failed lines, clients, bytes, span, parse time), requests
	// by hour of day and by day, and the top-N tables.
	Summary *analyze.Report
}

// Write renders rep as a self-contained HTML page.
func Write(w io.Writer, rep *findings.Report, opt Options) error {
	if rep == nil {
		return fmt.Errorf("html report: no analysis to render")
	}
	if opt.Title == "" {
		opt.Title = "headroom logs analyze"
	}
	var snippets []chartSnippet
	for _, ch := range append(buildCharts(rep), summaryCharts(opt.Summary)...) {
		s := ch.r.RenderSnippet()
		snippets = append(snippets, chartSnippet{
			Title:   ch.title,
			Note:    ch.note,
			Element: template.HTML(s.Element),
			Script:  safeScript(s.Script),
		})
	}
	data := pageData{
		Options:  opt,
		Report:   rep,
		Findings: viewFindings(rep),
		Charts:   snippets,
		Summary:  viewSummary(opt.Summary, 0),
		JS:       template.JS(echartsJS),
	}
	if rep.Location != nil && !rep.Start.IsZero() {
		data.Period = fmt.Sprintf("%s – %s", rep.Start.Format("2006-01-02 15:04 MST"), rep.End.Format("2006-01-02 15:04 MST"))
	}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}

// safeScript makes go-echarts' script snippet safe to inline. go-echarts
// writes chart options as unescaped JSON, and those carry values from the
// log (a user agent in a legend): a user agent containing "</script>" would
// otherwise end the script and inject markup into the report. Inside the
// script, "</" becomes "<\/" (the same string to JavaScript) and "<!--"
// is broken up.
func safeScript(s string) template.HTML {
	const open, end = "<script type=\"text/javascript\">", "</script>"
	i, j := strings.Index(s, open), strings.LastIndex(s, end)
	if i < 0 || j < i {
		return template.HTML("<script>/* chart script missing */</script>")
	}
	body := s[i+len(open) : j]
	body = strings.ReplaceAll(body, "</", "<\\/")
	body = strings.ReplaceAll(body, "<!--", "<\\!--")
	return template.HTML(open + body + end)
}

type chartSnippet struct {
	Title   string
	Note    string
	Element template.HTML
	Script  template.HTML
}

type pageData struct {
	Options
	Report   *findings.Report
	Findings []viewFinding
	Charts   []chartSnippet
	JS       template.JS
	Period   string
	Summary  *summaryView
}

type viewFinding struct {
	findings.Finding
	N      int
	Window string
}

func viewFindings(rep *findings.Report) []viewFinding {
	var out []viewFinding
	for i, f := range rep.Findings {
		v := viewFinding{Finding: f, N: i + 1}
		if !f.Window.Start.IsZero() {
			v.Window = f.Window.Start.Format("2006-01-02 15:04") + " – " + f.Window.End.Format("2006-01-02 15:04 MST")
		}
		out = append(out, v)
	}
	return out
}

type builtChart struct {
	title, note string
	r           render.Renderer
}

// chartInit sizes a chart to the page width; the ID names its <div>.
func chartInit(id string) opts.Initialization {
	return opts.Initialization{ChartID: id, Width: "100%", Height: "380px", Renderer: "canvas"}
}

// buildCharts returns the report's charts; a chart with no data is left out
// rather than drawn empty.
func buildCharts(rep *findings.Report) []builtChart {
	c := followDensity(rep.Charts)
	var out []builtChart
	labels := make([]string, len(c.Times))
	for i, t := range c.Times {
		labels[i] = t.Format("01-02 15:04")
	}
	if len(labels) > 0 {
		out = append(out, builtChart{"Traffic", fmt.Sprintf("requests and bytes out per %s bucket; dashed lines mark detected changes", c.BucketWidth), seriesChart(c, labels)})
		if hasData(c.Work) {
			out = append(out, builtChart{"Worker time", fmt.Sprintf("seconds of upstream time per %s bucket; dashed lines mark detected changes", c.BucketWidth), workChart(c, labels)})
		}
		if len(c.Stack.Values) > 0 {
			out = append(out, builtChart{"Top contributors", fmt.Sprintf("requests per bucket by %s, stacked", c.Stack.Dimension), stackChart(c, labels)})
		}
	}
	if len(c.Scatter) > 0 {
		out = append(out, builtChart{"Client-facing vs upstream time", fmt.Sprintf("a uniform sample of %d requests; lines with no upstream time sit on the x axis (seed 03's knee is a vertical wall there)", len(c.Scatter)), scatterChart(c)})
	}
	if len(c.Histogram.Counts) > 0 {
		note := "client-facing request time"
		if c.Histogram.KneeSeconds > 0 {
			note += fmt.Sprintf("; knee at %.2f s", c.Histogram.KneeSeconds)
		}
		out = append(out, builtChart{"Request-time histogram", note, histogramChart(c)})
	}
	return out
}

func nearestLabel(c findings.Charts, labels []string, t time.Time) string {
	best, bestD := 0, time.Duration(math.MaxInt64)
	for i, x := range c.Times {
		if d := x.Sub(t).Abs(); d < bestD {
			best, bestD = i, d
		}
	}
	return labels[best]
}

func seriesChart(c findings.Charts, labels []string) render.Renderer {
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(chartInit("traffic")),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}, opts.DataZoom{Type: "slider"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "requests", Type: "value"}),
		charts.WithAnimation(false),
	)
	line.ExtendYAxis(opts.YAxis{Name: "MiB out", Type: "value"})
	req := make([]opts.LineData, len(c.Requests))
	mib := make([]opts.LineData, len(c.Bytes))
	for i := range c.Requests {
		req[i] = opts.LineData{Value: c.Requests[i]}
		mib[i] = opts.LineData{Value: math.Round(c.Bytes[i]/(1<<20)*10) / 10}
	}
	line.SetXAxis(labels)
	var marks []opts.MarkLineNameXAxisItem
	for _, m := range c.Marks {
		marks = append(marks, opts.MarkLineNameXAxisItem{Name: m.Label, XAxis: nearestLabel(c, labels, m.At)})
	}
	reqOpts := []charts.SeriesOpts{charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)})}
	if len(marks) > 0 {
		reqOpts = append(reqOpts,
			charts.WithMarkLineNameXAxisItemOpts(marks...),
			charts.WithMarkLineStyleOpts(opts.MarkLineStyle{
				Symbol:    []string{"none", "none"},
				Label:     &opts.Label{Show: opts.Bool(true), Formatter: "{b}"},
				LineStyle: &opts.LineStyle{Color: "#d62728", Width: 2, Type: "dashed"},
			}))
	}
	line.AddSeries("requests", req, reqOpts...)
	line.AddSeries("MiB out", mib, charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false), YAxisIndex: 1}))
	return line
}

func hasData(v []float64) bool {
	for _, x := range v {
		if x > 0 {
			return true
		}
	}
	return false
}

func workChart(c findings.Charts, labels []string) render.Renderer {
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: "work", Width: "100%", Height: "300px", Renderer: "canvas"}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}, opts.DataZoom{Type: "slider"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "worker s", Type: "value"}),
		charts.WithAnimation(false),
	)
	line.SetXAxis(labels)
	d := make([]opts.LineData, len(c.Work))
	for i, v := range c.Work {
		d[i] = opts.LineData{Value: math.Round(v*1000) / 1000}
	}
	var marks []opts.MarkLineNameXAxisItem
	for _, m := range c.Marks {
		marks = append(marks, opts.MarkLineNameXAxisItem{Name: m.Label, XAxis: nearestLabel(c, labels, m.At)})
	}
	so := []charts.SeriesOpts{charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)})}
	if len(marks) > 0 {
		so = append(so, charts.WithMarkLineNameXAxisItemOpts(marks...),
			charts.WithMarkLineStyleOpts(opts.MarkLineStyle{
				Symbol:    []string{"none", "none"},
				Label:     &opts.Label{Show: opts.Bool(true), Formatter: "{b}"},
				LineStyle: &opts.LineStyle{Color: "#d62728", Width: 2, Type: "dashed"},
			}))
	}
	line.AddSeries("worker time", d, so...)
	return line
}

func stackChart(c findings.Charts, labels []string) render.Renderer {
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(chartInit("stack")),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0", Type: "scroll"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}, opts.DataZoom{Type: "slider"}),
		charts.WithGridOpts(opts.Grid{Top: "60"}),
		charts.WithAnimation(false),
	)
	line.SetXAxis(labels)
	add := func(name string, v []float64) {
		d := make([]opts.LineData, len(v))
		for i, x := range v {
			d[i] = opts.LineData{Value: x}
		}
		line.AddSeries(name, d,
			charts.WithLineChartOpts(opts.LineChart{Stack: "total", ShowSymbol: opts.Bool(false)}),
			charts.WithAreaStyleOpts(opts.AreaStyle{Opacity: opts.Float(0.6)}))
	}
	for i, v := range c.Stack.Values {
		add(legendName(c.Stack.Dimension, v, c.Stack.Values), c.Stack.Series[i])
	}
	add("other", c.Stack.Other)
	return line
}

// legendName is a short legend for a stacked value: a user agent is named
// by its family (issue 16: 200-character agents as legends), with a part
// of the agent when two share a family; others are cut to 40 characters.
func legendName(dim, v string, all []string) string {
	if dim != "user_agent" {
		return shorten(v, 40)
	}
	fam := dims.AgentFamily(v)
	n := 0
	for _, o := range all {
		if dims.AgentFamily(o) == fam {
			n++
		}
	}
	if n == 1 || fam == v {
		return fam
	}
	return fam + " (" + shorten(v, 24) + ")"
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func scatterChart(c findings.Charts) render.Renderer {
	sc := charts.NewScatter()
	sc.SetGlobalOptions(
		charts.WithInitializationOpts(chartInit("scatter")),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "item"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithXAxisOpts(opts.XAxis{Name: "client-facing s", Type: "value"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "upstream s", Type: "value"}),
		charts.WithAnimation(false),
	)
	var ok, aborted, missing []opts.ScatterData
	for _, p := range c.Scatter {
		pt := opts.ScatterData{Value: []float64{round3(p.Request), round3(p.Upstream)}, SymbolSize: 5}
		switch {
		case !p.HasUpstream:
			pt.Symbol, pt.SymbolSize = "diamond", 8
			missing = append(missing, pt)
		case p.Status == 499:
			pt.Symbol, pt.SymbolSize = "triangle", 7
			aborted = append(aborted, pt)
		default:
			ok = append(ok, pt)
		}
	}
	sc.AddSeries("completed", ok, charts.WithItemStyleOpts(opts.ItemStyle{Color: "#5470c6", Opacity: opts.Float(0.6)}))
	if len(aborted) > 0 {
		sc.AddSeries("499 (client left)", aborted, charts.WithItemStyleOpts(opts.ItemStyle{Color: "#ef8f00"}))
	}
	if len(missing) > 0 {
		sc.AddSeries("no upstream time", missing, charts.WithItemStyleOpts(opts.ItemStyle{Color: "#c62828"}))
	}
	return sc
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func histogramChart(c findings.Charts) render.Renderer {
	h := c.Histogram
	bar := charts.NewBar()
	bar.SetGlobalOptions(
		charts.WithInitializationOpts(chartInit("histogram")),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithXAxisOpts(opts.XAxis{Name: "s"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "requests", Type: "log"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}),
		charts.WithAnimation(false),
	)
	labels := make([]string, len(h.Counts))
	done := make([]opts.BarData, len(h.Counts))
	ab := make([]opts.BarData, len(h.Counts))
	kneeLabel := ""
	for i := range h.Counts {
		labels[i] = fmt.Sprintf("%.2f", float64(i)*h.StepSeconds)
		// A log axis cannot show 0: empty bins are left out (null).
		if v := h.Counts[i] - h.Aborted[i]; v > 0 {
			done[i] = opts.BarData{Value: v}
		} else {
			done[i] = opts.BarData{Value: "-"}
		}
		if h.Aborted[i] > 0 {
			ab[i] = opts.BarData{Value: h.Aborted[i]}
		} else {
			ab[i] = opts.BarData{Value: "-"}
		}
		if h.KneeSeconds > 0 && kneeLabel == "" && float64(i+1)*h.StepSeconds > h.KneeSeconds {
			kneeLabel = labels[i]
		}
	}
	bar.SetXAxis(labels)
	bar.AddSeries("completed", done, charts.WithBarChartOpts(opts.BarChart{Stack: "n", BarCategoryGap: "0%"}))
	abOpts := []charts.SeriesOpts{charts.WithBarChartOpts(opts.BarChart{Stack: "n", BarCategoryGap: "0%"})}
	if kneeLabel != "" {
		abOpts = append(abOpts,
			charts.WithMarkLineNameXAxisItemOpts(opts.MarkLineNameXAxisItem{Name: fmt.Sprintf("knee %.2f s", h.KneeSeconds), XAxis: kneeLabel}),
			charts.WithMarkLineStyleOpts(opts.MarkLineStyle{
				Symbol:    []string{"none", "none"},
				Label:     &opts.Label{Show: opts.Bool(true), Formatter: "{b}"},
				LineStyle: &opts.LineStyle{Color: "#d62728", Width: 2, Type: "dashed"},
			}))
	}
	bar.AddSeries("aborted / no upstream", ab, abOpts...)
	return bar
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px; padding: 16px 24px; color: #1d2125; }
h1 { font-size: 22px; margin: 8px 0 2px; }
.meta { color: #5f6b76; margin-bottom: 18px; }
.finding { border: 1px solid #d8dde2; border-left: 6px solid #8a959f; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.finding.critical { border-left-color: #c62828; }
.finding.warning { border-left-color: #ef8f00; }
.finding h3 { margin: 0 0 4px; font-size: 16px; }
.sev { display: inline-block; font-size: 11px; text-transform: uppercase; padding: 1px 6px; border-radius: 3px; background: #8a959f; color: #fff; margin-right: 6px; vertical-align: 2px; }
.critical .sev { background: #c62828; } .warning .sev { background: #ef8f00; }
.kind { font-family: ui-monospace, monospace; color: #5f6b76; }
table.who { border-collapse: collapse; margin: 6px 0; }
table.who td { padding: 1px 10px 1px 0; } table.who td.v { font-family: ui-monospace, monospace; word-break: break-all; }
.action { background: #f3f6f8; padding: 6px 10px; border-radius: 4px; }
.headline { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 16px; }
.fig { border: 1px solid #d8dde2; border-radius: 6px; padding: 6px 12px; min-width: 120px; }
.fig .v { font-size: 17px; font-weight: 600; } .fig .l { color: #5f6b76; font-size: 12px; }
.table { margin: 18px 0; } .table h3 { font-size: 15px; margin: 0 0 4px; } .table .note { color: #5f6b76; }
table.top { border-collapse: collapse; width: 100%; font-size: 13px; }
table.top th, table.top td { text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #eef0f2; vertical-align: top; }
table.top td:first-child { font-family: ui-monospace, monospace; word-break: break-all; }
.chart { margin: 26px 0; } .chart h2 { font-size: 17px; margin: 0; } .chart .note { color: #5f6b76; }
</style>
<script>{{.JS}}</script>
</head>
<body>
<h1>{{.Title}}</h1>
<div class="meta">{{range .Sources}}{{.}} · {{end}}{{.Report.Records}} records{{if .Malformed}} ({{.Malformed}} malformed){{end}}{{if .Period}} · {{.Period}}{{end}}{{if not .Generated.IsZero}} · generated {{.Generated.Format "2006-01-02 15:04 MST"}}{{end}}</div>
{{with .Summary}}<section id="overview"><h2>Overview</h2>
<div class="headline">{{range .Headline}}<div class="fig"><div class="v">{{.Value}}</div><div class="l">{{.Label}}</div></div>{{end}}</div>
</section>{{end}}
<h2>Findings</h2>
{{if not .Findings}}<p>No findings: no lasting change, client timeout, accounting gap, repeated fetches, crawler, hotlinking or burst stood out.</p>{{end}}
{{range .Findings}}
<div class="finding {{.Severity}}" id="finding-{{.N}}">
<h3><span class="sev">{{.Severity}}</span>{{.N}}. {{.Title}}</h3>
<div><span class="kind">{{.Kind}}</span>{{if .Window}} · {{.Window}}{{end}}</div>
{{if .Contributors}}<table class="who">{{range .Contributors}}<tr><td>{{.Dimension}}</td><td class="v">{{.Value}}</td><td>{{pct .Share}}</td></tr>{{end}}</table>{{end}}
<ul>{{range .Evidence}}<li>{{.}}</li>{{end}}</ul>
{{if .Action}}<div class="action"><b>Action:</b> {{.Action}}</div>{{end}}
</div>
{{end}}
<script>
// Chart scripts that throw are recorded on <body> (data-errors), and the
// number of charts echarts drew (data-rendered) once they are in: a reader
// sees a blank chart, a test or a script can see why.
window.addEventListener("error", function (e) {
  var b = document.body;
  b.dataset.errors = (b.dataset.errors ? b.dataset.errors + " | " : "") + e.message;
});
</script>
{{range .Charts}}
<div class="chart">
<h2>{{.Title}}</h2>
<div class="note">{{.Note}}</div>
{{.Element}}
{{.Script}}
</div>
{{end}}
{{with .Summary}}<section id="tables"><h2>Top tables</h2>
{{range .Tables}}<div class="table" id="{{.ID}}"><h3>{{.Title}}</h3>{{if .Note}}<div class="note">{{.Note}}</div>{{end}}
<table class="top"><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table></div>
{{end}}</section>{{end}}
<script>
(function () {
  var n = 0;
  document.querySelectorAll(".chart .item").forEach(function (el) {
    var c = echarts.getInstanceByDom(el);
    if (c && el.querySelector("canvas, svg")) { n++; }
  });
  document.body.dataset.rendered = String(n);
  document.body.dataset.charts = String(document.querySelectorAll(".chart .item").length);
})();
</script>
</body>
</html>
`))

// followDensity widens the chart's buckets until at least a quarter of them
// hold requests (or few are left): a sparse log spread over days would
// otherwise draw a comb of empty buckets (issue 16). Adjacent buckets are
// summed; the stack and the marks follow.
func followDensity(c findings.Charts) findings.Charts {
	for len(c.Times) > 60 {
		nonEmpty := 0
		for _, v := range c.Requests {
			if v > 0 {
				nonEmpty++
			}
		}
		if nonEmpty*4 >= len(c.Requests) {
			break
		}
		c = mergePairs(c)
	}
	return c
}

func mergePairs(c findings.Charts) findings.Charts {
	sum := func(v []float64) []float64 {
		out := make([]float64, (len(v)+1)/2)
		for i, x := range v {
			out[i/2] += x
		}
		return out
	}
	out := c
	out.BucketWidth = 2 * c.BucketWidth
	out.Times = make([]time.Time, 0, (len(c.Times)+1)/2)
	for i := 0; i < len(c.Times); i += 2 {
		out.Times = append(out.Times, c.Times[i])
	}
	out.Requests, out.Bytes, out.Work = sum(c.Requests), sum(c.Bytes), sum(c.Work)
	out.Stack.Series = make([][]float64, len(c.Stack.Series))
	for i, s := range c.Stack.Series {
		out.Stack.Series[i] = sum(s)
	}
	if c.Stack.Other != nil {
		out.Stack.Other = sum(c.Stack.Other)
	}
	return out
}
