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
		Long: `Record this host's CPU, memory, pressure, network, disks, processes and
listening sockets (watch), then explain spikes, saturation and filling disks
with what the systemd journal says started at that moment (explain), read the
recording back at any moment or over a range (show), or take the usual manual
checks in one go (snapshot).`,
	}
	cmd.AddCommand(newHostWatchCmd(), newHostExplainCmd(), newHostSnapshotCmd(), newHostShowCmd())
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
	allFS     bool
}

func newHostWatchCmd() *cobra.Command {
	var f hostWatchFlags
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Sample the host every few seconds into a local, crash-safe recording",
		Long: `Sample the host every --interval into a recording under --data: network per
interface (bytes, packets, drops), CPU (with steal and iowait), memory and
swap, pressure stall information, load, space and inodes of each mounted
filesystem (real ones; --all-filesystems adds tmpfs, overlay and the like),
I/O per block device (/proc/diskstats), the top processes by memory, CPU
and I/O (/proc/<pid>/io), and listening sockets with their processes.

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
				Sampler: hostwatch.SamplerOptions{ProcRoot: f.proc, TopN: f.top, AllFilesystems: f.allFS},
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
	fl.IntVar(&f.top, "processes", 8, "processes kept per sample, by memory, by CPU and by I/O")
	fl.StringVar(&f.proc, "proc", "/proc", "the /proc to read (e.g. /host/proc in a container)")
	fl.BoolVar(&f.noSync, "no-sync", false, "do not fsync each sample (loses the last seconds on a power cut)")
	fl.BoolVar(&f.allFS, "all-filesystems", false, "record tmpfs, overlay and other pseudo filesystems too")
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
		Long: `Find spikes and saturation (CPU, steal, memory, pressure, swap, network, a
saturated disk) in the recording that 'headroom host watch' wrote, and for
each build a timeline from the systemd journal (units and timers started or
stopped, what each job used, OOM kills, kernel memory messages) and the
process samples, naming the processes and units that did the I/O; find the
filesystems filling up, with the time left at the current rate and the
biggest writers; then say in plain words what happened.

With no recording, it uses what the kernel and the journal still hold.
Times T are RFC 3339 ("2025-08-28T06:20:00Z"), local ("2025-08-28 06:20",
in UTC with --utc) or a duration ago ("10m", "2h", "3d").`,
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
			loc := zone(f.utc)
			switch {
			case f.at != "" && (f.since != "" || f.until != ""):
				return errors.New("give either --at T or --since T [--until T], not both")
			case f.at != "":
				at, err := timearg.Parse(f.at, now, loc)
				if err != nil {
					return fmt.Errorf("--at: %w", err)
				}
				since, until = at.Add(-30*time.Minute), at.Add(30*time.Minute)
			default:
				if f.since != "" {
					if since, err = timearg.Parse(f.since, now, loc); err != nil {
						return fmt.Errorf("--since: %w", err)
					}
				}
				if f.until != "" {
					if until, err = timearg.Parse(f.until, now, loc); err != nil {
						return fmt.Errorf("--until: %w", err)
					}
				}
			}
			var j hostwatch.Journal = journal.Reader{Directory: f.journalDir}
			if f.journalFile != "" {
				j = hostwatch.FileJournal{Path: f.journalFile}
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
		allFS  bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Memory, swap, filesystems, disks, listeners, top processes, interfaces and failed units, now",
		Long: `The checks one runs by hand on a host in trouble (free, ss -tulpn, top,
df, df -i, iostat, iotop, /proc/net/dev, systemctl --failed) in one command.
CPU use, I/O and network rates are measured over --wait.`,
		Example: `  headroom host snapshot
  headroom host snapshot --json | jq .listeners`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			snap, err := hostwatch.TakeSnapshot(cmd.Context(), hostwatch.SnapshotOptions{
				ProcRoot: proc, Wait: wait, FailedUnits: journal.FailedUnits, Journal: journal.Reader{}, AllFilesystems: allFS,
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
			return hostwatch.WriteSnapshot(cmd.OutOrStdout(), snap, zone(utc))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the snapshot as JSON")
	cmd.Flags().StringVar(&proc, "proc", "/proc", "the /proc to read")
	cmd.Flags().DurationVar(&wait, "wait", time.Second, "time over which CPU and network rates are measured")
	cmd.Flags().BoolVar(&utc, "utc", false, "print times in UTC instead of the local zone")
	cmd.Flags().BoolVar(&allFS, "all-filesystems", false, "list tmpfs, overlay and other pseudo filesystems too")
	return cmd
}

type hostShowFlags struct {
	at, from, to string
	step         time.Duration
	csv, json    bool
	metrics      []string
	data         string
	journalFile  string
	utc          bool
}

func newHostShowCmd() *cobra.Command {
	var f hostShowFlags
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Read the recording back: the host at a moment, a timeline, or an export",
		Long: `Read the recording that 'headroom host watch' writes, while it runs or after.

  --at T            the host at that moment: the same view as 'host snapshot',
                    from the last sample at or before T
  --from T --to T   a compact timeline, one row per --step (chosen to fit a
                    screen), the worst of each figure in the step
  --csv, --json     with --from/--to: every sample's metrics (cpu.busy,
                    mem.available, psi.io.full, disk.DEV.util, fs.MOUNT.used_pct,
                    ...) for a spreadsheet or a plot; --metric picks some

