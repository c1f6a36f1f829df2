package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
)

// Sidecar is the guard beside a real nginx (`headroom sidecar`): nginx asks
// its check endpoint before every request (auth_request), and sends its
// access log to it over syslog. The check admits the request in the ledger
// and keeps the ticket under nginx's $request_id, so the request's time
// counts while it runs; the log line, which nginx writes only once the
// upstream finished (proxy_ignore_client_abort on), charges the upstream's
// real time. It is a front-end of the admission core (internal/admit), as
// the proxy is: the same key sources, budgets, ledger and metrics.
//
// The seed's nginx+UDP guard (seeds/03) charged only on completion, and a
// client abort at the moment the client left. Here a request is in flight
// from the check, and an abort is charged what the upstream really spent.
type Sidecar struct {
	core *admit.Core
	log  *slog.Logger
	tag  string
	m    sidecarMetrics

	parsers sync.Pool // of *lineParser for LogFormat

	// senders are the addresses syslog datagrams are accepted from
	// (Options.Senders); with none configured, checkers holds the
	// addresses checks came from (nginx), accepted with loopback's
	// 127.0.0.1 and ::1.
	senders  []netip.Prefix
	checkers sync.Map // netip.Addr -> struct{}

	// cacheMax bounds X-Accel-Expires (Options.CacheMax); grants holds,
	// per key nginx may answer from its cache, until when its lines may
	// come without a check behind them (time.Time): they are not capped at
	// the pool's longest checked request.
	cacheMax time.Duration
	grants   sync.Map

	// unchecked is the list of callers nginx answers for (nil without
	// Options.Unchecked); lineDelay is how late a log line may come.
	unchecked *unchecked
	lineDelay time.Duration

	// maxSeen is, per pool name, the longest upstream time a line with a
	// ticket reported (*atomic.Int64, ns): the most a line without one may
	// charge (issue 17: a forged line charged a victim 500 s).
	maxSeen sync.Map

	warnMu   sync.Mutex
	warnNext time.Time // refusals and caps are logged at most once a minute
	warnSkip int

	mu      sync.Mutex
	pending map[string]*pendingReq // by $request_id
	expired map[string]expiredReq  // charged at expiry; kept one bound longer
	// early holds, for a few seconds, the ids of 499 lines that found no
	// ticket: a client that left while its check was being answered is
	// logged at once, and its line can come before the check has put its
	// ticket in pending (found by bench/sidecar.sh: the end of every wrk
	// run left a few tickets no line would ever match, each counting its
	// elapsed time against the key until the bound).
	early map[string]time.Time
}

// pendingReq is a request nginx was told to let through, whose log line
// has not come yet.
type pendingReq struct {
	adm      admit.Admission // its ticket; its Decision answers a repeated check the same way
	shadowed bool
}

// expiredReq remembers what an expired ticket was charged, so a line that
// arrives after all charges only the rest instead of charging twice.
type expiredReq struct {
	adm     admit.Admission // key, limits and pool; its ticket is spent
	charged time.Duration
	at      time.Time
}

// Options configures a Sidecar.
type Options struct {
	// Core identifies, admits and charges the requests nginx asks about;
	// the sidecar's metrics join its registry. Required.
	Core *admit.Core
	// Logger receives lost lines and malformed datagrams. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Tag is the syslog tag of nginx's access_log; datagrams with another
	// tag are ignored. "" accepts any tag.
	Tag string
	// Senders are the addresses IngestFrom accepts datagrams from. Empty:
	// the addresses the checks come from (nginx's), and 127.0.0.1 and ::1
	// (where a local nginx sends from). Anyone who can send the syslog port
	// a datagram could otherwise charge any key (fingerprints are public:
	// they are in 429 bodies and logs).
	Senders []netip.Prefix
	// CacheMax is the longest nginx may answer a key's checks from its
	// cache (X-Accel-Expires; `headroom nginx-config --cache`). Zero: every
	// check is asked.
	CacheMax time.Duration
	// Unchecked, when set, keeps the list of callers far from their budget
	// that nginx answers for itself (nginx-config --map-dir; unchecked.go).
	// Review it with ReviewUnchecked.
	Unchecked *UncheckedOptions
	// LineDelay is how late after its request a log line may come beyond
	// the request's own time: nginx's buffered file log (--access-log)
	// writes lines up to a second late. A ticket waits the bound plus this
	// for its line; the unchecked list counts it in its reaction time.
	LineDelay time.Duration
}

