package sidecar

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// sidecarEnv is a Sidecar on a manual clock, driven without nginx: checks
// through its handler, log lines through Ingest.
type sidecarEnv struct {
	t     *testing.T
	sc    *Sidecar
	clock *budget.ManualClock
	logs  *testenv.Buffer
}

func newSidecarEnv(t *testing.T, yaml string) *sidecarEnv {
	t.Helper()
	return newSidecarEnvWith(t, yaml, nil)
}

// newSidecarEnvWith is newSidecarEnv with syslog senders (Options.Senders).
func newSidecarEnvWith(t *testing.T, yaml string, senders []netip.Prefix) *sidecarEnv {
	t.Helper()
	return newSidecarEnvOpts(t, yaml, Options{Senders: senders})
}

// newSidecarEnvOpts is newSidecarEnv with o's options (its Core, Tag and
// Logger are the env's).
func newSidecarEnvOpts(t *testing.T, yaml string, o Options) *sidecarEnv {
	t.Helper()
	cfg, err := config.Decode([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.NoUpstream = DefaultListen, true
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &sidecarEnv{t: t, clock: budget.NewManualClock(time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)), logs: &testenv.Buffer{}}
	lg := slog.New(slog.NewTextHandler(e.logs, nil))
	core, err := admit.New(admit.Options{Config: cfg, Clock: e.clock, Secret: []byte("test-secret-0123456789"), Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	o.Core, o.Tag, o.Logger = core, DefaultSyslogTag, lg
	if e.sc, err = New(o); err != nil {
		t.Fatal(err)
	}
	return e
}

// check asks the sidecar as nginx's auth_request does; hdr are extra
// headers of the original request ("X-Api-Key: k").
func (e *sidecarEnv) check(id, uri string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest("GET", "http://127.0.0.1:9092"+CheckPath, nil)
	r.RemoteAddr = "127.0.0.1:40000" // nginx
	if id != "" {
		r.Header.Set(hdrRequestID, id)
	}
	r.Header.Set(hdrClient, "203.0.113.7")
	r.Header.Set(hdrURI, uri)
	r.Header.Set(hdrHost, "api.example.com")
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Add(k, v)
	}
	w := httptest.NewRecorder()
	e.sc.ServeHTTP(w, r)
	return w
}

// line is the syslog datagram nginx sends for one request.
func line(id, key string, status int, upstream string) []byte {
	upStatus := "200"
	if upstream == "-" {
		upStatus = "-"
	}
	completion := "OK"
	if status == accesslog.StatusClientClosed {
		completion = ""
	}
	return fmt.Appendf(nil, `<190>Nov 30 11:00:04 headroom: 203.0.113.7 - - [30/Nov/2026:11:00:04 +0000] "GET /api/report?x=1 HTTP/1.1" %d 12 "-" "curl/8.5.0" 0.254 %s %s %s default %s %s`+"\n",
		status, upStatus, upstream, key, id, completion)
}

func (e *sidecarEnv) status(key string) budget.KeyStatus {
	c := e.sc.Core()
	lk := c.LedgerKey(key)
	return c.Ledger().Status(lk, c.Limits(lk))
}

func (e *sidecarEnv) ingest(b []byte, want string) {
	e.t.Helper()
	got, err := e.sc.Ingest(b)
	if got != want {
		e.t.Fatalf("Ingest(%q) = %s (%v), want %s", b, got, err, want)
	}
}

func TestSidecarChargesTheLoggedUpstreamTime(t *testing.T) {
	e := newSidecarEnv(t, "budget: {worker_time: 60s}\n")
	w := e.check("req-1", "/api/report", "X-Api-Key: k1")
	if w.Code != http.StatusNoContent {
		t.Fatalf("check = %d %s", w.Code, w.Body)
	}
	fp := e.sc.Core().Fingerprint("k1")
	if got := w.Header().Get(hdrKey); got != fp {
		t.Errorf("%s = %q, want the fingerprint %s", hdrKey, got, fp)
	}
	if !strings.Contains(w.Header().Get("RateLimit-Policy"), `"worker-time";q=60;w=60`) {
		t.Errorf("RateLimit-Policy = %q", w.Header().Get("RateLimit-Policy"))
	}

	// In flight: the elapsed time counts before any line arrives.
	e.clock.Advance(3 * time.Second)
	if s := e.status("k1"); s.InFlight != 1 || s.WorkerSeconds != 3 {
		t.Fatalf("in flight: %+v, want 1 request and 3 s", s)
	}
	// The line says the upstream worked 7.5 s (the client may have left
	// long before): that is what is charged, not the 3 s seen so far.
	e.ingest(line("req-1", fp, 499, "7.500"), LineMatched)
	if s := e.status("k1"); s.InFlight != 0 || s.WorkerSeconds != 7.5 {
		t.Fatalf("after the line: %+v, want 0 in flight and 7.5 s", s)
	}
	if e.sc.Pending() != 0 {
		t.Errorf("pending = %d", e.sc.Pending())
	}
	// The same line again has no ticket any more: charged as unmatched
	// (a duplicated datagram costs the key twice; UDP on loopback does
	// not duplicate).
	e.ingest(line("req-1", fp, 499, "7.500"), LineUnmatched)
	if s := e.status("k1"); s.WorkerSeconds != 15 {
		t.Fatalf("after an unmatched line: %v s, want 15", s.WorkerSeconds)
	}
}

func TestSidecarRefusesAKeyOverBudget(t *testing.T) {
	e := newSidecarEnv(t, "budget: {worker_time: 5s, window: 1m, restrict_for: 5m}\n")
	fp := e.sc.Core().Fingerprint("k1")
	e.check("req-1", "/", "X-Api-Key: k1")
	e.ingest(line("req-1", fp, 200, "6.000"), LineMatched)

	w := e.check("req-2", "/", "X-Api-Key: k1")
	if w.Code != http.StatusForbidden {
		t.Fatalf("over budget: check = %d, want 403 (nginx's error_page makes it 429)", w.Code)
	}
	h := w.Header()
	if h.Get("Retry-After") != "300" {
		t.Errorf("Retry-After = %q, want 300", h.Get("Retry-After"))
	}
	if !strings.Contains(h.Get("RateLimit"), `"worker-time";r=0;t=300`) {
		t.Errorf("RateLimit = %q", h.Get("RateLimit"))
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(h.Get(hdrDenial)), &body); err != nil {
		t.Fatalf("%s is not JSON: %v: %q", hdrDenial, err, h.Get(hdrDenial))
	}
	if body["error"] != "worker_time_budget_exceeded" || body["key"] != fp || body["retry_after_seconds"] != 300.0 {
		t.Errorf("denial = %v", body)
	}
	if strings.ContainsAny(h.Get(hdrDenial), "\r\n") {
		t.Error("the denial header holds a line break")
	}
	if e.sc.Pending() != 0 {
		t.Error("a refused request left a ticket")
	}
	// The refused request's line has no upstream time: nothing to charge.
	e.ingest(line("req-2", fp, 429, "-"), LineNoUpstream)
	if s := e.status("k1"); s.WorkerSeconds != 6 {
		t.Errorf("usage = %v, want 6", s.WorkerSeconds)
	}
	if w := e.check("req-3", "/", "X-Api-Key: k2"); w.Code != http.StatusNoContent {
		t.Errorf("another key: %d", w.Code)
	}
	if !strings.Contains(e.logs.String(), "key over its worker-time budget") || strings.Contains(e.logs.String(), "k1 ") {
		t.Errorf("log:\n%s", e.logs)
	}
}

func TestSidecarTooManyInFlight(t *testing.T) {
	e := newSidecarEnv(t, "budget: {max_in_flight: 1}\n")
	if w := e.check("a", "/", "X-Api-Key: k"); w.Code != http.StatusNoContent {
		t.Fatal(w.Code)
	}
	w := e.check("b", "/", "X-Api-Key: k")
	if w.Code != http.StatusForbidden || !strings.Contains(w.Header().Get(hdrDenial), "too_many_in_flight") {
		t.Fatalf("second in flight: %d %q", w.Code, w.Header().Get(hdrDenial))
	}
	// Checked again under the same $request_id (an internal redirect):
	// admitted once, not refused as a second request.
	if w := e.check("a", "/", "X-Api-Key: k"); w.Code != http.StatusNoContent {
		t.Fatalf("repeated check: %d", w.Code)
	}
	if s := e.status("k"); s.InFlight != 1 {
		t.Errorf("in flight = %d", s.InFlight)
	}
}

func TestSidecarExpiresTicketsWhoseLineIsLost(t *testing.T) {
	e := newSidecarEnv(t, "timeouts: {upstream: 10s}\n")
	fp := e.sc.Core().Fingerprint("k1")
	e.check("lost", "/", "X-Api-Key: k1")
	e.check("late", "/", "X-Api-Key: k1")
	e.clock.Advance(9 * time.Second)
	if n := e.sc.Expire(); n != 0 {
		t.Fatalf("expired %d before the bound", n)
	}
	e.clock.Advance(2 * time.Second)
	if n := e.sc.Expire(); n != 2 {
		t.Fatalf("expired %d, want 2", n)
	}
	// Both charged the bound, not the 11 s elapsed.
	if s := e.status("k1"); s.InFlight != 0 || s.WorkerSeconds != 20 {
		t.Fatalf("after expiry: %+v, want 0 in flight, 20 s", s)
	}
	// A line that comes after all: only what the bound did not cover.
	e.ingest(line("late", fp, 200, "12.000"), LineLate)
	if s := e.status("k1"); s.WorkerSeconds != 22 {
		t.Fatalf("after the late line: %v s, want 22", s.WorkerSeconds)
	}
	// The expired ids are forgotten one bound later.
	e.clock.Advance(10 * time.Second)
	e.sc.Expire()
	e.ingest(line("lost", fp, 200, "1.000"), LineUnmatched)
}

func TestSidecarChargesLinesWithoutATicket(t *testing.T) {
	e := newSidecarEnv(t, "")
	fp := e.sc.Core().Fingerprint("k1")
	// A sidecar restart loses its tickets, not nginx's lines.
	e.ingest(line("before-restart", fp, 200, "2.500"), LineUnmatched)
	if s := e.status("k1"); s.WorkerSeconds != 2.5 || s.InFlight != 0 {
		t.Fatalf("%+v, want 2.5 s", s)
	}
	e.ingest(line("x", "-", 200, "1.000"), LineNoUpstream) // a location without the check
	e.ingest(line("y", fp, 502, "-"), LineNoUpstream)
	// Several upstreams tried: all their time was worker time.
	e.ingest([]byte(`<190>Nov 30 11:00:04 web-1 headroom: 203.0.113.7 - - [30/Nov/2026:11:00:04 +0000] "GET / HTTP/1.1" 200 12 "-" "-" 3.1 502, 200 1.000, 2.000 `+fp+` default z OK`), LineUnmatched)
	if s := e.status("k1"); s.WorkerSeconds != 5.5 {
		t.Fatalf("%v s, want 5.5", s.WorkerSeconds)
	}
}

func TestSidecarCheckWithoutRequestID(t *testing.T) {
	e := newSidecarEnv(t, "")
	if w := e.check("", "/", "X-Api-Key: k1"); w.Code != http.StatusNoContent {
		t.Fatalf("check = %d", w.Code)
	}
	if s := e.status("k1"); s.InFlight != 0 || e.sc.Pending() != 0 {
		t.Fatalf("a ticket no line can find was kept: %+v", s)
	}
}

func TestSidecarFindsKeysAndPoolsAsTheProxy(t *testing.T) {
	e := newSidecarEnv(t, `
keys:
  sources: [{header: X-Api-Key}, {bearer: true}, {query: api_key}]
  trusted_proxies: [203.0.113.0/24]
pools:
  - {name: api, path_prefixes: [/api/], max_concurrent: 4}
  - {name: ui, max_concurrent: 8}
`)
	cases := []struct {
		name, uri string
		hdr       []string
		key, pool string
	}{
		{"header", "/api/x", []string{"X-Api-Key: k1"}, e.sc.Core().Fingerprint("k1"), "api"},
		{"bearer", "/home", []string{"Authorization: Bearer tok"}, e.sc.Core().Fingerprint("tok"), "ui"},
		{"query", "/api/x?api_key=q1&y=2", nil, e.sc.Core().Fingerprint("q1"), "api"},
		// nginx's peer (203.0.113.7) is a trusted proxy: the client is the
		// rightmost untrusted X-Forwarded-For address.
		{"no key", "/", []string{"X-Forwarded-For: 198.51.100.1, 198.51.100.9"}, "addr:198.51.100.9", "ui"},
		{"unparsable uri", "/api/%zz", nil, "addr:203.0.113.7", "api"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := e.check(fmt.Sprint("id-", i), c.uri, c.hdr...)
			if w.Code != http.StatusNoContent {
				t.Fatalf("check = %d", w.Code)
			}
			if got := w.Header().Get(hdrKey); got != c.key {
				t.Errorf("key = %q, want %q", got, c.key)
			}
			if got := w.Header().Get(hdrPool); got != c.pool {
				t.Errorf("pool = %q, want %q", got, c.pool)
			}
		})
	}
}

func TestSidecarRefusesMalformedDatagrams(t *testing.T) {
	e := newSidecarEnv(t, "")
	for _, b := range []string{
		"",
		"not syslog at all",
		strings.Replace(string(line("a", "-", 200, "1")), " headroom: ", " other: ", 1),
		"<190>Nov 30 11:00:04 headroom: 127.0.0.1 - - [garbage",
		"<190>Nov 30 11:00:04 headroom: 127.0.0.1 - - [30/Nov/2026:11:00:04 +0000] \"GET / HTTP/1.1\" 200 12 \"-\" \"-\" 0.1 200 zz fp-x default id OK",
	} {
		if got, err := e.sc.Ingest([]byte(b)); got != LineMalformed || err == nil {
			t.Errorf("Ingest(%q) = %s, %v; want malformed with a reason", b, got, err)
		}
	}
}

func TestSidecarCloseChargesPendingTickets(t *testing.T) {
	e := newSidecarEnv(t, "")
	e.check("a", "/", "X-Api-Key: k1")
	e.clock.Advance(4 * time.Second)
	e.sc.Close()
	if s := e.status("k1"); s.InFlight != 0 || s.WorkerSeconds != 4 {
		t.Fatalf("%+v, want 4 s charged and nothing in flight", s)
	}
}

func TestSidecarLineOutcome(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		upStatus   string
		upTime     string
		completion string
		shadowed   bool
		want       admit.Outcome
	}{
		{"answered", 200, "200", "0.1", "OK", false, admit.OK},
		{"client left while upstream (answer not sent in full)", 200, "200", "0.6", "", false, admit.ClientAbort},
		{"client left before upstream", 499, "-", "-", "", false, admit.ClientAbort},
		{"upstream down", 502, "502", "0.001", "OK", false, admit.UpstreamError},
		{"upstream unreachable", 502, "-", "-", "OK", false, admit.UpstreamError},
		{"shadow", 200, "200", "0.1", "OK", true, admit.ShadowRestricted},
	}
	f, err := accesslog.CompileNginx(LogFormat)
	if err != nil {
		t.Fatal(err)
	}
	p := f.NewParser()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := fmt.Sprintf(`1.2.3.4 - - [30/Nov/2026:11:00:04 +0000] "GET / HTTP/1.1" %d 0 "-" "-" 0.6 %s %s fp-0123456789abcdef default id %s`,
				c.status, c.upStatus, c.upTime, c.completion)
			var rec accesslog.Record
			if err := p.Parse([]byte(l), &rec); err != nil {
				t.Fatalf("parse %q: %v", l, err)
			}
			if got := lineOutcome(&rec, c.shadowed); got != c.want {
				t.Errorf("outcome = %s, want %s", got, c.want)
			}
		})
	}
}

