package main

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/sidecar"
)

// sidecarFlags are the flags of `headroom sidecar`. Those it shares with
// `headroom proxy` mean the same and override the same --config fields.
type sidecarFlags struct {
	guardFlags
	listen     string
	syslog     string
	tag        string
	senders    []string
	ticketTTL  time.Duration
	checkCache time.Duration

	accessLog   string
	mapDir      string
	nginxPID    string
	mapInterval time.Duration
	mapMaxReq   time.Duration
}

func newSidecarCmd() *cobra.Command { return newSidecarCmdWith(&sidecarFlags{}) }

func newSidecarCmdWith(f *sidecarFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sidecar [--listen ADDR] [--syslog ADDR] [flags]",
		Short: "Budget upstream worker time per API key beside a real nginx",
		Long: `Guard an application that nginx already proxies, without putting another
proxy in the path. nginx asks the sidecar about every request (auth_request)
and sends it its access log over syslog; 'headroom nginx-config' prints the
nginx snippet that does both.

  check   nginx calls --listen for each request with the original headers,
          $request_id and the client address. The sidecar finds the key (the
          same key sources, trusted proxies and budgets as 'headroom proxy'),
          admits the request and answers 204, or 403 for a key over its budget,
          which nginx turns into 429 with Retry-After, the RateLimit fields and
          a JSON body. From the check on, the request's elapsed time counts
          against its key.
  charge  nginx sends each request's access log line to --syslog (UDP). With
          proxy_ignore_client_abort on, nginx logs a client abort (499) only
          once the upstream finished, so the line's $upstream_response_time
          is what the request really cost, and that is what is charged.
  lost    a request whose line never comes (UDP loss) is charged --ticket-ttl
          when that has passed; a line with no check behind it (a sidecar
          restart) is charged directly to the key nginx logged.
  forged  datagrams are taken only from --syslog-senders (default: the
          address nginx's checks come from, and 127.0.0.1 and ::1); no line
          charges more than --ticket-ttl, and a line with no check behind it
          no more than the longest checked request of its pool. What is
          refused or capped is counted and logged.

For high request rates (nginx-config --log-file FILE --map-dir DIR):
  --access-log FILE   follow nginx's buffered access log file instead of a
                      syslog datagram per request (which costs nginx a
                      quarter of its requests/s); lines may come a second
                      late, so tickets wait --ticket-ttl plus that.
  --map-dir DIR       list the callers far from their budget in a map nginx
                      answers their checks from itself, and reload nginx
                      (--nginx-pid) when the list changes, at most once per
                      --map-interval. Their lines still charge their real
                      upstream time; what they lose is in-flight charging
                      and the per-request decision. A caller is listed
                      only with more than half its budget left and enough
                      to last four reaction times (--map-interval + about
                      2 s) at its recent rate; one that then starts to
                      spend fast can overspend by at most what it starts
                      before its lines come and nginx has the new list:
                      its concurrency x (--map-max-request + one reaction
                      time) worker-seconds. A caller
                      near its budget, restricted, in shadow mode or with a
                      concurrency cap is never listed, nor one of a pool
                      whose requests took longer than --map-max-request
                      (1 s) in the last minute or two: a listed caller's
                      request is seen only when it ends, and beside slow
                      requests a check costs little. The files hold API
                      keys as callers send them: mode 0600, in a directory
                      only the sidecar and nginx's master can read.

Pools (--pool) sort requests for the metrics and the log; their concurrency
limits are not enforced here: use nginx's limit_conn or upstream max_conns.

Admin API and metrics as 'headroom proxy' (--admin): GET /v1/keys,
GET /v1/keys/{key}, POST /v1/keys/{key}/restrict, DELETE
/v1/keys/{key}/restriction, GET /metrics (headroom_*, and
headroom_sidecar_syslog_lines_total{result=matched|late|unmatched|no_upstream|malformed|refused},
headroom_sidecar_checks_total, headroom_sidecar_tickets_pending,
headroom_sidecar_tickets_expired_total,
headroom_sidecar_charges_capped_total{cap=ticket_ttl|pool_max}).

--config reads the same YAML file as 'headroom proxy' (budget, tiers,
overrides, keys, pools, store, admin; --store redis://… shares budgets with
the proxies and other sidecars of a fleet); its listen, upstream and access_log
are the proxy's and are ignored. SIGHUP reloads it; SIGTERM stops, charges
requests still pending their time so far, and writes the --snapshot.`,
		Example: `  # nginx in front of the app on :8000, the sidecar beside it
  headroom nginx-config --upstream http://127.0.0.1:8000 > /etc/nginx/conf.d/headroom.conf
  headroom sidecar --budget 60s --window 1m --restrict-for 5m \
      --snapshot /var/lib/headroom/sidecar.snapshot
  nginx -t && nginx -s reload

  # Who used the most worker time in the last minute?
  curl -s 127.0.0.1:9091/v1/keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSidecar(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.configPath, "config", "c", "", "YAML config `file` shared with headroom proxy; flags override it")
	fl.StringVar(&f.listen, "listen", sidecar.DefaultListen, "`address` of the check endpoint nginx's auth_request calls")
	fl.StringVar(&f.syslog, "syslog", sidecar.DefaultSyslogListen, "UDP `address` nginx's access_log syslog:server= sends to")
	fl.StringVar(&f.tag, "syslog-tag", sidecar.DefaultSyslogTag, "syslog `tag` to accept (nginx's tag=); other tags are ignored")
	fl.StringSliceVar(&f.senders, "syslog-senders", nil, "`CIDR`s or addresses syslog datagrams are taken from (default: nginx's, as its checks show, and 127.0.0.1, ::1)")
	f.register(fl, guardHelp{
		maxInFlight:  "concurrent requests per key (0 = no cap)",
		keyQuery:     "query `parameter` carrying the API key (repeatable)",
		trustedProxy: "`CIDR` or address (in front of nginx) whose X-Forwarded-For is believed (repeatable)",
		pool:         "pool `spec` name=NAME[,prefix=/p/][,host=H],max=N (repeatable; labels only, see above)",
		store:        "usage store: memory, or a Redis shared with other sidecars and proxies: redis://HOST:PORT/DB, rediss://… (TLS), redis-sentinel://SENTINEL[,…]/MASTER/DB, redis-cluster://NODE[,NODE…]",
		snapshot:     "`file` usage is saved to and restored from",
	})
	fl.DurationVar(&f.checkCache, "check-cache", 0, "let nginx reuse an allow answer for a key far from its budget for up to this long (X-Accel-Expires; headroom nginx-config --cache); 0: ask every time")
	fl.StringVar(&f.accessLog, "access-log", "", "follow nginx's access log in this `file` (nginx-config --log-file) instead of listening for syslog (unless --syslog is given too)")
	fl.StringVar(&f.mapDir, "map-dir", "", "`directory` for the map of callers far from their budget that nginx answers for itself (nginx-config --map-dir); needs --nginx-pid")
	fl.StringVar(&f.nginxPID, "nginx-pid", "/run/nginx.pid", "nginx's pid `file`, to reload nginx when the --map-dir list changes")
	fl.DurationVar(&f.mapInterval, "map-interval", time.Second, "how often the --map-dir list is reviewed (and nginx reloaded, if it changed)")
	fl.DurationVar(&f.mapMaxReq, "map-max-request", time.Second, "list only callers of pools whose requests took at most this long in the last minute or two (a listed caller's request is seen only when it ends)")
	fl.DurationVar(&f.ticketTTL, "ticket-ttl", 5*time.Minute, "charge a request this long when its log line never comes (timeouts.upstream)")
	return cmd
}

// loadSidecarConfig reads --config (if any) and applies the flags given.
// It does not reuse loadProxyConfig: that one validates before returning,
// and a sidecar configuration has no upstream.
func loadSidecarConfig(cmd *cobra.Command, f *sidecarFlags) (*config.Config, error) {
	cfg, err := f.readConfig()
	if err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	// The file's listen, upstream and access log belong to the proxy.
	cfg.Listen, cfg.Upstream, cfg.AccessLog = f.listen, "", config.AccessLog{}
	cfg.NoUpstream = true
	if err := f.apply(fl, cfg); err != nil {
		return nil, err
	}
	f.setter(fl)("ticket-ttl", func() { cfg.Timeouts.Upstream = config.Duration(f.ticketTTL) })
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		if f.configPath != "" {
			return nil, fmt.Errorf("config %s with flags: %w", f.configPath, err)
		}
		return nil, err
	}
	return cfg, nil
}

func runSidecar(cmd *cobra.Command, f *sidecarFlags) error {
	lg, err := f.logger()
	if err != nil {
		return err
	}
	cfg, err := loadSidecarConfig(cmd, f)
	if err != nil {
		return err
	}
	senders, err := parseSenders(f.senders)
	if err != nil {
		return err
	}
	syslogAddr := f.syslog
	if f.accessLog != "" && !cmd.Flags().Changed("syslog") {
		syslogAddr = "" // the file instead
	}
	if f.mapInterval < 100*time.Millisecond {
		return fmt.Errorf("--map-interval %s: want at least 100ms (each change reloads nginx)", f.mapInterval)
	}
	var unchecked *sidecar.UncheckedOptions
	if f.mapDir != "" {
		if !filepath.IsAbs(f.mapDir) {
			return fmt.Errorf("--map-dir %q: want an absolute path (nginx includes the files by it)", f.mapDir)
		}
		unchecked = &sidecar.UncheckedOptions{Dir: f.mapDir, Interval: f.mapInterval, MaxRequest: f.mapMaxReq, Reload: sidecar.ReloadNginx(f.nginxPID, 3*time.Second)}
	}
	opts := sidecar.RunOptions{
		Config:     cfg,
		Syslog:     syslogAddr,
		AccessLog:  f.accessLog,
		Unchecked:  unchecked,
		Tag:        f.tag,
		Senders:    senders,
		CheckCache: f.checkCache,
		Logger:     lg,
		LoadConfig: func() (*config.Config, error) { return loadSidecarConfig(cmd, f) },
	}
	snaps, closeStore, err := openStore(cfg, lg, "sidecar")
	if err != nil {
		return err
	}
	defer closeStore()
	opts.Snapshots = snaps
	reload, stopReload := onSignal(syscall.SIGHUP)
	defer stopReload()
	opts.Reload = reload
	return sidecar.Run(cmd.Context(), opts)
}

// parseSenders reads --syslog-senders.
func parseSenders(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--syslog-senders %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}
