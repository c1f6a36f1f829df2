package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/headroom-dev/headroom/internal/loadgen"
)

type loadFlags struct {
	rate, stages, linkCapacity       string
	vus                              int
	duration, think, timeout         time.Duration
	gracefulStop                     time.Duration
	requests                         int64
	method, body, bodyFile, targets  string
	headers, thresholds              []string
	noKeepAlive, http2, insecure     bool
	apiKey, apiKeyHeader, out, iface string
	maxInFlight                      int
	json                             bool
}

func newLoadCmd() *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load URL... [--rate N/s | --vus N] --duration DUR",
		Short: "Load test that says whether the server or the generator was the limit",
		Long: `Send HTTP load to one or more URLs and report throughput, honest latency and
a verdict on what limited the run: server-bound, client-cpu-bound,
client-network-bound or inconclusive, with reasons.

Two models:
  --rate N/s   open model: arrivals on a fixed schedule whatever the server does.
               Latency counts from each request's scheduled time (coordinated-
               omission correction); a request that finds all --max-outstanding
               slots busy is counted as dropped, never sent late.
  --vus N      closed model: N virtual users send, wait, --think, and send again.

While it runs, headroom watches itself: its CPU (used and waited for), the
traffic on the interface that routes to the target, and the lag of its sends.
If the generator was the limit, it says so instead of blaming the server.

Thresholds (--threshold, repeatable) set the exit status for CI: 0 when all
hold, 2 when one fails, 1 on other errors. A run in which no request got a
response (the target is down or unreachable) exits 1, unless thresholds are
given and hold (only an errors threshold can, e.g. 'errors>99%'). Metrics: p50 p90 p95 p99 max
(corrected latency), errors (failures and 5xx), dropped, rps.`,
		Example: `  # 500 requests/s for 30 s, with a verdict
  headroom load http://127.0.0.1:8080/ --rate 500/s --duration 30s

  # Like the seed's k6 run: 1000 users, 1 s think time, on a 100 Mbit/s line
  headroom load https://staging.example.com/feed --vus 1000 --think 1s --duration 3m --link-capacity 100Mbit

  # Find the capacity: stepped rates, CI thresholds, per-second CSV
  headroom load http://127.0.0.1:8080/ --stages 20s:100,20s:200,20s:400,20s:800 \
      --threshold 'p95<500ms' --threshold 'errors<1%' --out samples.csv

  # Through the guard, as an API client
  headroom load http://127.0.0.1:8080/api/report --rate 50/s --duration 1m --api-key "$KEY"`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			return runLoad(cmd, o, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.rate, "rate", "", "open model: arrival rate, e.g. 500/s or 30000/m")
	fl.IntVar(&f.vus, "vus", 0, "closed model: number of virtual users")
	fl.DurationVar(&f.duration, "duration", 0, "how long to run (not needed with --stages)")
	fl.StringVar(&f.stages, "stages", "", "stepped load DUR:TARGET,... e.g. 30s:100,60s:1000 (rates, or users with --vus)")
	fl.DurationVar(&f.think, "think", 0, "closed model: each user's pause after a response")
	fl.Int64Var(&f.requests, "requests", 0, "stop after this many requests (0: no count bound)")
	fl.StringVar(&f.linkCapacity, "link-capacity", "", "known capacity of the generator's link, e.g. 100Mbit or 10MB/s")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	fl.StringVar(&f.method, "method", "GET", "HTTP method")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	fl.StringVar(&f.body, "body", "", "request body")
	fl.StringVar(&f.bodyFile, "body-file", "", "read the request body from this file")
	fl.StringVar(&f.targets, "targets", "", "file of targets, one 'URL' or 'METHOD URL' a line, requested in turn")
	fl.BoolVar(&f.noKeepAlive, "no-keepalive", false, "open a new connection for every request")
	fl.BoolVar(&f.http2, "http2", false, "speak HTTP/2 (h2c prior knowledge for http://, h2 over TLS for https://)")
	fl.BoolVar(&f.insecure, "insecure", false, "do not verify TLS certificates")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "per-request timeout")
	fl.StringVar(&f.apiKey, "api-key", "", "API key to send (or set HEADROOM_API_KEY); never printed")
	fl.StringVar(&f.apiKeyHeader, "key-header", "X-Api-Key", "`header` that carries --api-key (as headroom proxy's --key-header)")
	fl.StringArrayVar(&f.thresholds, "threshold", nil, "pass/fail condition, e.g. 'p95<500ms', 'errors<1%', 'rps>100' (repeatable)")
	fl.StringVar(&f.out, "out", "", "write per-second samples to this CSV file")
	fl.DurationVar(&f.gracefulStop, "graceful-stop", 0, "time requests outstanding at the end may take to finish (default: the smaller of --timeout and 10s)")
	fl.IntVar(&f.maxInFlight, "max-outstanding", 10000, "open model: most requests awaiting a response at once; arrivals beyond are dropped")
	fl.StringVar(&f.iface, "iface", "", "network interface to watch (default: the one that routes to the target)")
	// Until issue 17 the key header was --api-key-header (the proxy's is
	// --key-header) and the outstanding-request bound --max-in-flight (the
	// proxy's per-key concurrency cap).
	aliasFlags(fl, map[string]string{"api-key-header": "key-header", "max-in-flight": "max-outstanding"})
	return cmd
}

