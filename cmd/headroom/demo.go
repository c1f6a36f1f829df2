package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/headroom-dev/headroom/internal/demo"
	"github.com/headroom-dev/headroom/internal/findings"
)

func newDemoCmd() *cobra.Command {
	d := demo.DefaultOptions()
	o := demo.Options{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch the guard protect a slow upstream from an API key, on this machine",
		Long: `demo runs the guard's whole story on loopback, with nothing to install:

  - a slow upstream with a fixed pool of workers, one request each at a time
    (like unicorn); requests beyond them wait in a backlog;
  - headroom's proxy in front of it, charging each key the upstream worker
    time it uses, in-flight requests included, and restricting a key over
    its budget;
  - a UI user clicking cheap pages, and an exporter with an API key asking
    for 10-30 s reports with a 5 s client timeout (seeds/03).

It shows a live status line, then what happened: when the key was
restricted and after how many worker-seconds, the UI's latency before and
after, and what the abandoned requests really cost compared with what the
client saw. It writes the proxy's access log and says how to analyze it.

The story is timed for 30 s; a shorter --duration compresses every timing
(budget, window, request sizes, timeouts) in proportion. The --budget,
--window and --restrict-for values are for the 30 s story and are scaled
the same way.`,
		Example: `  headroom demo
  headroom demo --max-in-flight 2        # per-key cap: the key never holds more than 2 workers
  headroom demo --api-pool 3             # pools: /api/ may use at most 3 of the 4 workers
  headroom demo --api-concurrency 4 --budget 60s
  headroom demo --duration 10s --access-log ./demo-access.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Zero means "default" in demo.Options; on the command line it
			// is a mistake.
			if o.Workers < 1 || o.APIConcurrency < 1 {
				return fmt.Errorf("demo: --workers and --api-concurrency must be at least 1")
			}
			out := cmd.OutOrStdout()
			o.Out = out
			if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				o.Live = true
				o.Width, _, _ = term.GetSize(int(f.Fd()))
			}
			res, err := demo.Run(cmd.Context(), o)
			if res != nil {
				res.WriteSummary(out)
			}
			if errors.Is(err, context.Canceled) && res != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "headroom demo: interrupted; the summary above covers the run so far")
				return exitError{130}
			}
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			return analyzeDemoLog(cmd, res.AccessLog)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", d.Duration, "how long the clients run (shorter runs compress the story)")
	f.IntVar(&o.Workers, "workers", d.Workers, "upstream workers")
	f.DurationVar(&o.Budget, "budget", d.Budget, "worker time each key may use per window")
	f.DurationVar(&o.Window, "window", d.Window, "the budget's sliding window")
	f.DurationVar(&o.RestrictFor, "restrict-for", d.RestrictFor, "how long a key over budget stays restricted")
	f.IntVar(&o.MaxInFlight, "max-in-flight", 0, "also cap each key's concurrent requests (0 = no cap)")
	f.IntVar(&o.APIPool, "api-pool", 0, "route /api/ to a pool with this many upstream slots (0 = no pools)")
	f.IntVar(&o.APIConcurrency, "api-concurrency", d.APIConcurrency, "the exporter's requests at a time")
	f.DurationVar(&o.ClientTimeout, "client-timeout", d.ClientTimeout, "the exporter's client timeout")
	f.StringVar(&o.AccessLog, "access-log", "", "write the proxy's access log here (default: access.log in a new temporary directory)")
	f.DurationVar(&o.Drain, "drain", d.Drain, "after the run, wait at most this long for requests still running upstream")
	return cmd
}

// analyzeDemoLog ends the story the way an operator would: the analyzer
// reads the access log the guard just wrote and says what it sees.
func analyzeDemoLog(cmd *cobra.Command, path string) error {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "\n$ headroom logs analyze --format headroom %s   (findings only)\n\n", path)
	rep, err := findingsOf(cmd.Context(), []string{path}, "headroom")
	if err != nil {
		return fmt.Errorf("demo: analyzing its access log: %w", err)
	}
	return findings.WriteText(out, rep.Findings, time.Local)
}
