package findings

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/dims"
	"github.com/headroom-dev/headroom/internal/findings/findingstest"
)

// collect feeds records through `workers` collectors, in contiguous chunks
// as the engine's workers read them, and merges them.
func collect(t testing.TB, recs []accesslog.Record, workers int, opt Options) *Collector {
	t.Helper()
	cs := make([]*Collector, workers)
	for i := range cs {
		cs[i] = NewCollector(opt)
	}
	chunk := (len(recs) + workers - 1) / workers
	buf := make([]byte, 0, 64<<10)
	for i := range recs {
		// Observe a copy whose strings live in a buffer that is then
		// overwritten, as the engine's reused line buffer is: whatever the
		// collector kept without cloning would read as garbage.
		r := aliasRecord(&buf, recs[i])
		cs[i/chunk].Observe(&r)
		for j := range buf {
			buf[j] = '#'
		}
		buf = buf[:0]
	}
	for _, c := range cs[1:] {
		cs[0].Merge(c)
	}
	return cs[0]
}

// aliasRecord returns r with its strings moved into buf.
func aliasRecord(buf *[]byte, r accesslog.Record) accesslog.Record {
	alias := func(s string) string {
		if s == "" || len(*buf)+len(s) > cap(*buf) {
			return s
		}
		start := len(*buf)
		*buf = append(*buf, s...)
		return unsafe.String(&(*buf)[start], len(s))
	}
	r.Client, r.Key, r.Method, r.Path = alias(r.Client), alias(r.Key), alias(r.Method), alias(r.Path)
	r.Proto, r.Host, r.Referer, r.UserAgent, r.Pool = alias(r.Proto), alias(r.Host), alias(r.Referer), alias(r.UserAgent), alias(r.Pool)
	return r
}

func analyzeRecords(t testing.TB, recs []accesslog.Record, opt AnalyzeOptions) *Report {
	t.Helper()
	rep, err := Analyze(collect(t, recs, 2, Options{Seed: 1}), opt)
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	return rep
}

func logFindings(t *testing.T, rep *Report) {
	t.Helper()
	var b strings.Builder
	if err := WriteText(&b, rep.Findings, rep.Location); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	if os.Getenv("FINDINGS_JSON") != "" {
		j, _ := json.MarshalIndent(rep.Findings, "", "  ")
		t.Log(string(j))
	}
}

func hasContributor(f Finding, dim, value string) bool {
	for _, c := range f.Contributors {
		if c.Dimension == dim && c.Value == value {
			return true
		}
	}
	return false
}

func kinds(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}

func TestLevelShiftNamesTheClientAndTheDay(t *testing.T) {
	from := time.Date(2019, 4, 4, 6, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 11, Days: 14, Weekly: 0.1, DayNoise: 0.1, DoubleUA: findingstest.PicViewerUA, DoubleFrom: from})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	if len(rep.Findings) == 0 {
		t.Fatal("no findings")
	}
	top := rep.Findings[0]
	if top.Kind != KindLevelShift {
		t.Fatalf("top finding is %s (%q), want level_shift; kinds %v", top.Kind, top.Title, kinds(rep.Findings))
	}
	if !strings.Contains(top.Title, findingstest.PicViewerUA) || !hasContributor(top, "user_agent", findingstest.PicViewerUA) {
		t.Errorf("level shift does not name %q first: %q %+v", findingstest.PicViewerUA, top.Title, top.Contributors)
	}
	if top.ChangeAt == nil || top.ChangeAt.Sub(from).Abs() > 2*time.Hour {
		t.Errorf("change at %v, want %v ± 2h", top.ChangeAt, from)
	}
	if !strings.Contains(top.Title, "2019-04-04") {
		t.Errorf("title does not name the day: %q", top.Title)
	}
	if !hasContributor(top, "path", "/images/:hash.jpg") {
		t.Errorf("level shift does not say what the client fetched (/images/:hash.jpg): %+v", top.Contributors)
	}
}