func (f loadFlags) options(cmd *cobra.Command, args []string) (loadgen.Options, error) {
	o := loadgen.Options{
		VUs: f.vus, Duration: f.duration, Think: f.think, MaxRequests: f.requests,
		Timeout: f.timeout, NoKeepAlive: f.noKeepAlive, HTTP2: f.http2, Insecure: f.insecure,
		APIKey: f.apiKey, APIKeyHeader: f.apiKeyHeader, MaxInFlight: f.maxInFlight, Iface: f.iface,
		GracefulStop: f.gracefulStop,
		UserAgent:    "headroom/" + version,
	}
	if o.APIKey == "" {
		o.APIKey = os.Getenv("HEADROOM_API_KEY")
	}
	var err error
	if f.rate != "" {
		if f.vus > 0 {
			return o, fmt.Errorf("--rate and --vus both given: --rate is the open model, --vus the closed one; choose one")
		}
		if o.Rate, err = loadgen.ParseRate(f.rate); err != nil {
			return o, fmt.Errorf("--rate: %w", err)
		}
	}
	if f.stages != "" {
		if o.Stages, err = loadgen.ParseStages(f.stages); err != nil {
			return o, fmt.Errorf("--stages: %w", err)
		}
		if f.duration > 0 {
			return o, fmt.Errorf("--stages and --duration both given: the stages set the duration; drop --duration")
		}
		if f.rate != "" {
			return o, fmt.Errorf("--stages and --rate both given: the stages set the rate; drop --rate")
		}
		if f.vus > 0 {
			// Closed model with stepped users; VUs only selects the model.
			o.VUs = 1
		}
	}
	if f.rate == "" && f.vus <= 0 && f.stages == "" {
		return o, fmt.Errorf("no load given: add --rate N/s (open model), --vus N (closed model) or --stages")
	}
	if f.duration <= 0 && f.stages == "" && f.requests <= 0 {
		return o, fmt.Errorf("no bound given: add --duration (e.g. 30s), --requests N or --stages so the test stops")
	}
	if f.linkCapacity != "" {
		if o.LinkCapacity, err = loadgen.ParseByteRate(f.linkCapacity); err != nil {
			return o, fmt.Errorf("--link-capacity: %w", err)
		}
	}
	for _, s := range f.thresholds {
		t, err := loadgen.ParseThreshold(s)
		if err != nil {
			return o, fmt.Errorf("--threshold: %w", err)
		}
		o.Thresholds = append(o.Thresholds, t)
	}
	if len(f.headers) > 0 {
		o.Header = http.Header{}
		for _, h := range f.headers {
			k, v, err := loadgen.ParseHeader(h)
			if err != nil {
				return o, fmt.Errorf("--header: %w", err)
			}
			o.Header.Add(k, v)
		}
	}
	switch {
	case f.body != "" && f.bodyFile != "":
		return o, fmt.Errorf("--body and --body-file both given: choose one")
	case f.body != "":
		o.Body = []byte(f.body)
	case f.bodyFile != "":
		if o.Body, err = os.ReadFile(f.bodyFile); err != nil {
			return o, fmt.Errorf("--body-file: %w", err)
		}
	}
	method := strings.ToUpper(f.method)
	for _, a := range args {
		t, err := loadgen.ParseTarget(method + " " + a)
		if err != nil {
			return o, err
		}
		o.Targets = append(o.Targets, t)
	}
	if f.targets != "" {
		file, err := os.Open(f.targets)
		if err != nil {
			return o, fmt.Errorf("--targets: %w", err)
		}
		ts, err := loadgen.ParseTargets(file)
		file.Close()
		if err != nil {
			return o, fmt.Errorf("--targets %s: %w", f.targets, err)
		}
		o.Targets = append(o.Targets, ts...)
	}
	if len(o.Targets) == 0 {
		return o, fmt.Errorf("no URL given: headroom load http://HOST:PORT/PATH --rate 100/s --duration 30s")
	}
	return o, nil
}

func runLoad(cmd *cobra.Command, o loadgen.Options, f loadFlags) error {
	stderr := cmd.ErrOrStderr()
	if file, ok := stderr.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		width := 0
		o.Progress = func(p loadgen.Progress) {
			line := loadgen.ProgressLine(p)
			pad := ""
			if n := width - len(line); n > 0 {
				pad = strings.Repeat(" ", n)
			}
			width = len(line)
			fmt.Fprintf(stderr, "\r%s%s", line, pad)
		}
	}
	res, err := loadgen.Run(cmd.Context(), o)
	if err != nil {
		return err
	}
	if o.Progress != nil {
		fmt.Fprintf(stderr, "\r%s\r", strings.Repeat(" ", 120))
		o.Progress = nil
	}
	if f.out != "" {
		file, err := os.Create(f.out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		werr := loadgen.WriteCSV(file, res.Samples)
		if cerr := file.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("--out %s: %w", f.out, werr)
		}
	}
	if f.json {
		err = res.WriteJSON(cmd.OutOrStdout())
	} else {
		err = res.WriteText(cmd.OutOrStdout())
	}
	if err != nil {
		return err
	}
	if res.NoResponse && !res.Passed {
		// Not a threshold that failed: the test could not run at all.
		return fmt.Errorf("no request got a response from %s (%s): is the server up and reachable from here?",
			strings.Join(res.Targets, ", "), loadgen.FailureKinds(res.ErrorKinds))
	}
	if !res.Passed {
		return exitError{2}
	}
	return nil
}
