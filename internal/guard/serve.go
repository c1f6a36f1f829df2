package guard

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
)

// exchange is one request's story, filled in as it goes and written to the
// access log at the end.
type exchange struct {
	start time.Time
	key   string
	lim   budget.Limits
	pool  *pool
	dec   budget.Decision

	// Upstream side; written only by the handler goroutine.
	upStart, upEnd time.Time
	respAt         time.Time // when the upstream's response headers came back
	upStatus       int
	upErr          error
	// bodyFault is set when the client's body failed while streaming
	// upstream (too slow, too large, broken off): the client's fault,
	// answered 408/413, not the upstream's 502.
	bodyFault outcome

	// Client side: when the client went away, set by a context.AfterFunc
	// goroutine.
	mu     sync.Mutex
	goneAt time.Time

	// The request's wrappers live here, so a request costs one allocation
	// for all of them: the client's ResponseWriter, the upstream call's
	// context and the upstream's response body.
	rw   responseWriter
	uctx upstreamCtx
	body timedBody
}

func (ex *exchange) clientGone(clock budget.Clock) func() {
	return func() {
		t := clock.Now()
		ex.mu.Lock()
		ex.goneAt = t
		ex.mu.Unlock()
	}
}

// upstreamCtx carries the exchange to Rewrite, ModifyResponse and
// ErrorHandler, keeps the client request's values (the http.Server ones
// ReverseProxy looks at), and takes its cancellation from the Guard, not
// from the client: a client that gives up does not stop the upstream call
// (nginx's proxy_ignore_client_abort; seeds/03).
type upstreamCtx struct {
	context.Context // the Guard's upstream context: Done, Err, Deadline
	values          context.Context
	ex              *exchange
}

type exchangeKey struct{}

func (c *upstreamCtx) Value(k any) any {
	if _, ok := k.(exchangeKey); ok {
		return c.ex
	}
	// The Guard's context first: it answers the context package's own
	// lookup for its cancelCtx, so context.WithTimeout on top of this one
	// registers as its child instead of starting a goroutine per request
	// to watch Done. It holds no other values.
	if v := c.Context.Value(k); v != nil {
		return v
	}
	return c.values.Value(k)
}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// ServeHTTP proxies one request: find its key and pool, refuse it if the
// key is restricted, wait for a pool slot, admit it in the ledger, proxy it,
// and charge the upstream's real time, even when the client left early.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.active.Add(1)
	defer g.active.Done()
	st := g.state.Load()
	ex := &exchange{start: g.clock.Now()}
	ex.rw.ResponseWriter = w
	rw := &ex.rw
	client := st.keys.clientAddr(r)
	if raw := st.keys.rawKey(r); raw != "" {
		ex.key = g.fp.Fingerprint(raw)
	} else if client.IsValid() {
		var buf [len(addrPrefix) + 64]byte
		ex.key = string(client.AppendTo(append(buf[:0], addrPrefix...)))
	}
	ex.lim = st.policy.limits(ex.key)
	ex.pool = st.router.pick(r)

	stop := context.AfterFunc(r.Context(), ex.clientGone(g.clock))
	o := outcomeUpstreamError // what a panic (http.ErrAbortHandler) leaves
	defer func() {
		stop()
		g.record(st, rw, r, ex, client, o)
	}()
	o = g.serve(st, rw, r, ex)
}