// A deploy makes one endpoint 4× slower while its requests stay the same:
// the top finding is a worker-time shift naming that endpoint as a
// regression, from the hour of the deploy (issue 16).
func TestWorkerTimeShiftNamesTheSlowEndpoint(t *testing.T) {
	from := time.Date(2019, 4, 4, 14, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 12, Days: 10, PageViewsPerHour: 80, DayNoise: 0.05, SlowFrom: from})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	if len(rep.Findings) == 0 {
		t.Fatal("no findings")
	}
	top := rep.Findings[0]
	if top.Kind != KindLevelShift || top.Metric != "worker_time" {
		t.Fatalf("top finding %s/%s %q, want a worker_time level_shift; kinds %v", top.Kind, top.Metric, top.Title, kinds(rep.Findings))
	}
	if !hasContributor(top, "path", findingstest.SlowPath) || !strings.Contains(top.Title, "no change in its requests") {
		t.Errorf("does not name %s as a regression: %q %+v", findingstest.SlowPath, top.Title, top.Contributors)
	}
	if top.ChangeAt == nil || top.ChangeAt.Sub(from).Abs() > time.Hour {
		t.Errorf("change at %v, want %v ± 1h", top.ChangeAt, from)
	}
	for _, f := range rep.Findings[1:] {
		if f.Kind == KindLevelShift && (f.Metric == "requests" || f.Metric == "bytes") {
			t.Errorf("a request or bytes shift although volume did not change: %q", f.Title)
		}
	}
}

func TestNoLevelShiftOnCleanSeasonalLogs(t *testing.T) {
	// Days differ by ±10% and weekends are 10% lower, as real traffic does;
	// none of that is a lasting change.
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		recs := findingstest.Generate(findingstest.Options{Seed: seed, Days: 14, PageViewsPerHour: 60, Weekly: 0.1, DayNoise: 0.1})
		rep := analyzeRecords(t, recs, AnalyzeOptions{})
		for _, f := range rep.Findings {
			if f.Kind == KindLevelShift {
				logFindings(t, rep)
				t.Errorf("seed %d: false level shift: %s", seed, f.Title)
			}
		}
	}
}

func TestClientTimeoutNamesTheExporter(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		recs := findingstest.Generate(findingstest.Options{Seed: 5, Days: 2, Exporter: true, ExporterGuarded: guarded})
		rep := analyzeRecords(t, recs, AnalyzeOptions{})
		logFindings(t, rep)
		top := rep.Findings[0]
		if top.Kind != KindClientTimeout {
			t.Fatalf("guarded=%v: top finding %s (%q), want client_timeout; kinds %v", guarded, top.Kind, top.Title, kinds(rep.Findings))
		}
		if !hasContributor(top, "user_agent", findingstest.ExporterUA) || !strings.Contains(top.Title, findingstest.ExporterUA) {
			t.Errorf("client_timeout does not name %q: %q %+v", findingstest.ExporterUA, top.Title, top.Contributors)
		}
		if top.KneeSeconds < 4.6 || top.KneeSeconds > 4.75 {
			t.Errorf("knee %.3f s, want ~4.67", top.KneeSeconds)
		}
		var acct bool
		for _, f := range rep.Findings {
			acct = acct || f.Kind == KindAbortAccounting
		}
		if !acct {
			t.Errorf("guarded=%v: no abort_accounting finding; kinds %v", guarded, kinds(rep.Findings))
		}
	}
}

func TestCrawlerIsNamed(t *testing.T) {
	recs := findingstest.Generate(findingstest.Options{Seed: 6, Days: 2, Crawler: true})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	top := rep.Findings[0]
	if top.Kind != KindCrawler || !hasContributor(top, "user_agent", findingstest.CrawlerUA) {
		t.Fatalf("top finding %s %q %+v, want crawler naming %q", top.Kind, top.Title, top.Contributors, findingstest.CrawlerUA)
	}
}

func TestHotlinkIsNamed(t *testing.T) {
	recs := findingstest.Generate(findingstest.Options{Seed: 7, Days: 2, Hotlink: true})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	top := rep.Findings[0]
	if top.Kind != KindHotlink || !hasContributor(top, "referer", findingstest.HotlinkSite) {
		t.Fatalf("top finding %s %q %+v, want hotlink naming %s", top.Kind, top.Title, top.Contributors, findingstest.HotlinkSite)
	}
}

