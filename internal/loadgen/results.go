package loadgen

import (
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// thresholdValue returns the run's value for a threshold's metric.
func thresholdValue(metric string, lat Quantiles, rps float64, completed, errors, scheduled, dropped int64) float64 {
	switch metric {
	case "p50":
		return lat.P50
	case "p90":
		return lat.P90
	case "p95":
		return lat.P95
	case "p99":
		return lat.P99
	case "max":
		return lat.Max
	case "errors":
		if completed == 0 {
			return 0
		}
		return float64(errors) / float64(completed)
	case "dropped":
		if scheduled == 0 {
			return 0
		}
		return float64(dropped) / float64(scheduled)
	case "rps":
		return rps
	}
	return 0
}

// checkThresholds decides Result.Passed. A run in which no request got a
// response fails unless thresholds are given and all hold, and then only
// an errors threshold can hold: the latency of a refused connection says
// nothing about a server.
func checkThresholds(ts []Threshold, res *Result) ([]ThresholdResult, bool) {
	ok := !res.NoResponse || len(ts) > 0
	var out []ThresholdResult
	for _, t := range ts {
		v := thresholdValue(t.Metric, res.Latency, res.RPS, res.Completed, res.Errors, res.Scheduled, res.Dropped)
		pass := t.Holds(v)
		// A run that sent nothing passes no threshold: an empty result
		// must not turn a CI check green.
		if res.Completed == 0 || res.NoResponse && t.Metric != "errors" {
			pass = false
		}
		ok = ok && pass
		out = append(out, ThresholdResult{Threshold: t, Value: v, Passed: pass})
	}
	return out, ok
}

// stageResults sums the samples of each stage. A request belongs to the
// second it completed in, so a stage's first second carries a little of the
// previous stage; at a second's resolution that is noise.
func stageResults(stages []Stage, samples []Sample, hists []*hdrhistogram.Histogram, ts []Threshold, open bool) []StageResult {
	out := make([]StageResult, len(stages))
	elapsed := make([]time.Duration, len(stages))
	scheduled := make([]int64, len(stages))
	// Rates come from the stage's own seconds: the drain after the last
	// stage says how fast the backlog cleared, not what the stage achieved.
	answered := make([]int64, len(stages))
	for i, st := range stages {
		out[i] = StageResult{Stage: i, Target: st.Target, Duration: st.Duration}
	}
	for _, s := range samples {
		r := &out[s.Stage]
		r.Sent += s.Sent
		r.Dropped += s.Dropped
		r.Completed += s.Completed
		r.Errors += s.Errors
		scheduled[s.Stage] += s.Scheduled
		if !s.Drain {
			answered[s.Stage] += s.Completed - s.Failed
			elapsed[s.Stage] += s.Interval
		}
	}
	for i := range out {
		r := &out[i]
		r.Latency = quantiles(hists[i])
		if secs := elapsed[i].Seconds(); secs > 0 {
			r.RPS = float64(answered[i]) / secs
		}
		if r.Completed == 0 {
			r.Why = "no request completed"
			continue
		}
		if len(ts) > 0 {
			r.Sustained = true
			for _, t := range ts {
				v := thresholdValue(t.Metric, r.Latency, r.RPS, r.Completed, r.Errors, scheduled[i], r.Dropped)
				if !t.Holds(v) {
					r.Sustained = false
					r.Why = fmt.Sprintf("%s failed (%s)", t.Source, fmtMetric(t.Metric, v))
					break
				}
			}
			continue
		}
		errShare := float64(r.Errors) / float64(r.Completed)
		var dropShare float64
		if scheduled[i] > 0 {
			dropShare = float64(r.Dropped) / float64(scheduled[i])
		}
		switch {
		case open && r.RPS < keptUp*r.Target:
			r.Why = fmt.Sprintf("answered %.0f/s of %.0f/s", r.RPS, r.Target)
		case dropShare > 0.01:
			r.Why = fmt.Sprintf("%.1f%% dropped", 100*dropShare)
		case errShare >= 0.01:
			r.Why = fmt.Sprintf("%.1f%% errors", 100*errShare)
		default:
			r.Sustained = true
		}
	}
	return out
}

func fmtMetric(metric string, v float64) string {
	switch metric {
	case "errors", "dropped":
		return fmt.Sprintf("%.2f%%", 100*v)
	case "rps":
		return fmt.Sprintf("%.1f/s", v)
	}
	return fmtSeconds(v)
}

// capacity is the highest stage sustained, provided every lower stage was
// sustained too: a server that fails at 200/s and passes at 400/s has not
// shown a capacity of 400/s.
func capacity(stages []StageResult, open bool) *Capacity {
	c := &Capacity{}
	unit := "/s"
	if !open {
		unit = " users"
	}
	best := -1
	for i, s := range stages {
		if !s.Sustained {
			break
		}
		if best < 0 || s.Target > stages[best].Target {
			best = i
		}
	}
	if best < 0 {
		c.Note = "no stage was sustained: start lower"
		return c
	}
	b := stages[best]
	c.Found, c.Target, c.RPS, c.P95 = true, b.Target, b.RPS, b.Latency.P95
	all := true
	for _, s := range stages {
		if !s.Sustained {
			all = false
		}
	}
	if all {
		c.Note = fmt.Sprintf("every stage was sustained, up to %g%s: add a higher stage to find the limit", b.Target, unit)
	} else {
		c.Note = fmt.Sprintf("highest load sustained: %g%s (%.0f/s, p95 %s)", b.Target, unit, b.RPS, fmtSeconds(b.Latency.P95))
	}
	return c
}
