// Package loadgen generates HTTP load and watches the generator itself, so a
// load test can say whether its numbers describe the server or the machine
// that produced them.
//
// Seed 04 is the reason it exists: a team scaled a server for days while the
// load generator's home link held every run at 10 MB/s (about 200 requests/s
// of 50 KB pages). Their tool reported the throughput faithfully and said
// nothing about why. loadgen samples its own CPU, the run-queue wait of its
// threads, the traffic on the interface that routes to the target, and the
// lag of its sends against the schedule, every second, and Diagnose turns
// those samples into a verdict with reasons.
//
// Two workload models:
//
//   - open (Rate or rate Stages): arrivals on a fixed schedule, whatever the
//     server does. Latency is measured from the intended send time, which
//     corrects coordinated omission; a request that finds every in-flight
//     slot busy at its time is counted as dropped, never sent late.
//   - closed (VUs): virtual users that each send, wait for the answer, think,
//     and send again, like k6's VUs in the seed's test.
package loadgen

import (
	"net/http"
	"time"
)

// Options configure a run. The zero value of every field is documented.
type Options struct {
	// Targets are requested in turn. At least one is required.
	Targets []Target
	// Header is added to every request; nil means none.
	Header http.Header
	// Body is sent with every request; nil means none.
	Body []byte
	// APIKey, when set, is sent in APIKeyHeader ("" means X-Api-Key, the proxy's default) to
	// exercise the guard. It never appears in reports.
	APIKey, APIKeyHeader string

	// Rate is the open model's arrival rate in requests per second.
	Rate float64
	// VUs selects the closed model with this many virtual users.
	VUs int
	// Stages, when set, replace Rate (open model) or VUs (closed model) and
	// Duration with a sequence of steps.
	Stages []Stage
	// Think is each virtual user's pause after a response; 0 means none.
	Think time.Duration
	// Duration bounds the run; with Stages it is their sum.
	Duration time.Duration
	// MaxRequests bounds the number of requests sent; 0 means no bound.
	MaxRequests int64
	// MaxInFlight bounds the open model's outstanding requests (and so its
	// connections); an arrival finding all slots busy is dropped. 0 means
	// 10000.
	MaxInFlight int
	// Timeout bounds each request; 0 means 30 s.
	Timeout time.Duration
	// GracefulStop is how long requests still outstanding when the
	// schedule ends may take to finish; those cut off count as timeouts.
	// 0 means the smaller of Timeout and 10 s.
	GracefulStop time.Duration
	// NoKeepAlive opens a new connection for every request.
	NoKeepAlive bool
	// HTTP2 speaks HTTP/2: h2c with prior knowledge for http:// targets,
	// h2 over TLS for https://.
	HTTP2 bool
	// Insecure skips TLS certificate verification.
	Insecure bool

	// LinkCapacity is the known capacity of the generator's path to the
	// server in bytes per second (a home line, say); 0 means unknown.
	LinkCapacity float64
	// Thresholds decide Result.Passed.
	Thresholds []Threshold

	// Progress, if not nil, is called once a second from the run's
	// goroutine with the run so far.
	Progress func(Progress)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ProcRoot is where procfs is mounted; "" means /proc.
	ProcRoot string
	// Iface names the network interface to watch; "" means the one that
	// routes to the first target.
	Iface string
	// UserAgent is sent with every request; "" means "headroom".
	UserAgent string
}

