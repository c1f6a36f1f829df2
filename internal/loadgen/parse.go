package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/weburl"
)

// ParseRate parses an arrival rate: "500/s", "500" (per second), "30000/m",
// "2/ms", "1/1.5s" (one request every 1.5 seconds). It returns requests per
// second.
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	num, per, found := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("rate %q: want a positive number of requests, like 500/s or 30000/m", s)
	}
	if !found {
		return n, nil
	}
	per = strings.TrimSpace(per)
	if per != "" && (per[0] < '0' || per[0] > '9') && per[0] != '.' {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("rate %q: unit %q is not a duration: use /s, /m, /ms or /1.5s", s, per)
	}
	return n / d.Seconds(), nil
}

// Stage is one step of a stepped load: Target held for Duration. Target is
// an arrival rate (requests per second) in the open model and a number of
// virtual users in the closed model.
type Stage struct {
	Duration time.Duration
	Target   float64
}

// ParseStages parses "30s:100,60s:1000" (or "30s:100/s"): each stage holds
// its rate for its duration. Unlike k6's ramps, a stage is a step, so every
// stage measures the server at one known rate, which is what the capacity
// summary needs.
func ParseStages(s string) ([]Stage, error) {
	var out []Stage
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ds, ts, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("stage %d %q: want DURATION:TARGET, like 30s:100", i+1, part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(ds))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("stage %d %q: duration %q: want a positive duration like 30s", i+1, part, ds)
		}
		t, err := ParseRate(ts)
		if err != nil {
			return nil, fmt.Errorf("stage %d %q: %w", i+1, part, err)
		}
		out = append(out, Stage{Duration: d, Target: t})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("stages %q: no stage given; want e.g. 30s:100,60s:1000", s)
	}
	return out, nil
}

// ParseByteRate parses a link capacity into bytes per second. Bits:
// "100Mbit", "100Mbit/s", "1Gbps", "800kbit"; bytes: "10MB/s", "10MiB/s",
// "500KB"; a bare number is bytes per second. Prefixes are decimal except
// the binary KiB, MiB, GiB.
func ParseByteRate(s string) (float64, error) {
	orig := s
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "/s"), "ps")
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) {
		return 0, fmt.Errorf("link capacity %q: want a positive amount like 100Mbit or 10MB/s", orig)
	}
	unit := strings.TrimSpace(s[i:])
	mult := 1.0
	if unit == "" {
		return n, nil
	}
	// The last letters say bits or bytes.
	var prefix string
	switch {
	case strings.HasSuffix(unit, "bit"):
		prefix, mult = strings.TrimSuffix(unit, "bit"), 1.0/8
	case strings.HasSuffix(unit, "b") && len(unit) > 1:
		prefix, mult = strings.TrimSuffix(unit, "b"), 1.0/8
	case strings.HasSuffix(unit, "B"):
		prefix = strings.TrimSuffix(unit, "B")
	default:
		return 0, fmt.Errorf("link capacity %q: unknown unit %q: use bit, kbit, Mbit, Gbit, B, KB, MB, GB or KiB, MiB, GiB", orig, unit)
	}
	switch prefix {
	case "":
	case "k", "K":
		mult *= 1e3
	case "M", "m":
		mult *= 1e6
	case "G", "g":
		mult *= 1e9
	case "T", "t":
		mult *= 1e12
	case "Ki":
		mult *= 1 << 10
	case "Mi":
		mult *= 1 << 20
	case "Gi":
		mult *= 1 << 30
	default:
		return 0, fmt.Errorf("link capacity %q: unknown prefix %q: use k, M, G or Ki, Mi, Gi", orig, prefix)
	}
	return n * mult, nil
}

// Threshold is a pass/fail condition on the result: Metric Op Value.
type Threshold struct {
	// Source is the text the user wrote, for reports.
	Source string
	// Metric is one of p50 p90 p95 p99 max (corrected latency, seconds),
	// errors and dropped (fractions of requests), rps.
	Metric string
	Op     string // <, <=, >, >=
	Value  float64
}

