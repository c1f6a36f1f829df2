// Package findings turns access-log records into the few things an operator
// must know first: what changed, who did it, the evidence, and what to do.
//
// A Collector is fed record by record (one per log-engine worker, merged at
// the end) and keeps, in bounded memory, per-time-bucket totals and the heavy
// hitters of each dimension (user agent, key, client prefix, path template,
// referer domain, status, method). Analyze runs the detectors over it:
//
//   - level_shift: a lasting change in requests or bytes out, found on the
//     hourly series after removing the daily profile, and attributed to the
//     dimension values whose rate changed (seed 01: "NetworkOut doubled").
//   - comparison: the same attribution between two windows (--compare).
//   - client_timeout: request times piling up at one value on aborted or
//     upstream-less lines, the knee of seed 03.
//   - abort_accounting: lines that under-report the upstream's work.
//   - repeated_fetch, crawler, hotlink, error_burst, latency_burst.
//
// Findings are ranked by impact (the share of traffic, bytes or worker time
// involved, weighted by kind) and rendered as text or JSON; package
// htmlreport draws the charts.
package findings

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Finding is one thing the log says, with its evidence. The JSON shape is
// the one DESIGN.md promises for `headroom logs analyze --json`.
type Finding struct {
	Kind     string `json:"kind"`
	Title    string `json:"title"`
	Severity string `json:"severity"` // critical, warning or info
	Window   Window `json:"window"`
	// Contributors are the dimension values that explain the finding; Share
	// is the fraction of the finding's measure (the change, the aborted
	// lines, the bytes out) the value accounts for.
	Contributors []Contributor `json:"contributors"`
	Evidence     []string      `json:"evidence"`
	Action       string        `json:"action"`
	// Impact is the ranking score: the share of traffic, bytes or worker
	// time involved, weighted by how much the kind matters.
	Impact float64 `json:"impact"`

	// ChangeAt is when a level shift began (level_shift only).
	ChangeAt *time.Time `json:"change_at,omitempty"`
	// KneeSeconds is the request time requests pile up at (client_timeout).
	KneeSeconds float64 `json:"knee_seconds,omitempty"`
	// Metric is what a level shift or comparison measured: requests, bytes
	// or worker_time.
	Metric string `json:"metric,omitempty"`

	// basis is how many records the finding's measure was judged on (the
	// whole its shares are of); severity discounts findings on little
	// data. 0 means the whole log.
	basis int64
}

// Window is the time span a finding is about.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Contributor is one dimension value behind a finding.
type Contributor struct {
	Dimension string  `json:"dimension"`
	Value     string  `json:"value"`
	Share     float64 `json:"share"`
}

// Finding kinds.
const (
	KindLevelShift      = "level_shift"
	KindComparison      = "comparison"
	KindClientTimeout   = "client_timeout"
	KindAbortAccounting = "abort_accounting"
	KindRepeatedFetch   = "repeated_fetch"
	KindCrawler         = "crawler"
	KindHotlink         = "hotlink"
	KindErrorBurst      = "error_burst"
	KindLatencyBurst    = "latency_burst"
	KindRateLimited     = "rate_limited"
)

// kindWeight ranks kinds of equal impact: the comparison the user asked
// for comes first, a lasting shift is the headline; accounting gaps matter
// through the timeouts that cause them.
var kindWeight = map[string]float64{
	KindComparison:      1000,
	KindLevelShift:      2,
	KindClientTimeout:   1.5,
	KindErrorBurst:      1.2,
	KindRepeatedFetch:   1,
	KindHotlink:         1,
	KindLatencyBurst:    1,
	KindRateLimited:     1,
	KindCrawler:         0.8,
	KindAbortAccounting: 0.6,
}

// fullConfidence is the number of records a finding's measure must rest on
// before its severity is its impact's: below it, severity is discounted in
// proportion (issue 16: a 9-line file got a "critical" for 308 ms).
const fullConfidence = 100

// severityFor grades a finding on one scale for every kind: the size of
// the effect (impact, a share of traffic, bytes or worker time) times the
// confidence the amount of data behind it gives.
func severityFor(impact float64, basis int64) string {
	score := impact
	if basis > 0 && basis < fullConfidence {
		score *= float64(basis) / fullConfidence
	}
	switch {
	case score >= 0.3:
		return "critical"
	case score >= 0.1:
		return "warning"
	}
	return "info"
}