// sidecarMetrics are the sidecar's own collectors, beside the core's.
type sidecarMetrics struct {
	checks  *prometheus.CounterVec
	lines   *prometheus.CounterVec
	expired prometheus.Counter
	capped  *prometheus.CounterVec

	unchecked  prometheus.Gauge
	mapReloads *prometheus.CounterVec

	// byLine holds lines' counters by result, looked up once: a
	// WithLabelValues per line hashes the label at nginx's request rate.
	byLine map[string]prometheus.Counter
}

// countLine counts one line of result res.
func (m *sidecarMetrics) countLine(res string) {
	if c, ok := m.byLine[res]; ok {
		c.Inc()
		return
	}
	m.lines.WithLabelValues(res).Inc()
}

// Results of a syslog datagram, the values of headroom_sidecar_syslog_lines_total.
const (
	LineMatched    = "matched"     // finished a pending ticket with the upstream's time
	LineLate       = "late"        // came after its ticket expired; charged what the bound had not
	LineUnmatched  = "unmatched"   // no ticket (a sidecar restart, a check without $request_id): charged directly
	LineNoUpstream = "no_upstream" // no ticket and no upstream time (refused by the check, served by nginx itself)
	LineMalformed  = "malformed"   // not syslog, another tag, or not LogFormat
	LineRefused    = "refused"     // from a sender that is not nginx (Options.Senders): ignored
)

// Caps on what one line may charge, the values of
// headroom_sidecar_charges_capped_total.
const (
	CapTicketTTL = "ticket_ttl" // a line claimed more than the ticket bound (--ticket-ttl)
	CapPoolMax   = "pool_max"   // a line without a check claimed more than its pool's longest checked request
)

// New returns a Sidecar over o.Core and registers its metrics.
func New(o Options) (*Sidecar, error) {
	if o.Core == nil {
		return nil, errors.New("sidecar: Options.Core is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	f, err := accesslog.CompileNginx(LogFormat)
	if err != nil {
		return nil, fmt.Errorf("sidecar: compile log format: %w", err)
	}
	s := &Sidecar{
		core:      o.Core,
		log:       o.Logger,
		tag:       o.Tag,
		senders:   o.Senders,
		cacheMax:  o.CacheMax,
		lineDelay: o.LineDelay,
		pending:   map[string]*pendingReq{},
		expired:   map[string]expiredReq{},
		early:     map[string]time.Time{},
	}
	s.parsers.New = func() any { return &lineParser{p: f.NewParser()} }
	s.m = sidecarMetrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_sidecar_checks_total",
			Help: "nginx auth_request checks by result (allowed, refused, repeated: the same $request_id again, untracked: no $request_id).",
		}, []string{"result"}),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_sidecar_syslog_lines_total",
			Help: "nginx access log lines received (over syslog, or from the --access-log file) by result (matched, late, unmatched, no_upstream, malformed, refused).",
		}, []string{"result"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headroom_sidecar_tickets_expired_total",
			Help: "Requests whose log line did not come within the bound (timeouts.upstream; UDP loss): charged the bound.",
		}),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_sidecar_charges_capped_total",
			Help: "Log lines that claimed more upstream time than one line may charge, by cap (ticket_ttl: the ticket bound; pool_max: a line without a check, over its pool's longest checked request).",
		}, []string{"cap"}),
		unchecked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headroom_sidecar_unchecked_callers",
			Help: "Callers far from their budget whose checks nginx answers itself (--map-dir), as last written.",
		}),
		mapReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_sidecar_map_reloads_total",
			Help: "Rewrites of the unchecked list nginx was reloaded for, by result (ok, failed: nginx kept its old list; retried next review).",
		}, []string{"result"}),
	}
	if o.Unchecked != nil {
		if s.unchecked, err = newUnchecked(*o.Unchecked); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"ok", "failed"} {
		s.m.mapReloads.WithLabelValues(r)
	}
	for _, r := range []string{"allowed", "refused", "repeated", "untracked"} {
		s.m.checks.WithLabelValues(r)
	}
	s.m.byLine = map[string]prometheus.Counter{}
	for _, r := range []string{LineMatched, LineLate, LineUnmatched, LineNoUpstream, LineMalformed, LineRefused} {
		s.m.byLine[r] = s.m.lines.WithLabelValues(r)
	}
	for _, c := range []string{CapTicketTTL, CapPoolMax} {
		s.m.capped.WithLabelValues(c)
	}
	if err := registerAll(o.Core.Registry(), s.m.checks, s.m.lines, s.m.expired, s.m.capped, s.m.unchecked, s.m.mapReloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "headroom_sidecar_tickets_pending",
			Help: "Requests nginx let through whose log line has not come yet.",
		}, func() float64 { return float64(s.Pending()) })); err != nil {
		return nil, fmt.Errorf("sidecar: register metrics: %w", err)
	}
	return s, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Core returns the admission core the Sidecar is a front-end of.
