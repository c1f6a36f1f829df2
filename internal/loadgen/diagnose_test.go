package loadgen

import (
	"strings"
	"testing"
	"time"
)

// sec builds n one-second samples, each shaped by f.
func sec(n int, f func(i int, s *Sample)) []Sample {
	out := make([]Sample, n)
	for i := range out {
		s := Sample{At: time.Duration(i+1) * time.Second, Interval: time.Second,
			AvailCores: 2, CPUKnown: true, ProcCores: 0.1, NetKnown: true}
		f(i, &s)
		// Unless a case says otherwise, the generator had no send lag: the
		// server's own (uncorrected) time is the corrected one.
		if s.RawP50 == 0 && s.RawP95 == 0 {
			s.RawP50, s.RawP95 = s.P50, s.P95
		}
		out[i] = s
	}
	return out
}

// steady is an open-model second at rate r: all sent and answered, small
// bodies, a 5 ms server.
func steady(r int64) func(int, *Sample) {
	return func(_ int, s *Sample) {
		s.Target = float64(r)
		s.Scheduled, s.Sent, s.Completed = r, r, r
		s.BytesReceived = r * 200
		s.NetRx = float64(r * 300)
		s.P50, s.P95, s.P99 = 0.004, 0.005, 0.006
		s.ReceiveShare = 0.01
		s.LagP99 = 0.001
	}
}