func TestErrorBurstIsFound(t *testing.T) {
	at := time.Date(2019, 3, 28, 14, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 8, Days: 1, ErrorBurst: at})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	top := rep.Findings[0]
	if top.Kind != KindErrorBurst || !hasContributor(top, "path", "/t/:id") {
		t.Fatalf("top finding %s %q %+v, want error_burst on /t/:id", top.Kind, top.Title, top.Contributors)
	}
	if top.Window.Start.Sub(at).Abs() > 15*time.Minute {
		t.Errorf("burst window starts %v, want ~%v", top.Window.Start, at)
	}
}

func TestCompareAttributesThePeriod(t *testing.T) {
	from := time.Date(2019, 4, 4, 6, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 9, Days: 10, DoubleUA: findingstest.PicViewerUA, DoubleFrom: from})
	cmp, err := ParseCompare("2019-04-04T06:00:00Z..2019-04-06T06:00:00Z", time.Now(), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	rep := analyzeRecords(t, recs, AnalyzeOptions{Compare: &cmp})
	logFindings(t, rep)
	top := rep.Findings[0]
	if top.Kind != KindComparison || !hasContributor(top, "user_agent", findingstest.PicViewerUA) {
		t.Fatalf("top finding %s %q %+v, want comparison naming %q", top.Kind, top.Title, top.Contributors, findingstest.PicViewerUA)
	}
	if !cmp.Baseline.End.Equal(cmp.Period.Start) || cmp.Baseline.Start != time.Date(2019, 4, 2, 6, 0, 0, 0, time.UTC) {
		t.Errorf("baseline %v, want the two days before", cmp.Baseline)
	}
}

