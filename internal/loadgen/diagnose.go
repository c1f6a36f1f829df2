package loadgen

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Verdict names what limited a run, with the evidence in plain words.
type Verdict struct {
	// Verdict is server-bound, client-cpu-bound, client-network-bound or
	// inconclusive.
	Verdict string
	Reasons []string
}

// The verdicts DESIGN.md names.
const (
	ServerBound        = "server-bound"
	ClientCPUBound     = "client-cpu-bound"
	ClientNetworkBound = "client-network-bound"
	Inconclusive       = "inconclusive"
)

// DiagnoseConfig is what Diagnose knows besides the samples.
type DiagnoseConfig struct {
	Open bool
	// LinkCapacity is the user's known link capacity, bytes/s (0: unknown).
	LinkCapacity float64
	// IfaceSpeed is the interface's nominal speed, bytes/s (0: unknown).
	IfaceSpeed float64
	Iface      string
	// Think is the closed model's think time in seconds.
	Think float64
}

// Thresholds of the diagnosis. They are deliberately coarse: a verdict must
// not flip on the noise of a shared two-core machine.
const (
	cpuSaturated      = 0.85 // share of available cores used or waited for
	linkSaturated     = 0.85 // share of a known link capacity
	receiveDominant   = 0.5  // share of request time spent receiving bodies
	keptUp            = 0.95 // achieved over offered rate that counts as keeping up
	lateSend          = 0.02 // seconds of p99 send lag that count as late
	latencyGrowth     = 2.0  // p95 growth that counts as "latency grew"
	lagDominant       = 0.5  // share of the corrected p50 that is send lag worth a warning
	minJudgingSamples = 3
)

