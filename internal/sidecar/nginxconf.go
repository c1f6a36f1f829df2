package sidecar

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// Defaults of `headroom sidecar` and `headroom nginx-config`: the snippet
// nginx-config prints with no flags talks to a sidecar started with none.
const (
	DefaultListen        = "127.0.0.1:9092" // the check endpoint nginx's auth_request calls
	DefaultSyslogListen  = "127.0.0.1:9093" // UDP: nginx's access_log syslog:server=
	DefaultSyslogTag     = "headroom"
	DefaultNginxListen   = "8080"
	DefaultNginxUpstream = "http://127.0.0.1:8000"
)

// LogFormat is the nginx log_format the sidecar reads from nginx's
// syslog access log: headroom's own access log format (so `headroom logs
// analyze --format headroom` reads a file written with it too) plus
// $request_id, which ties each line to the ticket the check opened, and
// $request_completion ("OK", or empty when nginx could not send the whole
// answer). With proxy_ignore_client_abort on, nginx logs the upstream's
// status even when the client had left (it does not watch the client while
// it waits), so an empty $request_completion is the only sign of an abort.
// $headroom_key and $headroom_pool are set in nginx by auth_request_set from
// the check's answer: the key's fingerprint, never the key. NginxConfig
// prints this text and the sidecar compiles it, so the two cannot drift.
const LogFormat = accesslog.HeadroomFormat + ` $request_id $request_completion`

// Header fields between nginx and the sidecar's check endpoint.
const (
	hdrRequestID = "X-Headroom-Request-Id" // nginx's $request_id
	hdrClient    = "X-Headroom-Client"     // nginx's $remote_addr
	hdrURI       = "X-Headroom-Uri"        // $request_uri, for pools and query key sources
	hdrHost      = "X-Headroom-Host"       // $host, for pools by host
	hdrKey       = "X-Headroom-Key"        // answer: the ledger key (fingerprint or addr:IP)
	hdrPool      = "X-Headroom-Pool"       // answer: the pool
	hdrDenial    = "X-Headroom-Denial"     // answer on refusal: the 429's JSON body
	hdrCacheKey  = "X-Headroom-Cache-Key"  // what nginx's check cache is keyed by (--cache)
	hdrMapKey    = "X-Headroom-Map-Key"    // what nginx's map of unchecked keys is keyed by (--map-dir)
	// hdrAccelExpires is nginx's own: how long it may keep the answer in
	// its cache, in seconds (0: not at all).
	hdrAccelExpires = "X-Accel-Expires"
)

// CheckPath is the sidecar's check endpoint.
const CheckPath = "/check"

// NginxConfigOptions are the addresses the snippet names. Zero fields take
// the defaults above.
type NginxConfigOptions struct {
	Sidecar  string // host:port of the sidecar's check endpoint
	Syslog   string // host:port of the sidecar's syslog (UDP) listener
	Tag      string // syslog tag; the sidecar ignores other tags
	Upstream string // URL of the application nginx proxies to
	Listen   string // what nginx's listen directive gets (port or host:port)
	// Part, when set, prints one piece for a server block the operator
	// already has, instead of a whole server: "http" (inside http {}),
	// "server" (inside that server {}) or "location" (inside each location
	// {} to guard, before its proxy_pass). "" prints everything.
	Part string
	// Cache, when set, is the directory of an nginx cache of the sidecar's
	// allow answers (proxy_cache_path): nginx then asks about a key far
	// from its budget only once per the few seconds the sidecar allows
	// (X-Accel-Expires; the sidecar's --check-cache).
	Cache string
	// LogFile, when set, is where nginx writes the access log the sidecar
	// follows (its --access-log), buffered (64 KiB, flushed each second),
	// instead of one syslog datagram per request: measured, the datagrams
	// cost nginx more than a quarter of its requests/s (BENCHMARKS.md).
	LogFile string
	// MapDir, when set, is the directory of the map files the sidecar
	// writes (its --map-dir): the callers far from their budget, whose
	// checks nginx answers itself (204) without asking the sidecar.
	MapDir string
}

