package main

import (
	"github.com/headroom-dev/headroom/internal/sidecar"
	"github.com/spf13/cobra"
)

func newNginxConfigCmd() *cobra.Command {
	var o sidecar.NginxConfigOptions
	cmd := &cobra.Command{
		Use:   "nginx-config [--sidecar ADDR] [--syslog ADDR] [--upstream URL] [--listen PORT] [--cache DIR] [--log-file FILE] [--map-dir DIR]",
		Short: "Print the nginx snippet that puts headroom sidecar beside nginx",
		Long: `Print an nginx configuration snippet, for inside the http { } block, that
proxies to the application and lets 'headroom sidecar' guard it:

  - auth_request to the sidecar's check endpoint for every request, passing
    the original headers (X-Api-Key, Authorization), $request_id, the client
    address, URI and host;
  - error_page turning the sidecar's refusal into 429 with Retry-After, the
    RateLimit fields and a JSON body; if the sidecar is down, requests pass
    unguarded (delete the marked line for fail-closed);
  - proxy_ignore_client_abort on, so a client that gives up is charged what
    the upstream really spent;
  - the access log, in the format the sidecar parses, sent to it over syslog;
  - with --cache DIR, an nginx cache of the sidecar's allow answers, reused
    for as long as the sidecar says (X-Accel-Expires: only for keys far from
    their budget; start the sidecar with --check-cache);
  - with --log-file FILE, the access log written to FILE in 64 KiB batches
    (the sidecar follows it: its --access-log) instead of one syslog
    datagram per request, which costs nginx a quarter of its requests/s;
  - with --map-dir DIR, a map of the callers far from their budget, which
    the sidecar writes into DIR and reloads nginx for (its --map-dir and
    --nginx-pid): nginx answers their checks itself, so a light caller's
    request costs nginx no round trip at all, and its log line still
    charges its real upstream time. With --log-file too, guarding costs
    nginx about a tenth of its requests/s (BENCHMARKS.md).

With no flags it matches a sidecar started with no flags. The snippet is
also in deploy/nginx-headroom.conf.

Most sites already have their server block: --part prints the three pieces
to include into it instead, http (log format, upstreams), server (the
access log to the sidecar, the check endpoint, the 429 and the fail-open
fallback) and location (the check itself, for each location to guard).`,
		Example: `  headroom nginx-config --upstream http://127.0.0.1:8000 --listen 80 \
      > /etc/nginx/conf.d/headroom.conf
  nginx -t && nginx -s reload

  # Into an existing site: include each piece where it says
  headroom nginx-config --part http --upstream http://127.0.0.1:8000 > /etc/nginx/conf.d/headroom.conf
  headroom nginx-config --part server > /etc/nginx/snippets/headroom-server.conf
  headroom nginx-config --part location > /etc/nginx/snippets/headroom-location.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sidecar.NginxConfig(o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write([]byte(s))
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Sidecar, "sidecar", sidecar.DefaultListen, "`address` of the sidecar's check endpoint (its --listen)")
	fl.StringVar(&o.Syslog, "syslog", sidecar.DefaultSyslogListen, "UDP `address` of the sidecar's syslog listener (its --syslog)")
	fl.StringVar(&o.Tag, "syslog-tag", sidecar.DefaultSyslogTag, "syslog `tag` (the sidecar's --syslog-tag)")
	fl.StringVar(&o.Upstream, "upstream", sidecar.DefaultNginxUpstream, "`URL` of the application nginx proxies to")
	fl.StringVar(&o.Part, "part", "", "print one piece for a server you already have: http (inside http { }), server (inside your server { }) or location (inside each location { } to guard, before its proxy_pass)")
	fl.StringVar(&o.LogFile, "log-file", "", "write the access log the sidecar reads to this `file` (the sidecar's --access-log), buffered, instead of syslog")
	fl.StringVar(&o.MapDir, "map-dir", "", "`directory` of the sidecar's map of callers far from their budget, whose checks nginx answers itself (the sidecar's --map-dir)")
	fl.StringVar(&o.Listen, "listen", sidecar.DefaultNginxListen, "nginx's listen: a `port` or host:port")
	fl.StringVar(&o.Cache, "cache", "", "`directory` for an nginx cache of the sidecar's allow answers (start the sidecar with --check-cache)")
	return cmd
}
