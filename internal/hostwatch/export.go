package hostwatch

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Export is a range of a recording as a table of metrics, one row per
// sample, for a spreadsheet (CSV) or a plot (JSON). Metric names are
// dotted paths: cpu.busy, mem.available, psi.io.full, net.eth0.rx_bytes_s,
// disk.nvme0n1.util, fs./var.used_pct; rates and shares are over the
// interval that ends at the row's time, so the first row of a range and
// the first after a reboot have none.
type Export struct {
	Metrics []string    `json:"metrics"`
	Rows    []ExportRow `json:"rows"`
}

// ExportRow is one sample's values; a metric the sample lacks is absent.
type ExportRow struct {
	Time   time.Time
	Values map[string]float64
}

// MarshalJSON writes {"time": …, "cpu.busy": 12.5, …}, so that jq and
// plotting tools read a row as an object.
func (r ExportRow) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	t, err := json.Marshal(r.Time)
	if err != nil {
		return nil, err
	}
	b.WriteString(`{"time":`)
	b.Write(t)
	for _, k := range sortedKeys(r.Values) {
		name, _ := json.Marshal(k)
		b.WriteByte(',')
		b.Write(name)
		b.WriteByte(':')
		b.WriteString(formatValue(r.Values[k]))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *ExportRow) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	raw, ok := m["time"]
	if !ok {
		return errors.New("export row without a time")
	}
	if err := json.Unmarshal(raw, &r.Time); err != nil {
		return fmt.Errorf("export row time: %w", err)
	}
	delete(m, "time")
	r.Values = make(map[string]float64, len(m))
	for k, v := range m {
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return fmt.Errorf("export row %s: %w", k, err)
		}
		r.Values[k] = f
	}
	return nil
}

// metricRank orders the families in a table: host-wide first, then per
// device, the way the snapshot reads.
var metricRank = map[string]int{"cpu": 0, "load": 1, "mem": 2, "swap": 3, "psi": 4, "procs": 5, "net": 6, "disk": 7, "fs": 8}

// BuildExport turns samples into rows of the metrics matching any of the
// patterns ('*' matches any run of characters; none means all). A pattern
// that matches nothing is an error naming what there is, so a typo does
// not export an empty column silently.
func BuildExport(samples []Sample, patterns []string) (*Export, error) {
	var res []*regexp.Regexp
	var names []string
	for _, p := range patterns {
		for _, q := range strings.Split(p, ",") {
			if q = strings.TrimSpace(q); q != "" {
				res = append(res, globRegexp(q))
				names = append(names, q)
			}
		}
	}
	ex := &Export{Metrics: []string{}, Rows: []ExportRow{}}
	seen := map[string]bool{}
	matched := make([]bool, len(res))
	all := map[string]bool{}
	for i, s := range samples {
		var prev *Sample
		if i > 0 {
			prev = &samples[i-1]
		}
		vals := metricsOf(prev, s)
		// Milliseconds: what a spreadsheet reads, and finer than any interval.
		row := ExportRow{Time: s.Time.Round(time.Millisecond), Values: make(map[string]float64, len(vals))}
		for k, v := range vals {
			all[k] = true
			keep := len(res) == 0
			for j, re := range res {
				if re.MatchString(k) {
					keep, matched[j] = true, true
				}
			}
			if !keep {
				continue
			}
			row.Values[k] = v
			if !seen[k] {
				seen[k] = true
				ex.Metrics = append(ex.Metrics, k)
			}
		}
		ex.Rows = append(ex.Rows, row)
	}
	for j, ok := range matched {
		if !ok && len(samples) > 0 {
			return nil, fmt.Errorf("--metric %s matches none of the recorded metrics: %s", names[j], strings.Join(families(all), ", "))
		}
	}
	sort.Slice(ex.Metrics, func(i, j int) bool { return metricLess(ex.Metrics[i], ex.Metrics[j]) })
	return ex, nil
}

func metricLess(a, b string) bool {
	fa, fb := strings.SplitN(a, ".", 2)[0], strings.SplitN(b, ".", 2)[0]
	if metricRank[fa] != metricRank[fb] {
		return metricRank[fa] < metricRank[fb]
	}
	return a < b
}

// families summarises metric names for an error: each name with its
// device part starred (disk.*.util), once.
func families(all map[string]bool) []string {
	set := map[string]bool{}
	for k := range all {
		parts := strings.Split(k, ".")
		if len(parts) >= 3 && (parts[0] == "disk" || parts[0] == "fs" || parts[0] == "net") {
			k = parts[0] + ".*." + parts[len(parts)-1]
		}
		set[k] = true
	}
	out := sortedKeys(set)
	sort.SliceStable(out, func(i, j int) bool { return metricLess(out[i], out[j]) })
	return out
}

