package findings

import (
	"fmt"
	"math"
	"slices"
)

// rateLimits finds the clients refused with 429.
type rateLimits struct{ timelineOnly }

func (rateLimits) find(a *analysis) ([]Finding, error) { return one(a.c.rateLimited()), nil }

// rateLimited reports the clients refused with 429: the guard (or nginx's
// limit_req) at work. Whether that is protection or a partner locked out is
// the operator's call; the finding names who, how often and since when.
func (c *Collector) rateLimited() *Finding {
	bs := c.series()
	var total int64
	from, to := -1, -1
	for i, b := range bs {
		if b == nil || b.limited == 0 {
			continue
		}
		total += b.limited
		if from < 0 {
			from = i
		}
		to = i + 1
	}
	if total < 10 || c.records == 0 {
		return nil
	}
	share := float64(total) / float64(c.records)
	dims := []Dimension{DimKey, DimClient, DimUserAgent, DimPath}
	contributors, _ := compositeShares(bs, from, to, func(b *bucket) *topK { return b.limWho }, dims, float64(total), 0.2)
	w := Window{Start: c.bucketTime(from), End: c.bucketTime(to)}
	ev := []string{fmt.Sprintf("%s requests (%s of all) got 429 Too Many Requests %s", human(float64(total)), pct(share), fmtWindow(w, c.loc))}
	for _, ct := range contributors {
		d := dims[slices.IndexFunc(dims, func(d Dimension) bool { return d.String() == ct.Dimension })]
		line := fmt.Sprintf("%s %s: %s of the refusals", d.label(), quoteValue(ct.Value), pct(ct.Share))
		if n := c.requestsOf(bs, d, ct.Value); n > 0 {
			refused := math.Round(ct.Share * float64(total))
			line += fmt.Sprintf(", %s of its %s requests", pct(math.Min(refused/float64(n), 1)), human(float64(n)))
		}
		ev = append(ev, line)
	}
	title := fmt.Sprintf("Rate limited: %s of requests refused with 429", pct(share))
	if len(contributors) > 0 {
		title += fmt.Sprintf(", mostly %s %s", contributors[0].Dimension, contributors[0].Value)
	}
	return &Finding{
		Kind:         KindRateLimited,
		Title:        title,
		Window:       w,
		Contributors: contributors,
		Evidence:     ev,
		Action:       "If the refused clients are abusive or runaway, this is the limit working: nothing to do. If they are customers or partners, raise their budget (an override in headroom.yaml) or ask them to honour Retry-After; a client that retries at once only adds load.",
		Impact:       round3(math.Min(share, 0.5)),
	}
}

// requestsOf sums the requests the per-bucket summaries hold for value v of
// dimension d: a lower bound when v is not among each bucket's heavy hitters.
func (c *Collector) requestsOf(bs []*bucket, d Dimension, v string) int64 {
	var n int64
	for _, b := range bs {
		if b == nil {
			continue
		}
		if e := b.byReq[d].Find(v); e != nil {
			n += e.W - e.Err
		}
	}
	return n
}
