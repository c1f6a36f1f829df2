package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/headroom-dev/headroom/internal/loadgen/selfmon"
)

// run is the state of one load test.
type run struct {
	o        Options
	now      func() time.Time
	start    time.Time
	stages   []Stage
	total    time.Duration
	open     bool
	sender   sender
	targets  []*preparedTarget
	shards   []*shard
	shardIdx atomic.Uint32

	nextTarget atomic.Uint64
	issued     atomic.Int64 // requests started or dropped, for MaxRequests
	scheduled  atomic.Int64
	sent       atomic.Int64
	dropped    atomic.Int64
	inFlight   atomic.Int64
	stage      atomic.Int32
	activeVUs  atomic.Int64
	// busy holds one flag per virtual user, set while its request is out:
	// the closed model's in-flight count. Each user writes only its own
	// (padded) flag, so counting costs the hot path no shared cache line.
	busy []busyFlag
	wg   sync.WaitGroup
}

// busyFlag is padded to a cache line so that two users' flags never share
// one.
type busyFlag struct {
	v atomic.Bool
	_ [63]byte
}

// vusBusy counts the virtual users with a request out.
func (r *run) vusBusy() int64 {
	var n int64
	for i := range r.busy {
		if r.busy[i].v.Load() {
			n++
		}
	}
	return n
}

// Run performs a load test and returns its result. It stops by itself after
// Duration (or the stages, or MaxRequests), and early when ctx ends; the
// result then covers what ran.
func Run(ctx context.Context, o Options) (*Result, error) {
	r, err := newRun(o)
	if err != nil {
		return nil, err
	}
	defer r.sender.close()
	return r.run(ctx)
}

func newRun(o Options) (*run, error) {
	if len(o.Targets) == 0 {
		return nil, errors.New("no target: give a URL, several, or --targets FILE")
	}
	if o.Rate > 0 && o.VUs > 0 {
		return nil, errors.New("both a rate and virtual users: choose --rate (open model) or --vus (closed model)")
	}
	r := &run{o: o, now: o.Now}
	if r.now == nil {
		r.now = time.Now
	}
	r.open = o.VUs <= 0
	if len(o.Stages) > 0 {
		r.stages = o.Stages
	} else {
		target := o.Rate
		if !r.open {
			target = float64(o.VUs)
		}
		if target <= 0 {
			return nil, errors.New("no load asked: give --rate N/s (open model), --vus N (closed model) or --stages")
		}
		if o.Duration <= 0 && o.MaxRequests <= 0 {
			return nil, errors.New("no bound: give --duration, --requests or --stages so the test stops by itself")
		}
		d := o.Duration
		if d <= 0 {
			// Bounded by count only; a day is the backstop that keeps the
			// promise of always stopping.
			d = 24 * time.Hour
		}
		r.stages = []Stage{{Duration: d, Target: target}}
	}
	for i, s := range r.stages {
		if s.Duration <= 0 || s.Target <= 0 {
			return nil, fmt.Errorf("stage %d: duration and target must be positive", i+1)
		}
		if !r.open && s.Target != math.Trunc(s.Target) {
			return nil, fmt.Errorf("stage %d: %g virtual users is not a whole number", i+1, s.Target)
		}
		r.total += s.Duration
		if !r.open && int(s.Target) > len(r.busy) {
			r.busy = make([]busyFlag, int(s.Target))
		}
	}
	if r.o.Timeout <= 0 {
		r.o.Timeout = 30 * time.Second
	}
	if r.o.GracefulStop <= 0 {
		r.o.GracefulStop = min(r.o.Timeout, 10*time.Second)
	}
	if r.o.MaxInFlight <= 0 {
		r.o.MaxInFlight = 10000
	}
	if r.o.APIKey != "" && r.o.APIKeyHeader == "" {
		r.o.APIKeyHeader = "X-Api-Key"
	}
	var err error
	r.targets, err = prepareTargets(&r.o)
	if err != nil {
		return nil, err
	}
	r.sender, err = newSender(&r.o, r.targets)
	if err != nil {
		return nil, err
	}
	n := 4 * runtime.GOMAXPROCS(0)
	for i := 0; i < n; i++ {
		r.shards = append(r.shards, newShard())
	}
	return r, nil
}

