package findings

import "github.com/headroom-dev/headroom/internal/accesslog"

// A detector looks for one kind of finding. The Collector runs every
// detector as a consumer of its one pass over the log: each observes every
// record with the record's dimension values computed once for all of them
// (and the record's time bucket, when it is charted), merges with the same
// detector of another worker's Collector, and at the end says what it found.
// Detectors that read only the timeline (level shifts, bursts, rate
// limiting, --compare) embed timelineOnly.
type detector interface {
	observe(rec *record)
	// merge folds other, the same detector of another Collector, in.
	merge(other detector)
	// find returns the findings (none: nil); an error only for a user
	// request the log cannot answer (a --compare window outside it).
	find(a *analysis) ([]Finding, error)
}

// record is one record of the pass as the detectors see it. Its strings
// alias a reused buffer: a detector copies what it keeps.
type record struct {
	*accesslog.Record
	v  *values
	b  *bucket // the record's time bucket; nil when it is not charted
	ns int64   // r.Time in unix nanoseconds, when b is set
}

// analysis is what the detectors' find methods share: the collector, the
// options, and what one detector leaves for those after it.
type analysis struct {
	c    *Collector
	opt  AnalyzeOptions
	knee float64 // the client-timeout knee in seconds (timeouts), 0 when none
}

// timelineOnly is embedded by detectors whose state is the Collector's
// timeline: they observe and merge nothing of their own.
type timelineOnly struct{}

func (timelineOnly) observe(*record) {}
func (timelineOnly) merge(detector)  {}

// Compile-time checks: every detector satisfies the interface.
var (
	_ detector = comparison{}
	_ detector = levelShifts{}
	_ detector = (*latencyShifts)(nil)
	_ detector = (*timeouts)(nil)
	_ detector = (*accounting)(nil)
	_ detector = (*repeats)(nil)
	_ detector = (*crawlers)(nil)
	_ detector = (*hotlinks)(nil)
	_ detector = errorBursts{}
	_ detector = rateLimits{}
	_ detector = latencyBursts{}
)

func one(f *Finding) []Finding {
	if f == nil {
		return nil
	}
	return []Finding{*f}
}