func (g *Guard) serve(st *state, rw *responseWriter, r *http.Request, ex *exchange) outcome {
	if o, done := g.readBody(st, rw, r); done {
		return o
	}
	p := ex.pool
	// A restricted key is refused before it can take a place in a pool's
	// queue that another key could use.
	if p.slots != nil && !ex.lim.Shadow && (ex.lim.Budget > 0 || ex.lim.MaxInFlight > 0) {
		if s := g.ledger.Status(ex.key, ex.lim); !s.RestrictedUntil.IsZero() {
			d := budget.Decision{Outcome: budget.Restricted, Used: time.Duration(s.WorkerSeconds * float64(time.Second)),
				InFlight: s.InFlight, RestrictedUntil: s.RestrictedUntil}
			g.refuse(rw, ex, d)
			return outcomeRestricted
		}
	}
	if err := p.acquire(r.Context()); err != nil {
		switch {
		case errors.Is(err, errQueueFull):
			g.unavailable(rw, p, "pool_queue_full", "the "+p.name+" pool is at capacity and its queue is full")
			return outcomeQueueFull
		case errors.Is(err, errQueueTimeout):
			g.unavailable(rw, p, "pool_queue_timeout", "the "+p.name+" pool stayed at capacity for "+p.timeout.String())
			return outcomeQueueTimeout
		default: // the client left while queued
			return outcomeAbortedInQueue
		}
	}
	defer p.release()

	d, t := g.ledger.Admit(ex.key, ex.lim)
	ex.dec = d
	if d.NewlyRestricted {
		g.restricted(ex, d)
	}
	if !d.Proceed() {
		g.refuse(rw, ex, d)
		if d.Outcome == budget.TooManyInFlight {
			return outcomeConcurrencyLimited
		}
		return outcomeRestricted
	}
	charged := false
	defer func() {
		if !charged { // a panic mid-copy: still charge what the upstream did
			g.charge(ex, t)
		}
	}()

	parent := g.upstream[rand.Uint32N(upstreamShards)]
	ex.uctx = upstreamCtx{Context: parent, values: r.Context(), ex: ex}
	ctx, cancel := context.WithTimeout(&ex.uctx, st.cfg.Timeouts.Upstream.D())
	defer cancel()
	st.proxy.ServeHTTP(rw, r.WithContext(ctx))
	charged = true
	g.charge(ex, t)

	switch {
	case ex.bodyFault != 0:
		return ex.bodyFault
	case ex.upErr != nil:
		return outcomeUpstreamError
	case ex.gone():
		return outcomeClientAbort
	case d.Shadowed:
		return outcomeShadowRestricted
	}
	return outcomeOK
}

// charge ends the request's in-flight accounting with the upstream's real
// time: from handing the request upstream to the end of its response body.
func (g *Guard) charge(ex *exchange, t budget.Ticket) {
	if ex.upStart.IsZero() {
		g.ledger.Cancel(t)
		return
	}
	if ex.upEnd.IsZero() {
		ex.upEnd = g.clock.Now()
	}
	d := g.ledger.Finish(t, ex.upEnd.Sub(ex.upStart))
	if d.NewlyRestricted {
		g.restricted(ex, d)
	}
}

func (g *Guard) restricted(ex *exchange, d budget.Decision) {
	mode := 0
	if ex.lim.Shadow {
		mode = 1
	}
	ex.pool.m.restricted[mode].Inc()
	g.log.Warn("key over its worker-time budget",
		"key", ex.key, "used", d.Used.Round(time.Millisecond).String(), "budget", ex.lim.Budget.String(),
		"window", ex.lim.Window.String(), "restricted_until", d.RestrictedUntil.UTC().Format(time.RFC3339),
		"enforced", !ex.lim.Shadow, "pool", ex.pool.name)
}

func (ex *exchange) gone() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return !ex.goneAt.IsZero()
}

func (g *Guard) rewrite(st *state, pr *httputil.ProxyRequest) {
	pr.SetURL(st.upstream)
	// Keep the Host the client asked for, as nginx's usual
	// `proxy_set_header Host $host` does: applications route and build
	// URLs from it.
	pr.Out.Host = pr.In.Host
	// Forwarding headers from a client are kept only when it is one of our
	// trusted proxies; Rewrite already stripped them from Out.
	if peer := peerAddr(pr.In.RemoteAddr); peer.IsValid() && st.keys.isTrusted(peer) {
		if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetXForwarded()
	if ex := exchangeFrom(pr.Out.Context()); ex != nil {
		ex.upStart = g.clock.Now()
	}
}

func (g *Guard) modifyResponse(res *http.Response) error {
	ex := exchangeFrom(res.Request.Context())
	if ex == nil {
		return nil
	}
	ex.upStatus = res.StatusCode
	ex.respAt = g.clock.Now()
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The connection becomes a tunnel; the worker's part ends here.
		ex.upEnd = g.clock.Now()
	} else {
		ex.body = timedBody{ReadCloser: res.Body, ex: ex, clock: g.clock}
		res.Body = &ex.body
	}
	setRateLimit(res.Header, ex.key, ex.lim, ex.dec.Used, ex.dec.InFlight, ex.dec.RestrictedUntil, ex.start)
	return nil
}