func (s *Sidecar) Core() *admit.Core { return s.core }

// Pending returns the number of tickets waiting for their log line.
func (s *Sidecar) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// earlyLineKeep is how long the id of a 499 line without a ticket waits
// for the check it may have overtaken: a check takes microseconds.
const earlyLineKeep = 5 * time.Second

// bound is how long a ticket waits for its log line.
func (s *Sidecar) bound() time.Duration { return s.core.Config().Timeouts.Upstream.D() }

// ServeHTTP is the check endpoint nginx's auth_request calls. It answers
// 204 to let the request through, or 403 for a key that is restricted or
// has too many requests in flight: auth_request only passes on 2xx, 401 and
// 403 (anything else becomes a 500), so nginx's error_page turns the 403
// into the client's 429, with the Retry-After, RateLimit fields and JSON
// body carried here in response headers.
func (s *Sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != CheckPath {
		http.NotFound(w, r)
		return
	}
	in := checkIn{id: r.Header.Get(hdrRequestID), cache: r.Header.Get(hdrCacheKey), mapDecl: r.Header.Get(hdrMapKey), remote: admit.PeerAddr(r.RemoteAddr)}
	in.req = identity(r.Header, in.remote, r.Host)
	var out answer
	s.check(&in, &out)
	h := w.Header()
	for _, f := range out.fields[:out.n] {
		h[f.Name] = []string{f.Value}
	}
	w.WriteHeader(out.status)
}

// checkIn is one check as either server read it (net/http's ServeHTTP,
// or the lean server of checkserver.go).
type checkIn struct {
	req   admit.Request // the original request's identity (identity)
	id    string        // $request_id, "" when absent
	cache string        // X-Headroom-Cache-Key, "" without nginx's cache
	// mapDecl is X-Headroom-Map-Key: what nginx's map of unchecked callers
	// is keyed by, "" without one.
	mapDecl string
	remote  netip.Addr // the check connection's peer: nginx
}

// answer is a check's answer: a status and bodyless header fields
// (canonical names), for either server to write.
type answer struct {
	status int
	fields [12]admit.Field
	n      int
}

func (a *answer) add(name, value string) {
	if a.n < len(a.fields) && value != "" {
		a.fields[a.n] = admit.Field{Name: name, Value: value}
		a.n++
	}
}

// rateLimit adds the RateLimit fields of adm's decision.
func (a *answer) rateLimit(adm *admit.Admission, now time.Time) {
	var buf [512]byte
	b, split := adm.AppendRateLimit(buf[:0], now)
	if len(b) == 0 {
		return
	}
	v := string(b)
	a.add("Ratelimit-Policy", v[:split])
	a.add("Ratelimit", v[split:])
}