func globRegexp(p string) *regexp.Regexp {
	parts := strings.Split(p, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// metricsOf is one sample's metrics, with rates from prev when it is of
// the same boot.
func metricsOf(prev *Sample, s Sample) map[string]float64 {
	m := map[string]float64{}
	put := func(k string, v float64) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			m[k] = math.Round(v*1000) / 1000
		}
	}
	put("load.1", s.Load[0])
	put("load.5", s.Load[1])
	put("load.15", s.Load[2])
	if s.Mem.Total > 0 {
		put("mem.total", float64(s.Mem.Total))
		put("mem.available", float64(s.Mem.Available))
		put("mem.used", float64(s.Mem.Used()))
		put("mem.buff_cache", float64(s.Mem.Buffers+s.Mem.Cached))
		put("swap.total", float64(s.Mem.SwapTotal))
		put("swap.used", float64(s.Mem.SwapTotal-min(s.Mem.SwapFree, s.Mem.SwapTotal)))
	}
	if s.ProcCount > 0 {
		put("procs.count", float64(s.ProcCount))
	}
	for _, f := range s.Filesystems {
		p := "fs." + f.Mount + "."
		put(p+"size", float64(f.Size))
		put(p+"used", float64(f.Used()))
		put(p+"avail", float64(f.Avail))
		put(p+"used_pct", f.UsedPct())
		if f.Inodes > 0 {
			put(p+"inodes_used_pct", f.InodesUsedPct())
			put(p+"inodes_free", float64(f.IFree))
		}
	}
	if prev == nil {
		return m
	}
	r, ok := RatesBetween(*prev, s)
	if !ok {
		return m
	}
	put("cpu.busy", r.Busy)
	put("cpu.user", r.User)
	put("cpu.system", r.System)
	put("cpu.iowait", r.Iowait)
	put("cpu.steal", r.Steal)
	if r.HasPSI {
		put("psi.cpu.some", r.CPUSome)
		put("psi.memory.some", r.MemSome)
		put("psi.memory.full", r.MemFull)
		put("psi.io.some", r.IOSome)
		put("psi.io.full", r.IOFull)
	}
	put("net.rx_bytes_s", r.RxBytes)
	put("net.tx_bytes_s", r.TxBytes)
	put("net.rx_packets_s", r.RxPackets)
	put("net.tx_packets_s", r.TxPackets)
	put("net.drops_s", r.Drops)
	for name, rx := range r.PerIf {
		put("net."+name+".rx_bytes_s", rx)
	}
	for _, d := range r.Disks {
		p := "disk." + d.Name + "."
		put(p+"reads_s", d.ReadsPS)
		put(p+"writes_s", d.WritesPS)
		put(p+"read_bytes_s", d.ReadBps)
		put(p+"write_bytes_s", d.WriteBps)
		put(p+"await_ms", d.AwaitMs)
		put(p+"util", d.Util)
		put(p+"queue", d.Queue)
	}
	return m
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// WriteCSV writes the export with a header row: time, then the metrics.
// Times are RFC 3339 in loc; an absent value is an empty cell.
func WriteCSV(w io.Writer, ex *Export, loc *time.Location) error {
	cw := csv.NewWriter(w)
	rec := append([]string{"time"}, ex.Metrics...)
	if err := cw.Write(rec); err != nil {
		return err
	}
	for _, r := range ex.Rows {
		rec = rec[:0]
		rec = append(rec, inLoc(r.Time, loc).Format(time.RFC3339Nano))
		for _, k := range ex.Metrics {
			if v, ok := r.Values[k]; ok {
				rec = append(rec, formatValue(v))
			} else {
				rec = append(rec, "")
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads what WriteCSV wrote, with the line of any bad cell.
func ReadCSV(r io.Reader) (*Export, error) {
	cr := csv.NewReader(r)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read export header: %w", err)
	}
	if len(head) == 0 || head[0] != "time" {
		return nil, errors.New("read export: the first column is not time")
	}
	ex := &Export{Metrics: append([]string{}, head[1:]...), Rows: []ExportRow{}}
	seen := map[string]bool{}
	for _, m := range ex.Metrics {
		if m == "" || seen[m] {
			return nil, fmt.Errorf("read export header: metric name %q empty or repeated", m)
		}
		seen[m] = true
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return ex, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read export: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, rec[0])
		if err != nil {
			return nil, fmt.Errorf("read export line %d: %w", line, err)
		}
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			// RFC 3339 has four-digit years: such a time could not be written back.
			return nil, fmt.Errorf("read export line %d: time %s out of range", line, rec[0])
		}
		row := ExportRow{Time: t, Values: map[string]float64{}}
		for i, cell := range rec[1:] {
			if cell == "" {
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			if err != nil {
				return nil, fmt.Errorf("read export line %d, %s: %w", line, ex.Metrics[i], err)
			}
			row.Values[ex.Metrics[i]] = v
		}
		ex.Rows = append(ex.Rows, row)
	}
}
