package findings

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/dims"
)

// minRepeatBytes is the least refetched volume worth reporting.
const minRepeatBytes = 1 << 20

// repeatedFetch reports clients fetching the same object again within the
// refetch window: a cache header that went missing, or a client bug that
// fetches everything twice (the likeliest cause of seed 01's doubling with
// unchanged users and CPU).
func (c *Collector) repeatedFetch() *Finding {
	// A dashboard reloaded by its user refetches a few KiB: no cost worth
	// a finding, whatever its share of a quiet log.
	if c.repeatReq < 50 || c.records == 0 || c.repeatByte < minRepeatBytes {
		return nil
	}
	byteShare := float64(c.repeatByte) / math.Max(float64(c.bytes), 1)
	reqShare := float64(c.repeatReq) / float64(c.records)
	if byteShare < 0.02 && reqShare < 0.05 {
		return nil
	}
	dims := [3]Dimension{DimUserAgent, DimClient, DimPath}
	var contributors []Contributor
	var ev []string
	ev = append(ev, fmt.Sprintf("%s repeat fetches (%s of requests) sent %s (%s of bytes out) for objects the same client had fetched within %s",
		human(float64(c.repeatReq)), pct(reqShare), humanBytes(float64(c.repeatByte)), pct(byteShare), fmtSpan(c.opt.RefetchWindow)))
	if c.maxShift > 0 {
		ev = append(ev, fmt.Sprintf("estimated from a 1-in-%d sample of (client, object) pairs: the log has more distinct fetches per %s than the table tracks", 1<<c.maxShift, fmtSpan(c.opt.RefetchWindow)))
	}
	lead := ""
	for i, t := range c.repeatWho {
		for j, e := range t.sorted() {
			share := float64(e.W-e.Err) / math.Max(float64(c.repeatByte), 1)
			if j == 3 || share < 0.1 {
				break
			}
			if i == 0 && j == 0 {
				lead = e.Key
			}
			contributors = append(contributors, Contributor{Dimension: dims[i].String(), Value: e.Key, Share: round3(share)})
			ev = append(ev, fmt.Sprintf("%s %s: %s repeats, %s (%s of repeated bytes)", dims[i].label(), quoteValue(e.Key), human(float64(e.A)), humanBytes(float64(e.W-e.Err)), pct(share)))
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
		if start < 0 && acc >= 0.01*float64(c.repeatByte) {
			start = i
		}
		if acc <= 0.99*float64(c.repeatByte) || end < 0 {
			end = i
		}
	}
	if start >= 0 {
		f.Window = Window{Start: c.bucketTime(start), End: c.bucketTime(end + 1)}
	}
	return f
}

// crawler reports automated agents by their share of requests and bytes.
func (c *Collector) crawler() *Finding {
	if c.records < 50 || c.botReq == 0 {
		return nil
	}
	reqShare := float64(c.botReq) / float64(c.records)
	byteShare := float64(c.botBytes) / math.Max(float64(c.bytes), 1)
	if reqShare < 0.05 && byteShare < 0.05 {
		return nil
	}
	var contributors []Contributor
	ev := []string{fmt.Sprintf("automated user agents (bot, crawler, spider, curl, python-requests, Go-http-client, …) sent %s requests (%s) and received %s (%s of bytes out)",
		human(float64(c.botReq)), pct(reqShare), humanBytes(float64(c.botBytes)), pct(byteShare))}
	lead := ""
	entries := c.bots.sorted()
	if c.bytes == 0 {
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].A > entries[j].A })
	}
	for i, e := range entries {
		share := float64(e.W-e.Err) / math.Max(float64(c.bytes), 1)
		if c.bytes == 0 {
			share = float64(e.A) / float64(c.records)
		}
		if i == 5 || share < 0.01 {
			break
		}
		if i == 0 {
			lead = e.Key
		}
		contributors = append(contributors, Contributor{Dimension: DimUserAgent.String(), Value: e.Key, Share: round3(share)})
		ev = append(ev, fmt.Sprintf("%q: %s requests, %s (%s of bytes out)", e.Key, human(float64(e.A)), humanBytes(float64(e.W-e.Err)), pct(share)))
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

func (c *Collector) logWindow() Window {
	if c.loc == nil {
		return Window{}
	}
	return Window{Start: time.Unix(0, c.first).In(c.loc), End: time.Unix(0, c.last).In(c.loc)}
}

// ownDomains is the set of the site's own registrable domains: the ones
// given, else the Host values carrying at least 10% of requests, else the
// most common referer domain (most referers are the site's own pages).
func (c *Collector) ownDomains(given []string) ([]string, string) {
	set := map[string]bool{}
	var out []string
	addDomain := func(h string) {
		if d := dims.SiteDomain(h); d != "" && !set[d] {
			set[d] = true
			out = append(out, d)
		}
	}
	for _, h := range given {
		addDomain(h)
	}
	if len(out) > 0 {
		return out, "given with --site"
	}
	for _, e := range c.hosts.sorted() {
		if float64(e.W) >= 0.1*float64(c.records) && e.Key != "-" && e.Key != "_" {
			addDomain(e.Key)
		}
	}
	if len(out) > 0 {
		return out, "inferred from the Host field; set --site to change"
	}
	for _, e := range c.referers.sorted() {
		if e.Key != "(none)" {
			addDomain(e.Key)
			break
		}
	}
	return out, "inferred as the most common referer domain; set --site to change"
}

// hotlink reports other sites embedding the site's images, media and
// downloads: bytes out the site pays for with no visit in return.
func (c *Collector) hotlink(siteHosts []string) *Finding {
	if c.staticReq < 20 || c.bytes == 0 {
		return nil
	}
	own, how := c.ownDomains(siteHosts)
	isOwn := map[string]bool{}
	for _, d := range own {
		isOwn[d] = true
	}
	type dom struct {
		name        string
		bytes, reqs int64
	}
	var foreign []dom
	var fBytes, fReq int64
	for _, e := range c.staticRef.sorted() {
		if e.Key == dims.None || isOwn[dims.SiteDomain(e.Key)] {
			continue
		}
		foreign = append(foreign, dom{e.Key, e.W - e.Err, e.A})
		fBytes += e.W - e.Err
		fReq += e.A
	}
	byteShare := float64(fBytes) / float64(c.bytes)
	staticShare := float64(fBytes) / math.Max(float64(c.staticBytes), 1)
	if fReq < 20 || (byteShare < 0.05 && staticShare < 0.2) {
		return nil
	}
	var contributors []Contributor
	ev := []string{
		fmt.Sprintf("%s requests for images, media or downloads with a foreign referer sent %s: %s of bytes out, %s of static bytes",
			human(float64(fReq)), humanBytes(float64(fBytes)), pct(byteShare), pct(staticShare)),
		fmt.Sprintf("the site's own domain: %s (%s)", strings.Join(own, ", "), how),
	}
	paths := c.staticRefPath.sorted()
	for i, d := range foreign {
		share := float64(d.bytes) / float64(c.bytes)
		if i == 5 || share < 0.01 {
			break
		}
		contributors = append(contributors, Contributor{Dimension: DimReferer.String(), Value: d.name, Share: round3(share)})
		line := fmt.Sprintf("referer %s: %s requests, %s (%s of bytes out)", d.name, human(float64(d.reqs)), humanBytes(float64(d.bytes)), pct(share))
		for _, p := range paths {
			if dn, path, ok := strings.Cut(p.Key, "\x00"); ok && dn == d.name {
				line += ", mostly " + path
				break
			}
		}
		ev = append(ev, line)
	}
	title := fmt.Sprintf("Hotlinking: other sites embed your static files, %s of bytes out", pct(byteShare))
	if len(foreign) > 0 {
		title += fmt.Sprintf(", led by %s", foreign[0].name)
	}
	return &Finding{
		Kind:         KindHotlink,
		Title:        title,
		Window:       c.logWindow(),
		Contributors: contributors,
		Evidence:     ev,
		Action:       "Allow the referers you want (search engines, partners) and refuse or redirect the rest on the static locations with nginx's valid_referers (ngx_http_referer_module), or serve those files through signed URLs.",
		Impact:       round3(byteShare),
	}
}

// burst is a run of consecutive flagged buckets.
type burst struct {
	from, to int // buckets [from, to)
}

func runs(flag []bool) []burst {
	var out []burst
	for i := 0; i < len(flag); i++ {
		if !flag[i] {
			continue
		}
		j := i
		// A burst may dip under the threshold for a bucket or two.
		for j < len(flag) && (flag[j] || (j+1 < len(flag) && flag[j+1]) || (j+2 < len(flag) && flag[j+2])) {
			j++
		}
		out = append(out, burst{i, j})
		i = j
	}
	return out
}

// compositeShares sums a composite summary (dimension\x00value) over
// buckets and returns, per dimension, values with their share of the total.
func compositeShares(bs []*bucket, from, to int, pick func(*bucket) *topK, dims []Dimension, totalW float64, minShare float64) ([]Contributor, []string) {
	sums := map[string]float64{}
	for i := from; i < to; i++ {
		if bs[i] == nil || pick(bs[i]) == nil {
			continue
		}
		for _, e := range pick(bs[i]).entries {
			sums[e.Key] += float64(e.W - e.Err)
		}
	}
	return sharesOf(sums, dims, totalW, minShare)
}

// topShares is compositeShares for one summary of the whole log.
func topShares(t *topK, dims []Dimension, totalW float64, minShare float64) ([]Contributor, []string) {
	sums := map[string]float64{}
	for _, e := range t.entries {
		sums[e.Key] += float64(e.W - e.Err)
	}
	return sharesOf(sums, dims, totalW, minShare)
}

// sharesOf turns "dim\x00value" weights into each dimension's top two
// contributors with at least minShare of totalW.
func sharesOf(sums map[string]float64, dims []Dimension, totalW float64, minShare float64) ([]Contributor, []string) {
	var out []Contributor
	var lines []string
	for _, d := range dims {
		type kv struct {
			v string
			w float64
		}
		var vs []kv
		prefix := string([]byte{byte('0' + d), 0})
		for k, w := range sums {
			if v, ok := strings.CutPrefix(k, prefix); ok {
				vs = append(vs, kv{v, w})
			}
		}
		sort.Slice(vs, func(i, j int) bool {
			if vs[i].w != vs[j].w {
				return vs[i].w > vs[j].w
			}
			return vs[i].v < vs[j].v
		})
		for i, x := range vs {
			share := x.w / math.Max(totalW, 1)
			if i == 2 || share < minShare {
				break
			}
			out = append(out, Contributor{Dimension: d.String(), Value: x.v, Share: round3(math.Min(share, 1))})
			lines = append(lines, fmt.Sprintf("%s %s: %s", d.label(), quoteValue(x.v), pct(math.Min(share, 1))))
		}
	}
	return out, lines
}

// errorBursts reports windows where 5xx responses ran far above the log's
// usual error rate.
func (c *Collector) errorBursts() []Finding {
	bs := c.series()
	var rates []float64
	var totalErr, totalReq int64
	for _, b := range bs {
		if b == nil {
			continue
		}
		totalErr += b.errs
		totalReq += b.req
		if b.req >= 20 {
			rates = append(rates, float64(b.errs)/float64(b.req))
		}
	}
	if totalErr < 10 {
		return nil
	}
	base := math.Max(median(rates), 0.001)
	flag := make([]bool, len(bs))
	for i, b := range bs {
		if b == nil || b.req == 0 {
			continue
		}
		exp := float64(b.req) * base
		flag[i] = b.errs >= 5 && float64(b.errs) >= 4*exp+5 && float64(b.errs)/float64(b.req) >= 0.05
	}
	var out []Finding
	for _, r := range topRuns(runs(flag), 2, func(r burst) float64 {
		var ex float64
		for i := r.from; i < r.to; i++ {
			if bs[i] != nil {
				ex += float64(bs[i].errs) - float64(bs[i].req)*base
			}
		}
		return ex
	}) {
		var errs, req int64
		for i := r.from; i < r.to; i++ {
			if bs[i] != nil {
				errs += bs[i].errs
				req += bs[i].req
			}
		}
		rate := float64(errs) / math.Max(float64(req), 1)
		contributors, lines := compositeShares(bs, r.from, r.to, func(b *bucket) *topK { return b.errWho },
			[]Dimension{DimPath, DimStatus, DimUserAgent, DimClient, DimKey}, float64(errs), 0.2)
		w := Window{Start: c.bucketTime(r.from), End: c.bucketTime(r.to)}
		title := fmt.Sprintf("Error burst: %s 5xx responses (%s of requests, usually %s) %s", human(float64(errs)), pct(rate), pct(base), fmtWindow(w, c.loc))
		if len(contributors) > 0 {
			title += fmt.Sprintf(", mostly %s %s", contributors[0].Dimension, contributors[0].Value)
		}
		ev := []string{fmt.Sprintf("%s of %s requests failed with 5xx in the window; the median %s bucket has %s", human(float64(errs)), human(float64(req)), fmtSpan(time.Duration(c.width)*time.Second), pct(base))}
		for _, l := range lines {
			ev = append(ev, "of the errors, "+l)
		}
		out = append(out, Finding{
			Kind:         KindErrorBurst,
			Title:        title,
			Window:       w,
			Contributors: contributors,
			Evidence:     ev,
			Action:       "Look at the upstream for that window (its logs, a deploy, a dependency, saturation); if one client or path dominates the errors, start there.",
			Impact:       round3(math.Min(0.5*rate+float64(errs)/float64(totalReq), 1)),
		})
	}
	return out
}

func topRuns(rs []burst, n int, score func(burst) float64) []burst {
	sort.SliceStable(rs, func(i, j int) bool { return score(rs[i]) > score(rs[j]) })
	if len(rs) > n {
		rs = rs[:n]
	}
	return rs
}

func p95(lat *[latBins]uint32) (float64, int64) {
	var n int64
	for _, v := range lat {
		n += int64(v)
	}
	if n == 0 {
		return 0, 0
	}
	var acc int64
	for i, v := range lat {
		acc += int64(v)
		if float64(acc) >= 0.95*float64(n) {
			return latBinUpper(i), n
		}
	}
	return latBinUpper(latBins - 1), n
}

// latencyBursts reports windows whose 95th percentile request time ran far
// above the log's usual.
func (c *Collector) latencyBursts() []Finding {
	bs := c.series()
	ps := make([]float64, len(bs))
	var typical []float64
	for i, b := range bs {
		if b == nil {
			continue
		}
		p, n := p95(&b.lat)
		if n >= 20 {
			ps[i] = p
			typical = append(typical, p)
		}
	}
	if len(typical) < 4 {
		return nil
	}
	base := median(typical)
	flag := make([]bool, len(bs))
	for i := range bs {
		flag[i] = ps[i] > 0 && ps[i] >= math.Max(3*base, base+1)
	}
	var out []Finding
	for _, r := range topRuns(runs(flag), 2, func(r burst) float64 {
		var s float64
		for i := r.from; i < r.to; i++ {
			s += ps[i]
		}
		return s
	}) {
		var lat [latBins]uint32
		var slowMs float64
		for i := r.from; i < r.to; i++ {
			if bs[i] == nil {
				continue
			}
			for j, v := range bs[i].lat {
				lat[j] += v
			}
			if bs[i].slowWho != nil {
				for _, e := range bs[i].slowWho.entries {
					if strings.HasPrefix(e.Key, string([]byte{byte('0' + DimPath), 0})) {
						slowMs += float64(e.W - e.Err)
					}
				}
			}
		}
		p, n := p95(&lat)
		contributors, lines := compositeShares(bs, r.from, r.to, func(b *bucket) *topK { return b.slowWho },
			[]Dimension{DimPath, DimUserAgent, DimKey, DimClient}, slowMs, 0.2)
		w := Window{Start: c.bucketTime(r.from), End: c.bucketTime(r.to)}
		title := fmt.Sprintf("Latency burst: p95 %s (usually %s) %s", seconds(p), seconds(base), fmtWindow(w, c.loc))
		if len(contributors) > 0 {
			title += fmt.Sprintf(", time spent mostly on %s %s", contributors[0].Dimension, contributors[0].Value)
		}
		ev := []string{fmt.Sprintf("%s requests in the window, p95 %s against a median bucket p95 of %s", human(float64(n)), seconds(p), seconds(base))}
		for _, l := range lines {
			ev = append(ev, "of the time in requests ≥ 250 ms, "+l)
		}
		out = append(out, Finding{
			Kind:         KindLatencyBurst,
			Title:        title,
			Window:       w,
			Contributors: contributors,
			Evidence:     ev,
			Action:       "Check what the upstream was waiting on in that window (database, dependency, CPU); if one key or path holds the time, its requests are likely starving the rest (headroom proxy budgets worker time per key).",
			Impact:       round3(0.3 * (1 - base/p)),
		})
	}
	return out
}

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
		if e, ok := b.byReq[d].get(v); ok {
			n += e.W - e.Err
		}
	}
	return n
}