// upstreamError answers for an upstream that could not be reached or did
// not answer in time: 502, or 504 for a timeout, with a log line that says
// which upstream and why. It never waits longer than the configured
// timeouts.
func (g *Guard) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeFrom(r.Context())
	status, msg := http.StatusBadGateway, "the upstream could not be reached"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status, msg = http.StatusGatewayTimeout, "the upstream did not answer in time"
	}
	st := g.state.Load()
	if ex != nil && !ex.upStart.IsZero() && ex.upEnd.IsZero() {
		ex.upEnd = g.clock.Now()
	}
	var be *bodyError
	if errors.As(err, &be) {
		if ex != nil {
			ex.bodyFault = be.outcome
		}
		answerBodyFault(w, st, be.outcome)
		return
	}
	if ex != nil {
		ex.upErr = err
	}
	key := ""
	if ex != nil {
		key = ex.key
	}
	g.log.Error("upstream request failed", "upstream", st.cfg.Upstream, "status", status,
		"method", r.Method, "path", r.URL.Path, "key", key, "err", err)
	writeJSONError(w, status, map[string]any{"error": "upstream_unavailable", "message": msg})
}

// refuse answers 429 for a restricted key or one with too many requests in
// flight, with Retry-After, the RateLimit fields and a JSON body saying why
// and until when.
func (g *Guard) refuse(w http.ResponseWriter, ex *exchange, d budget.Decision) {
	now := g.clock.Now()
	h := w.Header()
	setRateLimit(h, ex.key, ex.lim, d.Used, d.InFlight, d.RestrictedUntil, now)
	body := map[string]any{"key": ex.key}
	if d.Outcome == budget.TooManyInFlight {
		h.Set("Retry-After", "1")
		body["error"] = "too_many_in_flight"
		body["message"] = "this key already has " + strconv.Itoa(d.InFlight) + " requests in flight, its limit is " +
			strconv.Itoa(ex.lim.MaxInFlight) + "; wait for one to finish"
		body["in_flight"] = d.InFlight
		body["max_in_flight"] = ex.lim.MaxInFlight
		body["retry_after_seconds"] = 1
	} else {
		ra := int64(1)
		if !d.RestrictedUntil.IsZero() {
			ra = retryAfter(d.RestrictedUntil, now)
			body["restricted_until"] = d.RestrictedUntil.UTC().Format(time.RFC3339)
		}
		h.Set("Retry-After", strconv.FormatInt(ra, 10))
		body["error"] = "worker_time_budget_exceeded"
		body["message"] = "this key used " + strconv.FormatFloat(d.Used.Seconds(), 'f', 1, 64) +
			" s of upstream worker time in the last " + ex.lim.Window.String() + " (budget " +
			strconv.FormatFloat(ex.lim.Budget.Seconds(), 'f', 1, 64) + " s) and is restricted until " +
			d.RestrictedUntil.UTC().Format(time.RFC3339)
		body["used_seconds"] = round3(d.Used.Seconds())
		body["budget_seconds"] = ex.lim.Budget.Seconds()
		body["window_seconds"] = ex.lim.Window.Seconds()
		body["retry_after_seconds"] = ra
	}
	writeJSONError(w, http.StatusTooManyRequests, body)
}

// unavailable answers 503 when a pool is full: the upstream is busy, not
// the key at fault, so no RateLimit fields.
func (g *Guard) unavailable(w http.ResponseWriter, p *pool, code, msg string) {
	ra := int64(1)
	if p.timeout > time.Second {
		ra = int64(p.timeout / time.Second)
	}
	w.Header().Set("Retry-After", strconv.FormatInt(ra, 10))
	writeJSONError(w, http.StatusServiceUnavailable, map[string]any{
		"error": code, "message": msg + "; retry shortly", "pool": p.name, "retry_after_seconds": ra,
	})
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// timedBody marks the end of the upstream's work: the end of its response
// body (EOF, a read error, or Close, whichever comes first).
type timedBody struct {
	io.ReadCloser
	ex    *exchange
	clock budget.Clock
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.ex.upEnd.IsZero() {
		b.ex.upEnd = b.clock.Now()
	}
	return n, err
}

func (b *timedBody) Close() error {
	if b.ex.upEnd.IsZero() {
		b.ex.upEnd = b.clock.Now()
	}
	return b.ReadCloser.Close()
}

// responseWriter records what the client got, and once a write to the
// client fails (the client left), swallows the rest of the response so the
// proxy keeps reading the upstream's answer to its end instead of aborting
// it: the upstream's work is charged in full and its connection reused.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	failed bool
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	if !w.failed {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.failed {
		return len(p), nil
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	if err != nil {
		w.failed = true
	}
	return len(p), nil
}

// FlushError flushes to the client; a failure marks the client gone.
func (w *responseWriter) FlushError() error {
	if w.failed {
		return nil
	}
	var err error
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		err = f.FlushError()
	case http.Flusher:
		f.Flush()
	}
	if err != nil {
		w.failed = true
	}
	return nil
}

// Unwrap lets http.ResponseController reach the connection (Hijack for
// protocol upgrades).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
