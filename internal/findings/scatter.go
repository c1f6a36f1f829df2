package findings

import (
	"math"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// The scatter of client-facing against upstream time in the HTML report:
// a uniform sample (reservoir) of the charted records that have a time.

// Point is one sampled request for the scatter of client-facing against
// upstream time.
type Point struct {
	Request  float64 // seconds
	Upstream float64 // seconds; meaningful when HasUpstream
	// HasUpstream is false when the log had no upstream time for the line.
	HasUpstream bool
	Status      int
}

func (c *Collector) observeSample(r *accesslog.Record) {
	if r.RequestTime <= 0 && !r.HasUpstreamTime {
		return
	}
	p := Point{Request: r.RequestTime.Seconds(), Upstream: r.UpstreamTime.Seconds(), HasUpstream: r.HasUpstreamTime, Status: r.Status}
	c.seen++
	if len(c.sample) < c.opt.Samples {
		c.sample = append(c.sample, p)
		return
	}
	if j := c.rng.Int64N(c.seen); j < int64(len(c.sample)) {
		c.sample[j] = p
	}
}

// mergeSample keeps a uniform sample of the union: each side contributes in
// proportion to how many points it saw (each reservoir is already uniform,
// so a prefix of a shuffled one is too).
func (c *Collector) mergeSample(o *Collector) {
	total := c.seen + o.seen
	if total == 0 {
		return
	}
	n := min(c.opt.Samples, len(c.sample)+len(o.sample))
	fromC := int(math.Round(float64(n) * float64(c.seen) / float64(total)))
	fromC = min(fromC, len(c.sample))
	fromO := min(n-fromC, len(o.sample))
	c.rng.Shuffle(len(c.sample), func(i, j int) { c.sample[i], c.sample[j] = c.sample[j], c.sample[i] })
	c.rng.Shuffle(len(o.sample), func(i, j int) { o.sample[i], o.sample[j] = o.sample[j], o.sample[i] })
	out := make([]Point, 0, fromC+fromO)
	out = append(out, c.sample[:fromC]...)
	out = append(out, o.sample[:fromO]...)
	c.sample = out
	c.seen = total
}
