package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/analyze"
	"github.com/headroom-dev/headroom/internal/findings"
	"github.com/headroom-dev/headroom/internal/htmlreport"
	"github.com/headroom-dev/headroom/internal/timearg"
)

func newLogsCmd() *cobra.Command {
	logs := &cobra.Command{
		Use:   "logs",
		Short: "Explain traffic from access logs: who, what, when",
	}
	logs.AddCommand(newLogsAnalyzeCmd())
	return logs
}

// logsAnalyzeFlags are the command-line flags of `headroom logs analyze`.
type logsAnalyzeFlags struct {
	format     string
	jsonFields string
	json       bool
	html       string
	compare    string
	site       []string
	since      string
	until      string
	where      []string
	by         string
	follow     bool
	refresh    time.Duration
	top        int
	workers    int
	progress   string
}

func newLogsAnalyzeCmd() *cobra.Command {
	var f logsAnalyzeFlags
	cmd := &cobra.Command{
		Use:   "analyze [FILE|GLOB|-]...",
		Short: "Aggregate access logs: time series, top clients, endpoints, agents, quantiles",
		Long: `Read access logs (any number, gzip or not, rotated sets in time order, or stdin)
in parallel and report where the traffic came from and what it cost: requests,
bytes out, worker (upstream) time and errors over time; the top clients,
networks (/24, /48), keys, endpoints (path templates such as
/v2/applications/:id/metrics.json), user agents, referers, methods and pools;
request and upstream time quantiles; distinct clients.

Formats (--format): auto (detect per file, the default), combined, common,
headroom (the proxy's own log), ingress (ingress-nginx), s3, alb, json (JSON
lines; map keys with --json-fields), or any nginx log_format given as text,
e.g. '$remote_addr [$time_local] "$request" $status $request_time', or a whole
"log_format name '...';" directive. Variables a format has beyond the usual
ones ($upstream_addr, $http_x_forwarded_for, $tenant...) are fields for
--where and --by.

--where FIELD OP VALUE, combined with and/or/not and parentheses. OP is one of
= != > >= < <= ~ (regexp) !~. Fields: time, status, upstream_status, bytes,
request_time, upstream_time, method, path, uri, template, proto, host, client,
prefix, key, user_agent, ua_family, referer, referer_domain, pool, and any
variable of your log_format. Status classes (status=5xx), durations
(request_time>1.5s) and times (time>=2019-04-04T00:00:00Z, time>=2h) work.

Findings come first: what changed and who did it, each with evidence and an
action. A lasting change in requests, bytes or worker time (daily cycle removed)
and the agents, keys, networks and paths behind it (an endpoint slower with
unchanged requests is named a regression); client timeouts (aborted lines
piling up at one request time) and the worker time they hide; lines that
under-report upstream work; repeated fetches; crawlers; hotlinking; error and
latency bursts; clients refused with 429 (rate limited). --compare attributes the change between two periods;
--html writes them with charts to a self-contained page.

Malformed lines are counted and shown with file and line number; a file that
is not a log (or not in the --format given) is reported and skipped.`,
		Example: `  # What is in this log?
  headroom logs analyze /var/log/nginx/access.log

  # A whole rotated set, gzip included, read oldest first
  headroom logs analyze '/var/log/nginx/access.log*'

  # Only server errors on the API, grouped by endpoint and status
  headroom logs analyze access.log --where 'status>=500 and path~^/api/' --by template,status

  # What changed and who did it, with charts in a page that opens offline
  headroom logs analyze '/var/log/nginx/access.log*' --html report.html

  # What changed on April 4th compared with the day before
  headroom logs analyze access.log --compare 2019-04-04..2019-04-05

  # Which agents fetched what on the day traffic doubled, as JSON
  headroom logs analyze access.log.1 --since 2019-04-04T00:00:00Z --until 2019-04-05T00:00:00Z --by ua_family --json

  # A custom log_format, grouped by one of its own variables
  headroom logs analyze app.log --format '$remote_addr|$time_iso8601|$request|$status|$tenant' --by tenant

  # S3 server access logs from stdin
  zcat s3-logs/*.gz | headroom logs analyze - --format s3

  # Watch a live log (survives rotation); Ctrl-C prints the final report
  headroom logs analyze /var/log/nginx/access.log --follow --since 10m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogsAnalyze(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.format, "format", "f", "auto", "log format: "+strings.Join(accesslog.FormatNames(), ", ")+", or an nginx log_format text")
	fl.StringVar(&f.jsonFields, "json-fields", "", "for --format json: record_field=json_key pairs, e.g. time=ts,status=code,client=ip")
	fl.BoolVar(&f.json, "json", false, "print one JSON object (records, malformed, findings, aggregates) instead of text")
	fl.StringVar(&f.html, "html", "", "also write an HTML report with charts to `FILE`")
	fl.StringVar(&f.compare, "compare", "", "compare `T1..T2` with the period of equal length before it, or with an explicit baseline: T1..T2,B1..B2")
	fl.StringSliceVar(&f.site, "site", nil, "the site's own `HOST`s (referers from them are not hotlinks); default: inferred from Host and referers")
	fl.StringVar(&f.since, "since", "", "only records at or after `T` (RFC 3339, or a duration ago: 2h, 3d)")
	fl.StringVar(&f.until, "until", "", "only records before `T` (RFC 3339, or a duration ago)")
	fl.StringArrayVarP(&f.where, "where", "w", nil, "only records matching `EXPR` (repeat to AND several)")
	fl.StringVar(&f.by, "by", "", "add a table grouped by `FIELD[,FIELD]` (any --where field or log_format variable)")
	fl.BoolVar(&f.follow, "follow", false, "keep reading a live log as it grows, across rotation, until interrupted")
	fl.DurationVar(&f.refresh, "refresh", 5*time.Second, "with --follow: how often to print the report so far")
	fl.IntVar(&f.top, "top", 10, "rows per table")
	fl.IntVar(&f.workers, "parallel", 0, "parsing goroutines (0: one per CPU)")
	fl.StringVar(&f.progress, "progress", "auto", "progress bar on stderr: auto (only on a terminal), always, never")
	// Issue 17: -f reads as follow (tail) or file (GoAccess); it still
	// means --format, but is no longer offered. --workers were parsing
	// goroutines here and upstream workers everywhere else.
	_ = fl.MarkShorthandDeprecated("format", "write --format (and --follow to follow a growing log)")
	aliasFlags(fl, map[string]string{"workers": "parallel"})
	return cmd
}

func runLogsAnalyze(cmd *cobra.Command, args []string, f logsAnalyzeFlags) error {
	if len(args) == 0 && isTerminal(cmd.InOrStdin()) {
		return fmt.Errorf("give log files (headroom logs analyze /var/log/nginx/access.log) or pipe a log into stdin; see --help")
	}
	now := time.Now()
	var cmp *findings.Compare
	if f.compare != "" {
		c, err := findings.ParseCompare(f.compare, now, time.UTC)
		if err != nil {
			return err
		}
		cmp = &c
	}
	opts := analyze.Options{
		Inputs:        args,
		Stdin:         cmd.InOrStdin(),
		Format:        f.format,
		FormatOptions: accesslog.FormatOptions{JSONFields: f.jsonFields},
		TopN:          f.top,
		Workers:       f.workers,
		Log:           cmd.ErrOrStderr(),
		Follow:        f.follow,
		Refresh:       f.refresh,
		Now:           func() time.Time { return now },
		Findings:      &findings.AnalyzeOptions{Compare: cmp, SiteHosts: f.site},
	}
	var err error
	if f.since != "" {
		if opts.Since, err = timearg.Parse(f.since, now, time.UTC); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if opts.Until, err = timearg.Parse(f.until, now, time.UTC); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	if len(f.where) > 0 {
		expr := "(" + strings.Join(f.where, ") and (") + ")"
		if len(f.where) == 1 {
			expr = f.where[0]
		}
		if opts.Where, err = analyze.CompileFilter(expr, now, time.UTC); err != nil {
			return err
		}
	}
	if f.by != "" {
		opts.By = strings.Split(f.by, ",")
	}
	stderr := cmd.ErrOrStderr()
	switch f.progress {
	case "always":
		opts.Progress = stderr
	case "auto":
		if isTerminal(stderr) && !f.follow {
			opts.Progress = stderr
		}
	case "never":
	default:
		return fmt.Errorf("--progress %q: want auto, always or never", f.progress)
	}
	out := cmd.OutOrStdout()
	var last *analyze.Report
	write := func(res *analyze.Result) error {
		rep, err := res.Report()
		if err != nil {
			return err
		}
		last = rep
		if f.json {
			return rep.WriteJSON(out)
		}
		return rep.WriteText(out)
	}
	if f.follow {
		clear := !f.json && isTerminal(out)
		opts.OnUpdate = func(res *analyze.Result) {
			if clear {
				fmt.Fprint(out, "\033[H\033[2J")
			}
			_ = write(res)
		}
	}
	res, err := analyze.Run(cmd.Context(), opts)
	if err != nil {
		return err
	}
	if err := write(res); err != nil {
		return err
	}
	if f.html != "" {
		return writeHTMLReport(f.html, last.Detail, htmlreport.Options{Sources: args, Generated: now, Malformed: res.Malformed, Summary: last})
	}
	return nil
}

// findingsOf reads whole logs and returns only what the detectors make of
// them, for commands that show findings without the aggregate tables.
func findingsOf(ctx context.Context, inputs []string, format string) (*findings.Report, error) {
	res, err := analyze.Run(ctx, analyze.Options{Inputs: inputs, Format: format, Log: io.Discard, Findings: &findings.AnalyzeOptions{}})
	if err != nil {
		return nil, err
	}
	rep, err := res.Report()
	if err != nil {
		return nil, err
	}
	return rep.Detail, nil
}

func writeHTMLReport(path string, rep *findings.Report, opt htmlreport.Options) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--html: %w", err)
	}
	if err := htmlreport.Write(file, rep, opt); err != nil {
		file.Close()
		return fmt.Errorf("--html %s: %w", path, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("--html %s: %w", path, err)
	}
	return nil
}

// isTerminal reports whether the stream is a terminal (progress bars and
// screen clearing only make sense there).
func isTerminal(s any) bool {
	f, ok := s.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