// rank orders findings most important first and fills in severities, for a
// log of records records.
func rank(fs []Finding, records int64) {
	for i := range fs {
		if fs[i].Severity == "" {
			basis := fs[i].basis
			if basis == 0 {
				basis = records
			}
			fs[i].Severity = severityFor(fs[i].Impact, basis)
		}
		if fs[i].Contributors == nil {
			fs[i].Contributors = []Contributor{}
		}
		if fs[i].Evidence == nil {
			fs[i].Evidence = []string{}
		}
	}
	sort.SliceStable(fs, func(i, j int) bool {
		si := fs[i].Impact * kindWeight[fs[i].Kind]
		sj := fs[j].Impact * kindWeight[fs[j].Kind]
		return si > sj
	})
}

// WriteText renders findings for a terminal, most important first, each with
// its window, contributors, evidence and action. loc is the zone times are
// shown in (the log's own when nil).
func WriteText(w io.Writer, fs []Finding, loc *time.Location) error {
	var b strings.Builder
	if len(fs) == 0 {
		b.WriteString("No findings: no lasting change, client timeout, accounting gap, repeated fetches,\ncrawler, hotlinking or burst stood out in this log.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "FINDINGS (%d, most important first)\n", len(fs))
	for i, f := range fs {
		fmt.Fprintf(&b, "\n%d. [%s] %s\n", i+1, f.Severity, f.Title)
		fmt.Fprintf(&b, "   kind:   %s\n", f.Kind)
		if !f.Window.Start.IsZero() {
			fmt.Fprintf(&b, "   window: %s – %s\n", fmtTime(f.Window.Start, loc), fmtTime(f.Window.End, loc))
		}
		if len(f.Contributors) > 0 {
			var parts []string
			for _, c := range f.Contributors {
				parts = append(parts, fmt.Sprintf("%s=%s (%s)", c.Dimension, quoteValue(c.Value), pct(c.Share)))
			}
			fmt.Fprintf(&b, "   who:    %s\n", strings.Join(parts, ", "))
		}
		for _, e := range f.Evidence {
			fmt.Fprintf(&b, "   - %s\n", e)
		}
		if f.Action != "" {
			fmt.Fprintf(&b, "   action: %s\n", f.Action)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtTime(t time.Time, loc *time.Location) string {
	if loc != nil {
		t = t.In(loc)
	}
	return t.Format("2006-01-02 15:04 MST")
}

func quoteValue(v string) string {
	if strings.ContainsAny(v, " \t,\"") {
		return fmt.Sprintf("%q", v)
	}
	return v
}

func pct(f float64) string {
	switch {
	case f >= 0.995 || f <= -0.995:
		return fmt.Sprintf("%.0f%%", 100*f)
	case f >= 0.1 || f <= -0.1:
		return fmt.Sprintf("%.0f%%", 100*f)
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

// human formats a count with thousands separators.
func human(n float64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprintf("%.0f", n)
	if n < 10 && n != float64(int64(n)) {
		s = fmt.Sprintf("%.1f", n)
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && !strings.Contains(s, ".") {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// humanBytes formats a byte count in binary units.
func humanBytes(n float64) string {
	const unit = 1024
	neg := n < 0
	if neg {
		n = -n
	}
	s := ""
	switch {
	case n < unit:
		s = fmt.Sprintf("%.0f B", n)
	default:
		exp, div := 0, float64(unit)
		for m := n / unit; m >= unit && exp < 5; m /= unit {
			div *= unit
			exp++
		}
		s = fmt.Sprintf("%.1f %ciB", n/div, "KMGTPE"[exp])
	}
	if neg {
		return "-" + s
	}
	return s
}

func seconds(s float64) string {
	switch {
	case s >= 3600:
		return fmt.Sprintf("%.1f h", s/3600)
	case s >= 120:
		return fmt.Sprintf("%.0f min", s/60)
	case s >= 100:
		return fmt.Sprintf("%.0f s", s)
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}
