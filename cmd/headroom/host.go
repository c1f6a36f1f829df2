package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/headroom-dev/headroom/internal/hostwatch"
	"github.com/headroom-dev/headroom/internal/hostwatch/journal"
	"github.com/headroom-dev/headroom/internal/timearg"
)

func newHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Find a spike on this host, and what started at that moment",
		Long: `Record this host's CPU, memory, pressure, network, processes and listening
sockets (watch), then explain spikes and saturation with what the systemd
journal says started at that moment (explain), or take the usual manual
checks in one go (snapshot).`,
	}
	cmd.AddCommand(newHostWatchCmd(), newHostExplainCmd(), newHostSnapshotCmd())
	return cmd
}

type hostWatchFlags struct {
	interval  time.Duration
	data      string
	retention string
	maxSize   string
	top       int
	proc      string
	noSync    bool
}

func newHostWatchCmd() *cobra.Command {
	var f hostWatchFlags
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Sample the host every few seconds into a local, crash-safe recording",
		Long: `Sample the host every --interval into a recording under --data: network per
interface (bytes, packets, drops), CPU (with steal and iowait), memory and
swap, pressure stall information, load, the top processes by memory and CPU,
and listening sockets with their processes.

The recording is bounded by --retention and --max-size, and survives a crash
or a power cut mid-write (each sample is checksummed and synced; a torn last
sample is cut on the next start). Run it as a service: deploy/headroom-host.service.`,
		Example: `  headroom host watch
  headroom host watch --interval 10s --data /var/lib/headroom/host --retention 3d --max-size 32MB`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			retention, err := hostwatch.ParseSpan(f.retention)
			if err != nil {
				return err
			}
			size, err := hostwatch.ParseSize(f.maxSize)
			if err != nil {
				return err
			}
			if f.interval < 100*time.Millisecond {
				return fmt.Errorf("--interval %s is too short: use 100ms or more (5s is the default)", f.interval)
			}
			st, err := hostwatch.Watch(cmd.Context(), hostwatch.WatchOptions{
				Data: f.data, Interval: f.interval, Retention: retention, MaxSize: size, NoSync: f.noSync,
				Sampler: hostwatch.SamplerOptions{ProcRoot: f.proc, TopN: f.top},
				Log:     cmd.ErrOrStderr(),
			})
			fmt.Fprintf(cmd.ErrOrStderr(), "recorded %d samples (%d bytes)\n", st.Samples, st.Bytes)
			return err
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.interval, "interval", 5*time.Second, "time between samples")
	fl.StringVar(&f.data, "data", hostwatch.DefaultDataDir(), "directory of the recording")
	fl.StringVar(&f.retention, "retention", "7d", "how long samples are kept (e.g. 7d, 36h)")
	fl.StringVar(&f.maxSize, "max-size", "64MB", "most disk the recording may use")
	fl.IntVar(&f.top, "processes", 8, "processes kept per sample, by memory and by CPU")
	fl.StringVar(&f.proc, "proc", "/proc", "the /proc to read (e.g. /host/proc in a container)")
	fl.BoolVar(&f.noSync, "no-sync", false, "do not fsync each sample (loses the last seconds on a power cut)")
	// Issue 17: --top is rows per table in headroom logs analyze.
	aliasFlags(fl, map[string]string{"top": "processes"})
	return cmd
}

type hostExplainFlags struct {
	at, since, until string
	json             bool
	data             string
	journalFile      string
	journalDir       string
	proc             string
	utc              bool
}