With neither --at nor --from, the last hour's timeline. Times T are RFC 3339
("2025-08-28T06:20:00Z"), local ("2025-08-28 06:20", in UTC with --utc) or a
duration ago ("10m", "2h", "3d").`,
		Example: `  headroom host show --at "2025-08-28 06:25"
  headroom host show --from 2h
  headroom host show --from 2h --csv --metric 'cpu.*,disk.*.util,fs./.avail' > last2h.csv
  headroom host show --from 2025-08-28T06:00:00Z --to 2025-08-28T07:00:00Z --json | jq '.rows[]["psi.io.full"]'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			loc := zone(f.utc)
			var j hostwatch.Journal
			if f.journalFile != "" {
				j = hostwatch.FileJournal{Path: f.journalFile}
			}
			out := cmd.OutOrStdout()
			if f.at != "" {
				if f.from != "" || f.to != "" || f.csv {
					return errors.New("give either --at T, or --from T [--to T] (with --csv or --json to export), not both")
				}
				at, err := timearg.Parse(f.at, now, loc)
				if err != nil {
					return fmt.Errorf("--at: %w", err)
				}
				snap, err := hostwatch.SnapshotAt(cmd.Context(), hostwatch.ShowOptions{Data: f.data, Journal: j}, at)
				if err != nil {
					return err
				}
				if f.json {
					return hostwatch.WriteJSON(out, snap)
				}
				return hostwatch.WriteSnapshot(out, snap, loc)
			}
			if f.csv && f.json {
				return errors.New("give --csv or --json, not both")
			}
			from, to := now.Add(-time.Hour), now
			var err error
			if f.to != "" {
				if to, err = timearg.Parse(f.to, now, loc); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				from = to.Add(-time.Hour)
			}
			if f.from != "" {
				if from, err = timearg.Parse(f.from, now, loc); err != nil {
					return fmt.Errorf("--from: %w", err)
				}
			}
			if !from.Before(to) {
				return fmt.Errorf("empty range: --from %s is not before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
			}
			samples, err := hostwatch.ReadRange(f.data, from, to)
			if err != nil {
				return err
			}
			if !f.csv && !f.json {
				if len(f.metrics) > 0 {
					return errors.New("--metric picks the columns of an export: add --csv or --json")
				}
				return hostwatch.WriteTimeline(out, hostwatch.BuildTimeline(samples, from, to, f.step), "recording "+f.data, loc)
			}
			ex, err := hostwatch.BuildExport(samples, f.metrics)
			if err != nil {
				return err
			}
			if f.json {
				return hostwatch.WriteJSON(out, ex)
			}
			return hostwatch.WriteCSV(out, ex, loc)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.at, "at", "", "show the host as it was at time T")
	fl.StringVar(&f.from, "from", "", "start of the range (default an hour before --to)")
	fl.StringVar(&f.to, "to", "", "end of the range (default now)")
	fl.DurationVar(&f.step, "step", 0, "timeline row width (default: about 60 rows)")
	fl.BoolVar(&f.csv, "csv", false, "export the range's metrics as CSV, one row per sample")
	fl.BoolVar(&f.json, "json", false, "with --at, the snapshot as JSON; with a range, the export as JSON")
	fl.StringSliceVar(&f.metrics, "metric", nil, "metrics to export, '*' as a wildcard (e.g. 'cpu.*,disk.*.util'); default all")
	fl.StringVar(&f.data, "data", hostwatch.DefaultDataDir(), "directory of the recording")
	fl.StringVar(&f.journalFile, "journal", "", "with --at, list units that failed in the day before from this journal JSON file (journalctl -o json)")
	fl.BoolVar(&f.utc, "utc", false, "read and print times in UTC instead of the local zone")
	return cmd
}

// zone is where times without a zone are read and all times printed.
func zone(utc bool) *time.Location {
	if utc {
		return time.UTC
	}
	return time.Local
}