// accelExpires holds X-Accel-Expires values for small validities, so an
// answer does not format one.
var accelExpires = func() (v [61]string) {
	for i := range v {
		v[i] = strconv.Itoa(i)
	}
	return v
}()

// check answers one check: 204 to let the request through, or 403 for a
// key that is restricted or has too many requests in flight.
func (s *Sidecar) check(in *checkIn, out *answer) {
	s.noteChecker(in.remote)
	var a admit.Admission
	s.core.Begin(&in.req, &a)
	out.status = http.StatusNoContent
	out.add(hdrKey, a.Key)
	out.add(hdrPool, a.Pool.Name())
	out.add("Cache-Control", "no-store")

	if in.id != "" {
		s.mu.Lock()
		p, ok := s.pending[in.id]
		s.mu.Unlock()
		if ok {
			// The same request checked again (an internal redirect into
			// another guarded location): already admitted, once.
			s.m.checks.WithLabelValues("repeated").Inc()
			out.rateLimit(&p.adm, a.Start)
			out.add(hdrAccelExpires, "0")
			return
		}
	}

	o, ok := s.core.Decide(&a)
	if !ok {
		s.core.Count(&a, o, 0, false)
		s.m.checks.WithLabelValues("refused").Inc()
		s.deny(out, s.core.Refusal(&a, o))
		return
	}
	out.rateLimit(&a, a.Start)
	if in.mapDecl != "" && s.unchecked != nil && s.cacheCovers(in.mapDecl, &a) {
		s.noteCaller(in.req.Header, &a)
	}
	if n := s.cacheFor(&a, s.cacheCovers(in.cache, &a)); n > 0 {
		out.add(hdrAccelExpires, accelExpires[min(n, int64(len(accelExpires)-1))])
		s.grant(a.Key, a.Start.Add(time.Duration(n)*time.Second+s.bound()))
	} else {
		out.add(hdrAccelExpires, "0")
	}
	if in.id == "" {
		// Without $request_id no log line can find the ticket: end it now;
		// the line will be charged directly (unmatched).
		s.core.Cancel(&a)
		s.m.checks.WithLabelValues("untracked").Inc()
		return
	}
	p := &pendingReq{adm: a, shadowed: a.Decision.Shadowed}
	s.mu.Lock()
	if _, gone := s.early[in.id]; gone {
		// Its line came first: the client left during this check, and
		// nothing went upstream.
		delete(s.early, in.id)
		s.mu.Unlock()
		s.core.Finish(&a, 0, false, admit.ClientAbort)
		s.m.checks.WithLabelValues("allowed").Inc()
		return
	}
	if _, dup := s.pending[in.id]; dup {
		// A concurrent check for the same id won the race.
		s.mu.Unlock()
		s.core.Cancel(&a)
		s.m.checks.WithLabelValues("repeated").Inc()
		return
	}
	s.pending[strings.Clone(in.id)] = p // in.id may alias a read buffer
	s.mu.Unlock()
	s.m.checks.WithLabelValues("allowed").Inc()
}

// deny answers the check with 403 and everything nginx needs to give the
// client the same 429 `headroom proxy` gives: the core's refusal, its
// header fields as they are and its body in one more field. The answer
// itself is bodyless: nginx keeps its connection to the sidecar alive only
// after an answer without a body (issue 13).
func (s *Sidecar) deny(out *answer, ref admit.Refusal) {
	out.status = http.StatusForbidden
	for _, f := range ref.Header {
		switch f.Name {
		case "Content-Type", "Cache-Control":
			// No body to type; nginx's 429 location sets its own. Cache-Control
			// is already in the answer.
		default:
			out.add(f.Name, f.Value)
		}
	}
	out.add(hdrDenial, string(bytes.TrimSpace(ref.Body))) // one line: JSON without indent
	out.add(hdrAccelExpires, "0")
	out.add("Content-Length", "0")
}

