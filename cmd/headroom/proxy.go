package main

import (
	"fmt"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/guard"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// proxyFlags are the command-line flags of `headroom proxy`; each one, when
// given, overrides the same setting of the --config file.
type proxyFlags struct {
	guardFlags
	listen          string
	upstream        string
	accessLog       string
	accessLogFormat string
	netHTTP         bool
	eventLoop       bool
	maxConns        int
	maxConnsClient  int
}

func newProxyCmd() *cobra.Command { return newProxyCmdWith(&proxyFlags{}) }

// newProxyCmdWith binds the command's flags to f (tests read them back).
func newProxyCmdWith(f *proxyFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy --listen ADDR --upstream URL [flags]",
		Short: "Reverse proxy that budgets upstream worker time per API key",
		Long: `Run a reverse proxy in front of one upstream (gunicorn, unicorn, any HTTP
server) that charges every request's upstream worker time to its key and
restricts keys that use more than their budget.

  key        the API key from X-Api-Key or Authorization: Bearer (configurable:
             --key-header, --key-query, --key-bearer), else the client address;
             X-Forwarded-For is believed only from --trusted-proxy addresses.
             Keys are only ever shown as fingerprints (fp-…, a keyed HMAC).
  budget     --budget worker-seconds per sliding --window; usage counts the
             elapsed time of requests still running. A key over budget is
             restricted for --restrict-for: 429 with Retry-After and the IETF
             draft RateLimit-Policy / RateLimit fields, never reaching upstream.
  abort      a client that gives up does not stop the bill: the upstream call
             finishes, its real time is charged, and the access log shows 499
             at the client's time next to the upstream's status and time.
  pools      --pool gives a class of requests (by path prefix or host) its own
             concurrency limit and bounded queue (503 + Retry-After when full),
             so API traffic can never hold every upstream worker.
  bodies     a request body is read (up to 1 MiB; the rest streams) before the
             request takes a pool slot or reaches the upstream, and must arrive
             within timeouts.body (30 s, then 408): a slow upload never holds
             a worker. request_body.max answers larger bodies with 413.
  answers    a client that stops reading its answer is closed once a write to
             it made no progress for timeouts.client_send (60 s, nginx's
             send_timeout; a slow reader that keeps reading is never cut):
             logged 499, the upstream still charged in full.
  shadow     --shadow computes and logs decisions ("would restrict") without
             enforcing them, to roll out on live traffic first.

Admin API (--admin, loopback by default; --admin-token to require a bearer
token, needed for a non-loopback address):
  GET /healthz   GET /metrics (Prometheus, headroom_*)   GET /v1/keys
  GET /v1/keys/{key}   POST /v1/keys/{key}/restrict[?for=10m]
  DELETE /v1/keys/{key}/restriction
{key} is a raw key, a fingerprint (fp-…) or addr:IP.

Access log (--access-log PATH or -), one line per request in this nginx
log_format (--access-log-format headroom, the default):

  ` + accesslog.HeadroomFormat + `

$status is 499 when the client gave up; $upstream_status and
$upstream_response_time are '-' when the request never reached the upstream;
$headroom_key is the key's fingerprint (or addr:IP); query parameters that carry
keys are REDACTED. 'headroom logs analyze --format headroom' reads it.
--access-log-format json writes JSON lines with the same fields.

Signals: SIGHUP reloads --config (an invalid file is refused and the running
configuration kept) and reopens the access log; SIGUSR1 reopens the access log
(for logrotate); SIGTERM/SIGINT stop accepting, drain requests in flight, and
write the usage snapshot.

Usage and restrictions survive restarts with --snapshot PATH (the memory store
saved every 10 s and at shutdown); the fingerprint secret is kept next to it
(PATH.secret) unless keys.secret/--secret-file is given.

Fleet: --store redis://HOST:PORT/DB (or rediss://, redis-sentinel://S1,S2/MASTER/DB,
redis-cluster://N1,N2,N3) lets several proxies share each key's worker time
and restrictions through Redis. Decisions stay local and never wait on Redis:
each proxy admits a key against a lease, a slice of the key's remaining budget
granted atomically in Redis, and asks for the next one before it runs out, so
the fleet keeps the budget as one proxy does (docs/fleet.md). Restrictions made
on any proxy (admin API included) are published at once; every second
(store.sync_interval) each proxy also pushes its usage and pulls the fleet's.
Every proxy needs the same --secret-file, since keys are shared by
fingerprint; raw API keys never reach Redis. If Redis is down the proxy logs
it once, reports headroom_store_degraded 1 and "degraded" in /healthz, spends
its leases, then an even share of each budget (budget / proxies last seen),
and resumes (re-pushing what it holds) when Redis is back. Prefix, interval
and batch size are in the config file's store: block. Every setting, and
more (tiers, per-key overrides, timeouts), is in the YAML --config file:
see deploy/headroom.yaml, documented field by field.`,
		Example: `  # Budget 60 worker-seconds per minute per key, restrict for 5 minutes
  headroom proxy --listen :8080 --upstream http://127.0.0.1:8000 \
      --budget 60s --window 1m --restrict-for 5m --access-log /var/log/headroom/access.log

  # Keep 8 upstream workers for the API, the rest for the UI, shadow mode first
  headroom proxy --listen :8080 --upstream http://127.0.0.1:8000 --shadow \
      --pool name=api,prefix=/api/,max=8,queue=16,timeout=2s --pool name=ui,max=24

  # Everything from a file, usage kept across restarts
  headroom proxy --config /etc/headroom/headroom.yaml --snapshot /var/lib/headroom/usage.snapshot

  # One of a fleet sharing budgets through Redis (same secret on every proxy)
  headroom proxy --listen :8080 --upstream http://127.0.0.1:8000 \
      --store redis://10.0.0.5:6379/0 --secret-file /etc/headroom/secret

  # Who is using the most worker time right now?
  curl -s 127.0.0.1:9091/v1/keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProxy(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.configPath, "config", "c", "", "YAML config `file` (see deploy/headroom.yaml); flags override it")
	fl.StringVar(&f.listen, "listen", config.DefaultListen, "`address` to serve clients on")
	fl.StringVar(&f.upstream, "upstream", "", "`URL` of the application to protect, e.g. http://127.0.0.1:8000")
	f.register(fl, guardHelp{
		maxInFlight:  "concurrent upstream requests per key (0 = no cap)",
		keyQuery:     "query `parameter` carrying the API key (repeatable; always redacted in the log)",
		trustedProxy: "`CIDR` or address whose X-Forwarded-For is believed (repeatable)",
		pool:         "pool `spec` name=NAME[,prefix=/p/][,host=H],max=N[,queue=N,timeout=DUR] (repeatable; a pool with no prefix or host catches the rest)",
		store:        "usage store: memory, or a Redis shared with a fleet of proxies: redis://HOST:PORT/DB, rediss://… (TLS), redis-sentinel://SENTINEL[,…]/MASTER/DB, redis-cluster://NODE[,NODE…]",
		snapshot:     "`file` the memory store is saved to and restored from",
	})
	fl.StringVar(&f.accessLog, "access-log", "", "access log `file`, or - for standard output (default none)")
	fl.StringVar(&f.accessLogFormat, "access-log-format", "headroom", "access log `format`: headroom (nginx log_format above) or json")
	fl.IntVar(&f.maxConns, "max-connections", 0, "most client connections open at once; more get 503 (0 = no cap)")
	fl.IntVar(&f.maxConnsClient, "max-connections-per-client", 0, "most connections open at once from one client address, trusted proxies exempt; more get 503 (0 = no cap)")
	fl.BoolVar(&f.eventLoop, "event-loop", false, "serve requests without a body on epoll event loops (Linux; everything else on headroom's HTTP/1.1 path); off by default for now")
	fl.BoolVar(&f.netHTTP, "net-http", false, "serve clients with Go's net/http and httputil.ReverseProxy instead of headroom's own HTTP/1.1 path")
	return cmd
}

// loadProxyConfig reads --config (if any), applies the flags that were
// given, then defaults and validation. SIGHUP calls it again.
func loadProxyConfig(cmd *cobra.Command, f *proxyFlags) (*config.Config, error) {
	cfg, err := f.readConfig()
	if err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	set := f.setter(fl)
	set("listen", func() { cfg.Listen = f.listen })
	set("upstream", func() { cfg.Upstream = f.upstream })
	if err := f.apply(fl, cfg); err != nil {
		return nil, err
	}
	set("access-log", func() { cfg.AccessLog.Path = f.accessLog })
	set("access-log-format", func() { cfg.AccessLog.Format = f.accessLogFormat })
	set("net-http", func() { cfg.NetHTTP = f.netHTTP })
	set("event-loop", func() { cfg.EventLoop = f.eventLoop })
	set("max-connections", func() { cfg.Connections.Max = f.maxConns })
	set("max-connections-per-client", func() { cfg.Connections.PerClient = f.maxConnsClient })

	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		var hint string
		if cfg.Upstream == "" {
			hint = " (give --upstream URL or upstream: in --config)"
		}
		if f.configPath != "" {
			return nil, fmt.Errorf("config %s with flags: %w%s", f.configPath, err, hint)
		}
		return nil, fmt.Errorf("%w%s", err, hint)
	}
	return cfg, nil
}

func runProxy(cmd *cobra.Command, f *proxyFlags) error {
	lg, err := f.logger()
	if err != nil {
		return err
	}
	cfg, err := loadProxyConfig(cmd, f)
	if err != nil {
		return err
	}
	opts := guard.ServerOptions{
		Config:     cfg,
		Logger:     lg,
		LoadConfig: func() (*config.Config, error) { return loadProxyConfig(cmd, f) },
	}
	snaps, closeStore, err := openStore(cfg, lg, "proxy")
	if err != nil {
		return err
	}
	defer closeStore()
	opts.Snapshots = snaps
	reload, stopReload := onSignal(syscall.SIGHUP)
	defer stopReload()
	reopen, stopReopen := onSignal(syscall.SIGUSR1)
	defer stopReopen()
	opts.Reload, opts.Reopen = reload, reopen
	return guard.Run(cmd.Context(), opts)
}