func (r *run) pickTarget() *preparedTarget {
	if len(r.targets) == 1 {
		return r.targets[0]
	}
	return r.targets[(r.nextTarget.Add(1)-1)%uint64(len(r.targets))]
}

// take reserves one request against MaxRequests.
func (r *run) take() bool {
	if r.o.MaxRequests <= 0 {
		return true
	}
	return r.issued.Add(1) <= r.o.MaxRequests
}

func (r *run) run(ctx context.Context) (*Result, error) {
	iface := r.o.Iface
	var monErrs []string
	if iface == "" {
		var err error
		iface, err = selfmon.InterfaceFor(r.targets[0].host)
		if err != nil {
			monErrs = append(monErrs, fmt.Sprintf("network interface: %v", err))
		}
	}
	mon, err := selfmon.New(selfmon.Options{ProcRoot: r.o.ProcRoot, Iface: iface, Now: r.now})
	if err != nil {
		monErrs = append(monErrs, err.Error())
	}
	agg := newAggregator(r, mon)
	agg.iface = iface
	agg.monErrs = monErrs

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.start = r.now()
	agg.begin(r.start)
	done := make(chan struct{})
	// Stopped by the caller (Ctrl-C): requests in progress fail at once
	// rather than each waiting out its timeout.
	go func() {
		select {
		case <-ctx.Done():
			r.sender.interrupt()
		case <-done:
		}
	}()
	go func() {
		if r.open {
			r.pace(runCtx)
		} else {
			r.users(runCtx)
		}
		close(done)
	}()

	// The aggregator ticks on whole seconds since the start, so each sample
	// covers one second of the schedule.
	tick := 1
	for {
		next := r.start.Add(time.Duration(tick) * time.Second)
		timer := time.NewTimer(time.Until(next))
		select {
		case <-done:
			timer.Stop()
			agg.sample(r.now())
			res := agg.result()
			return res, nil
		case <-timer.C:
			agg.sample(r.now())
			tick++
		}
	}
}

// stageAt returns the stage running at offset d; past the end, the last.
func (r *run) stageAt(d time.Duration) int {
	var end time.Duration
	for i, s := range r.stages {
		end += s.Duration
		if d < end {
			return i
		}
	}
	return len(r.stages) - 1
}

// pace is the open model: arrivals at their scheduled times, handed to a
// goroutine each, bounded by MaxInFlight. It wakes once per batch of due
// arrivals rather than once per arrival, so high rates do not cost a timer
// each; every arrival keeps its own intended time.
func (r *run) pace(ctx context.Context) {
	defer r.wg.Wait()
	var stageStart time.Duration
	max := int64(r.o.MaxInFlight)
	for si, st := range r.stages {
		r.stage.Store(int32(si))
		// Offsets in floating point: an integer interval (333333333 ns at
		// 3/s) would fit a fourth arrival into the first second.
		count := int64(math.Ceil(st.Duration.Seconds()*st.Target - 1e-9))
		base := r.start.Add(stageStart)
		at := func(j int64) time.Time {
			return base.Add(time.Duration(float64(j) * float64(time.Second) / st.Target))
		}
		for j := int64(0); j < count; {
			now := r.now()
			due := j
			for due < count && !at(due).After(now) {
				due++
			}
			for ; j < due; j++ {
				if !r.take() {
					return
				}
				intended := at(j)
				r.scheduled.Add(1)
				if r.inFlight.Load() >= max {
					r.dropped.Add(1)
					continue
				}
				r.inFlight.Add(1)
				r.wg.Add(1)
				go r.fire(intended)
			}
			if j >= count {
				break
			}
			wait := at(j).Sub(r.now())
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			} else if ctx.Err() != nil {
				return
			}
		}
		stageStart += st.Duration
	}
}