// cacheFor is how many whole seconds nginx may answer a's key's checks
// from its cache instead of asking (0: ask every time). Only a key far
// from its budget gets any: not restricted, not in shadow mode, without a
// concurrency cap (cached requests are not counted in flight), with at
// least half its budget left, and then for at most half the time its
// recent burn rate (its usage over the window, plus one worker-second per
// second for each request in flight) would take to spend what is left, and
// at most s.cacheMax. Its requests' log lines still charge their real time.
func (s *Sidecar) cacheFor(a *admit.Admission, covered bool) int64 {
	d, lim := &a.Decision, &a.Limits
	if s.cacheMax <= 0 || !covered || d.Shadowed || !d.RestrictedUntil.IsZero() || lim.MaxInFlight > 0 || lim.Shadow {
		return 0
	}
	if lim.Budget <= 0 {
		return int64(s.cacheMax / time.Second)
	}
	left := lim.Budget - d.Used
	if left < lim.Budget/2 {
		return 0
	}
	rate := d.Used.Seconds()/lim.Window.Seconds() + float64(d.InFlight)
	v := s.cacheMax.Seconds()
	if rate > 0 {
		v = min(v, 0.5*left.Seconds()/rate)
	}
	return int64(v)
}

// identity rebuilds, from the check subrequest's fields, the request nginx
// is asking about: its headers are the original's (auth_request passes
// them), and the snippet adds the client address, URI and host nginx saw.
// The key sources, trusted proxies and pools then apply as in `headroom
// proxy`. peer and host are the check connection's own.
func identity(h admit.Header, peer netip.Addr, host string) admit.Request {
	v := admit.Request{Header: h, Peer: peer, Host: host, Path: "/"}
	// A client address that does not parse (nginx's $remote_addr is
	// "unix:" on a unix socket) leaves nginx's own: found by
	// FuzzCheckRequest, it had left the request no key at all ("").
	if c := admit.PeerAddr(h.Get(hdrClient)); c.IsValid() {
		v.Peer = c
	}
	if hh := h.Get(hdrHost); hh != "" {
		v.Host = hh
	}
	if uri := h.Get(hdrURI); uri != "" {
		v.Path, v.Query = splitURI(uri)
	}
	return v
}

// splitURI is $request_uri's path (decoded) and raw query. Without a
// percent sign there is nothing to decode, and nothing is allocated.
func splitURI(uri string) (path, query string) {
	if strings.IndexByte(uri, '%') < 0 && strings.IndexByte(uri, '#') < 0 && strings.HasPrefix(uri, "/") && !strings.HasPrefix(uri, "//") {
		path, query, _ = strings.Cut(uri, "?")
		return path, query
	}
	if u, err := url.ParseRequestURI(uri); err == nil {
		return u.Path, u.RawQuery
	}
	// nginx passes $request_uri as the client sent it; a path that does
	// not parse still routes by its prefix.
	path, query, _ = strings.Cut(uri, "?")
	return path, query
}

// Ingest reads one syslog datagram from nginx: the access log line of one
// request. It returns which Line* result it was, and for malformed lines
// why. b is not kept.
func (s *Sidecar) Ingest(b []byte) (string, error) {
	res, err := s.ingest(b)
	s.m.countLine(res)
	return res, err
}

// errForeignSender is IngestFrom's answer to a datagram from an address
// that is not a sender.
var errForeignSender = errors.New("syslog datagram from an address that is not nginx (--syslog-senders)")

// IngestFrom is Ingest for a datagram that came from the address from: one
// from an address that is not a sender (Options.Senders) is refused
// (LineRefused), counted and logged, and charges nothing.
func (s *Sidecar) IngestFrom(b []byte, from netip.Addr) (string, error) {
	if !s.Sender(from) {
		s.m.lines.WithLabelValues(LineRefused).Inc()
		s.warn("syslog datagram refused: not from nginx (set --syslog-senders if nginx sends from another address)", "from", from.String())
		return LineRefused, errForeignSender
	}
	return s.Ingest(b)
}