// Diagnose decides, from per-second samples alone, what limited the run. It
// is a pure function: the same samples always give the same verdict.
//
// The order matters: when the generator itself ran out of CPU or of link,
// nothing it measured describes the server, so those come first.
func Diagnose(samples []Sample, cfg DiagnoseConfig) Verdict {
	use := usable(samples)
	if len(use) < minJudgingSamples {
		return Verdict{Verdict: Inconclusive, Reasons: []string{fmt.Sprintf(
			"too short to judge: %d full second(s) of samples; run for at least 5 s", len(use))}}
	}
	st := summarize(use)
	var evidence []string
	if st.failShare >= 0.9 {
		return Verdict{Verdict: Inconclusive, Reasons: []string{
			fmt.Sprintf("%.0f%% of requests got no response at all (see the failures): check that the server is up and reachable from here", 100*st.failShare),
			"nothing can be said about its capacity from a run it did not answer",
		}}
	}

	// 1. The generator's CPU.
	if st.cpuKnown && st.demand >= cpuSaturated {
		r := fmt.Sprintf("the generator needed %.0f%% of the %s it may use (%.2f running, %.2f waiting for a CPU)",
			100*st.demand, cores(st.avail), st.proc, st.wait)
		reasons := []string{r}
		if st.wait >= 0.2*st.avail {
			reasons = append(reasons, fmt.Sprintf("its threads waited %.2f core-seconds per second on the run queue: another process holds the CPU it needs", st.wait))
		}
		if cfg.Open && st.lag > lateSend {
			reasons = append(reasons, fmt.Sprintf("sends left %s late at p99", fmtSeconds(st.lag)))
		}
		if cfg.Open && st.offered > 0 && st.achieved < keptUp*st.offered {
			reasons = append(reasons, fmt.Sprintf("achieved %.0f/s of the %.0f/s asked", st.achieved, st.offered))
		}
		reasons = append(reasons, "these numbers describe the generator, not the server: give it more CPU (more cores, GOMAXPROCS, no competing processes) or run several generators")
		return Verdict{Verdict: ClientCPUBound, Reasons: reasons}
	} else if st.cpuKnown {
		evidence = append(evidence, fmt.Sprintf("the generator needed %.0f%% of %s: %.2f running, %.2f waiting", 100*st.demand, cores(st.avail), st.proc, st.wait))
	}

	// 2. The generator's link.
	bytesRate := st.bytes
	if st.netKnown && st.netRx > bytesRate && cfg.LinkCapacity > 0 {
		bytesRate = st.netRx
	}
	if cfg.LinkCapacity > 0 && bytesRate >= linkSaturated*cfg.LinkCapacity {
		reasons := []string{
			fmt.Sprintf("bytes received held at %s, %.0f%% of the %s link capacity given", fmtBytes(bytesRate), 100*bytesRate/cfg.LinkCapacity, fmtBits(cfg.LinkCapacity)),
		}
		reasons = append(reasons, st.growthPhrase()...)
		reasons = append(reasons, "this is a link limit: run the generator closer to the server (same network or region)")
		return Verdict{Verdict: ClientNetworkBound, Reasons: reasons}
	}
	if cfg.LinkCapacity == 0 && cfg.IfaceSpeed > 0 && st.netKnown && st.netRx >= linkSaturated*cfg.IfaceSpeed {
		return Verdict{Verdict: ClientNetworkBound, Reasons: []string{
			fmt.Sprintf("interface %s received %s, %.0f%% of its nominal %s", cfg.Iface, fmtBytes(st.netRx), 100*st.netRx/cfg.IfaceSpeed, fmtBits(cfg.IfaceSpeed)),
			"this is a link limit: run the generator closer to the server or on a faster interface",
		}}
	}
	behind := cfg.Open && st.offered > 0 && st.achieved < keptUp*st.offered
	flat := st.stagesRose >= 2 && st.bytesGrowth < 1.25
	if st.receive >= receiveDominant && (behind || flat || !cfg.Open || st.latencyGrew()) {
		reasons := []string{}
		if flat {
			reasons = append(reasons, fmt.Sprintf("bytes received flat at %s%s while offered load rose %s", fmtBytes(st.lastBytes), st.on(cfg.Iface), st.rose()))
		} else {
			reasons = append(reasons, fmt.Sprintf("bytes received held at %s", fmtBytes(st.bytes)))
		}
		if cfg.LinkCapacity > 0 {
			reasons = append(reasons, fmt.Sprintf("that is %.0f%% of the %s link capacity given: the path is slower than the link you named, or shared", 100*bytesRate/cfg.LinkCapacity, fmtBits(cfg.LinkCapacity)))
		}
		reasons = append(reasons, fmt.Sprintf("%.0f%% of each request's time was spent receiving the response after its first byte: the bytes are slow to arrive, not the server to answer", 100*st.receive))
		if st.latencyGrew() {
			reasons = append(reasons, fmt.Sprintf("latency grew: p95 %s → %s", fmtSeconds(st.firstP95), fmtSeconds(st.lastP95)))
		}
		if behind {
			reasons = append(reasons, fmt.Sprintf("achieved %.0f/s of the %.0f/s asked", st.achieved, st.offered))
		}
		reasons = append(reasons, "this is a link limit: run the generator closer to the server, or pass --link-capacity to name the known limit")
		if !flat && cfg.LinkCapacity == 0 {
			// The weakest form of the evidence: say what else it could be.
			reasons = append(reasons, "unless the server streams its responses slowly on purpose, in which case this is the server's pace")
		}
		return Verdict{Verdict: ClientNetworkBound, Reasons: reasons}
	}
	if st.netKnown {
		evidence = append(evidence, fmt.Sprintf("%s received %s", ifaceName(cfg.Iface), fmtBytes(st.netRx)))
	}
	if cfg.LinkCapacity > 0 {
		evidence = append(evidence, fmt.Sprintf("%.0f%% of the %s link capacity given", 100*bytesRate/cfg.LinkCapacity, fmtBits(cfg.LinkCapacity)))
	}
	spare := "the generator had CPU and link to spare"
	if len(evidence) > 0 {
		spare += " (" + join(evidence) + ")"
	}

	// 3. The server.
	var server []string
	if behind {
		server = append(server, fmt.Sprintf("the server completed %.0f/s of the %.0f/s asked", st.achieved, st.offered))
	}
	if cfg.Open && st.dropShare > 0.01 {
		server = append(server, fmt.Sprintf("%.0f%% of arrivals were dropped because every in-flight request was still waiting for the server", 100*st.dropShare))
	}
	if st.latencyGrew() {
		server = append(server, fmt.Sprintf("latency grew: p95 %s → %s", fmtSeconds(st.firstP95), fmtSeconds(st.lastP95)))
	}
	if st.errShare >= 0.01 {
		server = append(server, fmt.Sprintf("%.1f%% of requests failed or got a 5xx", 100*st.errShare))
	}
	if flat {
		server = append(server, fmt.Sprintf("throughput flat at %.0f/s while offered load rose %s", st.lastRate, st.rose()))
	}
	// Issue 17: at 2000/s on loopback the corrected p50 was 601µs, 522µs
	// of it the generator's own send lag; the server answered in 77µs.
	var lagNote []string
	if cfg.Open && st.lagDominates() {
		lagNote = append(lagNote, fmt.Sprintf("the generator's own send lag was p50 %s of the corrected p50 %s (%.0f%%): that is this machine's timer and scheduler, not the server, which answered in p50 %s; the uncorrected latency is the server's time at this rate",
			fmtSeconds(st.lagP50), fmtSeconds(st.corrP50), 100*st.lagP50/st.corrP50, fmtSeconds(st.p50)))
	}
	if len(server) > 0 {
		server = append(server, fmt.Sprintf("requests waited for the server's first byte (%.0f%% of their time), not for bytes on the wire", 100*(1-st.receive)))
		server = append(server, spare)
		server = append(server, lagNote...)
		return Verdict{Verdict: ServerBound, Reasons: server}
	}
	if !cfg.Open {
		if cfg.Think > 0 && st.p50 < cfg.Think {
			return Verdict{Verdict: Inconclusive, Reasons: []string{
				fmt.Sprintf("the users spent most of their time thinking (%s) rather than waiting (p50 %s): the load was light", fmtSeconds(cfg.Think), fmtSeconds(st.p50)),
				"add virtual users or shorten --think to find a limit",
			}}
		}
		return Verdict{Verdict: ServerBound, Reasons: []string{
			fmt.Sprintf("each user waited p50 %s for the server, %.0f%% of it before the first byte", fmtSeconds(st.p50), 100*(1-st.receive)),
			spare,
		}}
	}
	return Verdict{Verdict: Inconclusive, Reasons: append([]string{
		fmt.Sprintf("the server kept up with the asked %.0f/s (answered %.0f/s, p95 %s, %.1f%% errors) and nothing on the generator was near a limit", st.offered, st.achieved, fmtSeconds(st.lastP95), 100*st.errShare),
		"no limit was reached: raise --rate or use --stages to find one",
	}, lagNote...)}
}

