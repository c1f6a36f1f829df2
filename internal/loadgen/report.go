package loadgen

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// JSONQuantiles are latency quantiles in seconds.
type JSONQuantiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func jq(q Quantiles) JSONQuantiles {
	return JSONQuantiles(q)
}

// JSONReport is the --json output. The first fields are the ones DESIGN.md
// names; other tools rely on them.
type JSONReport struct {
	Requests          int64         `json:"requests"`
	RPS               float64       `json:"rps"`
	Latency           JSONQuantiles `json:"latency"`
	BytesReceivedPerS float64       `json:"bytes_received_per_s"`
	Errors            int64         `json:"errors"`
	Verdict           string        `json:"verdict"`
	Reasons           []string      `json:"reasons"`
	// Failed counts requests that got no response at all (part of
	// Errors); NoResponse is true when that was every one of them.
	Failed     int64 `json:"failed"`
	NoResponse bool  `json:"no_response"`

	LatencyUncorrected JSONQuantiles    `json:"latency_uncorrected"`
	SendLag            JSONQuantiles    `json:"send_lag"`
	Model              string           `json:"model"`
	Rate               float64          `json:"rate,omitempty"`
	VUs                int              `json:"vus,omitempty"`
	DurationS          float64          `json:"duration_s"`
	Targets            []string         `json:"targets"`
	Protocol           string           `json:"protocol"`
	Scheduled          int64            `json:"scheduled"`
	Sent               int64            `json:"sent"`
	Dropped            int64            `json:"dropped"`
	BytesReceived      int64            `json:"bytes_received"`
	StatusCodes        map[string]int64 `json:"status_codes"`
	ErrorKinds         map[string]int64 `json:"error_kinds"`
	Valid              bool             `json:"valid"`
	InvalidReasons     []string         `json:"invalid_reasons"`
	Stages             []JSONStage      `json:"stages,omitempty"`
	Capacity           *JSONCapacity    `json:"capacity,omitempty"`
	Thresholds         []JSONThreshold  `json:"thresholds"`
	Passed             bool             `json:"passed"`
	Generator          JSONGenerator    `json:"generator"`
}

// JSONStage is one stage's result.
type JSONStage struct {
	Target    float64       `json:"target"`
	DurationS float64       `json:"duration_s"`
	Sent      int64         `json:"sent"`
	Dropped   int64         `json:"dropped"`
	Requests  int64         `json:"requests"`
	Errors    int64         `json:"errors"`
	RPS       float64       `json:"rps"`
	Latency   JSONQuantiles `json:"latency"`
	Sustained bool          `json:"sustained"`
	Why       string        `json:"why,omitempty"`
}

// JSONCapacity is the capacity summary of a staged run.
type JSONCapacity struct {
	Found  bool    `json:"found"`
	Target float64 `json:"target"`
	RPS    float64 `json:"rps"`
	P95    float64 `json:"p95"`
	Note   string  `json:"note"`
}

// JSONThreshold is one checked threshold.
type JSONThreshold struct {
	Threshold string  `json:"threshold"`
	Value     float64 `json:"value"`
	Passed    bool    `json:"passed"`
}

// JSONGenerator is what the generator saw of itself (medians over the run).
type JSONGenerator struct {
	Iface              string   `json:"iface"`
	LinkCapacityBytesS float64  `json:"link_capacity_bytes_per_s,omitempty"`
	CPUCores           float64  `json:"cpu_cores"`
	CPUWaitCores       float64  `json:"cpu_wait_cores"`
	AvailableCores     float64  `json:"available_cores"`
	HostCPUBusy        float64  `json:"host_cpu_busy"`
	IfaceRxBytesPerS   float64  `json:"iface_rx_bytes_per_s"`
	IfaceTxBytesPerS   float64  `json:"iface_tx_bytes_per_s"`
	MonitorErrors      []string `json:"monitor_errors"`
}

