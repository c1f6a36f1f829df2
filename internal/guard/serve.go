package guard

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/requestid"
)

// exchange is one request's story, filled in as it goes and written to the
// access log at the end.
type exchange struct {
	adm admit.Admission // key, limits, pool, decision, ticket

	// Upstream side; written only by the handler goroutine.
	upStart, upEnd time.Time
	respAt         time.Time // when the upstream's response headers came back
	upStatus       int
	upErr          error
	// upBroken is the error that cut the upstream's response body short
	// (a reset after 12 of 100,000 bytes): an upstream failure, though
	// its status line said 200 (issue 17).
	upBroken error
	// bodyFault is set when the client's body failed while streaming
	// upstream (too slow, too large, broken off): the client's fault,
	// answered 408/413, not the upstream's 502.
	bodyFault admit.Outcome

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
	// rid is the request's X-Request-Id, as the one value of the field in
	// the upstream request's and the client response's header.
	rid [1]string
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

// ServeHTTP proxies one request: the core identifies it (key, pool) and
// admits it (refusing a restricted key, waiting for a pool slot), the
// proxy hands it upstream, and the core charges the upstream's real time,
// even when the client left early.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.active.Add(1)
	defer g.active.Done()
	fr := g.front.Load()
	ex := &exchange{}
	ex.rw.ResponseWriter = w
	rw := &ex.rw
	peer := admit.PeerAddr(r.RemoteAddr)
	g.core.Begin(&admit.Request{
		Header: r.Header, Query: r.URL.RawQuery, Peer: peer, Host: r.Host, Path: r.URL.Path,
	}, &ex.adm)
	// The id goes on every answer from here on, the proxy's own refusals
	// and failures included (modifyResponse puts it back on an upstream's
	// answer, in place of the upstream's own).
	ex.rid[0] = requestID(r.Header, peer.IsValid() && ex.adm.TrustedPeer(peer))
	w.Header()[requestid.Header] = ex.rid[:]

	stop := context.AfterFunc(r.Context(), ex.clientGone(g.clock))
	o := admit.UpstreamError // what a panic (http.ErrAbortHandler) leaves
	defer func() {
		stop()
		g.record(fr, rw, r, ex, o)
	}()
	o = g.serve(fr, rw, r, ex)
}

func (g *Guard) serve(fr *front, rw *responseWriter, r *http.Request, ex *exchange) admit.Outcome {
	cfg := ex.adm.Config()
	if o, done := g.readBody(cfg, rw, r); done {
		return o
	}
	o, ok := g.core.Admit(r.Context(), &ex.adm)
	if !ok {
		if o != admit.AbortedInQueue { // nobody to answer
			writeRefusal(rw, g.core.Refusal(&ex.adm, o))
		}
		return o
	}
	parent := g.upstream[rand.Uint32N(upstreamShards)]
	ex.uctx = upstreamCtx{Context: parent, values: r.Context(), ex: ex}
	ctx, cancel := context.WithTimeout(&ex.uctx, cfg.Timeouts.Upstream.D())
	defer cancel()
	fr.proxy.ServeHTTP(rw, r.WithContext(ctx))
	if !ex.upStart.IsZero() && ex.upEnd.IsZero() {
		ex.upEnd = g.clock.Now()
	}

	switch {
	case ex.bodyFault != 0:
		return ex.bodyFault
	case ex.upErr != nil:
		return admit.UpstreamError
	case ex.gone():
		return admit.ClientAbort
	}
	return o // OK, or ShadowRestricted
}

// requestID is the request's X-Request-Id: the client's own when it is a
// trusted proxy that sent exactly one well-formed id, otherwise a new one.
func requestID(h http.Header, trusted bool) string {
	if v := h[requestid.Header]; trusted && len(v) == 1 && requestid.Valid(v[0]) {
		return v[0]
	}
	return requestid.New()
}

// writeRefusal writes the core's answer for a refused request.
func writeRefusal(w http.ResponseWriter, ref admit.Refusal) {
	h := w.Header()
	h.Del("Content-Length")
	for _, f := range ref.Header {
		h[f.Name] = []string{f.Value}
	}
	w.WriteHeader(ref.Status)
	_, _ = w.Write(ref.Body)
}

func (ex *exchange) gone() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return !ex.goneAt.IsZero()
}

func (g *Guard) rewrite(fr *front, pr *httputil.ProxyRequest) {
	pr.SetURL(fr.upstream)
	// Keep the Host the client asked for, as nginx's usual
	// `proxy_set_header Host $host` does: applications route and build
	// URLs from it.
	pr.Out.Host = pr.In.Host
	// Forwarding headers from a client are kept only when it is one of our
	// trusted proxies; Rewrite already stripped them from Out.
	ex := exchangeFrom(pr.Out.Context())
	if peer := admit.PeerAddr(pr.In.RemoteAddr); ex != nil && peer.IsValid() && ex.adm.TrustedPeer(peer) {
		if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetXForwarded()
	// X-Real-Ip is a forwarding header like X-Forwarded-For (issue 17: an
	// untrusted client's reached the upstream unchanged): it says the
	// client the guard resolved, the peer or, behind a trusted proxy, the
	// address X-Forwarded-For gave, never what a client claims.
	pr.Out.Header.Del("X-Real-Ip")
	// Exactly one X-Request-Id: the trusted proxy's, or the guard's own.
	pr.Out.Header.Del(requestid.Header)
	if ex != nil {
		if ex.adm.Client.IsValid() {
			pr.Out.Header["X-Real-Ip"] = []string{ex.adm.Client.String()}
		}
		pr.Out.Header[requestid.Header] = ex.rid[:]
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
	// The guard's id is the one the client gets: the upstream's is not
	// passed on beside it (ReverseProxy adds res.Header's fields to the
	// client's, which a 1xx the upstream sent has emptied).
	delete(res.Header, requestid.Header)
	ex.rw.Header()[requestid.Header] = ex.rid[:]
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The connection becomes a tunnel; the worker's part ends here.
		ex.upEnd = g.clock.Now()
	} else {
		ex.body = timedBody{ReadCloser: res.Body, ex: ex, clock: g.clock}
		res.Body = &ex.body
	}
	ex.adm.SetRateLimit(res.Header, ex.adm.Start)
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
	cfg := g.Config()
	if ex != nil {
		cfg = ex.adm.Config()
	}
	if ex != nil && !ex.upStart.IsZero() && ex.upEnd.IsZero() {
		ex.upEnd = g.clock.Now()
	}
	var be *bodyError
	if errors.As(err, &be) {
		if ex != nil {
			ex.bodyFault = be.outcome
		}
		answerBodyFault(w, cfg, be.outcome)
		return
	}
	if ex != nil {
		ex.upErr = err
	}
	key := ""
	if ex != nil {
		key = ex.adm.Key
	}
	g.log.Error("upstream request failed", "upstream", cfg.Upstream, "status", status,
		"method", r.Method, "path", r.URL.Path, "key", key, "err", err)
	writeJSONError(w, status, map[string]any{"error": "upstream_unavailable", "message": msg})
}

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
		if err != io.EOF {
			b.ex.upBroken = err
		}
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
