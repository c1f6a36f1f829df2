// Package config is the guard's configuration: the YAML file `headroom proxy
// --config` reads, its defaults, and its validation. Every error names the
// field it is about (`pools[1].max_concurrent: must be > 0`) so an operator
// can fix the file without reading the source, and a reload that fails
// validation never replaces a running configuration.
//
// The file is documented field by field in deploy/headroom.yaml.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/headroom-dev/headroom/internal/store/redisaddr"
	"github.com/headroom-dev/headroom/internal/weburl"
)

// Config is the whole guard configuration. The zero value is not valid; Parse
// and Load return a Config with defaults applied and validated, and callers
// that build one in code call SetDefaults and Validate themselves.
type Config struct {
	// Listen is the address the proxy serves clients on (host:port).
	Listen string `yaml:"listen"`
	// Upstream is the base URL of the protected application.
	Upstream string `yaml:"upstream"`

	Admin     Admin      `yaml:"admin"`
	Keys      Keys       `yaml:"keys"`
	Budget    Limits     `yaml:"budget"`
	Shadow    bool       `yaml:"shadow"`
	Tiers     []Tier     `yaml:"tiers"`
	Overrides []Override `yaml:"overrides"`
	Pools     []Pool     `yaml:"pools"`
	AccessLog AccessLog  `yaml:"access_log"`
	Store     Store      `yaml:"store"`
	Timeouts  Timeouts   `yaml:"timeouts"`
	// RequestBody says how much of a request's body the proxy reads before
	// the request may take a pool slot or an upstream worker.
	RequestBody RequestBody `yaml:"request_body"`

	// NetHTTP serves clients with Go's net/http server and
	// httputil.ReverseProxy instead of the fast HTTP/1.1 path
	// (internal/fastproxy, issue 12). The fast path is the default for an
	// http:// upstream without a base path; what it does not handle
	// (Upgrade, Expect: 100-continue, non-origin-form targets) goes to
	// net/http on the same connection either way.
	NetHTTP bool `yaml:"net_http"`
	// EventLoop serves clients with the event-loop front-end
	// (internal/evproxy, Linux only; issue 12): epoll loops on locked
	// threads for requests without a body, everything else handed to the
	// fast path on the same connection. Off by default for now; ignored
	// with NetHTTP, and where the fast path cannot serve the upstream.
	EventLoop bool `yaml:"event_loop"`
	// MaxHeaderBytes bounds a request head (431 past it on the fast path,
	// 400 on net/http); 0 means 32 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Connections caps the client connections the proxy holds open.
	Connections Connections `yaml:"connections"`

	// NoUpstream is set by `headroom sidecar`: nginx proxies to the
	// application, so Validate does not require Upstream.
	NoUpstream bool `yaml:"-"`
}

// Connections caps client connections (issue 17: nothing did). A
// connection over a cap gets 503 with Retry-After and is closed before a
// byte of it is read.
type Connections struct {
	// Max is the most client connections open at once; 0 = no cap.
	Max int `yaml:"max"`
	// PerClient is the most open at once from one client address (the
	// TCP peer; trusted_proxies are exempt, since their connections carry
	// many clients); 0 = no cap.
	PerClient int `yaml:"per_client"`
}

