package findings

import (
	"fmt"
	"math"
	"time"
)

// accounting finds lines whose logged times under-state the upstream's
// work: the client-facing time shorter than the upstream's, error lines
// that waited seconds with no upstream time, or no times at all.
type accounting struct {
	withUp  int64 // lines with an upstream time
	upTotal int64 // µs
	rtLines int64 // lines with a client-facing or upstream time
	// Lines whose client-facing time is shorter than the upstream's work.
	shortClient, shortClientGap int64
	gapWho                      *topK // "dim\x00value" weighted by the gap in µs
	// Lines with an upstream-less error that took long enough to have been
	// proxied: the seed's `404 4.668 - -`.
	missingUp, missingUpTime int64
	status499                int64
}

func newAccounting() *accounting { return &accounting{gapWho: newTopK(32)} }

func (d *accounting) observe(rec *record) {
	r := rec.Record
	rt, ut := r.RequestTime, r.UpstreamTime
	if rt > 0 || r.HasUpstreamTime {
		d.rtLines++
	}
	if r.HasUpstreamTime {
		d.withUp++
		d.upTotal += ut.Microseconds()
		if ut > rt+time.Millisecond {
			d.shortClient++
			d.shortClientGap += (ut - rt).Microseconds()
			rec.v.addComposite(d.gapWho, (ut - rt).Microseconds(), DimKey, DimUserAgent, DimClient, DimPath)
		}
	}
	if r.Status == 499 {
		d.status499++
	}
	if abortedLike(r) && !r.HasUpstreamTime {
		d.missingUp++
		d.missingUpTime += rt.Microseconds()
	}
}

func (d *accounting) merge(other detector) {
	o := other.(*accounting)
	d.withUp += o.withUp
	d.upTotal += o.upTotal
	d.rtLines += o.rtLines
	d.shortClient += o.shortClient
	d.shortClientGap += o.shortClientGap
	d.gapWho.Merge(o.gapWho, mergeAB)
	d.missingUp += o.missingUp
	d.missingUpTime += o.missingUpTime
	d.status499 += o.status499
}

// abortAccounting reports lines whose logged times under-state the
// upstream's work: the client-facing time is shorter than the upstream's
// (the client left, the upstream kept going), or an error line waited
// seconds yet has no upstream time (nginx logged when the client left).
func (d *accounting) find(a *analysis) ([]Finding, error) {
	c := a.c
	var out []Finding
	work := float64(d.upTotal) / 1e6
	action := "In nginx set proxy_ignore_client_abort on (the upstream finishes, and the log gets its real status and time), log $upstream_status and $upstream_response_time (headroom's log format does), and charge rate limits and budgets on upstream time, not $request_time."
	if d.shortClient > 0 && d.withUp > 0 {
		gap := float64(d.shortClientGap) / 1e6
		share := float64(d.shortClient) / float64(d.withUp)
		// Many lines, or a few that hide a real share of the work (a guard's
		// log with a handful of 30 s reports abandoned at 5 s).
		if (d.shortClient >= 10 && share >= 0.001) || (d.shortClient >= 3 && gap >= 0.05*work) {
			ev := []string{
				fmt.Sprintf("on these lines $request_time < $upstream_response_time; %s of status 499 in the log", human(float64(d.status499))),
				fmt.Sprintf("anything that charges the client-facing time under-counts by %s (%s of all upstream time)", seconds(gap), pct(gap/math.Max(work, 1e-9))),
			}
			who, lines := topShares(d.gapWho, []Dimension{DimKey, DimUserAgent, DimClient, DimPath}, float64(d.shortClientGap), 0.2)
			for _, l := range lines {
				ev = append(ev, "of the hidden worker time, "+l)
			}
			out = append(out, Finding{
				Kind:         KindAbortAccounting,
				Title:        fmt.Sprintf("%s lines (%s of the %s with an upstream time) ended for the client before the upstream finished: %s of worker time beyond their client-facing time", human(float64(d.shortClient)), pct(share), human(float64(d.withUp)), seconds(gap)),
				Contributors: who,
				Evidence:     ev,
				Window:       c.logWindow(),
				Action:       action,
				Impact:       round3(math.Min(gap/math.Max(work, 1e-9), 1)),
				basis:        d.withUp,
			})
		}
	}
	if d.missingUp >= 10 && d.withUp > 0 {
		t := float64(d.missingUpTime) / 1e6
		ev := []string{
			fmt.Sprintf("%s lines are 499 or an error after ≥ 1 s with upstream status and time '-', though %s other lines carry an upstream time", human(float64(d.missingUp)), human(float64(d.withUp))),
			fmt.Sprintf("their client-facing time adds to %s; the upstream's work on them is missing from the log", seconds(t)),
		}
		if knee := a.knee; knee > 0 {
			ev = append(ev, fmt.Sprintf("many sit at the client-timeout knee (%.2f s): see the client_timeout finding", knee))
		}
		out = append(out, Finding{
			Kind:     KindAbortAccounting,
			Title:    fmt.Sprintf("%s aborted lines have no upstream time: the worker time they cost is not in the log", human(float64(d.missingUp))),
			Window:   c.logWindow(),
			Evidence: ev,
			Action:   action,
			Impact:   round3(math.Min(t/math.Max(work+t, 1e-9), 1)),
			basis:    d.withUp + d.missingUp,
		})
	}
	if c.records >= 100 && d.rtLines == 0 {
		out = append(out, Finding{
			Kind:     KindAbortAccounting,
			Title:    "The log has no request or upstream times: worker time and client timeouts cannot be measured",
			Window:   c.logWindow(),
			Evidence: []string{fmt.Sprintf("none of %s lines has $request_time or $upstream_response_time", human(float64(c.records)))},
			Action:   "Add $request_time $upstream_status $upstream_response_time to the log_format (headroom nginx-config prints one), with proxy_ignore_client_abort on.",
			Impact:   0.01,
			Severity: "info",
		})
	}
	return out, nil
}