func (o *NginxConfigOptions) setDefaults() {
	if o.Sidecar == "" {
		o.Sidecar = DefaultListen
	}
	if o.Syslog == "" {
		o.Syslog = DefaultSyslogListen
	}
	if o.Tag == "" {
		o.Tag = DefaultSyslogTag
	}
	if o.Upstream == "" {
		o.Upstream = DefaultNginxUpstream
	}
	if o.Listen == "" {
		o.Listen = DefaultNginxListen
	}
}

// NginxConfig returns the nginx snippet (for inside http {}) that puts
// nginx in front of the application with the sidecar guarding it.
func NginxConfig(o NginxConfigOptions) (string, error) {
	o.setDefaults()
	for name, a := range map[string]string{"sidecar": o.Sidecar, "syslog": o.Syslog} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", fmt.Errorf("--%s %q: want host:port, e.g. 127.0.0.1:9092", name, a)
		}
	}
	if !validTag(o.Tag) {
		// nginx accepts only these in syslog tags; anything else fails nginx -t.
		return "", fmt.Errorf("tag %q: nginx allows 1-32 letters, digits and underscores", o.Tag)
	}
	u, err := url.Parse(o.Upstream)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("--upstream %q: want http://HOST:PORT (the application nginx proxies to)", o.Upstream)
	}
	if o.Listen == "" || strings.ContainsAny(o.Listen, " ;{}") {
		return "", fmt.Errorf("--listen %q: want a port or host:port", o.Listen)
	}
	cacheHTTP, cacheCheck := "", ""
	if o.Cache != "" {
		if strings.ContainsAny(o.Cache, " ;{}\"'\n") {
			return "", fmt.Errorf("--cache %q: want a directory path without spaces or quotes", o.Cache)
		}
		cacheHTTP = strings.ReplaceAll(cacheHTTPTemplate, "@CACHE@", o.Cache)
		cacheCheck = strings.ReplaceAll(cacheCheckTemplate, "@H_CACHE_KEY@", hdrCacheKey)
	}
	logPart := nginxServerLogPart
	if o.LogFile != "" {
		if !filepath.IsAbs(o.LogFile) || strings.ContainsAny(o.LogFile, " ;{}\"'\n$") {
			return "", fmt.Errorf("--log-file %q: want an absolute file path without spaces, quotes or $", o.LogFile)
		}
		logPart = strings.ReplaceAll(nginxServerLogFilePart, "@LOG_FILE@", o.LogFile)
	}
	mapHTTP, mapCheck, keyVar, poolVar, reqID := "", "", "", "", "$request_id"
	format := LogFormat
	if o.MapDir != "" {
		if !filepath.IsAbs(o.MapDir) || strings.ContainsAny(o.MapDir, " ;{}\"'\n$*?[") {
			return "", fmt.Errorf("--map-dir %q: want an absolute directory path without spaces, quotes, $ or glob characters", o.MapDir)
		}
		mapHTTP = strings.NewReplacer("@IDENTITY@", MapIdentity,
			"@KEYS_GLOB@", globOne(filepath.Join(o.MapDir, MapKeysFile)),
			"@POOLS_GLOB@", globOne(filepath.Join(o.MapDir, MapPoolsFile))).Replace(mapHTTPTemplate)
		mapCheck = strings.ReplaceAll(mapCheckTemplate, "@H_MAP_KEY@", hdrMapKey)
		keyVar, poolVar, reqID = "$headroom_unchecked_key", "$headroom_unchecked_pool", "$headroom_request_id"
		format = strings.Replace(LogFormat, " $request_id ", " $headroom_request_id ", 1)
	}
	r := strings.NewReplacer(
		"@FORMAT@", strings.ReplaceAll(format, `"`, `\"`),
		"@REQ_ID@", reqID,
		"@UPSTREAM@", u.Host,
		"@SIDECAR@", o.Sidecar,
		"@SYSLOG@", o.Syslog,
		"@TAG@", o.Tag,
		"@LISTEN@", o.Listen,
		"@CHECK@", CheckPath,
		"@H_ID@", hdrRequestID,
		"@H_CLIENT@", hdrClient,
		"@H_URI@", hdrURI,
		"@H_HOST@", hdrHost,
		"@V_KEY@", headerVar(hdrKey),
		"@V_POOL@", headerVar(hdrPool),
		"@V_DENIAL@", headerVar(hdrDenial),
		"@CACHE_HTTP@", cacheHTTP,
		"@CACHE_CHECK@", cacheCheck,
		"@MAP_HTTP@", mapHTTP,
		"@MAP_CHECK@", mapCheck,
		"@MAP_KEY_VAR@", keyVar,
		"@MAP_POOL_VAR@", poolVar,
	)
	var t string
	switch o.Part {
	case "":
		t = nginxHeader + nginxHTTPPart + "server {\n    listen @LISTEN@;\n\n" + logPart +
			"    location / {\n" + nginxLocationPart + nginxLocationProxy + "    }\n\n" + nginxServerLocationsPart + "}\n"
	case "http":
		t = partHeader("http { }, beside your server blocks") + nginxHTTPPart
	case "server":
		t = partHeader("your server { }, beside its locations") + logPart + "\n" + nginxServerLocationsPart
	case "location":
		t = partHeader("each location { } to guard, before its proxy_pass") + nginxLocationPart
	default:
		return "", fmt.Errorf("--part %q: want http, server or location (or none for the whole snippet)", o.Part)
	}
	return r.Replace(t), nil
}