// Sender reports whether datagrams from a are accepted.
func (s *Sidecar) Sender(a netip.Addr) bool {
	a = a.Unmap()
	if len(s.senders) > 0 {
		for _, p := range s.senders {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if a == netip.IPv4Unspecified() || !a.IsValid() {
		return false
	}
	if a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback() {
		return true
	}
	_, ok := s.checkers.Load(a)
	return ok
}

// noteChecker remembers the address a check came from: nginx's, the
// default sender of syslog datagrams.
func (s *Sidecar) noteChecker(a netip.Addr) {
	if len(s.senders) > 0 {
		return
	}
	if !a.IsValid() {
		return
	}
	if _, ok := s.checkers.Load(a); !ok {
		s.checkers.Store(a, struct{}{})
	}
}

// capCharge bounds what one line may charge: never more than the ticket
// bound, and for a line no check opened a ticket for, never more than the
// longest upstream time a checked request of its pool reported. A forged
// datagram then costs its victim at most what a real request could.
func (s *Sidecar) capCharge(d time.Duration, pool string, checked bool, key string) time.Duration {
	limit, limited := s.lineLimit(pool, checked, key)
	return s.capLine(d, key, pool, limit, limited)
}

// lineLimit is what capCharge holds a line of key in pool to beyond the
// ticket bound: the pool's longest checked request, unless the line had a
// ticket or its key may come without checks (limited false).
func (s *Sidecar) lineLimit(pool string, checked bool, key string) (time.Duration, bool) {
	if checked || s.granted(key) {
		return 0, false
	}
	if v, ok := s.maxSeen.Load(pool); ok {
		return time.Duration(v.(*atomic.Int64).Load()), true
	}
	return 0, false
}

// capLine is capCharge with the pool's limit looked up (lineLimit).
func (s *Sidecar) capLine(d time.Duration, key, pool string, limit time.Duration, limited bool) time.Duration {
	if b := s.bound(); d > b {
		s.m.capped.WithLabelValues(CapTicketTTL).Inc()
		s.warn("a log line claimed more upstream time than the ticket bound; charged the bound", "key", key, "claimed", d.String(), "charged", b.String())
		d = b
	}
	if limited && d > limit {
		s.m.capped.WithLabelValues(CapPoolMax).Inc()
		s.warn("a log line without a check claimed more upstream time than any checked request of its pool; charged that maximum",
			"key", key, "pool", pool, "claimed", d.String(), "charged", limit.String())
		d = limit
	}
	return d
}

// grant notes that nginx may admit key's requests from its cache, so
// their lines come without a check, until until.
func (s *Sidecar) grant(key string, until time.Time) {
	if v, ok := s.grants.Load(key); ok && !v.(time.Time).Before(until) {
		return
	}
	s.grants.Store(strings.Clone(key), until)
}

// granted reports whether key's lines may come without a check now (a
// cached allow), and forgets grants that ran out.
func (s *Sidecar) granted(key string) bool {
	v, ok := s.grants.Load(key)
	if !ok {
		return false
	}
	if s.core.Clock().Now().After(v.(time.Time)) {
		s.grants.Delete(key)
		return false
	}
	return true
}

// cacheCovers reports whether nginx's cache key, as the snippet declares it
// in X-Headroom-Cache-Key ("header:X-Api-Key,bearer,addr,host"), holds
// everything this key's identity and pool came from: otherwise one cached
// answer could be served for another key or pool.
func (s *Sidecar) cacheCovers(decl string, a *admit.Admission) bool {
	if decl == "" {
		return false
	}
	has := func(part string) bool {
		for p := range strings.SplitSeq(decl, ",") {
			if strings.EqualFold(strings.TrimSpace(p), part) {
				return true
			}
		}
		return false
	}
	cfg := a.Config()
	if !has("addr") || !has("host") {
		return false
	}
	for _, src := range cfg.Keys.Sources {
		switch {
		case src.Header != "" && !has("header:"+src.Header):
			return false
		case src.Bearer && !has("bearer"):
			return false
		case src.Query != "" && !has("query:"+src.Query):
			return false
		}
	}
	// Pools by path would need the path in the cache key.
	for _, p := range cfg.Pools {
		if len(p.PathPrefixes) > 0 {
			return false
		}
	}
	return true
}

// observe keeps the longest upstream time a checked request of pool took.
func (s *Sidecar) observe(pool string, d time.Duration) {
	v, ok := s.maxSeen.Load(pool)
	if !ok {
		v, _ = s.maxSeen.LoadOrStore(pool, new(atomic.Int64))
	}
	m := v.(*atomic.Int64)
	for {
		cur := m.Load()
		if int64(d) <= cur || m.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// warn logs a refusal or a cap at most once a minute, with how many were
// not logged since: junk must not flood the log.
func (s *Sidecar) warn(msg string, args ...any) {
	now := time.Now()
	s.warnMu.Lock()
	if now.Before(s.warnNext) {
		s.warnSkip++
		s.warnMu.Unlock()
		return
	}
	skipped := s.warnSkip
	s.warnNext, s.warnSkip = now.Add(time.Minute), 0
	s.warnMu.Unlock()
	s.log.Warn(msg, append(args, "not_logged_since", skipped)...)
}

// lineParser is a parser with the record it fills, kept together so a
// line costs no allocation: a Record passed to the Parser interface would
// escape to the heap.
type lineParser struct {
	p   accesslog.Parser
	rec accesslog.Record
}

// IngestLine reads one access log line as nginx wrote it to the file the
// sidecar follows (--access-log): Ingest without the syslog framing.
func (s *Sidecar) IngestLine(line []byte) (string, error) {
	res, err := s.ingestLine(line)
	s.m.countLine(res)
	return res, err
}

// ReviewUnchecked rewrites the unchecked list (Options.Unchecked) and has
// nginx reload it if it changed; a Sidecar without the list does nothing.
// Run calls it every interval.
func (s *Sidecar) ReviewUnchecked() {
	if s.unchecked != nil {
		s.reviewUnchecked(s.core.Clock().Now())
	}
}

func (s *Sidecar) ingest(b []byte) (string, error) {
	msg, err := ParseSyslog(b, s.tag)
	if err != nil {
		return LineMalformed, err
	}
	return s.ingestLine(msg)
}

func (s *Sidecar) ingestLine(msg []byte) (string, error) {
	lp := s.parsers.Get().(*lineParser)
	defer s.parsers.Put(lp)
	return s.ingestParsed(lp, msg, nil)
}

// ingestParsed parses msg with lp and settles it: a line with a ticket
// finishes it; one without is charged at once, or added to batch when
// batch is not nil.
func (s *Sidecar) ingestParsed(lp *lineParser, msg []byte, batch *LineBatch) (string, error) {
	rec := &lp.rec
	if err := lp.p.Parse(msg, rec); err != nil {
		return LineMalformed, fmt.Errorf("access log line: %w", err)
	}
	id, _ := rec.Get("request_id")
	if id == "-" {
		id = ""
	}
	var upTime time.Duration
	if rec.HasUpstreamTime {
		upTime = rec.UpstreamTime
	}

	s.mu.Lock()
	pr, ok := s.pending[id] // id aliases b: looked up, never stored
	var late expiredReq
	var wasExpired bool
	if ok {
		delete(s.pending, id)
	} else if late, wasExpired = s.expired[id]; wasExpired {
		delete(s.expired, id)
	}
	s.mu.Unlock()

	switch {
	case ok:
		o := lineOutcome(rec, pr.shadowed)
		if rec.HasUpstreamTime {
			upTime = s.capCharge(upTime, pr.adm.Pool.Name(), true, pr.adm.Key)
			s.observe(pr.adm.Pool.Name(), upTime)
			if s.unchecked != nil {
				s.unchecked.noteDuration(pr.adm.Pool.Name(), upTime)
			}
		}
		s.core.Finish(&pr.adm, upTime, rec.HasUpstreamTime, o)
		return LineMatched, nil
	case wasExpired:
		// The ticket was charged the bound at expiry; the line charges
		// the rest, itself no more than one line may.
		if rest := upTime - late.charged; rest > 0 {
			s.core.ChargeDirect(&late.adm, s.capCharge(rest, late.adm.Pool.Name(), true, late.adm.Key))
		}
		s.core.Count(&late.adm, lineOutcome(rec, false), upTime, rec.HasUpstreamTime)
		return LineLate, nil
	}
	if !rec.HasUpstreamTime {
		if rec.Status == accesslog.StatusClientClosed && id != "" {
			s.mu.Lock()
			s.early[strings.Clone(id)] = s.core.Clock().Now()
			s.mu.Unlock()
		}
		return LineNoUpstream, nil
	}
	if rec.Key == "" {
		// A location without the check logging to the sidecar: there is
		// no key to charge.
		return LineNoUpstream, nil
	}
	if batch != nil {
		batch.add(rec, upTime)
		return LineUnmatched, nil
	}
	var a admit.Admission
	// A copy of the key: the ledger may keep it; rec.Key aliases b.
	s.core.Lookup(&a, strings.Clone(rec.Key), rec.Pool)
	upTime = s.capCharge(upTime, a.Pool.Name(), false, a.Key)
	if s.unchecked != nil && s.granted(a.Key) {
		// A listed caller's request: its time says whether the pool's
		// requests are still short enough for its callers to stay listed.
		s.unchecked.noteDuration(a.Pool.Name(), upTime)
	}
	s.core.ChargeDirect(&a, upTime)
	s.core.Count(&a, lineOutcome(rec, false), upTime, true)
	return LineUnmatched, nil
}

// lineOutcome reads the request's outcome from nginx's line, as the proxy
// would have recorded it. nginx says 499 only when the client left before
// the request went upstream; once upstream (proxy_ignore_client_abort on) it
// logs the upstream's status, and the abort shows only as an incomplete
// answer, if the client was gone before nginx finished writing it.
func lineOutcome(rec *accesslog.Record, shadowed bool) admit.Outcome {
	completion, logged := rec.Get("request_completion")
	switch {
	case rec.Status == accesslog.StatusClientClosed, logged && completion != "OK" && rec.HasUpstreamTime:
		return admit.ClientAbort
	case (rec.Status == http.StatusBadGateway || rec.Status == http.StatusGatewayTimeout) &&
		(rec.UpstreamStatus == 0 || rec.UpstreamStatus == rec.Status):
		return admit.UpstreamError
	case shadowed:
		return admit.ShadowRestricted
	}
	return admit.OK
}

// Expire charges the tickets whose log line has not come within the bound
// (lost in UDP, or nginx never logged) the bound itself, and forgets
// expired tickets one bound later. Run calls it every second.
func (s *Sidecar) Expire() int {
	now := s.core.Clock().Now()
	bound := s.bound()
	var due []*pendingReq
	s.mu.Lock()
	for id, p := range s.pending {
		if now.Sub(p.adm.Start) >= bound+s.lineDelay {
			due = append(due, p)
			delete(s.pending, id)
			s.expired[id] = expiredReq{adm: p.adm, charged: bound, at: now}
		}
	}
	for id, e := range s.expired {
		if now.Sub(e.at) >= bound {
			delete(s.expired, id)
		}
	}
	for id, at := range s.early {
		if now.Sub(at) >= earlyLineKeep {
			delete(s.early, id)
		}
	}
	s.mu.Unlock()
	// Grants of keys that stopped sending requests would otherwise stay.
	s.grants.Range(func(k, v any) bool {
		if now.After(v.(time.Time)) {
			s.grants.Delete(k)
		}
		return true
	})
	for _, p := range due {
		s.core.Charge(&p.adm, bound, true)
		s.m.expired.Inc()
	}
	if len(due) > 0 {
		s.log.Warn("requests without a log line charged the bound (lost syslog datagrams, or nginx did not log them)",
			"requests", len(due), "bound", bound.String())
	}
	return len(due)
}

// Close charges every ticket still pending its elapsed time (at shutdown:
// the snapshot then keeps what those requests used so far).
func (s *Sidecar) Close() {
	now := s.core.Clock().Now()
	s.mu.Lock()
	pend := s.pending
	s.pending = map[string]*pendingReq{}
	s.mu.Unlock()
	for _, p := range pend {
		s.core.Charge(&p.adm, min(now.Sub(p.adm.Start), s.bound()), true)
	}
}