// Admin is the admin HTTP API (health, metrics, keys).
type Admin struct {
	// Listen is the admin address; "off" disables the admin API.
	Listen string `yaml:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN".
	Token string `yaml:"token"`
	// TokenFile reads the token from a file (first line), so it stays out
	// of the config file.
	TokenFile string `yaml:"token_file"`
	// AllowInsecure permits a non-loopback Listen without a token.
	AllowInsecure bool `yaml:"allow_insecure"`
}

// Keys says how a request's key is found and how keys are protected.
type Keys struct {
	// Sources are tried in order; the first one present names the key.
	// A request with none is keyed by its client address.
	Sources []KeySource `yaml:"sources"`
	// TrustedProxies are the addresses or CIDRs whose X-Forwarded-For is
	// believed; from anyone else the header is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Secret is the HMAC key for fingerprints. Empty: SecretFile, else a
	// secret generated once and kept next to the snapshot.
	Secret string `yaml:"secret"`
	// SecretFile reads the HMAC key from a file.
	SecretFile string `yaml:"secret_file"`
	// RedactQuery lists extra query parameters whose values never reach the
	// access log (query key sources are always redacted).
	RedactQuery []string `yaml:"redact_query"`
}

// KeySource is one place a key can come from; exactly one field is set.
type KeySource struct {
	Header string `yaml:"header"` // a request header, e.g. X-Api-Key
	Bearer bool   `yaml:"bearer"` // Authorization: Bearer TOKEN
	Query  string `yaml:"query"`  // a query parameter, e.g. api_key
}

func (s KeySource) String() string {
	switch {
	case s.Header != "":
		return "header " + s.Header
	case s.Bearer:
		return "Authorization: Bearer"
	default:
		return "query parameter " + s.Query
	}
}

// Limits is a budget policy. Nil fields inherit: a tier from the default
// budget, an override from its tier or the default budget.
type Limits struct {
	// WorkerTime is the upstream time a key may use per Window; 0 disables
	// the worker-time budget.
	WorkerTime *Duration `yaml:"worker_time"`
	// Window is the sliding window over which WorkerTime is counted.
	Window *Duration `yaml:"window"`
	// RestrictFor is how long a key over budget stays restricted.
	RestrictFor *Duration `yaml:"restrict_for"`
	// MaxInFlight caps a key's concurrent upstream requests; 0 = no cap.
	MaxInFlight *int `yaml:"max_in_flight"`
	// Shadow computes and reports decisions without enforcing them.
	Shadow *bool `yaml:"shadow"`
}

// Tier is a named budget keys can be assigned to.
type Tier struct {
	Name   string `yaml:"name"`
	Limits `yaml:",inline"`
}

// Override gives one key its own tier or limits. Exactly one of Key,
// Fingerprint and Client is set.
type Override struct {
	// Key is the raw API key; it is fingerprinted at load and never logged.
	// Prefer Fingerprint, which keeps the key out of the config file too.
	Key string `yaml:"key"`
	// Fingerprint is the key's fingerprint as the admin API and the access
	// log show it (fp-…).
	Fingerprint string `yaml:"fingerprint"`
	// Client is a client address, for requests that carry no key.
	Client string `yaml:"client"`
	// Tier names the tier the key belongs to; empty = the default budget.
	Tier string `yaml:"tier"`
	// Label names the key for people (the admin page shows it beside the
	// fingerprint): "acme exporter", not the key itself.
	Label  string `yaml:"label"`
	Limits `yaml:",inline"`
}

// Pool is a class of requests with its own share of upstream capacity.
type Pool struct {
	// Name is used in logs and as the metrics label.
	Name string `yaml:"name"`
	// PathPrefixes and Hosts select the pool's requests (either matching
	// is enough). A pool with neither is the catch-all.
	PathPrefixes []string `yaml:"path_prefixes"`
	Hosts        []string `yaml:"hosts"`
	// MaxConcurrent is the number of requests the pool may have upstream.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Queue is how many requests may wait for a slot; beyond it, 503.
	Queue int `yaml:"queue"`
	// QueueTimeout is how long a request may wait before it gets 503.
	QueueTimeout Duration `yaml:"queue_timeout"`
}

// AccessLog configures the proxy's access log.
type AccessLog struct {
	// Path is a file, "-" for standard output, or "" for no access log.
	Path string `yaml:"path"`
	// Format is "headroom" (accesslog.HeadroomFormat) or "json".
	Format string `yaml:"format"`
	// FlushInterval is how often buffered lines are written out.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Store is where usage and restrictions live.
type Store struct {
	// Type is "memory" (the embedded store) or "redis" (a fleet of proxies
	// sharing budgets through the Redis at URL).
	Type string `yaml:"type"`
	// Snapshot is the file the memory store is saved to and restored from;
	// "" keeps usage only in memory.
	Snapshot string `yaml:"snapshot"`
	// SnapshotInterval is how often the snapshot is written.
	SnapshotInterval Duration `yaml:"snapshot_interval"`

	// URL is the Redis of a redis store: redis://[user:pass@]HOST:PORT/DB
	// (rediss:// for TLS), redis-sentinel://SENTINEL[,SENTINEL…]/MASTER/DB
	// or redis-cluster://NODE[,NODE…] (redisaddr.Forms).
	URL string `yaml:"url"`
	// SentinelAddrs and MasterName are the Sentinel form as a list: the
	// sentinels and the name of the master they watch. Instead of URL.
	SentinelAddrs []string `yaml:"sentinel_addrs"`
	MasterName    string   `yaml:"master_name"`
	// ClusterAddrs is a Redis Cluster's seed list. Instead of URL.
	ClusterAddrs []string `yaml:"cluster_addrs"`
	// Prefix starts every Redis key the fleet uses (default "headroom:").
	Prefix string `yaml:"prefix"`
	// SyncInterval is how often each proxy pushes its usage and pulls the
	// fleet's (default 1s): the delay before a key's usage on one proxy
	// counts on the others.
	SyncInterval Duration `yaml:"sync_interval"`
	// SyncTimeout bounds each Redis round trip of a sync (default 1s).
	SyncTimeout Duration `yaml:"sync_timeout"`
	// MaxKeys bounds the keys pulled and pushed per sync (default 10000).
	MaxKeys int `yaml:"max_keys"`
}

// RequestBody is the proxy's request buffering (nginx's
// proxy_request_buffering and client_max_body_size). A unicorn-style worker
// reads the body itself, so a client that trickles its upload would hold the
// worker for as long as it likes; buffered, the body has arrived before the
// request takes a pool slot, is admitted or reaches the upstream.
type RequestBody struct {
	// Buffer is how many bytes of a body are read before the request goes
	// on (default 1 MiB); a larger body streams its remainder, still
	// bounded by timeouts.body. -1 turns buffering off.
	Buffer int64 `yaml:"buffer"`
	// Max refuses bodies larger than this many bytes with 413 (default 0:
	// no limit).
	Max int64 `yaml:"max"`
}

// DefaultRequestBuffer is RequestBody.Buffer's default.
const DefaultRequestBuffer = 1 << 20

// Timeouts bound every wait, so a slow client or a dead upstream never
// holds the proxy.
type Timeouts struct {
	ReadHeader     Duration `yaml:"read_header"`     // client request headers (slowloris)
	Idle           Duration `yaml:"idle"`            // idle keep-alive connections, both sides
	Dial           Duration `yaml:"dial"`            // connecting to the upstream
	UpstreamHeader Duration `yaml:"upstream_header"` // upstream response headers
	Upstream       Duration `yaml:"upstream"`        // whole upstream exchange, body included
	Body           Duration `yaml:"body"`            // the client's whole request body, from the end of its headers
	ClientSend     Duration `yaml:"client_send"`     // a write to the client without progress (nginx's send_timeout); then the connection closes
	Shutdown       Duration `yaml:"shutdown"`        // draining in-flight requests on SIGTERM
}

// Default values, applied by SetDefaults to fields left empty.
const (
	DefaultListen      = ":8080"
	DefaultAdminListen = "127.0.0.1:9091"
	DefaultWorkerTime  = 60 * time.Second
	DefaultWindow      = time.Minute
	DefaultRestrictFor = 5 * time.Minute
)

// DefaultRedactQuery are query parameters that commonly carry credentials.
var DefaultRedactQuery = []string{"api_key", "apikey", "key", "token", "access_token", "secret", "password"}

// SetDefaults fills every unset field with its default.
func (c *Config) SetDefaults() {
	setStr(&c.Listen, DefaultListen)
	setStr(&c.Admin.Listen, DefaultAdminListen)
	if c.Keys.Sources == nil {
		c.Keys.Sources = []KeySource{{Header: "X-Api-Key"}, {Bearer: true}}
	}
	if c.Keys.RedactQuery == nil {
		c.Keys.RedactQuery = slices.Clone(DefaultRedactQuery)
	}
	setDur(&c.Budget.WorkerTime, DefaultWorkerTime)
	setDur(&c.Budget.Window, DefaultWindow)
	setDur(&c.Budget.RestrictFor, DefaultRestrictFor)
	if c.Budget.MaxInFlight == nil {
		c.Budget.MaxInFlight = new(int)
	}
	if c.Budget.Shadow == nil {
		c.Budget.Shadow = new(bool)
	}
	setStr(&c.AccessLog.Format, "headroom")
	setD(&c.AccessLog.FlushInterval, time.Second)
	setStr(&c.Store.Type, "memory")
	setD(&c.Store.SnapshotInterval, 10*time.Second)
	if c.Store.Type == "redis" {
		setStr(&c.Store.Prefix, "headroom:")
		setD(&c.Store.SyncInterval, time.Second)
		setD(&c.Store.SyncTimeout, time.Second)
		if c.Store.MaxKeys == 0 {
			c.Store.MaxKeys = 10000
		}
	}
	setD(&c.Timeouts.ReadHeader, 10*time.Second)
	setD(&c.Timeouts.Idle, 120*time.Second)
	setD(&c.Timeouts.Dial, 5*time.Second)
	setD(&c.Timeouts.UpstreamHeader, 60*time.Second)
	setD(&c.Timeouts.Upstream, 5*time.Minute)
	setD(&c.Timeouts.Shutdown, 30*time.Second)
	setD(&c.Timeouts.Body, 30*time.Second)
	setD(&c.Timeouts.ClientSend, 60*time.Second)
	if c.RequestBody.Buffer == 0 {
		c.RequestBody.Buffer = DefaultRequestBuffer
	}
	for i := range c.Pools {
		if c.Pools[i].Queue > 0 && c.Pools[i].QueueTimeout == 0 {
			c.Pools[i].QueueTimeout = Duration(time.Second)
		}
	}
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setD(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}

func setDur(p **Duration, v time.Duration) {
	if *p == nil {
		d := Duration(v)
		*p = &d
	}
}

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a YAML config, rejecting unknown fields, then applies
// defaults and validates it.
func Parse(data []byte) (*Config, error) {
	c, err := Decode(data)
	if err != nil {
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode decodes a YAML config without defaults or validation, for callers
// (the CLI) that apply flags on top before validating.
func Decode(data []byte) (*Config, error) {
	var c Config
	if len(bytes.TrimSpace(data)) == 0 {
		return &c, nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var bad Errors // unknown fields and values of the wrong shape
	checkFields(&root, typeOfConfig, "", &bad)
	if len(bad) > 0 {
		return nil, bad
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return &c, nil
}

// FieldError is one problem with one field.
type FieldError struct {
	Field string // e.g. pools[1].max_concurrent
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// Errors is every problem Validate found, in field order.
type Errors []FieldError

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (es *Errors) add(field, format string, args ...any) {
	*es = append(*es, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

var (
	poolName     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	fingerprintR = regexp.MustCompile(`^fp-[0-9a-f]{16}$`)
)

// IsFingerprint reports whether s has the shape of a key fingerprint.
func IsFingerprint(s string) bool { return fingerprintR.MatchString(s) }

// Validate checks every field and returns Errors naming each bad one.
// It expects SetDefaults to have run.
func (c *Config) Validate() error {
	var es Errors
	checkAddr(&es, "listen", c.Listen)
	if c.Upstream == "" {
		if !c.NoUpstream {
			es.add("upstream", "required: the URL of the application to protect, e.g. http://127.0.0.1:8000")
		}
	} else if _, err := weburl.Parse(c.Upstream); err != nil {
		es.add("upstream", "%v", err)
	}

	if c.Admin.Listen != "off" {
		if checkAddr(&es, "admin.listen", c.Admin.Listen) &&
			!IsLoopback(c.Admin.Listen) && c.Admin.Token == "" && c.Admin.TokenFile == "" && !c.Admin.AllowInsecure {
			es.add("admin.listen", "%s is not a loopback address: set admin.token (or --admin-token) so the key API is not open to the network, or admin.allow_insecure: true if you really mean it", c.Admin.Listen)
		}
	}
	if c.Admin.Token != "" && c.Admin.TokenFile != "" {
		es.add("admin.token", "set either admin.token or admin.token_file, not both")
	}

	if len(c.Keys.Sources) == 0 {
		es.add("keys.sources", "must list at least one source (header, bearer or query); requests without a key fall back to the client address anyway")
	}
	for i, s := range c.Keys.Sources {
		n := 0
		if s.Header != "" {
			n++
			if strings.EqualFold(s.Header, "Authorization") {
				es.add(fmt.Sprintf("keys.sources[%d].header", i), "use bearer: true for the Authorization header")
			}
		}
		if s.Bearer {
			n++
		}
		if s.Query != "" {
			n++
		}
		if n != 1 {
			es.add(fmt.Sprintf("keys.sources[%d]", i), "set exactly one of header, bearer, query")
		}
	}
	for i, p := range c.Keys.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			es.add(fmt.Sprintf("keys.trusted_proxies[%d]", i), "%q is not an address or CIDR", p)
		}
	}
	if c.Keys.Secret != "" && c.Keys.SecretFile != "" {
		es.add("keys.secret", "set either keys.secret or keys.secret_file, not both")
	}
	if c.Keys.Secret != "" && len(c.Keys.Secret) < 16 {
		es.add("keys.secret", "too short (%d bytes): use at least 16 random bytes, e.g. `openssl rand -hex 32`", len(c.Keys.Secret))
	}

	checkLimits(&es, "budget", c.Budget, true)
	tiers := map[string]bool{}
	for i, t := range c.Tiers {
		f := fmt.Sprintf("tiers[%d]", i)
		switch {
		case t.Name == "":
			es.add(f+".name", "required")
		case tiers[t.Name]:
			es.add(f+".name", "duplicate tier %q", t.Name)
		}
		tiers[t.Name] = true
		checkLimits(&es, f, t.Limits, false)
	}
	for i, o := range c.Overrides {
		f := fmt.Sprintf("overrides[%d]", i)
		n := 0
		for _, s := range []string{o.Key, o.Fingerprint, o.Client} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			es.add(f, "set exactly one of key, fingerprint, client")
		}
		if o.Fingerprint != "" && !IsFingerprint(o.Fingerprint) {
			es.add(f+".fingerprint", "%q is not a fingerprint (fp- and 16 hex digits, as GET /v1/keys shows)", o.Fingerprint)
		}
		if o.Client != "" {
			if _, err := netip.ParseAddr(o.Client); err != nil {
				es.add(f+".client", "%q is not an IP address", o.Client)
			}
		}
		if o.Tier != "" && !tiers[o.Tier] {
			es.add(f+".tier", "unknown tier %q", o.Tier)
		}
		if len(o.Label) > 64 || strings.ContainsFunc(o.Label, unicode.IsControl) {
			es.add(f+".label", "at most 64 characters, no control characters")
		}
		checkLimits(&es, f, o.Limits, false)
	}

	names := map[string]bool{}
	catchAll := -1
	for i, p := range c.Pools {
		f := fmt.Sprintf("pools[%d]", i)
		switch {
		case !poolName.MatchString(p.Name):
			es.add(f+".name", "%q must be 1-32 characters of a-z, 0-9, _ or - (it is a metrics label)", p.Name)
		case names[p.Name]:
			es.add(f+".name", "duplicate pool %q", p.Name)
		}
		names[p.Name] = true
		if p.MaxConcurrent <= 0 {
			es.add(f+".max_concurrent", "must be > 0")
		}
		if p.Queue < 0 {
			es.add(f+".queue", "must be >= 0")
		}
		if p.QueueTimeout < 0 {
			es.add(f+".queue_timeout", "must be >= 0")
		}
		for j, pre := range p.PathPrefixes {
			if !strings.HasPrefix(pre, "/") {
				es.add(fmt.Sprintf("%s.path_prefixes[%d]", f, j), "%q must start with /", pre)
			}
		}
		for j, h := range p.Hosts {
			if h == "" || strings.ContainsAny(h, "/ ") {
				es.add(fmt.Sprintf("%s.hosts[%d]", f, j), "%q is not a host name", h)
			}
		}
		if len(p.PathPrefixes) == 0 && len(p.Hosts) == 0 {
			if catchAll >= 0 {
				es.add(f, "pools[%d] is already the catch-all (no path_prefixes or hosts); give this pool path_prefixes or hosts", catchAll)
			}
			catchAll = i
		}
	}

	switch c.AccessLog.Format {
	case "headroom", "json":
	default:
		es.add("access_log.format", "%q is not a format: use headroom or json", c.AccessLog.Format)
	}
	if c.AccessLog.FlushInterval <= 0 {
		es.add("access_log.flush_interval", "must be > 0")
	}

	switch {
	case c.Store.Type == "memory":
		if c.Store.URL != "" || len(c.Store.SentinelAddrs) > 0 || len(c.Store.ClusterAddrs) > 0 {
			es.add("store.url", "only for type: redis")
		}
	case c.Store.Type == "redis":
		checkRedis(&es, c)
	case strings.HasPrefix(c.Store.Type, "redis"):
		es.add("store.type", "write type: redis and url: %s", c.Store.Type)
	default:
		es.add("store.type", "%q is not a store: use memory or redis", c.Store.Type)
	}
	if c.Store.SnapshotInterval <= 0 {
		es.add("store.snapshot_interval", "must be > 0")
	}

	for _, t := range []struct {
		name string
		d    Duration
	}{
		{"read_header", c.Timeouts.ReadHeader}, {"idle", c.Timeouts.Idle}, {"dial", c.Timeouts.Dial},
		{"upstream_header", c.Timeouts.UpstreamHeader}, {"upstream", c.Timeouts.Upstream}, {"shutdown", c.Timeouts.Shutdown},
		{"body", c.Timeouts.Body}, {"client_send", c.Timeouts.ClientSend},
	} {
		if t.d <= 0 {
			es.add("timeouts."+t.name, "must be > 0")
		}
	}
	if c.RequestBody.Buffer < -1 {
		es.add("request_body.buffer", "must be a number of bytes, or -1 to turn buffering off")
	}
	if c.Connections.Max < 0 {
		es.add("connections.max", "must be >= 0 (0: no cap)")
	}
	if c.Connections.PerClient < 0 {
		es.add("connections.per_client", "must be >= 0 (0: no cap)")
	}
	if c.Connections.Max > 0 && c.Connections.PerClient > c.Connections.Max {
		es.add("connections.per_client", "%d is more than connections.max (%d)", c.Connections.PerClient, c.Connections.Max)
	}
	if c.MaxHeaderBytes < 0 {
		es.add("max_header_bytes", "must be a number of bytes >= 0 (0: 32 KiB)")
	}
	if c.RequestBody.Max < 0 {
		es.add("request_body.max", "must be >= 0 (0: no limit)")
	}
	if len(es) > 0 {
		return es
	}
	return nil
}

// checkRedis checks a redis store: its URL, its sync settings, and what a
// fleet needs to share keys at all.
func checkRedis(es *Errors, c *Config) {
	st := c.Store
	lists := len(st.SentinelAddrs) > 0 || st.MasterName != "" || len(st.ClusterAddrs) > 0
	switch {
	case st.URL != "" && lists:
		es.add("store.url", "give url or sentinel_addrs/master_name or cluster_addrs, not both")
	case st.URL != "":
		if _, err := redisaddr.Parse(st.URL); err != nil {
			es.add("store.url", "%v", err)
		}
	case lists:
		if _, err := redisaddr.FromAddrs(st.SentinelAddrs, st.MasterName, st.ClusterAddrs); err != nil {
			es.add("store", "%v", err)
		}
	default:
		es.add("store.url", "required with type: redis, e.g. redis://127.0.0.1:6379/0 (or sentinel_addrs + master_name, or cluster_addrs)")
	}
	if st.Snapshot != "" {
		es.add("store.snapshot", "only for type: memory: with redis the fleet's usage lives in Redis")
	}
	if st.Prefix == "" || strings.ContainsAny(st.Prefix, " \t\n{}") {
		es.add("store.prefix", "%q must be a non-empty key prefix without spaces or braces, e.g. headroom:", st.Prefix)
	}
	if st.SyncInterval <= 0 {
		es.add("store.sync_interval", "must be > 0")
	}
	if st.SyncTimeout <= 0 {
		es.add("store.sync_timeout", "must be > 0")
	}
	if st.MaxKeys <= 0 {
		es.add("store.max_keys", "must be > 0")
	}
	// Proxies share a key's usage under its fingerprint, an HMAC keyed by
	// the secret: with a secret per proxy the same API key would be a
	// different key on each, and nothing would be shared.
	if c.Keys.Secret == "" && c.Keys.SecretFile == "" {
		es.add("keys.secret", "a redis store needs the same fingerprint secret on every proxy of the fleet: set keys.secret_file (or --secret-file) or keys.secret")
	}
}

func checkLimits(es *Errors, field string, l Limits, isDefault bool) {
	if l.WorkerTime != nil && *l.WorkerTime < 0 {
		es.add(field+".worker_time", "must be >= 0 (0 disables the worker-time budget)")
	}
	if l.Window != nil && *l.Window <= 0 {
		es.add(field+".window", "must be > 0")
	}
	if l.Window != nil && *l.Window > 0 && *l.Window < Duration(time.Second) {
		es.add(field+".window", "must be at least 1s")
	}
	if l.RestrictFor != nil && *l.RestrictFor < 0 {
		es.add(field+".restrict_for", "must be >= 0")
	}
	if l.MaxInFlight != nil && *l.MaxInFlight < 0 {
		es.add(field+".max_in_flight", "must be >= 0 (0 = no cap)")
	}
	if isDefault && l.WorkerTime != nil && l.RestrictFor != nil && *l.WorkerTime > 0 && *l.RestrictFor == 0 {
		es.add(field+".restrict_for", "must be > 0 when worker_time is set, or a key over budget would never be restricted")
	}
}

// checkAddr reports whether addr is a usable host:port.
func checkAddr(es *Errors, field, addr string) bool {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		es.add(field, "%q is not host:port (e.g. 127.0.0.1:8080 or :8080)", addr)
		return false
	}
	return true
}

// IsLoopback reports whether a host:port binds only to loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ParsePrefix parses a CIDR or a single address (as a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Duration is a time.Duration written as Go duration text ("90s", "5m") in
// YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration text; a bare number is refused because
// "60" could mean seconds or minutes.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 60s or 5m", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: use a number with a unit, such as 60s, 1m30s or 500ms", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ErrNotSupported is returned for features that are designed but not built.
var ErrNotSupported = errors.New("not supported yet")