// partHeader says what a piece is and where the other two go.
func partHeader(where string) string {
	return "# headroom sidecar, one piece of three (headroom nginx-config --part http,\n" +
		"# server, location): include this inside " + where + ".\n" +
		"# The three together guard an existing site; headroom nginx-config with no\n" +
		"# --part prints them in a server block of their own.\n\n"
}

func validTag(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// headerVar is nginx's variable for a response header of the auth
// subrequest: $upstream_http_ and the name lowercased, - as _.
func headerVar(h string) string {
	return "$upstream_http_" + strings.ReplaceAll(strings.ToLower(h), "-", "_")
}

// The snippet comes in pieces, so that an operator with a server block of
// their own includes only what goes where (issue 17: nginx-config printed
// only a whole server { listen 8080; }). NginxConfig's default output is
// the pieces put together in a server of its own.

// nginxHeader opens the whole snippet.
const nginxHeader = `# headroom sidecar: nginx asks ` + "`headroom sidecar`" + ` before each request
# whether the caller's key is within its upstream worker-time budget
# (auth_request), and sends it its access log (over syslog, or in a file
# the sidecar follows), which charges each request's real upstream time.
# Generated by ` + "`headroom nginx-config`" + `; include it inside http { }.

`

// nginxHTTPPart goes inside http {}: the log format, the upstreams.
const nginxHTTPPart = `# The sidecar parses exactly this format: headroom's access log format plus
# $request_id and $request_completion. Do not edit it; regenerate the
# snippet instead. ` + "`headroom logs analyze --format headroom`" + ` reads the
# same format from a file.
log_format headroom_sidecar "@FORMAT@";
@CACHE_HTTP@@MAP_HTTP@
upstream headroom_app {
    server @UPSTREAM@;
    keepalive 32;
}

upstream headroom_sidecar {
    server @SIDECAR@;
    keepalive 16;
}

`

// nginxServerLogPart goes inside server {}: the access log to the sidecar.
const nginxServerLogPart = `    # Every request's line goes to the sidecar (UDP; a lost line is charged
    # the sidecar's ticket bound, timeouts.upstream). Add a file access_log
    # with the same format to keep the lines.
    access_log syslog:server=@SYSLOG@,tag=@TAG@,nohostname headroom_sidecar;

`

// nginxLocationPart goes inside each location {} to guard, before its
// proxy_pass: the check, and what makes the log line charge the real time.
const nginxLocationPart = `        # Ask the sidecar first. It answers 204 (go on) or 403 (the key is
        # over its budget), which error_page turns into the 429 below.
        auth_request /_headroom@CHECK@;
        auth_request_set $headroom_key @MAP_KEY_VAR@@V_KEY@;
        auth_request_set $headroom_pool @MAP_POOL_VAR@@V_POOL@;
        auth_request_set $headroom_denial @V_DENIAL@;
        auth_request_set $headroom_retry_after $upstream_http_retry_after;
        auth_request_set $headroom_ratelimit_policy $upstream_http_ratelimit_policy;
        auth_request_set $headroom_ratelimit $upstream_http_ratelimit;
        error_page 403 = @headroom_denied;
        # Sidecar down or failing: let requests through unguarded rather
        # than fail them all. For fail-closed, delete this line.
        error_page 500 = @headroom_unguarded;

        # The budget's RateLimit fields on every answer (empty: not sent).
        # add_header here hides the server's own add_header lines: repeat
        # them in this location if you have any.
        add_header RateLimit-Policy $headroom_ratelimit_policy always;
        add_header RateLimit $headroom_ratelimit always;

        # A client that gives up does not stop the bill (seeds/03): nginx
        # lets the upstream finish before it logs the request, so the line
        # carries the upstream's real time.
        proxy_ignore_client_abort on;
        # Ties the upstream's log to nginx's line. Like add_header, a
        # proxy_set_header here hides the server's own: repeat them here.
        proxy_set_header X-Request-Id @REQ_ID@;
`

// nginxLocationProxy ends the whole snippet's own location /.
const nginxLocationProxy = `        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_pass http://headroom_app;
`

// nginxServerLocationsPart goes inside server {}: the check endpoint, the
// 429 and the fail-open fallback.
const nginxServerLocationsPart = `    location = /_headroom@CHECK@ {
        internal;
        # The original request's headers (X-Api-Key, Authorization) go to
        # the sidecar as they are; the body does not.
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Connection "";
        proxy_http_version 1.1;
        proxy_set_header @H_ID@ $request_id;
        proxy_set_header @H_CLIENT@ $remote_addr;
        proxy_set_header @H_URI@ $request_uri;
        proxy_set_header @H_HOST@ $host;
        proxy_connect_timeout 1s;
        proxy_read_timeout 2s;
@MAP_CHECK@@CACHE_CHECK@        proxy_pass http://headroom_sidecar@CHECK@;
    }

    # A key over its budget: 429 with Retry-After, the RateLimit fields and
    # the sidecar's JSON body, as ` + "`headroom proxy`" + ` answers.
    location @headroom_denied {
        default_type application/json;
        add_header Retry-After $headroom_retry_after always;
        add_header RateLimit-Policy $headroom_ratelimit_policy always;
        add_header RateLimit $headroom_ratelimit always;
        add_header Cache-Control no-store always;
        return 429 "$headroom_denial\n";
    }

    location @headroom_unguarded {
        proxy_ignore_client_abort on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Request-Id $request_id;
        proxy_pass http://headroom_app;
    }
`

// The whole snippet (NginxConfig with no Part) is the pieces in a server
// of its own. Why each directive is there is said in the comments nginx
// operators will read.

// nginxServerLogFilePart replaces nginxServerLogPart with --log-file.
const nginxServerLogFilePart = `    # Every request's line goes to a file the sidecar follows (its
    # --access-log), written in 64 KiB batches and at least once a second:
    # far cheaper for nginx than a datagram per request. It is an access log
    # like any other (headroom logs analyze --format headroom reads it):
    # rotate it as usual; the sidecar follows the new file.
    access_log @LOG_FILE@ headroom_sidecar buffer=64k flush=1s;

`

// MapIdentity is what nginx's map of unchecked callers is keyed by: the
// caller as the sidecar's default key sources see it (X-Api-Key, the
// Authorization field, the client address) and the host, which pools may
// go by. The sidecar builds the same string from a check's fields (the
// snippet passes $remote_addr and $host with it), and lists a caller only
// when its key sources and pools are all covered by it.
const MapIdentity = "$http_x_api_key|$http_authorization|$remote_addr|$host"

// The map files the sidecar writes into --map-dir: caller -> the key's
// fingerprint, and caller -> its pool, for the log line.
const (
	MapKeysFile  = "unchecked-keys.map"
	MapPoolsFile = "unchecked-pools.map"
)

// globOne turns a path into a glob that matches only it: nginx's include
// of a pattern that matches nothing is not an error, so nginx starts before
// the sidecar has written its first map.
func globOne(path string) string {
	return path[:len(path)-1] + "[" + path[len(path)-1:] + "]"
}

// mapHTTPTemplate is the map of unchecked callers (--map-dir), in http {}.
const mapHTTPTemplate = `
# Callers far from their budget (headroom nginx-config --map-dir): the
# sidecar lists them in these files and reloads nginx (its --nginx-pid)
# when the list changes; nginx then answers their checks itself, and their
# log lines still charge every request's real upstream time. A caller near
# its budget, restricted, in shadow mode or with a concurrency cap is never
# listed: each of its requests is asked about. The files hold API keys and
# tokens as callers send them: the sidecar writes them 0600.
map_hash_bucket_size 512;
map_hash_max_size 262144;
map "@IDENTITY@" $headroom_unchecked_key {
    default "";
    include @KEYS_GLOB@;
}
map "@IDENTITY@" $headroom_unchecked_pool {
    default "";
    include @POOLS_GLOB@;
}
# $request_id costs nginx a random number per request (OpenSSL's
# RAND_bytes; measured: 6% of its requests/s). A listed caller's line needs
# no ticket's id, and its upstream gets an id unique on this host instead.
map $headroom_unchecked_key $headroom_request_id {
    "" $request_id;
    default $pid.$connection.$connection_requests.$msec;
}
`

// mapCheckTemplate goes into the check location with --map-dir.
const mapCheckTemplate = `        # A caller the sidecar listed as far from its budget: nginx answers
        # for it (the key and pool come from the map, for the log line).
        if ($headroom_unchecked_key) {
            return 204;
        }
        proxy_set_header @H_MAP_KEY@ "header:X-Api-Key,bearer,addr,host";
`

// cacheHTTPTemplate is the cache of check answers (--cache), in http {}.
// One megabyte of keys_zone holds about 8,000 cache keys (nginx's figure),
// one per API key or client address seen within inactive: 10m is room for
// 80,000 callers. Entries are a few hundred bytes on disk.
const cacheHTTPTemplate = `
# Check answers nginx may reuse (headroom nginx-config --cache): the sidecar
# lets a key far from its budget be answered from here for a few seconds
# (X-Accel-Expires, bounded so the key cannot cross its budget meanwhile at
# its recent rate); a key near its budget, restricted, or with a concurrency
# cap is asked about on every request. keys_zone: 1 MB holds ~8,000 callers.
# The directory must be writable by nginx's worker user: a cache nginx cannot
# write fails the requests it guards.
proxy_cache_path @CACHE@ levels=1:2 keys_zone=headroom_checks:10m max_size=64m inactive=1m use_temp_path=off;
`

// cacheCheckTemplate goes into the check location with --cache. The cache
// key is the caller's identity as the sidecar's default key sources see it
// (X-Api-Key, a bearer token, the client address) and the host; the
// snippet declares it to the sidecar, which allows caching only when its
// own key sources and pools are all covered by it.
const cacheCheckTemplate = `        # Reuse the sidecar's allow answers for as long as it says
        # (X-Accel-Expires); nothing else here is cached.
        proxy_cache headroom_checks;
        proxy_cache_key "$http_x_api_key|$http_authorization|$remote_addr|$host";
        proxy_cache_methods GET HEAD POST;
        proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
        proxy_set_header @H_CACHE_KEY@ "header:X-Api-Key,bearer,addr,host";
`