// A short log (hours, no daily cycle to learn) still shows an abrupt change:
// a new client starting at a precise minute.
func TestLevelShiftInAShortLog(t *testing.T) {
	start := time.Date(2019, 4, 4, 11, 0, 0, 0, time.UTC)
	at := start.Add(3*time.Hour + 20*time.Minute)
	recs := findingstest.Generate(findingstest.Options{Seed: 41, Start: start, Hours: 6, PageViewsPerHour: 150})
	for i := range 20000 {
		ts := at.Add(time.Duration(i) * (2*time.Hour + 40*time.Minute) / 20000)
		recs = append(recs, accesslog.Record{Time: ts, Client: "192.0.2.10", Method: "GET", Path: fmt.Sprintf("/api/items/%d", i),
			Status: 200, BytesSent: 900, UserAgent: "python-requests/2.31.0", RequestTime: 20 * time.Millisecond})
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	var shift *Finding
	for i := range rep.Findings {
		if rep.Findings[i].Kind == KindLevelShift {
			shift = &rep.Findings[i]
			break
		}
	}
	if shift == nil {
		t.Fatalf("no level shift; kinds %v", kinds(rep.Findings))
	}
	if !hasContributor(*shift, "user_agent", "python-requests/2.31.0") || !hasContributor(*shift, "path", "/api/items/:id") {
		t.Errorf("shift does not name the new client and what it fetches: %+v", shift.Contributors)
	}
	if shift.ChangeAt == nil || shift.ChangeAt.Sub(at).Abs() > 10*time.Minute {
		t.Errorf("change at %v, want %v ± 10m", shift.ChangeAt, at)
	}
}

// However large or varied the log, the collector's memory is bounded: the
// series has at most MaxBuckets buckets and each summary at most its K.
func TestCollectorMemoryIsBounded(t *testing.T) {
	opt := Options{TopK: 8, MaxBuckets: 64, RefetchSlots: 1 << 10, Samples: 100}
	c := NewCollector(opt)
	start := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 50000 {
		// Every value unique, times spread over a year and out of order.
		r := accesslog.Record{
			Time:   start.Add(time.Duration((i*7919)%(365*24*60)) * time.Minute), // a year, shuffled
			Client: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Key: fmt.Sprintf("key-%d", i),
			Method: "GET", Path: fmt.Sprintf("/p%d/q%d.jpg", i, i), Status: 200 + i%300, BytesSent: int64(i),
			Referer: fmt.Sprintf("https://site%d.example/", i), UserAgent: fmt.Sprintf("agent-%d bot", i),
			RequestTime: time.Duration(i%9000) * time.Millisecond, Host: fmt.Sprintf("h%d", i),
		}
		c.Observe(&r)
	}
	if n := len(c.buckets); n > opt.MaxBuckets {
		t.Errorf("%d buckets, bound %d", n, opt.MaxBuckets)
	}
	if span := c.maxIdx - c.minIdx + 1; span > int64(opt.MaxBuckets) {
		t.Errorf("series spans %d buckets, bound %d", span, opt.MaxBuckets)
	}
	check := func(name string, tk *topK) {
		if tk != nil && (tk.Len() > tk.Cap() || tk.Indexed() != tk.Len()) {
			t.Errorf("%s: %d entries, %d indexed, capacity %d", name, tk.Len(), tk.Indexed(), tk.Cap())
		}
	}
	for _, b := range c.buckets {
		for d := range numDims {
			check("byReq", b.byReq[d])
			check("byBytes", b.byBytes[d])
		}
		check("errWho", b.errWho)
		check("slowWho", b.slowWho)
	}
	hl := detectorOf[*hotlinks](c)
	for name, tk := range map[string]*topK{"hosts": hl.hosts, "referers": hl.referers, "abortWho": c.timeouts.abortWho, "bots": detectorOf[*crawlers](c).bots,
		"staticRef": hl.staticRef, "staticRefPath": hl.staticRefPath, "gapWho": detectorOf[*accounting](c).gapWho} {
		check(name, tk)
	}
	if len(c.sample) > opt.Samples || len(c.repeats.recent) != opt.RefetchSlots {
		t.Errorf("sample %d (bound %d), refetch table %d (want %d)", len(c.sample), opt.Samples, len(c.repeats.recent), opt.RefetchSlots)
	}
	if _, err := Analyze(c, AnalyzeOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Splitting the log among workers must not change what is found.
func TestMergeMatchesSingleCollector(t *testing.T) {
	recs := findingstest.Generate(findingstest.Options{Seed: 43, Days: 3, PageViewsPerHour: 60, Exporter: true, Crawler: true})
	one, err := Analyze(collect(t, recs, 1, Options{}), AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	four, err := Analyze(collect(t, recs, 4, Options{}), AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := kinds(one.Findings), kinds(four.Findings); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("kinds differ: one collector %v, four merged %v", a, b)
	}
	for i := range one.Findings {
		a, b := one.Findings[i], four.Findings[i]
		if len(a.Contributors) != len(b.Contributors) || len(a.Contributors) > 0 && a.Contributors[0].Value != b.Contributors[0].Value {
			t.Errorf("%s: lead contributor %+v vs %+v", a.Kind, a.Contributors, b.Contributors)
		}
		if d := a.Impact - b.Impact; d > 0.02 || d < -0.02 {
			t.Errorf("%s: impact %.3f vs %.3f", a.Kind, a.Impact, b.Impact)
		}
	}
	if one.Records != four.Records {
		t.Errorf("records %d vs %d", one.Records, four.Records)
	}
}

// When more distinct objects are fetched per window than the table holds,
// repeats are estimated from a sample of (client, object) pairs instead of
// lost to collisions.
func TestRepeatedFetchEstimateUnderPressure(t *testing.T) {
	c := NewCollector(Options{RefetchSlots: 1 << 10})
	start := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	const pairs = 200000
	recs := make([]accesslog.Record, 0, 2*pairs)
	for i := range pairs {
		// Every pair fetched twice, 10 s apart, in time order: 20,000
		// fetches come between the two, far more than 1,024 slots hold.
		at := start.Add(time.Duration(i) * time.Millisecond)
		for _, dt := range []time.Duration{0, 10 * time.Second} {
			recs = append(recs, accesslog.Record{Time: at.Add(dt), Client: fmt.Sprintf("10.1.%d.%d", i>>8&255, i&255), Method: "GET",
				Path: fmt.Sprintf("/img/%d.jpg", i), Status: 200, BytesSent: 1000, UserAgent: "Refetcher/1.0"})
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	for i := range recs {
		c.Observe(&recs[i])
	}
	got := float64(c.repeats.repeatReq)
	if got < 0.75*pairs || got > 1.25*pairs {
		t.Errorf("estimated %0.f repeats, true %d (sample 1 in %d)", got, pairs, 1<<c.repeats.maxShift)
	}
	t.Logf("estimated %.0f repeats of %d (sample 1 in %d)", got, pairs, 1<<c.repeats.maxShift)
	if c.repeats.maxShift == 0 {
		t.Error("the table never switched to sampling")
	}
	f := c.repeats.repeatedFetch(c)
	if f == nil || !strings.Contains(strings.Join(f.Evidence, " "), "sample") {
		t.Errorf("finding does not say it is estimated from a sample: %+v", f)
	}
}

func TestLatencyBurstIsFound(t *testing.T) {
	at := time.Date(2019, 3, 28, 15, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 44, Days: 1, SlowBurst: at})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	var burst *Finding
	for i := range rep.Findings {
		if rep.Findings[i].Kind == KindLatencyBurst {
			burst = &rep.Findings[i]
			break
		}
	}
	if burst == nil {
		t.Fatalf("no latency_burst; kinds %v", kinds(rep.Findings))
	}
	if !hasContributor(*burst, "path", "/t/:id") {
		t.Errorf("latency burst does not name /t/:id: %+v", burst.Contributors)
	}
	if burst.Window.Start.Sub(at).Abs() > 15*time.Minute || burst.Window.End.Sub(at.Add(30*time.Minute)).Abs() > 15*time.Minute {
		t.Errorf("burst window %v – %v, want ~%v – %v", burst.Window.Start, burst.Window.End, at, at.Add(30*time.Minute))
	}
	for _, f := range rep.Findings {
		if f.Kind == KindLevelShift {
			t.Errorf("a 30-minute slowdown is not a level shift: %s", f.Title)
		}
	}
}

// The fix lands: the client stops fetching twice, traffic falls back, and
// the finding names the same client as the cause of the decrease.
func TestLevelShiftDownNamesTheClient(t *testing.T) {
	start := time.Date(2019, 3, 28, 0, 0, 0, 0, time.UTC)
	fixed := time.Date(2019, 4, 3, 18, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 45, Days: 12, PageViewsPerHour: 80, DayNoise: 0.05,
		DoubleUA: findingstest.PicViewerUA, DoubleFrom: start, DoubleUntil: fixed})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	top := rep.Findings[0]
	if top.Kind != KindLevelShift || !hasContributor(top, "user_agent", findingstest.PicViewerUA) || !strings.Contains(top.Title, "decrease") {
		t.Fatalf("top finding %s %q %+v; want a level shift down naming %q", top.Kind, top.Title, top.Contributors, findingstest.PicViewerUA)
	}
	if top.ChangeAt == nil || top.ChangeAt.Sub(fixed).Abs() > 2*time.Hour {
		t.Errorf("change at %v, want %v ± 2h", top.ChangeAt, fixed)
	}
}

// A rise that a fix undid six days later: over the whole log it is a small
// step at either end, but judged between its neighbours each change stands.
func TestLevelShiftUpThenDown(t *testing.T) {
	up := time.Date(2019, 3, 31, 12, 0, 0, 0, time.UTC)
	down := time.Date(2019, 4, 6, 12, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 46, Days: 14, PageViewsPerHour: 80, DayNoise: 0.05,
		DoubleUA: findingstest.PicViewerUA, DoubleFrom: up, DoubleUntil: down})
	rep := analyzeRecords(t, recs, AnalyzeOptions{})
	logFindings(t, rep)
	var got []time.Time
	for _, f := range rep.Findings {
		if f.Kind == KindLevelShift {
			if !hasContributor(f, "user_agent", findingstest.PicViewerUA) {
				t.Errorf("%q does not name %q", f.Title, findingstest.PicViewerUA)
			}
			got = append(got, *f.ChangeAt)
		}
	}
	slices.SortFunc(got, time.Time.Compare)
	if len(got) != 2 || got[0].Sub(up).Abs() > 2*time.Hour || got[1].Sub(down).Abs() > 2*time.Hour {
		t.Errorf("level shifts at %v, want %v and %v (± 2h)", got, up, down)
	}
}

// One line with a broken clock must not coarsen the whole series.
func TestStrayTimestampIsNotCharted(t *testing.T) {
	recs := findingstest.Generate(findingstest.Options{Seed: 47, Hours: 6, PageViewsPerHour: 100})
	stray := recs[len(recs)/2]
	stray.Time = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	recs = append(recs, stray)
	c := collect(t, recs, 1, Options{})
	if c.width != 60 {
		t.Errorf("bucket width %ds, want 60s: the stray line widened the series", c.width)
	}
	if c.untimed != 1 || c.records != int64(len(recs)) {
		t.Errorf("untimed %d of %d records, want the stray one", c.untimed, c.records)
	}
}

// --site names the site's own hosts: referers from them are not hotlinks.
func TestSiteHostsSilenceHotlink(t *testing.T) {
	recs := findingstest.Generate(findingstest.Options{Seed: 7, Days: 2, Hotlink: true})
	rep := analyzeRecords(t, recs, AnalyzeOptions{SiteHosts: []string{"forum.example.com", "www." + findingstest.HotlinkSite}})
	for _, f := range rep.Findings {
		if f.Kind == KindHotlink {
			t.Errorf("hotlink from a site given as our own: %s", f.Title)
		}
	}
}

// guardLog is a minute of the guard's own log: a UI user reloading one small
// page every second, and a key refused with 429 once over its budget.
func guardLog(refusals int) []accesslog.Record {
	t0 := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	var recs []accesslog.Record
	for i := range 120 {
		recs = append(recs, accesslog.Record{Time: t0.Add(time.Duration(i) * 500 * time.Millisecond), Client: "10.0.0.5",
			Method: "GET", Path: "/ui/dashboard", Status: 200, BytesSent: 24, RequestTime: 50 * time.Millisecond,
			HasUpstreamTime: true, UpstreamTime: 50 * time.Millisecond, UpstreamStatus: 200, UserAgent: "Mozilla/5.0"})
	}
	for i := range 10 + refusals {
		status := 200
		if i >= 10 {
			status = 429
		}
		recs = append(recs, accesslog.Record{Time: t0.Add(time.Duration(i) * time.Second), Client: "192.0.2.7", Key: "fp-00112233aabbccdd",
			Method: "GET", Path: "/api/v2/applications/33591900/metrics.json", Status: status, BytesSent: 300, UserAgent: "exporter/1.0"})
	}
	return recs
}

func TestRateLimitedNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		refusals int
		want     bool
	}{{0, false}, {5, false}, {40, true}} {
		rep := analyzeRecords(t, guardLog(tc.refusals), AnalyzeOptions{})
		var got *Finding
		for i := range rep.Findings {
			if rep.Findings[i].Kind == KindRateLimited {
				got = &rep.Findings[i]
			}
			if rep.Findings[i].Kind == KindRepeatedFetch {
				t.Errorf("%d refusals: a user reloading a 24-byte page is reported as repeated fetches: %q", tc.refusals, rep.Findings[i].Title)
			}
		}
		if (got != nil) != tc.want {
			t.Fatalf("%d refusals: rate_limited finding %v, want %v (kinds %v)", tc.refusals, got != nil, tc.want, kinds(rep.Findings))
		}
		if got == nil {
			continue
		}
		logFindings(t, rep)
		if !hasContributor(*got, "key", "fp-00112233aabbccdd") || got.Contributors[0].Dimension != "key" {
			t.Errorf("rate_limited does not name the key first: %+v", got.Contributors)
		}
		if !strings.Contains(strings.Join(got.Evidence, "\n"), "80% of its 50 requests") {
			t.Errorf("evidence does not give the key's refused share of its own requests: %q", got.Evidence)
		}
	}
}

// A handful of abandoned long requests is worth a finding when they hide a
// real share of the work, and not when they hide a sliver of it.
func TestFewAbortsHidingMuchWork(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		aborts int
		work   time.Duration // each abandoned request's upstream time
		want   bool
	}{
		{"4 reports of 20 s abandoned at 5 s", 4, 20 * time.Second, true},
		{"4 requests of 0.6 s abandoned at 0.5 s", 4, 600 * time.Millisecond, false},
		{"2 reports of 20 s", 2, 20 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var recs []accesslog.Record
			for i := range 150 {
				recs = append(recs, accesslog.Record{Time: t0.Add(time.Duration(i) * 200 * time.Millisecond), Client: "10.0.0.5",
					Method: "GET", Path: "/ui/dashboard", Status: 200, BytesSent: 2000, RequestTime: 500 * time.Millisecond,
					HasUpstreamTime: true, UpstreamTime: 500 * time.Millisecond, UpstreamStatus: 200, UserAgent: "Mozilla/5.0"})
			}
			for i := range tc.aborts {
				recs = append(recs, accesslog.Record{Time: t0.Add(time.Duration(i) * 5 * time.Second), Client: "192.0.2.7", Key: "fp-00112233aabbccdd",
					Method: "GET", Path: "/api/report", Status: 499, RequestTime: tc.work / 4,
					HasUpstreamTime: true, UpstreamTime: tc.work, UpstreamStatus: 200, UserAgent: "exporter/1.0"})
			}
			rep := analyzeRecords(t, recs, AnalyzeOptions{})
			got := false
			for _, f := range rep.Findings {
				if f.Kind == KindAbortAccounting && strings.Contains(f.Title, "ended for the client before the upstream finished") {
					got = true
					if !hasContributor(f, "key", "fp-00112233aabbccdd") || !hasContributor(f, "user_agent", "exporter/1.0") {
						t.Errorf("the finding does not name who abandoned the work: %+v", f.Contributors)
					}
				}
			}
			if got != tc.want {
				logFindings(t, rep)
				t.Errorf("abort_accounting finding %v, want %v (kinds %v)", got, tc.want, kinds(rep.Findings))
			}
		})
	}
}