// lagDominates reports whether the generator's send lag is most of the
// corrected latency, so that the corrected figures describe the generator.
// Below 100µs of lag nothing is worth a warning.
func (st summary) lagDominates() bool {
	return st.lagP50 >= 0.0001 && st.corrP50 > 0 && st.lagP50 >= lagDominant*st.corrP50
}

// usable drops the warm-up second (connections being opened) and short
// tail intervals, which would bias medians.
func usable(samples []Sample) []Sample {
	var out []Sample
	for i, s := range samples {
		if s.Interval < 500_000_000 || s.Drain {
			continue
		}
		if i == 0 && len(samples) >= 4 {
			continue
		}
		out = append(out, s)
	}
	return out
}

type summary struct {
	cpuKnown, netKnown  bool
	demand, proc, wait  float64
	avail               float64
	netRx, bytes        float64
	receive             float64
	lag                 float64
	lagP50, corrP50     float64 // the generator's send lag against the corrected latency
	offered, achieved   float64
	dropShare, errShare float64
	failShare           float64
	p50                 float64
	firstP95, lastP95   float64
	latGrowth           float64
	stagesRose          float64 // last stage target over first (0 without stages)
	bytesGrowth         float64
	lastBytes, lastRate float64
	firstBytes          float64
	plateauFrom         int
	firstTarget         float64
	lastTarget          float64
}