func TestDiagnose(t *testing.T) {
	tests := []struct {
		name    string
		samples []Sample
		cfg     DiagnoseConfig
		want    string
		reasons []string // substrings some reason must contain
	}{
		{
			name:    "too short",
			samples: sec(2, steady(100)),
			cfg:     DiagnoseConfig{Open: true},
			want:    Inconclusive,
			reasons: []string{"too short"},
		},
		{
			name:    "server kept up",
			samples: sec(10, steady(100)),
			cfg:     DiagnoseConfig{Open: true},
			want:    Inconclusive,
			reasons: []string{"kept up with the asked 100/s (answered 100/s", "raise --rate"},
		},
		{
			name: "generator starved of CPU",
			samples: sec(10, func(i int, s *Sample) {
				steady(1000)(i, s)
				s.Completed, s.Sent = 600, 600
				s.AvailCores, s.ProcCores, s.WaitCores = 1, 0.5, 0.45
				s.LagP99 = 0.08
			}),
			cfg:     DiagnoseConfig{Open: true},
			want:    ClientCPUBound,
			reasons: []string{"95% of the 1 core", "waited 0.45 core-seconds", "80ms late", "achieved 600/s of the 1000/s", "describe the generator"},
		},
		{
			name: "generator busy on its own cores",
			samples: sec(6, func(i int, s *Sample) {
				steady(5000)(i, s)
				s.ProcCores, s.WaitCores = 1.9, 0.02
			}),
			cfg:     DiagnoseConfig{},
			want:    ClientCPUBound,
			reasons: []string{"96% of the 2 cores"},
		},
		{
			name: "known link capacity reached",
			samples: sec(8, func(i int, s *Sample) {
				s.Target = 20
				s.Completed, s.Sent = 200, 200
				s.BytesReceived = 9_700_000
				s.NetRx = 9_900_000
				s.P50, s.P95 = 0.4, 0.5
				s.ReceiveShare = 0.3
			}),
			cfg:     DiagnoseConfig{LinkCapacity: 10e6},
			want:    ClientNetworkBound,
			reasons: []string{"99% of the 80Mbit/s link capacity given", "link limit"},
		},
		{
			name: "seed 04: bytes flat while the offered rate rose 5x",
			samples: func() []Sample {
				var out []Sample
				for stage, rate := range []int64{100, 200, 1000} {
					out = append(out, sec(5, func(i int, s *Sample) {
						s.Stage, s.Target = stage, float64(rate)
						s.Scheduled, s.Sent = rate, rate
						s.Completed = min(rate, 200)
						s.BytesReceived = s.Completed * 50_000
						s.NetRx = float64(s.BytesReceived)
						s.P95 = 0.05 * float64(stage*stage+1)
						s.ReceiveShare = 0.8
					})...)
				}
				return out
			}(),
			cfg:     DiagnoseConfig{Open: true, Iface: "eth0"},
			want:    ClientNetworkBound,
			reasons: []string{"bytes received flat at 10.0 MB/s on eth0 while offered load rose 5× (200 → 1000)", "80% of each request's time", "latency grew", "run the generator closer to the server"},
		},
		{
			name: "slow bodies below a named link capacity",
			samples: sec(6, func(i int, s *Sample) {
				s.Target, s.Completed, s.Sent = 16, 24, 24
				s.BytesReceived = 6_000_000
				s.NetRx = 6_100_000
				s.P50, s.P95 = 0.6, 0.9
				s.ReceiveShare = 0.75
			}),
			cfg:     DiagnoseConfig{LinkCapacity: 10e6},
			want:    ClientNetworkBound,
			reasons: []string{"61% of the 80Mbit/s link capacity given", "75% of each request's time"},
		},
		{
			name: "fixed worker pool",
			samples: sec(8, func(i int, s *Sample) {
				steady(400)(i, s)
				s.Completed = 200
				s.P95 = 0.1 * float64(i+1)
			}),
			cfg:     DiagnoseConfig{Open: true},
			want:    ServerBound,
			reasons: []string{"completed 200/s of the 400/s asked", "latency grew", "first byte", "to spare"},
		},
		{
			// Issue 17: at 2000/s on loopback the corrected p50 was 601µs
			// against 77µs uncorrected, 522µs of it send lag. A generator
			// whose timer falls further behind must not read as a server
			// whose latency grew.
			name: "the generator's send lag, not the server's latency",
			samples: sec(9, func(i int, s *Sample) {
				steady(2000)(i, s)
				s.P50, s.P95 = 0.000601, 0.01*float64(i+1)
				s.RawP50, s.RawP95 = 0.000077, 0.0003
				s.LagP50, s.LagP99 = 0.000522, 0.01*float64(i+1)
			}),
			cfg:     DiagnoseConfig{Open: true},
			want:    Inconclusive,
			reasons: []string{"kept up with the asked 2000/s (answered 2000/s, p95 300µs", "send lag was p50 522µs of the corrected p50 601µs (87%)", "answered in p50 77µs"},
		},
		{
			name: "pool full, arrivals dropped",
			samples: sec(8, func(i int, s *Sample) {
				steady(400)(i, s)
				s.Sent, s.Dropped, s.Completed = 100, 300, 100
				s.P95 = 2
			}),
			cfg:     DiagnoseConfig{Open: true},
			want:    ServerBound,
			reasons: []string{"75% of arrivals were dropped"},
		},
		{
			name: "closed model waiting on the server",
			samples: sec(6, func(i int, s *Sample) {
				s.Target, s.Completed, s.Sent = 20, 200, 200
				s.P50, s.P95 = 0.1, 0.11
			}),
			cfg:     DiagnoseConfig{},
			want:    ServerBound,
			reasons: []string{"waited p50 100ms", "100% of it before the first byte"},
		},
		{
			name: "closed model mostly thinking",
			samples: sec(6, func(i int, s *Sample) {
				s.Target, s.Completed, s.Sent = 20, 20, 20
				s.P50, s.P95 = 0.01, 0.011
			}),
			cfg:     DiagnoseConfig{Think: 1},
			want:    Inconclusive,
			reasons: []string{"thinking"},
		},
		{
			name: "nominal interface speed reached",
			samples: sec(6, func(i int, s *Sample) {
				steady(100)(i, s)
				s.NetRx = 120e6
			}),
			cfg:     DiagnoseConfig{Open: true, IfaceSpeed: 125e6, Iface: "eth0"},
			want:    ClientNetworkBound,
			reasons: []string{"interface eth0 received 120.0 MB/s, 96% of its nominal 1Gbit/s"},
		},
		{
			name: "nothing answered",
			samples: sec(6, func(i int, s *Sample) {
				steady(100)(i, s)
				s.Failed, s.Errors = 100, 100
			}),
			cfg:     DiagnoseConfig{Open: true},
			want:    Inconclusive,
			reasons: []string{"100% of requests got no response at all"},
		},
		{
			name: "drain seconds do not count",
			samples: append(sec(6, steady(100)), sec(5, func(i int, s *Sample) {
				s.Drain = true
				s.Completed = 0
			})...),
			cfg:  DiagnoseConfig{Open: true},
			want: Inconclusive,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Diagnose(tt.samples, tt.cfg)
			if v.Verdict != tt.want {
				t.Fatalf("verdict %s, want %s; reasons:\n  %s", v.Verdict, tt.want, strings.Join(v.Reasons, "\n  "))
			}
			all := strings.Join(v.Reasons, "\n")
			for _, r := range tt.reasons {
				if !strings.Contains(all, r) {
					t.Errorf("no reason contains %q; reasons:\n  %s", r, strings.Join(v.Reasons, "\n  "))
				}
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	st := []StageResult{
		{Target: 100, Sustained: true, RPS: 100},
		{Target: 200, Sustained: true, RPS: 199},
		{Target: 400, Sustained: false, Why: "answered 250/s of 400/s"},
		{Target: 800, Sustained: true}, // a fluke after a failure proves nothing
	}
	c := capacity(st, true)
	if !c.Found || c.Target != 200 {
		t.Fatalf("capacity = %+v, want 200", c)
	}
	c = capacity(st[:2], true)
	if !strings.Contains(c.Note, "add a higher stage") {
		t.Errorf("all sustained: note %q", c.Note)
	}
	c = capacity([]StageResult{{Target: 100}}, true)
	if c.Found {
		t.Errorf("nothing sustained: %+v", c)
	}
}
