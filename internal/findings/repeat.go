package findings

import (
	"fmt"
	"math"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// repeats finds clients fetching the same object again within the refetch
// window, with a table of recent (client, agent, object) fetches.
type repeats struct {
	window                time.Duration
	recent                []recentFetch
	repeatReq, repeatByte int64
	repeatWho             [3]*topK // user agent, client, path; by bytes
	sampleShift, maxShift uint     // repeat tracking samples 1 in 2^shift pairs
	tracked, clobbered    int64

	// The current record's slot, found by start before the record's values
	// are computed: the table is too big for the caches, and its load then
	// completes meanwhile. Only observe writes the table, so what start
	// read is what observe would read.
	slot *recentFetch
	fp   uint64
	old  recentFetch
}

func newRepeats(opt Options) *repeats {
	return &repeats{
		window:    opt.RefetchWindow,
		recent:    make([]recentFetch, opt.RefetchSlots),
		repeatWho: [3]*topK{newTopK(32), newTopK(32), newTopK(32)},
	}
}

// start looks up r's slot (see repeats.slot).
func (d *repeats) start(r *accesslog.Record) { d.slot, d.fp, d.old = d.repeatSlot(r) }

func (d *repeats) observe(rec *record) {
	if d.slot != nil && rec.b != nil {
		d.observeRepeat(rec.v, rec.b, rec.Record, rec.ns, d.slot, d.fp, d.old)
	}
	d.slot = nil
}

func (d *repeats) merge(other detector) {
	o := other.(*repeats)
	d.repeatReq += o.repeatReq
	d.repeatByte += o.repeatByte
	d.maxShift = max(d.maxShift, o.maxShift)
	for i := range d.repeatWho {
		d.repeatWho[i].Merge(o.repeatWho[i], mergeAB)
	}
}

// minRepeatBytes is the least refetched volume worth reporting.
const minRepeatBytes = 1 << 20

// repeatedFetch reports clients fetching the same object again within the
// refetch window: a cache header that went missing, or a client bug that
// fetches everything twice (the likeliest cause of seed 01's doubling with
// unchanged users and CPU).
func (d *repeats) find(a *analysis) ([]Finding, error) {
	c := a.c
	return one(d.repeatedFetch(c)), nil
}

func (d *repeats) repeatedFetch(c *Collector) *Finding {
	// A dashboard reloaded by its user refetches a few KiB: no cost worth
	// a finding, whatever its share of a quiet log.
	if d.repeatReq < 50 || c.records == 0 || d.repeatByte < minRepeatBytes {
		return nil
	}
	byteShare := float64(d.repeatByte) / math.Max(float64(c.bytes), 1)
	reqShare := float64(d.repeatReq) / float64(c.records)
	if byteShare < 0.02 && reqShare < 0.05 {
		return nil
	}
	dims := [3]Dimension{DimUserAgent, DimClient, DimPath}
	var contributors []Contributor
	var ev []string
	ev = append(ev, fmt.Sprintf("%s repeat fetches (%s of requests) sent %s (%s of bytes out) for objects the same client had fetched within %s",
		human(float64(d.repeatReq)), pct(reqShare), humanBytes(float64(d.repeatByte)), pct(byteShare), fmtSpan(c.opt.RefetchWindow)))
	if d.maxShift > 0 {
		ev = append(ev, fmt.Sprintf("estimated from a 1-in-%d sample of (client, object) pairs: the log has more distinct fetches per %s than the table tracks", 1<<d.maxShift, fmtSpan(c.opt.RefetchWindow)))
	}
	lead := ""
	for i, t := range d.repeatWho {
		for j, e := range t.Sorted() {
			share := float64(e.W-e.Err) / math.Max(float64(d.repeatByte), 1)
			if j == 3 || share < 0.1 {
				break
			}
			if i == 0 && j == 0 {
				lead = e.Key
			}
			contributors = append(contributors, Contributor{Dimension: dims[i].String(), Value: e.Key, Share: round3(share)})
			ev = append(ev, fmt.Sprintf("%s %s: %s repeats, %s (%s of repeated bytes)", dims[i].label(), quoteValue(e.Key), human(float64(e.V.A)), humanBytes(float64(e.W-e.Err)), pct(share)))
		}
	}
	title := fmt.Sprintf("Repeated fetches: %s of bytes out are clients fetching the same object again within %s", pct(byteShare), fmtSpan(c.opt.RefetchWindow))
	if lead != "" {
		title += fmt.Sprintf(", led by user agent %q", lead)
	}
	f := &Finding{
		Kind:         KindRepeatedFetch,
		Title:        title,
		Contributors: contributors,
		Evidence:     ev,
		Action:       "Check the caching headers (Cache-Control max-age or immutable, ETag/Last-Modified) on those paths, and the leading client's cache: a client that refetches what it just downloaded pays twice, and so do you. A CDN in front absorbs what the clients will not fix.",
		Impact:       round3(byteShare),
	}
	// Window: where the bulk of the repeated bytes happened.
	bs := c.series()
	var acc float64
	start, end := -1, -1
	for i, b := range bs {
		if b == nil || b.repBytes == 0 {
			continue
		}
		acc += float64(b.repBytes)
		if start < 0 && acc >= 0.01*float64(d.repeatByte) {
			start = i
		}
		if acc <= 0.99*float64(d.repeatByte) || end < 0 {
			end = i
		}
	}
	if start >= 0 {
		f.Window = Window{Start: c.bucketTime(start), End: c.bucketTime(end + 1)}
	}
	return f
}

// recentFetch is one slot of the repeated-fetch table.
type recentFetch struct {
	fp uint64
	at int64 // unix ns
}

// repeatSlot returns the slot of the repeated-fetch table r's (client,
// object) pair maps to, the pair's fingerprint and the slot's content, or a
// nil slot when r is no fetch the table tracks.
func (d *repeats) repeatSlot(r *accesslog.Record) (*recentFetch, uint64, recentFetch) {
	if r.Method != "GET" || (r.Status != 200 && r.Status != 206) || r.BytesSent <= 0 {
		return nil, 0, recentFetch{}
	}
	h := hashString(hashString(hashString(0x9e3779b97f4a7c15, r.Client), r.UserAgent), r.Path)
	// Busy sites fetch more distinct objects per window than the table
	// holds: then only a 1-in-2^shift sample of (client, object) pairs is
	// tracked, chosen by hash so a pair is always in or always out, and
	// each repeat found counts 2^shift times.
	if h>>(64-16)&(1<<d.sampleShift-1) != 0 {
		return nil, 0, recentFetch{}
	}
	fp := h | 1 // 0 marks an empty slot
	slot := &d.recent[fp&uint64(len(d.recent)-1)]
	return slot, fp, *slot
}

// observeRepeat counts r, a fetch whose pair has fingerprint fp, against
// the table's slot (whose content was old when repeatSlot read it).
func (d *repeats) observeRepeat(v *values, b *bucket, r *accesslog.Record, ns int64, slot *recentFetch, fp uint64, old recentFetch) {
	window := int64(d.window)
	if old.fp == fp {
		gap := ns - old.at
		if gap < 0 {
			gap = -gap
		}
		if gap <= window {
			scale := int64(1) << d.sampleShift
			d.repeatReq += scale
			d.repeatByte += r.BytesSent * scale
			b.repReq += scale
			b.repBytes += r.BytesSent * scale
			for i, dim := range []Dimension{DimUserAgent, DimClient, DimPath} {
				v.count(d.repeatWho[i], dim, r.BytesSent*scale, scale, 0)
			}
		}
	} else if old.fp != 0 && ns-old.at < window && old.at-ns < window {
		d.clobbered++ // a pair still inside its window was forgotten
	}
	slot.fp, slot.at = fp, ns
	d.tracked++
	if d.tracked == int64(len(d.recent)) { // judge once per table's worth of inserts
		// More than 10% forgotten: sample less, by as many halvings as it
		// takes (each roughly halves the losses), so a busy log is not half
		// read before the table copes.
		for d.clobbered*10 > d.tracked && d.sampleShift < 12 {
			d.sampleShift++
			d.clobbered /= 2
		}
		d.maxShift = max(d.maxShift, d.sampleShift)
		d.tracked, d.clobbered = 0, 0
	}
}