// Sample is one second (or less, at the end) of a run: the input of
// Diagnose and a row of the --out CSV.
type Sample struct {
	// At is the end of the interval since the start; Interval its length.
	At, Interval time.Duration
	Stage        int     // index into the stages; 0 without stages
	Target       float64 // asked rate (open) or virtual users (closed)

	Scheduled int64 // arrivals the schedule asked for (open model)
	Sent      int64 // requests sent
	Dropped   int64 // arrivals not sent: every in-flight slot was busy
	Completed int64 // responses and failures that came back
	Errors    int64 // failures and 5xx responses
	Failed    int64 // requests that got no response (part of Errors)
	InFlight  int64 // outstanding at the end of the interval
	// BytesReceived counts response bytes (headers included).
	BytesReceived int64

	// Corrected latency quantiles, seconds (from the intended send time).
	P50, P95, P99, Max float64
	// RawP50 and RawP95 are uncorrected (from the actual send time): the
	// server's own time, since in the open model every arrival gets its own
	// goroutine and nothing the server does delays a send.
	RawP50, RawP95 float64
	// LagP50 and LagP99 are quantiles of send lag (actual minus intended
	// send time), seconds: the generator's own timer and scheduler.
	LagP50, LagP99 float64
	// ReceiveShare is the share of the requests' time spent receiving the
	// response after its first byte: high when bodies crawl over a slow
	// link, low when the server makes the client wait.
	ReceiveShare float64

	// The generator's own resources.
	ProcCores, WaitCores float64 // CPU used and CPU waited for, in cores
	AvailCores           float64 // cores the process may use
	HostBusy             float64 // 0..1 of all host CPUs
	NetRx, NetTx         float64 // interface bytes/s
	CPUKnown, NetKnown   bool
	// Drain marks a sample after the schedule ended, while the last
	// requests came back; it says nothing about the asked load.
	Drain bool
}

// Rate returns responses per second in the sample (failures that got no
// response are not throughput).
func (s Sample) Rate() float64 {
	if s.Interval <= 0 {
		return 0
	}
	return float64(s.Completed-s.Failed) / s.Interval.Seconds()
}

// Bytes returns response bytes per second in the sample.
func (s Sample) Bytes() float64 {
	if s.Interval <= 0 {
		return 0
	}
	return float64(s.BytesReceived) / s.Interval.Seconds()
}

// Quantiles summarise a latency distribution, in seconds.
type Quantiles struct {
	P50, P90, P95, P99, Max, Mean float64
}

// StageResult is one stage of a stepped run.
type StageResult struct {
	Stage     int
	Target    float64
	Duration  time.Duration
	Sent      int64
	Dropped   int64
	Completed int64
	Errors    int64
	RPS       float64
	Latency   Quantiles
	// Sustained reports whether the server kept this stage's load within
	// the thresholds (or, without thresholds, answered at least 95% of the
	// asked rate with under 1% errors and drops).
	Sustained bool
	Why       string
}

// ThresholdResult is one threshold checked against the whole run.
type ThresholdResult struct {
	Threshold Threshold
	Value     float64
	Passed    bool
}

// Result is a finished run.
type Result struct {
	Model    string // "open" or "closed"
	Rate     float64
	VUs      int
	Elapsed  time.Duration
	Targets  []string // scheme://host/path of each target, query left out
	Protocol string

	Scheduled, Sent, Dropped, Completed, Errors int64
	Failed                                      int64   // no response at all (part of Errors)
	RPS                                         float64 // responses per second
	BytesReceived                               int64
	BytesPerSec                                 float64

	Latency            Quantiles // corrected (open model), same as raw when closed
	LatencyUncorrected Quantiles
	SendLag            Quantiles
	Status             map[int]int64
	ErrorKinds         map[string]int64

	// Valid is false when the generator could not keep the asked schedule;
	// Invalid says why, in words.
	Valid   bool
	Invalid []string
	// NoResponse is true when requests were sent and not one got a
	// response: the target is down or unreachable. Such a run fails (Passed
	// is false) unless an errors threshold says that is expected.
	NoResponse bool

	Samples    []Sample
	Stages     []StageResult
	Capacity   *Capacity
	Verdict    Verdict
	Thresholds []ThresholdResult
	Passed     bool
	// MonitorErrors lists what the self-monitor could not read.
	MonitorErrors []string
	LinkCapacity  float64
	Iface         string
}

// Capacity is the highest stage the server sustained.
type Capacity struct {
	Found  bool
	Target float64 // asked rate (open) or VUs (closed) of that stage
	RPS    float64
	P95    float64
	Note   string
}

// Progress is handed to Options.Progress every second.
type Progress struct {
	Elapsed, Total time.Duration
	Last           Sample
	Completed      int64
	Errors         int64
	Dropped        int64
	Verdict        Verdict
}
