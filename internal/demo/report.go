package demo

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// LogSummary is what the guard's access log says, read back with the same
// parser `headroom logs analyze --format headroom` uses.
type LogSummary struct {
	Lines, Malformed int

	KeyRequests int // lines for the API key
	KeyRefused  int // 429
	KeyOK       int // 200
	KeyAborted  int // 499: the client gave up
	// For the 499 lines: the client's time, the upstream's time, and how
	// many had a real upstream status (the upstream did finish).
	AbortedClient   time.Duration
	AbortedUpstream time.Duration
	AbortedAnswered int
	KeyUpstream     time.Duration // upstream time of all the key's lines

	UIRequests, UIOK int
	// UIAborted counts UI lines with 499: pages still waiting when the
	// clients stopped. The analyzer counts every 499 in the log, so the
	// summary names these beside the exporter's (issue 17: "4 abandoned"
	// beside the analyzer's "5 of status 499").
	UIAborted int
}

func summarizeLog(path, keyFP string) (LogSummary, error) {
	var s LogSummary
	f, err := os.Open(path)
	if err != nil {
		return s, fmt.Errorf("read the demo's access log: %w", err)
	}
	defer f.Close()
	format, err := accesslog.LookupFormat("headroom", accesslog.FormatOptions{})
	if err != nil {
		return s, err
	}
	p := format.NewParser()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		s.Lines++
		var r accesslog.Record
		if err := p.Parse(sc.Bytes(), &r); err != nil {
			s.Malformed++
			continue
		}
		if r.Key != keyFP {
			s.UIRequests++
			switch r.Status {
			case http.StatusOK:
				s.UIOK++
			case 499:
				s.UIAborted++
			}
			continue
		}
		s.KeyRequests++
		s.KeyUpstream += r.UpstreamTime
		switch r.Status {
		case http.StatusTooManyRequests:
			s.KeyRefused++
		case http.StatusOK:
			s.KeyOK++
		case 499:
			s.KeyAborted++
			s.AbortedClient += r.RequestTime
			s.AbortedUpstream += r.UpstreamTime
			if r.UpstreamStatus > 0 {
				s.AbortedAnswered++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read the demo's access log: %w", err)
	}
	return s, nil
}

func writeHeader(w io.Writer, r *Result) {
	o := r.Opts
	fmt.Fprintf(w, "headroom demo: an upstream with %d workers (one request each at a time, like unicorn), headroom in front\n", o.Workers)
	fmt.Fprintf(w, "  budget: %s of worker time per %s per key, in-flight time included; over it, restricted for %s\n",
		o.Budget, o.Window, o.RestrictFor)
	if o.MaxInFlight > 0 {
		fmt.Fprintf(w, "  per-key cap: %d requests in flight\n", o.MaxInFlight)
	}
	if o.APIPool > 0 {
		fmt.Fprintf(w, "  pools: /api/ may hold at most %d of the %d workers\n", o.APIPool, o.Workers)
	}
	fmt.Fprintf(w, "  UI users open a page every %s (%s of work each); from %s an exporter with API key %s asks for\n",
		o.UIEvery, o.UIWork, o.APIStart, r.KeyFP)
	fmt.Fprintf(w, "  reports of %s-%s, %d at a time, with a %s client timeout\n",
		o.APIMinWork, o.APIMaxWork, o.APIConcurrency, o.ClientTimeout)
	if r.Scale < 1 {
		fmt.Fprintf(w, "  (a %s run: the 30 s story's timings are scaled by %.2f)\n", o.Duration, r.Scale)
	}
	fmt.Fprintf(w, "  live page while it runs: %s/ (admin API: %s/v1/keys)\n\n", r.AdminURL, r.AdminURL)
}

// WriteSummary prints what happened.
func (r *Result) WriteSummary(w io.Writer) {
	o := r.Opts
	type event struct {
		at   time.Duration
		text string
	}
	var ev []event
	add := func(at time.Duration, format string, args ...any) {
		ev = append(ev, event{at, fmt.Sprintf(format, args...)})
	}
	add(0, "the UI users start clicking")
	add(o.APIStart, "the exporter starts: %d reports at a time, each abandoned after %s", o.APIConcurrency, o.ClientTimeout)
	every := fmt.Sprintf("all %d workers", o.Workers)
	if o.Workers == 1 {
		every = "the only worker"
	}
	for _, iv := range r.HeldAllWorkers {
		add(iv.From, "the key's requests hold %s: the UI waits in the backlog", every)
		add(iv.To, "a worker is free again")
	}
	if r.Crossed && (!r.Restricted || r.CrossedAt+100*time.Millisecond < r.RestrictedAt) {
		add(r.CrossedAt, "the key's usage passes its budget (%s), %d of its requests running:\n"+
			"           the guard acts on its next request", o.Budget, r.RunningAtCross)
	}
	if r.Restricted {
		add(r.RestrictedAt, "the key's next request finds it at %.1f worker-seconds, in-flight included (budget %s): restricted;\n"+
			"           %d of its requests still running upstream, new ones get 429",
			r.UsedAtRestrict, o.Budget, r.RunningAtLimit)
		if r.Drained {
			add(r.DrainedAt, "the key's last running request finished upstream")
		}
	} else {
		add(r.Ran, "the key was never restricted (%.1f worker-seconds at the end)", r.KeyWorkerAtEnd)
	}
	if at, ok := r.firstAPIFinish(); ok {
		if r.Restricted && at > r.RestrictedAt {
			add(at, "the key's first request finishes upstream: a guard charging on completion only\n"+
				"           had billed it nothing until now")
		} else {
			add(at, "the key's first request finishes upstream")
		}
	}
	add(r.Ran, "the clients stop")
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].at < ev[j].at })
	fmt.Fprintln(w, "\nWhat happened")
	for _, e := range ev {
		fmt.Fprintf(w, "  %6.1fs  %s\n", e.at.Seconds(), e.text)
	}
	if r.UpstreamPending > 0 {
		fmt.Fprintf(w, "  (%d requests were still running upstream when the demo stopped waiting)\n", r.UpstreamPending)
	}

	fmt.Fprintf(w, "\nUI latency (a page every %s, %s of work each)\n", o.UIEvery, o.UIWork)
	fmt.Fprintf(w, "  %-44s %6s %8s %8s %8s %7s %10s\n", "", "pages", "p50", "p95", "max", "errors", "unanswered")
	for _, ph := range r.uiPhases() {
		fmt.Fprintf(w, "  %-44s %6d %8s %8s %8s %7d %10d\n", ph.name, ph.n, fmtDur(ph.p50), fmtDur(ph.p95), fmtDur(ph.max), ph.errors, ph.unanswered)
	}
	if n := r.uiUnanswered(); n > 0 {
		fmt.Fprintf(w, "  (%d still waiting for a worker when the clients stopped: not in the percentiles)\n", n)
	}

	a := r.apiStats()
	fmt.Fprintf(w, "\nThe exporter (API key %s, %s client timeout)\n", r.KeyFP, o.ClientTimeout)
	fmt.Fprintf(w, "  %d requests: %d abandoned at its timeout, %d answered, %d refused with 429, %d other\n",
		a.total, a.abandoned, a.ok, a.refused, a.other)
	if a.abandoned > 0 {
		fmt.Fprintf(w, "  the %d abandoned requests:\n", a.abandoned)
		fmt.Fprintf(w, "    the client saw              %7.1f s  (%.1f s each)\n", a.clientSaw.Seconds(), a.clientSaw.Seconds()/float64(a.abandoned))
		fmt.Fprintf(w, "    the upstream really worked  %7.1f s  (+ %.1f s waiting for a worker", a.worked.Seconds(), a.backlog.Seconds())
		if a.unfinished > 0 {
			fmt.Fprintf(w, "; %d not finished when it stopped", a.unfinished)
		}
		fmt.Fprintln(w, ")")
		fmt.Fprintf(w, "    headroom charged            %7.1f s  (access log: %d x status 499 at the client's time, %d with the upstream's status and real time)\n",
			r.Log.AbortedUpstream.Seconds(), r.Log.KeyAborted, r.Log.AbortedAnswered)
		if a.clientSaw > 0 {
			fmt.Fprintf(w, "  charging when the client gives up (seed 03's nginx guard) would have billed %.1f s: %.1fx too little\n",
				a.clientSaw.Seconds(), (a.worked+a.backlog).Seconds()/a.clientSaw.Seconds())
		}
	}

	if len(r.GuardLog) > 0 {
		fmt.Fprintln(w, "\nWhat the guard logged")
		for _, l := range r.GuardLog {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	fmt.Fprintf(w, "\nAccess log: %s (%d requests)\n", r.AccessLog, r.Log.Lines)
	if n := r.Log.KeyAborted + r.Log.UIAborted; n > 0 {
		fmt.Fprintf(w, "  %d with status 499 (the client gave up): the exporter's %d abandoned requests", n, r.Log.KeyAborted)
		if r.Log.UIAborted > 0 {
			fmt.Fprintf(w, " and %d UI %s still waiting when the clients stopped", r.Log.UIAborted, plural(r.Log.UIAborted, "page", "pages"))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  analyze it: headroom logs analyze --format headroom %s\n", r.AccessLog)
}

// firstAPIFinish is when the upstream first finished an API request.
func (r *Result) firstAPIFinish() (time.Duration, bool) {
	var first time.Time
	for _, u := range r.Upstream {
		if u.API && u.Finished && (first.IsZero() || u.Done.Before(first)) {
			first = u.Done
		}
	}
	return first.Sub(r.Start), !first.IsZero()
}

type phase struct {
	name                  string
	n, errors, unanswered int
	p50, p95, max         time.Duration
}

// starved reports whether s is a page still waiting, for long, when the
// clients stopped; pages sent a moment before the stop are not news.
func (r *Result) starved(s Sample) bool {
	return s.Err == "stopped" && s.Latency >= max(10*r.Opts.UIWork, 250*time.Millisecond)
}

// uiUnanswered counts the starved pages.
func (r *Result) uiUnanswered() int {
	n := 0
	for _, s := range r.UI {
		if r.starved(s) {
			n++
		}
	}
	return n
}

// uiPhases splits the UI's pages by when they were requested.
func (r *Result) uiPhases() []phase {
	type span struct {
		name     string
		from, to time.Duration
	}
	end := r.Ran
	spans := []span{{"before the API key", 0, r.Opts.APIStart}}
	if !r.Restricted {
		spans = append(spans, span{"API key running (never restricted)", r.Opts.APIStart, end})
	} else {
		spans = append(spans, span{"API key unrestricted", r.Opts.APIStart, r.RestrictedAt})
		// A restriction stops new requests, not the ones running: split
		// the rest at the moment the key stopped holding every worker.
		freed := r.RestrictedAt
		for _, iv := range r.HeldAllWorkers {
			if iv.From <= r.RestrictedAt && r.RestrictedAt < iv.To {
				freed = iv.To
			}
		}
		if freed > r.RestrictedAt {
			spans = append(spans, span{"restricted, its requests hold every worker", r.RestrictedAt, min(freed, end)})
		}
		if freed < end {
			spans = append(spans, span{"restricted, a worker free for the UI", freed, end})
		}
	}
	var out []phase
	for _, sp := range spans {
		ph := phase{name: sp.name}
		var lat []time.Duration
		for _, s := range r.UI {
			at := s.Start.Sub(r.Start)
			if at < sp.from || at >= sp.to || s.Err == "stopped" && !r.starved(s) {
				continue
			}
			ph.n++
			switch {
			case s.Err == "stopped":
				ph.unanswered++
				continue
			case s.Status != http.StatusOK:
				ph.errors++
			}
			lat = append(lat, s.Latency)
		}
		if len(lat) > 0 {
			slices.Sort(lat)
			ph.p50 = lat[(len(lat)-1)/2]
			ph.p95 = lat[(len(lat)-1)*95/100]
			ph.max = lat[len(lat)-1]
		}
		out = append(out, ph)
	}
	return out
}

type apiStats struct {
	total, abandoned, ok, refused, other int
	clientSaw, worked, backlog           time.Duration
	unfinished                           int
}

// apiStats joins the exporter's view with the upstream's, by request id.
func (r *Result) apiStats() apiStats {
	byID := map[string]UpstreamRecord{}
	for _, u := range r.Upstream {
		if u.ID != "" {
			byID[u.ID] = u
		}
	}
	var a apiStats
	for _, s := range r.API {
		a.total++
		switch {
		case s.Abandoned:
			a.abandoned++
			a.clientSaw += s.Latency
			if u, ok := byID[s.ID]; ok {
				a.worked += u.Worker()
				a.backlog += u.Backlog()
				if !u.Finished {
					a.unfinished++
				}
			}
		case s.Status == http.StatusOK:
			a.ok++
		case s.Status == http.StatusTooManyRequests:
			a.refused++
		default:
			a.other++
		}
	}
	return a
}

// fmtDur prints a latency compactly: 51ms, 2.3s.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
