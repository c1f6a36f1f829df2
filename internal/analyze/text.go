package analyze

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/headroom-dev/headroom/internal/findings"
)

// WriteText writes the report for a person at a terminal: totals, the time
// series as sparklines, then the tables that say who and what.
func (rep *Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	if rep.Detail != nil {
		// Findings first: what changed and who did it, then the tables.
		if err := findings.WriteText(b, rep.Findings, nil); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	rep.textHeader(b)
	rep.textSeries(b)
	rep.textStatus(b)
	rep.textGroups(b)
	rep.textTops(b)
	rep.textMalformed(b)
	_, err := io.WriteString(w, b.String())
	return err
}

func commas(n int64) string {
	s := fmt.Sprintf("%d", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
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

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func secondsText(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 600:
		return fmt.Sprintf("%.2fs", s)
	}
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}

func (rep *Report) textHeader(b *strings.Builder) {
	var names []string
	for _, in := range rep.Inputs {
		n := in.Name
		if in.Format != "" {
			n += " (" + in.Format + ")"
		}
		if in.Error != "" {
			n += " [skipped]"
		}
		names = append(names, n)
	}
	if len(names) > 4 {
		names = append(names[:3], fmt.Sprintf("… %d more", len(names)-3))
	}
	fmt.Fprintf(b, "%s records from %s\n", commas(rep.Records), strings.Join(names, ", "))
	if rep.Window != nil {
		fmt.Fprintf(b, "  %s → %s UTC (%s)\n", rep.Window.Start.Format("2006-01-02 15:04:05"),
			rep.Window.End.Format("2006-01-02 15:04:05"), shortDur(rep.Window.End.Sub(rep.Window.Start)))
	}
	fmt.Fprintf(b, "  lines %s · malformed %s · filtered out %s · distinct clients ≈%s · read in %s (%s lines/s)\n",
		commas(rep.Lines), commas(rep.Malformed), commas(rep.FilteredOut), commas(int64(rep.DistinctClients)),
		secondsText(rep.ElapsedSeconds), humanCount(rep.LinesPerSecond))
	if f := rep.Filters; f != nil {
		var parts []string
		if f.Where != "" {
			parts = append(parts, "where "+f.Where)
		}
		if f.Since != nil {
			parts = append(parts, "since "+f.Since.Format(time.RFC3339))
		}
		if f.Until != nil {
			parts = append(parts, "until "+f.Until.Format(time.RFC3339))
		}
		fmt.Fprintf(b, "  filter: %s\n", strings.Join(parts, ", "))
	}
	t := rep.Totals
	worker := secondsText(t.WorkerSeconds)
	if _, ok := rep.Quantiles["upstream_time"]; !ok {
		worker = "not logged"
	}
	fmt.Fprintf(b, "\nTotals    requests %s · bytes out %s · worker time %s · 5xx %s (%s) · 4xx %s · client closed (499) %s\n",
		commas(t.Requests), humanBytes(t.Bytes), worker, commas(t.Errors5xx),
		pct(share(t.Errors5xx, t.Requests)), commas(t.Errors4xx), commas(t.ClientClosed))
	for _, k := range []string{"request_time", "upstream_time"} {
		q, ok := rep.Quantiles[k]
		if !ok {
			continue
		}
		fmt.Fprintf(b, "%-9s p50 %s · p90 %s · p95 %s · p99 %s · max %s  (%s requests)\n",
			map[string]string{"request_time": "Request", "upstream_time": "Upstream"}[k],
			secondsText(q.P50), secondsText(q.P90), secondsText(q.P95), secondsText(q.P99), secondsText(q.Max), commas(q.Count))
	}
}

func shortDur(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.1f hours", d.Hours())
	}
	return d.Round(time.Second).String()
}

const sparkWidth = 64

var sparkBlocks = []rune("▁▂▃▄▅▆▇█")

// sparkline resamples values into at most width columns (sums) and draws
// them; an empty bucket is a blank so gaps in the log show.
func sparkline(values []float64, width int) (string, float64) {
	if len(values) == 0 {
		return "", 0
	}
	cols := values
	if len(values) > width {
		cols = make([]float64, width)
		for i, v := range values {
			cols[i*width/len(values)] += v
		}
	}
	maxV := 0.0
	for _, v := range cols {
		maxV = max(maxV, v)
	}
	var sb strings.Builder
	for _, v := range cols {
		if v <= 0 || maxV == 0 {
			sb.WriteRune(' ')
			continue
		}
		i := int(v / maxV * float64(len(sparkBlocks)-1))
		sb.WriteRune(sparkBlocks[i])
	}
	return sb.String(), maxV
}

func (rep *Report) textSeries(b *strings.Builder) {
	pts := rep.Series.Points
	if len(pts) < 2 {
		return
	}
	per := len(pts)
	if per > sparkWidth {
		per = sparkWidth
	}
	colSpan := time.Duration(rep.Series.BucketSeconds) * time.Second * time.Duration((len(pts)+sparkWidth-1)/sparkWidth)
	fmt.Fprintf(b, "\nOver time   %s → %s, one column per %s\n", pts[0].Start.Format("2006-01-02 15:04"),
		pts[len(pts)-1].Start.Add(time.Duration(rep.Series.BucketSeconds)*time.Second).Format("2006-01-02 15:04"), shortDur(colSpan))
	get := func(f func(PointJSON) float64) []float64 {
		out := make([]float64, len(pts))
		for i, p := range pts {
			out[i] = f(p)
		}
		return out
	}
	line := func(name string, vals []float64, format func(float64) string) {
		s, m := sparkline(vals, sparkWidth)
		if m == 0 {
			return
		}
		fmt.Fprintf(b, "  %-12s %s  max %s\n", name, s, format(m))
	}
	line("requests", get(func(p PointJSON) float64 { return float64(p.Requests) }), func(v float64) string { return commas(int64(v)) })
	line("bytes out", get(func(p PointJSON) float64 { return float64(p.Bytes) }), func(v float64) string { return humanBytes(int64(v)) })
	line("worker time", get(func(p PointJSON) float64 { return p.WorkerSeconds }), secondsText)
	line("5xx", get(func(p PointJSON) float64 { return float64(p.Errors) }), func(v float64) string { return commas(int64(v)) })
}

func (rep *Report) textStatus(b *strings.Builder) {
	if len(rep.Status) == 0 {
		return
	}
	b.WriteString("\nStatus     ")
	for i, s := range rep.Status {
		if i == 10 {
			fmt.Fprintf(b, " · …%d more", len(rep.Status)-10)
			break
		}
		if i > 0 {
			b.WriteString(" · ")
		}
		st := fmt.Sprint(s.Status)
		if s.Status == 0 {
			st = "-"
		}
		fmt.Fprintf(b, "%s %s (%s)", st, commas(s.Requests), pct(s.Share))
	}
	b.WriteString("\n")
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// table writes rows under a title: text columns (the leading ones, nameCols
// of them) left-aligned, numbers right-aligned.
func table(b *strings.Builder, title string, header []string, rows [][]string, nameCols int) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s\n", title)
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var line strings.Builder
	for _, r := range append([][]string{header}, rows...) {
		line.Reset()
		line.WriteString(" ")
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			line.WriteString(" ")
			if i < nameCols {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
			line.WriteString(" ")
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
	}
}

var textDims = []struct {
	dim, title string
	limit      int
}{
	{"client", "Clients", 10},
	{"prefix", "Networks (/24, /48)", 10},
	{"key", "Keys", 10},
	{"path_template", "Endpoints (path templates)", 10},
	{"ua_family", "User agents (family)", 10},
	{"user_agent", "User agents", 5},
	{"referer_domain", "Referers (domain)", 8},
	{"method", "Methods", 6},
	{"pool", "Pools", 6},
}

func (rep *Report) rowCells(r RowJSON, showWorker bool, valueWidth int) []string {
	cells := []string{clip(r.Value, valueWidth), commas(r.Requests), humanBytes(r.Bytes)}
	if showWorker {
		cells = append(cells, secondsText(r.WorkerSeconds))
	}
	return append(cells, commas(r.Errors))
}

func (rep *Report) textTops(b *strings.Builder) {
	showWorker := rep.Totals.WorkerSeconds > 0
	header := func(first, share string) []string {
		h := []string{first, "requests", "bytes"}
		if showWorker {
			h = append(h, "worker")
		}
		return append(h, "5xx", share)
	}
	for _, d := range textDims {
		t, ok := rep.Top[d.dim]
		if !ok || len(t.ByRequests) == 0 {
			continue
		}
		title := d.title + " by requests"
		if t.Approximate {
			title += fmt.Sprintf("  (approximate: counts may be up to %s low)", commas(t.ErrorBound))
		}
		var rows [][]string
		for i, r := range t.ByRequests {
			if i == d.limit {
				break
			}
			rows = append(rows, append(rep.rowCells(r, showWorker, 56), pct(r.Share)))
		}
		table(b, title, header(d.dim, "share"), rows, 1)
	}
	// The heaviest by bytes and by worker time are often not the most
	// frequent (one client fetching large images; one key's slow reports).
	for _, m := range []struct {
		name string
		get  func(TopJSON) []RowJSON
		on   bool
	}{
		{"bytes out", func(t TopJSON) []RowJSON { return t.ByBytes }, rep.Totals.Bytes > 0},
		{"worker time", func(t TopJSON) []RowJSON { return t.ByWorkerTime }, showWorker},
	} {
		if !m.on {
			continue
		}
		for _, dim := range []string{"client", "key", "path_template", "ua_family"} {
			t, ok := rep.Top[dim]
			if !ok {
				continue
			}
			var rows [][]string
			for i, r := range m.get(t) {
				if i == 5 {
					break
				}
				rows = append(rows, append(rep.rowCells(r, showWorker, 56), pct(r.Share)))
			}
			table(b, fmt.Sprintf("Heaviest %s by %s", dimTitle(dim), m.name), header(dim, "of "+m.name), rows, 1)
		}
	}
}

func dimTitle(dim string) string {
	switch dim {
	case "path_template":
		return "endpoints"
	case "ua_family":
		return "user agents"
	case "client":
		return "clients"
	case "key":
		return "keys"
	}
	return dim
}

func (rep *Report) textGroups(b *strings.Builder) {
	g := rep.Groups
	if g == nil {
		return
	}
	var rows [][]string
	for _, r := range g.Rows {
		var cells []string
		for _, v := range r.Values {
			if v == "" {
				v = "(none)"
			}
			cells = append(cells, clip(v, 48))
		}
		cells = append(cells, commas(r.Requests), pct(r.Share), humanBytes(r.Bytes), secondsText(r.WorkerSeconds), commas(r.Errors))
		rows = append(rows, cells)
	}
	header := append(append([]string{}, g.By...), "requests", "share", "bytes", "worker", "5xx")
	table(b, "By "+strings.Join(g.By, ", "), header, rows, len(g.By))
}

func (rep *Report) textMalformed(b *strings.Builder) {
	for _, in := range rep.Inputs {
		if in.Error != "" {
			fmt.Fprintf(b, "\nSkipped %s: %s\n", in.Name, in.Error)
		}
	}
	if rep.Malformed == 0 {
		return
	}
	fmt.Fprintf(b, "\nMalformed lines: %s (%s of lines)", commas(rep.Malformed), pct(share(rep.Malformed, rep.Lines)))
	if len(rep.MalformedExamples) > 0 {
		b.WriteString(", for example:")
	}
	b.WriteString("\n")
	for i, m := range rep.MalformedExamples {
		if i == 5 {
			break
		}
		fmt.Fprintf(b, "  %s:%d: %s\n    %s\n", m.File, m.Line, m.Reason, clip(m.Text, 160))
	}
}
