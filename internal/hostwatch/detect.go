package hostwatch

import (
	"sort"
	"time"
)

// Thresholds at which an interval counts as saturated or spiking. They are
// deliberately blunt: the point is to find the minutes worth reading about,
// then let the timeline say what happened in them.
const (
	cpuBusyPct     = 90  // all CPUs, user+system+irq+steal
	stealPct       = 10  // hypervisor took this much: CPU credits gone
	memAvailPct    = 10  // MemAvailable under this share of MemTotal
	memPressurePct = 20  // PSI memory "some", from the total counters
	ioPressurePct  = 20  // PSI io "full"
	swapUsedPct    = 50  // of SwapTotal
	netSpikeFactor = 10  // times the window's median rate
	netFloorBytes  = 1e6 // bytes/s below which nothing is a spike
	netFloorPkts   = 1e3 // packets/s below which nothing is a spike
	// diskUtilPct is a device busy nearly all of the interval: requests
	// queue behind each other (iostat's %util).
	diskUtilPct = 90
)

// Signal kinds.
const (
	SigCPU            = "cpu"
	SigSteal          = "steal"
	SigMemory         = "memory"
	SigMemoryPressure = "memory-pressure"
	SigIOPressure     = "io-pressure"
	SigSwap           = "swap"
	SigNetwork        = "network"
	// SigDisk is a block device busy most of the interval (Detail names it).
	SigDisk = "disk"
)

// Signal is one way an episode showed: its peak and how long it lasted.
type Signal struct {
	Kind string `json:"kind"`
	// Peak is in Unit: "%" for shares, "B/s" for network, "B" for memory
	// available (where the peak is the lowest value).
	Peak     float64   `json:"peak"`
	Unit     string    `json:"unit"`
	First    time.Time `json:"first"`
	Duration Seconds   `json:"duration_s"`
	// Detail names the interface of a network spike, or the system share
	// of a CPU saturation.
	Detail string `json:"detail,omitempty"`
}

type interval struct {
	a, b Sample
	r    Rates
}

type hot struct {
	interval
	kinds map[string]float64
}

// intervals pairs consecutive samples of the same boot.
func intervals(samples []Sample) []interval {
	var out []interval
	for i := 1; i < len(samples); i++ {
		if r, ok := RatesBetween(samples[i-1], samples[i]); ok {
			out = append(out, interval{samples[i-1], samples[i], r})
		}
	}
	return out
}

// flagIntervals returns, per interval, the signals over threshold and their values.
func flagIntervals(ivs []interval) []hot {
	rx := make([]float64, 0, len(ivs))
	tx := make([]float64, 0, len(ivs))
	pk := make([]float64, 0, len(ivs))
	for _, iv := range ivs {
		rx = append(rx, iv.r.RxBytes)
		tx = append(tx, iv.r.TxBytes)
		pk = append(pk, iv.r.RxPackets+iv.r.TxPackets)
	}
	rxLim := max(netSpikeFactor*median(rx), netFloorBytes)
	txLim := max(netSpikeFactor*median(tx), netFloorBytes)
	pkLim := max(netSpikeFactor*median(pk), netFloorPkts)

	out := make([]hot, len(ivs))
	for i, iv := range ivs {
		k := map[string]float64{}
		r, m := iv.r, iv.b.Mem
		if r.Busy >= cpuBusyPct {
			k[SigCPU] = r.Busy
		}
		if r.Steal >= stealPct {
			k[SigSteal] = r.Steal
		}
		if m.Total > 0 && float64(m.Available) <= float64(m.Total)*memAvailPct/100 {
			k[SigMemory] = float64(m.Available)
		}
		if r.HasPSI && r.MemSome >= memPressurePct {
			k[SigMemoryPressure] = r.MemSome
		}
		if r.HasPSI && r.IOFull >= ioPressurePct {
			k[SigIOPressure] = r.IOFull
		}
		if m.SwapTotal > 0 && float64(m.SwapTotal-min(m.SwapFree, m.SwapTotal)) >= float64(m.SwapTotal)*swapUsedPct/100 {
			k[SigSwap] = 100 * float64(m.SwapTotal-m.SwapFree) / float64(m.SwapTotal)
		}
		if r.RxBytes >= rxLim || r.TxBytes >= txLim || r.RxPackets+r.TxPackets >= pkLim {
			k[SigNetwork] = max(r.RxBytes, r.TxBytes)
		}
		if d, ok := r.BusiestDisk(); ok && d.Util >= diskUtilPct {
			k[SigDisk] = d.Util
		}
		out[i] = hot{iv, k}
	}
	return out
}

// episodes merges hot intervals that are at most maxGap apart.
func episodes(hs []hot, maxGap time.Duration) [][]hot {
	var eps [][]hot
	var cur []hot
	for _, h := range hs {
		if len(h.kinds) == 0 {
			continue
		}
		if len(cur) > 0 && h.a.Time.Sub(cur[len(cur)-1].b.Time) > maxGap {
			eps = append(eps, cur)
			cur = nil
		}
		cur = append(cur, h)
	}
	if len(cur) > 0 {
		eps = append(eps, cur)
	}
	return eps
}

// signals summarises an episode's hot intervals per kind.
func signals(ep []hot) []Signal {
	by := map[string]*Signal{}
	var sysShare float64
	var cpuN int
	for _, h := range ep {
		dur := h.b.Time.Sub(h.a.Time)
		for kind, v := range h.kinds {
			s, ok := by[kind]
			if !ok {
				s = &Signal{Kind: kind, First: h.a.Time, Peak: v, Unit: "%"}
				switch kind {
				case SigNetwork:
					s.Unit = "B/s"
				case SigMemory:
					s.Unit = "B"
				}
				by[kind] = s
			}
			s.Duration += Seconds(dur)
			if kind == SigMemory {
				s.Peak = min(s.Peak, v) // lowest available
			} else if v > s.Peak {
				s.Peak = v
			}
			if kind == SigNetwork && v >= s.Peak {
				s.Detail = busiestIf(h.r.PerIf)
			}
			if d, ok := h.r.BusiestDisk(); ok && kind == SigDisk && v >= s.Peak {
				s.Detail = d.Name
			}
			if kind == SigCPU {
				if h.r.Busy > 0 {
					sysShare += h.r.System / h.r.Busy
				}
				cpuN++
			}
		}
	}
	if s, ok := by[SigCPU]; ok && cpuN > 0 {
		s.Detail = pctString(100*sysShare/float64(cpuN)) + " of it system"
	}
	out := make([]Signal, 0, len(by))
	for _, s := range by {
		if s.Unit == "%" {
			s.Peak = round2(s.Peak)
		}
		out = append(out, *s)
	}
	order := map[string]int{SigMemory: 0, SigMemoryPressure: 1, SigCPU: 2, SigSteal: 3, SigIOPressure: 4, SigDisk: 5, SigSwap: 6, SigNetwork: 7}
	sort.Slice(out, func(i, j int) bool { return order[out[i].Kind] < order[out[j].Kind] })
	return out
}

func busiestIf(per map[string]float64) string {
	var name string
	var best float64
	for n, v := range per {
		if v > best || (v == best && n < name) {
			name, best = n, v
		}
	}
	return name
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