func (r *run) fire(intended time.Time) {
	defer r.wg.Done()
	t := r.pickTarget()
	o := outcome{intended: intended}
	r.exchange(t, &o)
	r.inFlight.Add(-1)
	sh := r.shards[r.shardIdx.Add(1)%uint32(len(r.shards))]
	sh.record(&o)
}

func (r *run) exchange(t *preparedTarget, o *outcome) {
	o.sent = r.now()
	r.sent.Add(1)
	dl := r.deadline(o.sent)
	resp, err := r.sender.send(t, dl, r.endBound(dl, o.sent))
	o.done = r.now()
	o.status, o.bytes, o.firstByte, o.err = resp.Status, resp.Bytes, resp.FirstByte, err
	o.cut = err != nil && r.cutBy(dl, o.sent)
}

// endBound reports whether deadline dl is the run's end rather than the
// request's own timeout.
func (r *run) endBound(dl, sent time.Time) bool { return dl.Before(sent.Add(r.o.Timeout)) }

// cutBy reports whether deadline dl, for a request sent at sent, was the
// run's end rather than the request's timeout.
func (r *run) cutBy(dl, sent time.Time) bool {
	return r.endBound(dl, sent) && !r.now().Before(dl)
}

// users is the closed model: virtual users that send, wait, think and send
// again. With stages, users above the stage's count wait their turn.
func (r *run) users(ctx context.Context) {
	maxVUs := 0
	for _, s := range r.stages {
		if int(s.Target) > maxVUs {
			maxVUs = int(s.Target)
		}
	}
	end := r.start.Add(r.total)
	r.activeVUs.Store(int64(r.stages[0].Target))
	for i := 0; i < maxVUs; i++ {
		r.wg.Add(1)
		go r.user(ctx, i, end)
	}
	// Users stop by themselves on a count bound; then so does the run.
	allDone := make(chan struct{})
	go func() { r.wg.Wait(); close(allDone) }()
	// Follow the stages: set the number of active users on time.
	var off time.Duration
	for si, s := range r.stages {
		r.stage.Store(int32(si))
		r.activeVUs.Store(int64(s.Target))
		off += s.Duration
		t := time.NewTimer(time.Until(r.start.Add(off)))
		stop := false
		select {
		case <-ctx.Done():
			stop = true
		case <-allDone:
			stop = true
		case <-t.C:
		}
		t.Stop()
		if stop {
			break
		}
	}
	r.activeVUs.Store(0)
	<-allDone
}

