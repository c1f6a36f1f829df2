package findings

import (
	"fmt"
	"math"
	"sort"

	"github.com/headroom-dev/headroom/internal/dims"
)

// crawlers finds automated agents by their share of requests and bytes.
type crawlers struct {
	botReq, botBytes int64
	bots             *topK // UA by bytes, A requests
	botCache         botCache
	scratch          []byte
}

func newCrawlers() *crawlers { return &crawlers{bots: newTopK(32)} }

func (d *crawlers) observe(rec *record) {
	// Agents repeat from line to line: remember the verdicts (bounded).
	// The user agent's value is the agent itself (truncated) unless it has
	// none, and an agent that is empty or "-" is no bot.
	r, v := rec.Record, rec.v
	if r.UserAgent == "" || r.UserAgent == "-" {
		return
	}
	ua, _ := v.value(DimUserAgent)
	h := v.valHash[DimUserAgent]
	bot, ok, i := d.botCache.lookup(ua, h)
	if !ok {
		bot, d.scratch = dims.Automated(r.UserAgent, d.scratch)
		d.botCache.store(v.interned(DimUserAgent), h, bot, i)
	}
	if bot {
		d.botReq++
		d.botBytes += r.BytesSent
		v.count(d.bots, DimUserAgent, r.BytesSent, 1, 0)
	}
}

func (d *crawlers) merge(other detector) {
	o := other.(*crawlers)
	d.botReq += o.botReq
	d.botBytes += o.botBytes
	d.bots.Merge(o.bots, mergeAB)
}

// crawler reports automated agents by their share of requests and bytes.
func (d *crawlers) find(a *analysis) ([]Finding, error) {
	return one(d.crawler(a.c)), nil
}

func (d *crawlers) crawler(c *Collector) *Finding {
	if c.records < 50 || d.botReq == 0 {
		return nil
	}
	reqShare := float64(d.botReq) / float64(c.records)
	byteShare := float64(d.botBytes) / math.Max(float64(c.bytes), 1)
	if reqShare < 0.05 && byteShare < 0.05 {
		return nil
	}
	var contributors []Contributor
	ev := []string{fmt.Sprintf("automated user agents (bot, crawler, spider, curl, python-requests, Go-http-client, …) sent %s requests (%s) and received %s (%s of bytes out)",
		human(float64(d.botReq)), pct(reqShare), humanBytes(float64(d.botBytes)), pct(byteShare))}
	lead := ""
	entries := d.bots.Sorted()
	if c.bytes == 0 {
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].V.A > entries[j].V.A })
	}
	for i, e := range entries {
		share := float64(e.W-e.Err) / math.Max(float64(c.bytes), 1)
		if c.bytes == 0 {
			share = float64(e.V.A) / float64(c.records)
		}
		if i == 5 || share < 0.01 {
			break
		}
		if i == 0 {
			lead = e.Key
		}
		contributors = append(contributors, Contributor{Dimension: DimUserAgent.String(), Value: e.Key, Share: round3(share)})
		ev = append(ev, fmt.Sprintf("%q: %s requests, %s (%s of bytes out)", e.Key, human(float64(e.V.A)), humanBytes(float64(e.W-e.Err)), pct(share)))
	}
	title := fmt.Sprintf("Automated agents: %s of requests and %s of bytes out", pct(reqShare), pct(byteShare))
	if lead != "" {
		title += fmt.Sprintf(", led by %q", lead)
	}
	return &Finding{
		Kind:         KindCrawler,
		Title:        title,
		Window:       c.logWindow(),
		Contributors: contributors,
		Evidence:     ev,
		Action:       "Decide which of these you want: slow well-behaved crawlers with robots.txt (Crawl-delay, Disallow on heavy paths); rate-limit or block the rest by user agent; scripts (curl, python-requests) are often integrations or monitoring: find their owners by key or address.",
		Impact:       round3(math.Max(reqShare, byteShare)),
	}
}

// botCache remembers, per distinct user agent (bounded: forgotten when
// full), whether it is automated. Keyed like the interner.
type botCache struct {
	h   []uint64
	ua  []string
	bot []bool
	n   int
}

const botCacheMax = 4096

func (bc *botCache) lookup(ua []byte, h uint64) (bot, ok bool, i int) {
	if bc.h == nil {
		bc.h, bc.ua, bc.bot = make([]uint64, 2*botCacheMax), make([]string, 2*botCacheMax), make([]bool, 2*botCacheMax)
	}
	mask := uint64(len(bc.h) - 1)
	i = int(h & mask)
	for ; bc.ua[i] != ""; i = (i + 1) & int(mask) {
		if bc.h[i] == h && bc.ua[i] == string(ua) {
			return bc.bot[i], true, i
		}
	}
	return false, false, i
}

// store records the verdict for ua (not empty), whose lookup missed at i.
func (bc *botCache) store(ua string, h uint64, bot bool, i int) {
	if bc.n >= botCacheMax {
		clear(bc.h)
		clear(bc.ua)
		clear(bc.bot)
		bc.n = 0
		mask := len(bc.h) - 1
		for i = int(h) & mask; bc.ua[i] != ""; i = (i + 1) & mask {
		}
	}
	bc.h[i], bc.ua[i], bc.bot[i] = h, ua, bot
	bc.n++
}