func TestSidecarShadowModeLetsThroughAndCounts(t *testing.T) {
	e := newSidecarEnv(t, "shadow: true\nbudget: {worker_time: 1s}\n")
	fp := e.sc.Core().Fingerprint("k1")
	e.check("a", "/", "X-Api-Key: k1")
	e.ingest(line("a", fp, 200, "2.000"), LineMatched)
	w := e.check("b", "/", "X-Api-Key: k1")
	if w.Code != http.StatusNoContent {
		t.Fatalf("shadow mode refused: %d", w.Code)
	}
	e.ingest(line("b", fp, 200, "0.500"), LineMatched)
	rec := httptest.NewRecorder()
	admin.Handler(admin.Options{Core: e.sc.Core()}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `headroom_requests_total{outcome="shadow_restricted",pool="default"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
	if s := e.status("k1"); s.WorkerSeconds != 2.5 || s.RestrictedUntil.IsZero() {
		t.Errorf("%+v: want 2.5 s and a (would-be) restriction shown", s)
	}
}

// Issue 17: one datagram carrying a victim's fingerprint (fingerprints are
// public: 429 bodies, logs) charged it 500 s and restricted it. No line
// charges more than the ticket bound, and a line no check stands behind no
// more than the longest checked request of its pool; both are counted.
func TestSidecarCapsWhatOneLineCharges(t *testing.T) {
	e := newSidecarEnv(t, "budget: {worker_time: 60s, window: 10m, restrict_for: 5m}\ntimeouts: {upstream: 30s}\n")
	c := e.sc.Core()
	fp, victim := c.Fingerprint("k1"), c.Fingerprint("victim")

	// A checked request whose line claims more than the 30 s bound: the
	// bound is what a ticket may cost, so that is what is charged.
	if w := e.check("req-1", "/api/report", "X-Api-Key: k1"); w.Code != http.StatusNoContent {
		t.Fatalf("check = %d", w.Code)
	}
	e.ingest(line("req-1", fp, 200, "45.000"), LineMatched)
	if s := e.status("k1"); s.WorkerSeconds != 30 {
		t.Fatalf("a checked line claiming 45 s charged %v s, want the 30 s bound", s.WorkerSeconds)
	}
	// A forged line, no check behind it, claiming 500 s for the victim.
	e.ingest(line("forged", victim, 200, "500.000"), LineUnmatched)
	s := e.status("victim")
	if s.WorkerSeconds != 30 || !s.RestrictedUntil.IsZero() {
		t.Fatalf("forged 500 s line: victim charged %v s (restricted until %v), want the 30 s bound and not restricted",
			s.WorkerSeconds, s.RestrictedUntil)
	}
	for _, want := range []string{
		`headroom_sidecar_charges_capped_total{cap="ticket_ttl"} 2`,
		`headroom_sidecar_charges_capped_total{cap="pool_max"} 0`,
	} {
		if m := e.metrics(); !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(e.logs.String(), "claimed more upstream time") {
		t.Errorf("the cap was not logged:\n%s", e.logs)
	}
}

// A line without a check in a pool with a short longest request is charged
// that longest request at most.
func TestSidecarCapsUncheckedLinesAtThePoolsLongest(t *testing.T) {
	e := newSidecarEnv(t, "budget: {worker_time: 60s, window: 10m, restrict_for: 5m}\n")
	c := e.sc.Core()
	fp, victim := c.Fingerprint("k1"), c.Fingerprint("victim")
	if w := e.check("req-1", "/api/report", "X-Api-Key: k1"); w.Code != http.StatusNoContent {
		t.Fatalf("check = %d", w.Code)
	}
	e.ingest(line("req-1", fp, 200, "0.250"), LineMatched)
	e.ingest(line("forged", victim, 200, "500.000"), LineUnmatched)
	if s := e.status("victim"); s.WorkerSeconds != 0.25 || !s.RestrictedUntil.IsZero() {
		t.Fatalf("forged 500 s line: victim charged %v s (restricted until %v), want 0.25 s and not restricted", s.WorkerSeconds, s.RestrictedUntil)
	}
	if m := e.metrics(); !strings.Contains(m, `headroom_sidecar_charges_capped_total{cap="pool_max"} 1`) {
		t.Errorf("the pool_max cap is not counted")
	}
}

func (e *sidecarEnv) metrics() string {
	rec := httptest.NewRecorder()
	admin.Handler(admin.Options{Core: e.sc.Core()}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// Datagrams are taken from nginx only: by default the address its checks
// come from, and loopback's 127.0.0.1 and ::1; or the configured senders.
func TestSidecarSyslogSenders(t *testing.T) {
	e := newSidecarEnv(t, "")
	fp := e.sc.Core().Fingerprint("k1")
	for _, c := range []struct {
		from string
		want string
	}{
		{"127.0.0.1", LineUnmatched},
		{"::1", LineUnmatched},
		{"::ffff:127.0.0.1", LineUnmatched},
		{"127.0.0.2", LineRefused},
		{"10.0.0.9", LineRefused}, // until a check comes from there
	} {
		if got, err := e.sc.IngestFrom(line("x", fp, 200, "0.100"), netip.MustParseAddr(c.from)); got != c.want {
			t.Errorf("from %s: %s (%v), want %s", c.from, got, err, c.want)
		}
	}
	if s := e.status("k1"); math.Abs(s.WorkerSeconds-0.3) > 1e-9 {
		t.Errorf("charged %v s, want 0.3 (three accepted lines)", s.WorkerSeconds)
	}
	// nginx on another host: its checks name its address.
	r := httptest.NewRequest("GET", "http://10.0.0.1:9092"+CheckPath, nil)
	r.RemoteAddr = "10.0.0.9:41000"
	e.sc.ServeHTTP(httptest.NewRecorder(), r)
	if got, _ := e.sc.IngestFrom(line("y", fp, 200, "0.100"), netip.MustParseAddr("10.0.0.9")); got != LineUnmatched {
		t.Errorf("from the checks' address: %s, want %s", got, LineUnmatched)
	}

	if m := e.metrics(); !strings.Contains(m, `headroom_sidecar_syslog_lines_total{result="refused"} 2`) {
		t.Errorf("refused datagrams not counted")
	}
	if !strings.Contains(e.logs.String(), "syslog datagram refused") {
		t.Errorf("refused datagram not logged:\n%s", e.logs)
	}

	// Configured senders replace the default.
	e2 := newSidecarEnvWith(t, "", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	for from, want := range map[string]string{"192.0.2.8": LineUnmatched, "127.0.0.1": LineRefused} {
		if got, _ := e2.sc.IngestFrom(line("z", fp, 200, "0.100"), netip.MustParseAddr(from)); got != want {
			t.Errorf("senders 192.0.2.0/24, from %s: %s, want %s", from, got, want)
		}
	}
}

// The allow cache (issue 13): how long nginx may reuse a check's answer.
func TestSidecarCheckCacheValidity(t *testing.T) {
	const decl = "header:X-Api-Key,bearer,addr,host"
	for _, c := range []struct {
		name, yaml string
		used       string // the key's upstream time before the check
		decl       string
		want       string
	}{
		{"far from its budget", "budget: {worker_time: 1h}\n", "", decl, "10"},
		{"no budget at all", "", "", decl, "10"},
		{"its burn rate bounds it", "budget: {worker_time: 10s, window: 1m}\n", "3.000", decl, "3"}, // 0.5 × 7 s left / (3/60 + 1 in flight) s/s
		{"near its budget", "budget: {worker_time: 10s, window: 1m}\n", "5.500", decl, "0"},
		{"a concurrency cap", "budget: {worker_time: 1h, max_in_flight: 8}\n", "", decl, "0"},
		{"shadow mode", "budget: {worker_time: 1h}\nshadow: true\n", "", decl, "0"},
		{"no cache in nginx", "budget: {worker_time: 1h}\n", "", "", "0"},
		{"a key source the cache key lacks", "budget: {worker_time: 1h}\nkeys: {sources: [{header: X-Token}]}\n", "", decl, "0"},
		{"pools by path", "budget: {worker_time: 1h}\npools: [{name: api, path_prefixes: [/api/], max_concurrent: 4}]\n", "", decl, "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newSidecarEnv(t, c.yaml)
			e.sc.cacheMax = 10 * time.Second
			fp := e.sc.Core().Fingerprint("k1")
			if c.used != "" {
				e.ingest(line("before", fp, 200, c.used), LineUnmatched)
			}
			hdr := []string{"X-Api-Key: k1"}
			if c.decl != "" {
				hdr = append(hdr, hdrCacheKey+": "+c.decl)
			}
			w := e.check("req-1", "/api/report", hdr...)
			if w.Code != http.StatusNoContent {
				t.Fatalf("check = %d", w.Code)
			}
			if got := w.Header().Get(hdrAccelExpires); got != c.want {
				t.Errorf("X-Accel-Expires = %q, want %q", got, c.want)
			}
		})
	}
	// A refusal is never cached, and has no body (nginx then keeps its
	// connection to the sidecar).
	e := newSidecarEnv(t, "budget: {worker_time: 5s, window: 1m, restrict_for: 5m}\n")
	e.sc.cacheMax = 10 * time.Second
	fp := e.sc.Core().Fingerprint("k1")
	e.ingest(line("before", fp, 200, "6.000"), LineUnmatched)
	w := e.check("req-2", "/", "X-Api-Key: k1", hdrCacheKey+": "+decl)
	if w.Code != http.StatusForbidden || w.Header().Get(hdrAccelExpires) != "0" || w.Body.Len() != 0 || w.Header().Get(hdrDenial) == "" {
		t.Errorf("refusal: %d, X-Accel-Expires %q, %d body bytes, denial %q; want 403, 0, none, the JSON in %s",
			w.Code, w.Header().Get(hdrAccelExpires), w.Body.Len(), w.Header().Get(hdrDenial), hdrDenial)
	}
}

// A log line that finishes a ticket costs no allocation (issue 13: the
// syslog path at nginx's request rate).
func TestSidecarMatchedLineDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		// scripts/test.sh runs the allocation tests again without -race.
		t.Skip("-race drops sync.Pool items at random: the parser pool allocates by design there")
	}
	e := newSidecarEnv(t, "budget: {worker_time: 1h}\n")
	fp := e.sc.Core().Fingerprint("k1")
	const runs = 100
	lines := make([][]byte, runs+1)
	for i := range lines {
		id := "r" + strconv.Itoa(i)
		e.check(id, "/api/x", "X-Api-Key: k1")
		lines[i] = line(id, fp, 200, "0.002")
	}
	i := 0
	if n := testing.AllocsPerRun(runs, func() {
		if res, err := e.sc.Ingest(lines[i]); res != LineMatched {
			t.Fatal(res, err)
		}
		i++
	}); n != 0 {
		t.Errorf("%v allocations per matched line, want 0", n)
	}
}

// A cache grant is forgotten once it ran out, whether or not a line asks.
func TestSidecarForgetsCacheGrants(t *testing.T) {
	e := newSidecarEnv(t, "budget: {worker_time: 1h}\ntimeouts: {upstream: 10s}\n")
	e.sc.cacheMax = 5 * time.Second
	if w := e.check("r1", "/", "X-Api-Key: k1", hdrCacheKey+": header:X-Api-Key,bearer,addr,host"); w.Header().Get(hdrAccelExpires) != "5" {
		t.Fatalf("X-Accel-Expires = %q, want 5", w.Header().Get(hdrAccelExpires))
	}
	count := func() (n int) {
		e.sc.grants.Range(func(any, any) bool { n++; return true })
		return n
	}
	if count() != 1 {
		t.Fatalf("%d grants, want 1", count())
	}
	e.clock.Advance(16 * time.Second) // validity 5 s + the 10 s bound, and the ticket expires too
	e.sc.Expire()
	if n := count(); n != 0 {
		t.Errorf("%d grants after they ran out, want 0", n)
	}
}

// A client that leaves while its check is answered is logged by nginx at
// once (499, nothing upstream), and its line can overtake the check: the
// ticket the check then opens must not wait for a line that already came
// (found by bench/sidecar.sh: each wrk run's end left a few such tickets,
// each counting its elapsed time against the key for the whole bound).
func TestSidecarLineBeforeItsCheck(t *testing.T) {
	e := newSidecarEnv(t, "budget: {worker_time: 60s}\n")
	fp := e.sc.Core().Fingerprint("k1")
	e.ingest(line("req-gone", fp, 499, "-"), LineNoUpstream)
	if w := e.check("req-gone", "/api/report", "X-Api-Key: k1"); w.Code != http.StatusNoContent {
		t.Fatalf("check = %d", w.Code)
	}
	e.clock.Advance(10 * time.Second)
	if p := e.sc.Pending(); p != 0 {
		t.Errorf("%d tickets pending for a request whose line came first", p)
	}
	if s := e.status("k1"); s.InFlight != 0 || s.WorkerSeconds != 0 {
		t.Errorf("after 10 s: %+v, want nothing in flight or charged", s)
	}
	// An early line is remembered only for a while: a check with its id
	// much later opens a ticket as usual.
	e.ingest(line("req-old", fp, 499, "-"), LineNoUpstream)
	e.clock.Advance(earlyLineKeep)
	e.sc.Expire()
	e.check("req-old", "/api/report", "X-Api-Key: k1")
	if p := e.sc.Pending(); p != 1 {
		t.Errorf("pending = %d, want the new ticket", p)
	}
}