var thresholdMetrics = map[string]string{
	"p50": "duration", "p90": "duration", "p95": "duration", "p99": "duration", "max": "duration",
	"errors": "fraction", "dropped": "fraction", "rps": "number",
}

// ParseThreshold parses 'p95<500ms', 'errors<1%', 'errors<0.01', 'rps>100',
// 'dropped<=0.5%'.
func ParseThreshold(s string) (Threshold, error) {
	src := strings.TrimSpace(s)
	i := strings.IndexAny(src, "<>")
	if i <= 0 {
		return Threshold{}, fmt.Errorf("threshold %q: want METRIC<VALUE or METRIC>VALUE, like p95<500ms, errors<1%%, rps>100", s)
	}
	metric := strings.ToLower(strings.TrimSpace(src[:i]))
	op := src[i : i+1]
	rest := src[i+1:]
	if strings.HasPrefix(rest, "=") {
		op += "="
		rest = rest[1:]
	}
	rest = strings.TrimSpace(rest)
	kind, ok := thresholdMetrics[metric]
	if !ok {
		return Threshold{}, fmt.Errorf("threshold %q: unknown metric %q: use p50, p90, p95, p99, max, errors, dropped or rps", s, metric)
	}
	t := Threshold{Source: src, Metric: metric, Op: op}
	switch kind {
	case "duration":
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return Threshold{}, fmt.Errorf("threshold %q: %q is not a duration like 500ms", s, rest)
		}
		t.Value = d.Seconds()
	case "fraction":
		pct := strings.HasSuffix(rest, "%")
		v, err := strconv.ParseFloat(strings.TrimSuffix(rest, "%"), 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return Threshold{}, fmt.Errorf("threshold %q: %q is not a share like 1%% or 0.01", s, rest)
		}
		if pct {
			v /= 100
		}
		if v > 1 {
			return Threshold{}, fmt.Errorf("threshold %q: %q is more than 100%%", s, rest)
		}
		t.Value = v
	default:
		v, err := strconv.ParseFloat(strings.TrimSuffix(rest, "/s"), 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return Threshold{}, fmt.Errorf("threshold %q: %q is not a number of requests per second", s, rest)
		}
		t.Value = v
	}
	return t, nil
}

// Holds reports whether v satisfies the threshold.
func (t Threshold) Holds(v float64) bool {
	switch t.Op {
	case "<":
		return v < t.Value
	case "<=":
		return v <= t.Value
	case ">":
		return v > t.Value
	default:
		return v >= t.Value
	}
}

// Target is one request to send.
type Target struct {
	Method string
	URL    *url.URL
}

// ParseTarget parses "URL" or "METHOD URL".
func ParseTarget(s string) (Target, error) {
	f := strings.Fields(s)
	var t Target
	var raw string
	switch len(f) {
	case 1:
		t.Method, raw = "GET", f[0]
	case 2:
		t.Method, raw = strings.ToUpper(f[0]), f[1]
	default:
		return Target{}, fmt.Errorf("target %q: want URL or METHOD URL", s)
	}
	for _, c := range t.Method {
		if c < 'A' || c > 'Z' {
			return Target{}, fmt.Errorf("target %q: method %q is not a word like GET", s, t.Method)
		}
	}
	u, err := weburl.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("target: %w", err)
	}
	t.URL = u
	return t, nil
}

// ParseTargets reads a targets file: one "URL" or "METHOD URL" a line;
// blank lines and lines starting with # are skipped. Requests go to the
// targets in turn.
func ParseTargets(r io.Reader) ([]Target, error) {
	var out []Target
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, err := ParseTarget(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read targets: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no targets: the file has no URL lines")
	}
	return out, nil
}

// ParseHeader parses "Name: value".
func ParseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
		return "", "", fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	value = strings.TrimSpace(value)
	if strings.ContainsAny(value, "\r\n") {
		return "", "", fmt.Errorf("header %q: value has a line break", name)
	}
	return name, value, nil
}