func newHostExplainCmd() *cobra.Command {
	var f hostExplainFlags
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Find spikes and saturation, and what started on the host at that moment",
		Long: `Find spikes and saturation (CPU, steal, memory, pressure, swap, network) in
the recording that 'headroom host watch' wrote, and for each build a timeline
from the systemd journal (units and timers started or stopped, what each job
used, OOM kills, kernel memory messages) and the process samples; then say in
plain words what happened.

With no recording, it uses what the kernel and the journal still hold.
Times T are RFC 3339 ("2025-08-28T06:20:00Z"), local ("2025-08-28 06:20") or
a duration ago ("10m", "2h", "3d").`,
		Example: `  headroom host explain --since 2h
  headroom host explain --at "2025-08-28 06:25"
  headroom host explain --since 2025-08-28T06:00:00Z --until 2025-08-28T07:00:00Z --json
  # a journal exported from a host that is gone:
  headroom host explain --data ./recording --journal journal.json --at 2025-08-28T06:25:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			var since, until time.Time
			var err error
			switch {
			case f.at != "" && (f.since != "" || f.until != ""):
				return errors.New("give either --at T or --since T [--until T], not both")
			case f.at != "":
				at, err := timearg.Parse(f.at, now, nil)
				if err != nil {
					return fmt.Errorf("--at: %w", err)
				}
				since, until = at.Add(-30*time.Minute), at.Add(30*time.Minute)
			default:
				if f.since != "" {
					if since, err = timearg.Parse(f.since, now, nil); err != nil {
						return fmt.Errorf("--since: %w", err)
					}
				}
				if f.until != "" {
					if until, err = timearg.Parse(f.until, now, nil); err != nil {
						return fmt.Errorf("--until: %w", err)
					}
				}
			}
			var j hostwatch.Journal = journal.Reader{Directory: f.journalDir}
			if f.journalFile != "" {
				j = hostwatch.FileJournal{Path: f.journalFile}
			}
			loc := time.Local
			if f.utc {
				loc = time.UTC
			}
			rep, err := hostwatch.Explain(cmd.Context(), hostwatch.ExplainOptions{
				Data: f.data, Since: since, Until: until, Journal: j, ProcRoot: f.proc, Location: loc,
			})
			if err != nil {
				return err
			}
			if f.json {
				return hostwatch.WriteJSON(cmd.OutOrStdout(), rep)
			}
			return hostwatch.WriteExplain(cmd.OutOrStdout(), rep, loc)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.at, "at", "", "explain the hour around time T")
	fl.StringVar(&f.since, "since", "", "start of the window (default 24h before --until)")
	fl.StringVar(&f.until, "until", "", "end of the window (default now)")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	fl.StringVar(&f.data, "data", hostwatch.DefaultDataDir(), "directory of the recording")
	fl.StringVar(&f.journalFile, "journal", "", "read journal JSON lines from this file (journalctl -o json > FILE) instead of running journalctl")
	fl.StringVar(&f.journalDir, "journal-dir", "", "journal files directory for journalctl -D (e.g. a copied /var/log/journal)")
	fl.StringVar(&f.proc, "proc", "/proc", "the /proc to read for facts about the host now")
	fl.BoolVar(&f.utc, "utc", false, "print times in UTC instead of the local zone")
	return cmd
}

func newHostSnapshotCmd() *cobra.Command {
	var (
		asJSON bool
		proc   string
		wait   time.Duration
		utc    bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Memory, swap, listeners, top processes, interfaces and failed units, now",
		Long: `The checks one runs by hand on a host in trouble (free, ss -tulpn, top,
/proc/net/dev, systemctl --failed) in one command. CPU use and network rates
are measured over --wait.`,
		Example: `  headroom host snapshot
  headroom host snapshot --json | jq .listeners`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			snap, err := hostwatch.TakeSnapshot(cmd.Context(), hostwatch.SnapshotOptions{
				ProcRoot: proc, Wait: wait, FailedUnits: journal.FailedUnits, Journal: journal.Reader{},
			})
			if err != nil {
				if hostwatch.IsNoProc(err) {
					return fmt.Errorf("%w; pass --proc if /proc is mounted elsewhere", err)
				}
				return err
			}
			if asJSON {
				return hostwatch.WriteJSON(cmd.OutOrStdout(), snap)
			}
			loc := time.Local
			if utc {
				loc = time.UTC
			}
			return hostwatch.WriteSnapshot(cmd.OutOrStdout(), snap, loc)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the snapshot as JSON")
	cmd.Flags().StringVar(&proc, "proc", "/proc", "the /proc to read")
	cmd.Flags().DurationVar(&wait, "wait", time.Second, "time over which CPU and network rates are measured")
	cmd.Flags().BoolVar(&utc, "utc", false, "print times in UTC instead of the local zone")
	return cmd
}