func (r *run) user(ctx context.Context, id int, end time.Time) {
	defer r.wg.Done()
	sh := r.shards[id%len(r.shards)]
	conn := r.sender.conn()
	defer conn.release()
	for ctx.Err() == nil {
		if int64(id) >= r.activeVUs.Load() {
			if !r.now().Before(end) || r.activeVUs.Load() == 0 {
				return
			}
			// Idle until this user's stage; stage changes are coarse, so a
			// short poll costs nothing that matters.
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		if !r.now().Before(end) || !r.take() {
			return
		}
		t := r.pickTarget()
		// One shared counter per request: every atomic on the run's
		// counters bounces a cache line between cores, and at 100k
		// requests/s that shows. Scheduled and in-flight are derived.
		o := outcome{}
		o.sent = r.now()
		o.intended = o.sent
		r.busy[id].v.Store(true)
		r.sent.Add(1)
		dl := r.deadline(o.sent)
		resp, err := conn.send(t, dl, r.endBound(dl, o.sent))
		o.done = r.now()
		r.busy[id].v.Store(false)
		o.status, o.bytes, o.firstByte, o.err = resp.Status, resp.Bytes, resp.FirstByte, err
		o.cut = err != nil && r.cutBy(dl, o.sent)
		sh.record(&o)
		if r.o.Think > 0 {
			sleepCtx(ctx, r.o.Think)
		}
	}
}

// deadline is when a request sent at sent must be done: its timeout, or
// the end of the schedule plus the graceful stop, whichever comes first, so
// the run always ends on time.
func (r *run) deadline(sent time.Time) time.Time {
	d := sent.Add(r.o.Timeout)
	if end := r.start.Add(r.total + r.o.GracefulStop); end.Before(d) {
		return end
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
}

// aggregator turns the shards into one Sample a second and keeps the totals.
type aggregator struct {
	r       *run
	mon     *selfmon.Sampler
	iface   string
	monErrs []string
	seen    map[string]bool
	last    time.Time
	prevMon selfmon.Reading

	secCorr, secRaw, secLag    *hdrhistogram.Histogram
	totCorr, totRaw, totLag    *hdrhistogram.Histogram
	stageCorr                  []*hdrhistogram.Histogram
	totals                     intervalCounts
	samples                    []Sample
	prevScheduled, prevDropped int64
	prevSent                   int64
	availCores                 float64
}

func newAggregator(r *run, mon *selfmon.Sampler) *aggregator {
	a := &aggregator{r: r, mon: mon, seen: map[string]bool{},
		secCorr: newHist(), secRaw: newHist(), secLag: newHist(),
		totCorr: newHist(), totRaw: newHist(), totLag: newHist(),
		totals: intervalCounts{status: map[int]int64{}, errKinds: map[string]int64{}},
	}
	for range r.stages {
		a.stageCorr = append(a.stageCorr, newHist())
	}
	a.availCores = float64(min(runtime.GOMAXPROCS(0), runtime.NumCPU()))
	return a
}

func (a *aggregator) readMon() selfmon.Reading {
	if a.mon == nil {
		return selfmon.Reading{}
	}
	rd := a.mon.Read()
	for _, e := range rd.Errs {
		if s := e.Error(); !a.seen[s] && len(a.seen) < 20 {
			a.seen[s] = true
			a.monErrs = append(a.monErrs, s)
		}
	}
	return rd
}

func (a *aggregator) begin(t time.Time) {
	a.last = t
	a.prevMon = a.readMon()
}

func (a *aggregator) sample(now time.Time) {
	a.secCorr.Reset()
	a.secRaw.Reset()
	a.secLag.Reset()
	var c intervalCounts
	for _, sh := range a.r.shards {
		sh.drain(a.secCorr, a.secRaw, a.secLag, &c)
	}
	rd := a.readMon()
	u := selfmon.Compute(a.prevMon, rd)
	a.prevMon = rd

	scheduled, dropped, sent := a.r.scheduled.Load(), a.r.dropped.Load(), a.r.sent.Load()
	inFlight := a.r.inFlight.Load()
	if !a.r.open {
		// The closed model counts only sends: a user's request is
		// scheduled when sent. In flight is what the users hold now, not
		// sends minus the completions drained above: users go on
		// completing and sending while the shards are drained and /proc
		// is read, and that difference showed 246 in flight for 50 users
		// (issue 17).
		scheduled = sent
		inFlight = a.r.vusBusy()
	}
	// A sample belongs to the stage its middle falls in (the pacer may have
	// moved on by the time the tick runs).
	si := a.r.stageAt(a.last.Sub(a.r.start) + now.Sub(a.last)/2)
	s := Sample{
		At:            now.Sub(a.r.start),
		Interval:      now.Sub(a.last),
		Stage:         si,
		Target:        a.r.stages[si].Target,
		Scheduled:     scheduled - a.prevScheduled,
		Sent:          sent - a.prevSent,
		Dropped:       dropped - a.prevDropped,
		Completed:     c.completed,
		Errors:        c.errors,
		Failed:        c.failed,
		InFlight:      inFlight,
		BytesReceived: c.bytes + a.r.sender.bytesSince(),
		P50:           q(a.secCorr, 50),
		P95:           q(a.secCorr, 95),
		P99:           q(a.secCorr, 99),
		Max:           float64(a.secCorr.Max()) / 1e6,
		RawP50:        q(a.secRaw, 50),
		RawP95:        q(a.secRaw, 95),
		LagP50:        q(a.secLag, 50),
		LagP99:        q(a.secLag, 99),
		AvailCores:    a.availCores,
		Drain:         now.Sub(a.last) > 0 && a.last.Sub(a.r.start) >= a.r.total,
	}
	if c.sumLatency > 0 {
		s.ReceiveShare = float64(c.sumReceive) / float64(c.sumLatency)
	}
	if u.ProcKnown {
		s.ProcCores, s.WaitCores, s.CPUKnown = u.ProcCores, u.WaitCores, true
	}
	s.HostBusy = u.HostBusy
	if u.NetKnown {
		s.NetRx, s.NetTx, s.NetKnown = u.RxBytesPerSec, u.TxBytesPerSec, true
	}
	a.prevScheduled, a.prevDropped, a.prevSent = scheduled, dropped, sent
	a.last = now
	a.totCorr.Merge(a.secCorr)
	a.totRaw.Merge(a.secRaw)
	a.totLag.Merge(a.secLag)
	a.stageCorr[si].Merge(a.secCorr)
	c.bytes = s.BytesReceived
	a.totals.add(&c)
	if s.Interval > 0 {
		a.samples = append(a.samples, s)
	}
	// The run's last sliver of a second would show as a rate near zero.
	if a.r.o.Progress != nil && s.Interval >= 500*time.Millisecond {
		a.r.o.Progress(Progress{
			Elapsed: s.At, Total: a.r.total, Last: s,
			Completed: a.totals.completed, Errors: a.totals.errors, Dropped: dropped,
			Verdict: Diagnose(a.samples, a.diagConfig()),
		})
	}
}

func (a *aggregator) diagConfig() DiagnoseConfig {
	return DiagnoseConfig{Open: a.r.open, LinkCapacity: a.r.o.LinkCapacity, Think: a.r.o.Think.Seconds(),
		IfaceSpeed: selfmon.LinkSpeed("", a.iface), Iface: a.iface}
}

func q(h *hdrhistogram.Histogram, p float64) float64 {
	if h.TotalCount() == 0 {
		return 0
	}
	return float64(h.ValueAtPercentile(p)) / 1e6
}

func quantiles(h *hdrhistogram.Histogram) Quantiles {
	if h.TotalCount() == 0 {
		return Quantiles{}
	}
	return Quantiles{P50: q(h, 50), P90: q(h, 90), P95: q(h, 95), P99: q(h, 99),
		Max: float64(h.Max()) / 1e6, Mean: h.Mean() / 1e6}
}

func (a *aggregator) result() *Result {
	r := a.r
	res := &Result{
		Model:      "open",
		Elapsed:    a.last.Sub(r.start),
		Scheduled:  a.prevScheduled,
		Sent:       r.sent.Load(),
		Dropped:    r.dropped.Load(),
		Completed:  a.totals.completed,
		Errors:     a.totals.errors,
		Failed:     a.totals.failed,
		Status:     a.totals.status,
		ErrorKinds: a.totals.errKinds,
		Samples:    a.samples,
		Latency:    quantiles(a.totCorr),
		SendLag:    quantiles(a.totLag),
		Protocol:   r.sender.protocol(),
		Iface:      a.iface,

		LinkCapacity:       r.o.LinkCapacity,
		LatencyUncorrected: quantiles(a.totRaw),
		BytesReceived:      a.totals.bytes,
		MonitorErrors:      a.monErrs,
	}
	// With stages, the stage results carry the targets; Rate and VUs hold
	// the single target of an unstaged run.
	if len(r.stages) == 1 {
		if r.open {
			res.Rate = r.stages[0].Target
		} else {
			res.VUs = int(r.stages[0].Target)
		}
	}
	if !r.open {
		res.Model = "closed"
	}
	for _, t := range r.targets {
		res.Targets = append(res.Targets, t.display)
	}
	if secs := res.Elapsed.Seconds(); secs > 0 {
		res.RPS = float64(res.Completed-res.Failed) / secs
		res.BytesPerSec = float64(res.BytesReceived) / secs
	}
	res.Stages = stageResults(r.stages, a.samples, a.stageCorr, r.o.Thresholds, r.open)
	if len(r.stages) > 1 {
		res.Capacity = capacity(res.Stages, r.open)
	}
	res.Valid, res.Invalid = validity(res, r.open)
	res.Verdict = Diagnose(a.samples, a.diagConfig())
	// Issue 17: 100% connection refused printed "100 completed" and exited
	// 0. Whatever the samples would say (a run too short to judge, say),
	// a target that never answered is the one thing to report.
	res.NoResponse = res.Completed > 0 && res.Failed == res.Completed
	if res.NoResponse {
		res.Verdict = noResponseVerdict(res)
	}
	res.Thresholds, res.Passed = checkThresholds(r.o.Thresholds, res)
	return res
}

// noResponseVerdict is the verdict of a run in which no request got a
// response, naming how they failed.
func noResponseVerdict(res *Result) Verdict {
	unreachable := true
	for k := range res.ErrorKinds {
		switch k {
		case "connection refused", "dns", "tls", "connection reset":
		default:
			unreachable = false
		}
	}
	what := "the target never answered"
	if unreachable {
		what = "the target is unreachable"
	}
	return Verdict{Verdict: Inconclusive, Reasons: []string{
		fmt.Sprintf("%s: none of the %d requests got a response (%s)", what, res.Completed, FailureKinds(res.ErrorKinds)),
		"check that the server is up and listening at the URL, and reachable from this machine; nothing can be said about its capacity",
	}}
}

// FailureKinds lists failures by kind, most frequent first: "connection
// refused: 100".
func FailureKinds(kinds map[string]int64) string {
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if kinds[names[i]] != kinds[names[j]] {
			return kinds[names[i]] > kinds[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s: %d", k, kinds[k])
	}
	return strings.Join(parts, ", ")
}

// validity says whether the run kept the asked schedule. In the open model a
// dropped arrival or a send far behind its time means the server never saw
// the asked rate, so results must not be read as the server's at that rate.
func validity(res *Result, open bool) (bool, []string) {
	if !open || res.Scheduled == 0 {
		return true, nil
	}
	var why []string
	dropShare := float64(res.Dropped) / float64(res.Scheduled)
	if dropShare > 0.01 {
		why = append(why, fmt.Sprintf("%.1f%% of the scheduled requests (%d of %d) were dropped: all in-flight slots were busy at their send time",
			100*dropShare, res.Dropped, res.Scheduled))
	}
	if res.SendLag.P99 > 0.1 {
		why = append(why, fmt.Sprintf("sends ran late: 1%% of requests left more than %s after their scheduled time",
			fmtSeconds(res.SendLag.P99)))
	}
	if res.Elapsed > 0 {
		asked := float64(res.Scheduled) / res.Elapsed.Seconds()
		achieved := float64(res.Sent) / res.Elapsed.Seconds()
		if asked > 0 && achieved < 0.95*asked && dropShare <= 0.01 {
			why = append(why, fmt.Sprintf("sent %.0f/s of the %.0f/s scheduled", achieved, asked))
		}
	}
	return len(why) == 0, why
}

func fmtSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= 10*time.Microsecond:
		return d.Round(time.Microsecond).String()
	}
	return d.String()
}

// displayURL leaves out the query and user info, where keys and tokens live.
func displayURL(t Target) string {
	u := *t.URL
	u.RawQuery, u.User, u.Fragment = "", nil, ""
	s := u.String()
	if t.URL.RawQuery != "" {
		s += "?…"
	}
	return strings.TrimSpace(t.Method + " " + s)
}

// splitHostPort returns the host of a URL authority.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}