// detectorOf returns c's detector of type T (every Collector has one of
// each).
func detectorOf[T detector](c *Collector) T {
	for _, d := range c.detectors {
		if x, ok := d.(T); ok {
			return x
		}
	}
	panic("no such detector")
}

// The engine hands the collector the endpoint and referer domain its tables
// computed (ObserveShared): what is found must not change.
func TestObserveSharedMatchesObserve(t *testing.T) {
	recs := findingstest.Generate(findingstest.Options{Seed: 44, Days: 3, PageViewsPerHour: 60, Exporter: true, Hotlink: true})
	a, b := NewCollector(Options{Seed: 1}), NewCollector(Options{Seed: 1})
	var sh dims.Shared
	for i := range recs {
		a.Observe(&recs[i])
		sh.Template = dims.AppendPathTemplate(sh.Template[:0], recs[i].Path)
		sh.Referer = dims.AppendRefererDomain(sh.Referer[:0], recs[i].Referer)
		b.ObserveShared(&recs[i], &sh)
	}
	ra, err := Analyze(a, AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Analyze(b, AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(ra.Findings)
	jb, _ := json.Marshal(rb.Findings)
	if string(ja) != string(jb) || len(ra.Findings) == 0 {
		t.Errorf("findings differ (or none):\n%s\n%s", ja, jb)
	}
}

// --compare attributes worker time as it does requests and bytes: across a
// slow deploy, the comparison leads with worker time and names the endpoint.
func TestCompareAttributesWorkerTime(t *testing.T) {
	from := time.Date(2019, 4, 4, 14, 0, 0, 0, time.UTC)
	recs := findingstest.Generate(findingstest.Options{Seed: 12, Days: 10, PageViewsPerHour: 80, DayNoise: 0.05, SlowFrom: from})
	cmp := Compare{Period: Window{from.Add(24 * time.Hour), from.Add(48 * time.Hour)}, Baseline: Window{from.Add(-48 * time.Hour), from.Add(-24 * time.Hour)}}
	rep := analyzeRecords(t, recs, AnalyzeOptions{Compare: &cmp})
	logFindings(t, rep)
	f := rep.Findings[0]
	if f.Kind != KindComparison || f.Metric != "worker_time" || !hasContributor(f, "path", findingstest.SlowPath) {
		t.Fatalf("comparison %s/%s %q %+v: want worker_time naming path %s", f.Kind, f.Metric, f.Title, f.Contributors, findingstest.SlowPath)
	}
	if !strings.Contains(strings.Join(f.Evidence, "\n"), "worker time/hour") {
		t.Errorf("evidence lacks the worker time per hour: %v", f.Evidence)
	}
}