func summarize(use []Sample) summary {
	var st summary
	var demand, proc, wait, avail, netRx, bytes, recv, lag, offered, achieved, p50, lagP50, corrP50 []float64
	var sched, dropped, completed, errs, failed int64
	for _, s := range use {
		if s.CPUKnown && s.AvailCores > 0 {
			st.cpuKnown = true
			demand = append(demand, (s.ProcCores+s.WaitCores)/s.AvailCores)
			proc = append(proc, s.ProcCores)
			wait = append(wait, s.WaitCores)
			avail = append(avail, s.AvailCores)
		}
		if s.NetKnown {
			st.netKnown = true
			netRx = append(netRx, s.NetRx)
		}
		bytes = append(bytes, s.Bytes())
		recv = append(recv, s.ReceiveShare)
		lag = append(lag, s.LagP99)
		// The asked rate, not the arrivals the pacer got round to: a late
		// pacer must not lower the bar it is judged against.
		offered = append(offered, s.Target)
		achieved = append(achieved, s.Rate())
		// The server's own time: a corrected figure adds the generator's
		// send lag, and the verdict must not blame the server for that.
		p50 = append(p50, s.RawP50)
		lagP50 = append(lagP50, s.LagP50)
		corrP50 = append(corrP50, s.P50)
		sched += s.Scheduled
		dropped += s.Dropped
		completed += s.Completed
		errs += s.Errors
		failed += s.Failed
	}
	st.demand, st.proc, st.wait, st.avail = median(demand), median(proc), median(wait), median(avail)
	st.netRx, st.bytes, st.receive, st.lag = median(netRx), median(bytes), median(recv), median(lag)
	st.offered, st.achieved, st.p50 = median(offered), median(achieved), median(p50)
	st.lagP50, st.corrP50 = median(lagP50), median(corrP50)
	if sched > 0 {
		st.dropShare = float64(dropped) / float64(sched)
	}
	if completed > 0 {
		st.errShare = float64(errs) / float64(completed)
		st.failShare = float64(failed) / float64(completed)
	}
	// Latency growth: first third against last third.
	third := max(1, len(use)/3)
	st.firstP95 = medianOf(use[:third], func(s Sample) float64 { return s.RawP95 })
	st.lastP95 = medianOf(use[len(use)-third:], func(s Sample) float64 { return s.RawP95 })
	if st.firstP95 > 0 {
		st.latGrowth = st.lastP95 / st.firstP95
	}
	// Stages: find where bytes/s stopped growing. The plateau starts at
	// the first stage already within 20% of the last stage's bytes/s; the
	// load asked from there on grew by stagesRose while the bytes did not.
	first, last := use[0].Stage, use[len(use)-1].Stage
	if last != first {
		in := func(stage int) []Sample {
			var out []Sample
			for _, s := range use {
				if s.Stage == stage {
					out = append(out, s)
				}
			}
			return out
		}
		// Bytes on the interface when it is read: responses complete in
		// lumps under overload, while the wire shows the steady truth.
		wire := Sample.Bytes
		if st.netKnown {
			wire = func(s Sample) float64 { return s.NetRx }
		}
		ls := in(last)
		st.lastBytes = medianOf(ls, wire)
		st.lastRate = medianOf(ls, Sample.Rate)
		st.plateauFrom = last
		for stage := first; stage < last; stage++ {
			ss := in(stage)
			if len(ss) == 0 {
				continue
			}
			if b := medianOf(ss, wire); b >= 0.8*st.lastBytes {
				st.plateauFrom = stage
				st.firstBytes = b
				st.firstTarget = ss[0].Target
				break
			}
		}
		if st.plateauFrom != last && st.firstTarget > 0 {
			st.stagesRose = ls[0].Target / st.firstTarget
			st.bytesGrowth = st.lastBytes / st.firstBytes
			st.lastTarget = ls[0].Target
		}
		// The summary's offered/achieved describe the last stage, where a
		// limit shows first.
		st.offered = ls[0].Target
		st.achieved = st.lastRate
	}
	return st
}

func (st summary) growthPhrase() []string {
	var out []string
	if st.stagesRose >= 2 && st.bytesGrowth < 1.25 {
		out = append(out, fmt.Sprintf("it stayed flat while offered load rose %s", st.rose()))
	}
	if st.latencyGrew() {
		out = append(out, fmt.Sprintf("latency grew: p95 %s → %s", fmtSeconds(st.firstP95), fmtSeconds(st.lastP95)))
	}
	return out
}

// latencyGrew reports a rise in p95 that means queueing: at least double,
// and by at least 50 ms, so a fast server's 2 ms → 10 ms under a sustained
// rate is not read as its limit.
func (st summary) latencyGrew() bool {
	return st.latGrowth >= latencyGrowth && st.lastP95-st.firstP95 >= 0.05
}

// on names where flat bytes were measured.
func (st summary) on(iface string) string {
	if st.netKnown && iface != "" {
		return " on " + iface
	}
	return ""
}

// rose says how the offered load grew over the plateau: "5× (200 → 1000)".
func (st summary) rose() string {
	return fmt.Sprintf("%s× (%g → %g)", strconv.FormatFloat(math.Round(st.stagesRose*10)/10, 'f', -1, 64), st.firstTarget, st.lastTarget)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianOf(samples []Sample, f func(Sample) float64) float64 {
	v := make([]float64, 0, len(samples))
	for _, s := range samples {
		v = append(v, f(s))
	}
	return median(v)
}

func cores(n float64) string {
	if n == 1 {
		return "1 core"
	}
	return fmt.Sprintf("%g cores", n)
}

func ifaceName(s string) string {
	if s == "" {
		return "the interface"
	}
	return s
}

func join(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ", "
		}
		out += p
	}
	return out
}

// fmtBytes prints a byte rate the way the seed's k6 output did: MB/s.
func fmtBytes(b float64) string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.2f GB/s", b/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB/s", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB/s", b/1e3)
	}
	return fmt.Sprintf("%.0f B/s", b)
}

// fmtBits prints a link capacity in bits per second, as links are sold.
func fmtBits(bytesPerSec float64) string {
	b := bytesPerSec * 8
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%gGbit/s", math.Round(b/1e7)/100)
	case b >= 1e6:
		return fmt.Sprintf("%gMbit/s", math.Round(b/1e4)/100)
	case b >= 1e3:
		return fmt.Sprintf("%gkbit/s", math.Round(b/10)/100)
	}
	return fmt.Sprintf("%gbit/s", math.Round(b))
}