// JSON returns the --json report of a result.
func (res *Result) JSON() JSONReport {
	j := JSONReport{
		Requests: res.Completed, RPS: res.RPS, Latency: jq(res.Latency),
		BytesReceivedPerS: res.BytesPerSec, Errors: res.Errors,
		Verdict: res.Verdict.Verdict, Reasons: nonNil(res.Verdict.Reasons),
		Failed: res.Failed, NoResponse: res.NoResponse,

		LatencyUncorrected: jq(res.LatencyUncorrected), SendLag: jq(res.SendLag),
		Model: res.Model, Rate: res.Rate, VUs: res.VUs, DurationS: res.Elapsed.Seconds(),
		Targets: res.Targets, Protocol: res.Protocol,
		Scheduled: res.Scheduled, Sent: res.Sent, Dropped: res.Dropped, BytesReceived: res.BytesReceived,
		StatusCodes: map[string]int64{}, ErrorKinds: res.ErrorKinds,
		Valid: res.Valid, InvalidReasons: nonNil(res.Invalid),
		Thresholds: []JSONThreshold{}, Passed: res.Passed,
	}
	for k, v := range res.Status {
		j.StatusCodes[strconv.Itoa(k)] = v
	}
	if j.ErrorKinds == nil {
		j.ErrorKinds = map[string]int64{}
	}
	if len(res.Stages) > 1 {
		for _, s := range res.Stages {
			j.Stages = append(j.Stages, JSONStage{Target: s.Target, DurationS: s.Duration.Seconds(), Sent: s.Sent,
				Dropped: s.Dropped, Requests: s.Completed, Errors: s.Errors, RPS: s.RPS, Latency: jq(s.Latency),
				Sustained: s.Sustained, Why: s.Why})
		}
	}
	if c := res.Capacity; c != nil {
		j.Capacity = &JSONCapacity{Found: c.Found, Target: c.Target, RPS: c.RPS, P95: c.P95, Note: c.Note}
	}
	for _, t := range res.Thresholds {
		j.Thresholds = append(j.Thresholds, JSONThreshold{Threshold: t.Threshold.Source, Value: t.Value, Passed: t.Passed})
	}
	g := res.generator()
	g.MonitorErrors = nonNil(res.MonitorErrors)
	j.Generator = g
	return j
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (res *Result) generator() JSONGenerator {
	use := usable(res.Samples)
	g := JSONGenerator{Iface: res.Iface, LinkCapacityBytesS: res.LinkCapacity}
	g.CPUCores = medianOf(use, func(s Sample) float64 { return s.ProcCores })
	g.CPUWaitCores = medianOf(use, func(s Sample) float64 { return s.WaitCores })
	g.AvailableCores = medianOf(use, func(s Sample) float64 { return s.AvailCores })
	g.HostCPUBusy = medianOf(use, func(s Sample) float64 { return s.HostBusy })
	g.IfaceRxBytesPerS = medianOf(use, func(s Sample) float64 { return s.NetRx })
	g.IfaceTxBytesPerS = medianOf(use, func(s Sample) float64 { return s.NetTx })
	return g
}

// WriteJSON writes the --json report.
func (res *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // thresholds read p95<500ms, not p95\u003c500ms
	return enc.Encode(res.JSON())
}

// WriteText writes the human summary.
func (res *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	load := fmt.Sprintf("%g/s", res.Rate)
	if res.Model == "closed" {
		load = fmt.Sprintf("%d virtual users", res.VUs)
	}
	if len(res.Stages) > 1 {
		load = fmt.Sprintf("%d stages", len(res.Stages))
	}
	fmt.Fprintf(&b, "headroom load: %s model, %s for %s, %s\n", res.Model, load, res.Elapsed.Round(100*time.Millisecond), res.Protocol)
	for _, t := range res.Targets {
		fmt.Fprintf(&b, "  %s\n", t)
	}
	b.WriteString("\n")
	if res.NoResponse {
		fmt.Fprintf(&b, "NO RESPONSE: not one of the %d requests got an answer (%s).\n", res.Completed, FailureKinds(res.ErrorKinds))
		b.WriteString("  Is the server up, listening at that address, and reachable from here?\n\n")
	}
	if !res.Valid {
		fmt.Fprintf(&b, "NOT VALID for the asked rate: the generator did not keep its schedule, so the server never saw the asked load.\n")
		for _, r := range res.Invalid {
			fmt.Fprintf(&b, "  - %s\n", r)
		}
		b.WriteString("\n")
	}
	if res.Failed > 0 {
		// "100 completed" read as a success when all 100 were refused.
		fmt.Fprintf(&b, "requests     %d completed: %d answered, %d with no response; %.1f/s answered", res.Completed, res.Completed-res.Failed, res.Failed, res.RPS)
	} else {
		fmt.Fprintf(&b, "requests     %d completed, %.1f/s", res.Completed, res.RPS)
	}
	if res.Model == "open" {
		fmt.Fprintf(&b, " (%d scheduled, %d sent, %d dropped)", res.Scheduled, res.Sent, res.Dropped)
	}
	b.WriteString("\n")
	errShare := 0.0
	if res.Completed > 0 {
		errShare = float64(res.Errors) / float64(res.Completed)
	}
	fmt.Fprintf(&b, "errors       %d (%.2f%%)\n", res.Errors, 100*errShare)
	fmt.Fprintf(&b, "received     %s (%d bytes)\n", fmtBytes(res.BytesPerSec), res.BytesReceived)
	fmt.Fprintf(&b, "\nlatency      %9s %9s %9s %9s %9s\n", "p50", "p90", "p95", "p99", "max")
	row := func(name string, q Quantiles) {
		fmt.Fprintf(&b, "%-12s %9s %9s %9s %9s %9s\n", name, fmtSeconds(q.P50), fmtSeconds(q.P90), fmtSeconds(q.P95), fmtSeconds(q.P99), fmtSeconds(q.Max))
	}
	if res.Model == "open" {
		row("corrected", res.Latency)
		row("uncorrected", res.LatencyUncorrected)
		row("send lag", res.SendLag)
		b.WriteString("  (corrected counts from each request's scheduled send time, so a stall is not hidden:\n")
		b.WriteString("   it is the server's time, uncorrected, plus the generator's own send lag)\n")
		if lag, corr := res.SendLag.P50, res.Latency.P50; lag >= 0.0001 && corr > 0 && lag >= lagDominant*corr {
			fmt.Fprintf(&b, "  warning: the generator's send lag is %.0f%% of the corrected p50 (%s of %s): the corrected\n", 100*lag/corr, fmtSeconds(lag), fmtSeconds(corr))
			fmt.Fprintf(&b, "  figures measure this machine's timer here; the server's own time is the uncorrected row\n")
		}
	} else {
		row("response", res.Latency)
	}
	b.WriteString("\nstatus      ")
	for i, k := range sortedKeys(res.Status) {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d: %d", k, res.Status[k])
	}
	if len(res.Status) == 0 {
		b.WriteString(" none")
	}
	b.WriteString("\n")
	if len(res.ErrorKinds) > 0 {
		b.WriteString("failures    ")
		kinds := make([]string, 0, len(res.ErrorKinds))
		for k := range res.ErrorKinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for i, k := range kinds {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s: %d", k, res.ErrorKinds[k])
		}
		b.WriteString("\n")
	}
	if len(res.Stages) > 1 {
		fmt.Fprintf(&b, "\nstage  %8s %9s %9s %8s %8s  %s\n", "target", "rps", "p95", "errors", "dropped", "sustained")
		for _, s := range res.Stages {
			ok := "yes"
			if !s.Sustained {
				ok = "no: " + s.Why
			}
			fmt.Fprintf(&b, "%5d  %8g %9.1f %9s %8d %8d  %s\n", s.Stage+1, s.Target, s.RPS, fmtSeconds(s.Latency.P95), s.Errors, s.Dropped, ok)
		}
		if res.Capacity != nil {
			fmt.Fprintf(&b, "capacity     %s\n", res.Capacity.Note)
		}
	}
	g := res.generator()
	fmt.Fprintf(&b, "\ngenerator    CPU %.2f of %g cores used, %.2f waited for; host CPU %.0f%% busy", g.CPUCores, g.AvailableCores, g.CPUWaitCores, 100*g.HostCPUBusy)
	if res.Iface != "" {
		fmt.Fprintf(&b, "; %s received %s", res.Iface, fmtBytes(g.IfaceRxBytesPerS))
	}
	b.WriteString("\n")
	if res.LinkCapacity > 0 {
		fmt.Fprintf(&b, "link         %s given\n", fmtBits(res.LinkCapacity))
	}
	fmt.Fprintf(&b, "\nverdict      %s\n", res.Verdict.Verdict)
	for _, r := range res.Verdict.Reasons {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	if len(res.Thresholds) > 0 {
		b.WriteString("\nthresholds\n")
		for _, t := range res.Thresholds {
			s := "pass"
			if !t.Passed {
				s = "FAIL"
			}
			fmt.Fprintf(&b, "  %-4s %s (%s)\n", s, t.Threshold.Source, fmtMetric(t.Threshold.Metric, t.Value))
		}
	}
	for _, e := range res.MonitorErrors {
		fmt.Fprintf(&b, "note: self-monitor could not read %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sortedKeys(m map[int]int64) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// csvHeader names the --out columns; rates are per second, times seconds.
var csvHeader = []string{"second", "stage", "target", "scheduled", "sent", "dropped", "completed", "errors",
	"in_flight", "rps", "bytes_received_per_s", "p50_s", "p95_s", "p99_s", "max_s", "uncorrected_p95_s",
	"send_lag_p99_s", "receive_share", "cpu_cores", "cpu_wait_cores", "available_cores", "host_cpu_busy",
	"iface_rx_bytes_per_s", "iface_tx_bytes_per_s"}

// WriteCSV writes the per-second samples.
func WriteCSV(w io.Writer, samples []Sample) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, s := range samples {
		rec := []string{f(s.At.Seconds()), strconv.Itoa(s.Stage + 1), f(s.Target), i(s.Scheduled), i(s.Sent), i(s.Dropped),
			i(s.Completed), i(s.Errors), i(s.InFlight), f(s.Rate()), f(s.Bytes()), f(s.P50), f(s.P95), f(s.P99), f(s.Max),
			f(s.RawP95), f(s.LagP99), f(s.ReceiveShare), f(s.ProcCores), f(s.WaitCores), f(s.AvailCores), f(s.HostBusy),
			f(s.NetRx), f(s.NetTx)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ProgressLine is the live one-line view: elapsed, rate, p95, errors,
// verdict so far.
func ProgressLine(p Progress) string {
	errShare := 0.0
	if p.Completed > 0 {
		errShare = float64(p.Errors) / float64(p.Completed)
	}
	total := ""
	if p.Total > 0 && p.Total < 24*time.Hour {
		total = "/" + p.Total.Round(time.Second).String()
	}
	return fmt.Sprintf("%s%s  %7.0f/s  p95 %-8s errors %.1f%%  dropped %d  in flight %d  verdict so far: %s",
		p.Elapsed.Round(time.Second), total, p.Last.Rate(), fmtSeconds(p.Last.P95), 100*errShare, p.Dropped, p.Last.InFlight, p.Verdict.Verdict)
}
