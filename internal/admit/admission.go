package admit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// Header gives the core the request header fields it reads: the key
// sources' headers, Authorization (bearer keys) and X-Forwarded-For (only
// when the peer is a trusted proxy). Names are passed in canonical form
// (http.CanonicalHeaderKey). http.Header satisfies it.
type Header interface {
	// Get returns the first value of the field, or "".
	Get(name string) string
	// Values returns every value of the field, in order.
	Values(name string) []string
}

// Request is what the core needs to know of a request: its identity, not
// its protocol.
type Request struct {
	Header Header     // the request's header fields; nil: none
	Query  string     // the raw query (without '?'), for a key passed as a query parameter
	Peer   netip.Addr // the address the connection came from (PeerAddr parses one)
	Host   string     // the Host the client asked for; a port is ignored
	Path   string     // the decoded path, for pools by path prefix
	// AddrKey, if not nil, is the front-end's memory of the last address
	// key Begin made on this connection: the requests of one client then
	// share one addr:IP string instead of each allocating its own.
	AddrKey *AddrKey
}

// AddrKey remembers an address key (Request.AddrKey). The zero value is
// empty; it is not safe for concurrent use (one per connection).
type AddrKey struct {
	addr netip.Addr
	key  string
}

// of returns addr's ledger key, made anew only for another address.
func (k *AddrKey) of(addr netip.Addr) string {
	if k != nil && k.key != "" && k.addr == addr {
		return k.key
	}
	var buf [len(AddrPrefix) + 64]byte
	key := string(addr.AppendTo(append(buf[:0], AddrPrefix...)))
	if k != nil {
		k.addr, k.key = addr, key
	}
	return key
}

// Admission is one request on its way through the core, from Begin to
// Finish. The exported fields are for the front-end to read (its log line,
// its headers); only the core writes them. The zero Admission is not
// admitted: Finish on it counts nothing and charges nothing.
type Admission struct {
	Key      string          // the ledger key: an API key's fingerprint, or addr:IP
	Client   netip.Addr      // the client's address (the peer, or X-Forwarded-For from a trusted proxy)
	Limits   budget.Limits   // the key's limits in the configuration of Begin
	Pool     *Pool           // the request's pool
	Start    time.Time       // when Begin saw it
	Decision budget.Decision // Admit's decision (RateLimit fields, the refusal)

	st     *state
	ticket budget.Ticket
	held   uint8 // heldNone, heldCount or heldSlot
}

const (
	heldNone  = iota
	heldCount // counted in the pool's in-flight, no slot (Options.CountPools or an unlimited pool)
	heldSlot  // holding one of the pool's slots
)

// Config is the configuration the request is handled under.
func (a *Admission) Config() *config.Config { return a.st.cfg }

// RedactQuery returns uri with the values of the query parameters that
// carry keys (and keys.redact_query) replaced, for logging.
func (a *Admission) RedactQuery(uri string) string {
	return redactQueryLens(uri, a.st.keys.redact, a.st.keys.lens)
}

// TrustedPeer reports whether addr is one of the configured trusted
// proxies, whose X-Forwarded-For is believed.
func (a *Admission) TrustedPeer(addr netip.Addr) bool { return a.st.keys.isTrusted(addr) }

// TrustedPeer reports whether addr is one of the trusted proxies of the
// configuration in force.
func (c *Core) TrustedPeer(addr netip.Addr) bool { return c.st.Load().keys.isTrusted(addr) }

// SetRateLimit writes the RateLimit-Policy and RateLimit fields of the
// Decision into h, replacing any there (the upstream's). now dates the t
// parameter of a restricted key.
func (a *Admission) SetRateLimit(h http.Header, now time.Time) {
	setRateLimit(h, a.Key, &a.Limits, &a.Decision, now)
}

// AppendRateLimit appends the values of RateLimit-Policy (b[len(b):split]
// of the result) and RateLimit (the rest) to b, for a front-end that
// writes its own headers; nothing for a key without limits.
func (a *Admission) AppendRateLimit(b []byte, now time.Time) (out []byte, split int) {
	return appendRateLimit(b, a.Key, &a.Limits, &a.Decision, now)
}

// Begin identifies r: its key, client address, limits and pool, in the
// configuration in force now, which the Admission then keeps. It admits
// nothing.
func (c *Core) Begin(r *Request, a *Admission) { c.BeginAt(r, a, c.clock.Now()) }

// BeginAt is Begin for a front-end that has just read the core's clock
// (Clock), as it does when a request's head is in: now is that reading,
// the Admission's Start, and the core does not read the clock.
func (c *Core) BeginAt(r *Request, a *Admission, now time.Time) {
	st := c.st.Load()
	*a = Admission{st: st, Start: now}
	a.Client = st.keys.clientAddr(r)
	if raw := st.keys.rawKey(r); raw != "" {
		a.Key = c.fp.Fingerprint(raw)
	} else if a.Client.IsValid() {
		a.Key = r.AddrKey.of(a.Client)
	}
	a.Limits = st.policy.limits(a.Key)
	a.Pool = st.router.pick(r.Host, r.Path)
}

// Lookup fills a for a ledger key and a pool name already worked out
// elsewhere (a sidecar's log line carries both): the key's limits in force
// and the pool of that name, else the catch-all.
func (c *Core) Lookup(a *Admission, key, pool string) {
	st := c.st.Load()
	*a = Admission{st: st, Start: c.clock.Now(), Key: key, Limits: st.policy.limits(key), Pool: st.router.catchAll}
	if p := st.router.byName(pool); p != nil {
		a.Pool = p
	}
}

// Admit decides whether a's request may go upstream. A key already
// restricted is refused before it can take a place in a pool's queue that
// another key could use; then the request waits for a pool slot (ctx is the
// client's: a client that leaves, leaves the queue), then the ledger
// decides.
//
// ok means proceed: o is OK, or ShadowRestricted when only shadow mode let
// it through, and a holds a ticket (and a slot) until Finish or Charge.
// Otherwise o is Restricted, ConcurrencyLimited, QueueFull, QueueTimeout or
// AbortedInQueue, nothing is held, and Refusal renders the answer (none is
// due for AbortedInQueue: the client is gone). Count it with Finish or
// Count.
func (c *Core) Admit(ctx context.Context, a *Admission) (o Outcome, ok bool) {
	return c.admit(ctx, a, time.Time{})
}

// AdmitAt is Admit for a front-end that has just read the core's clock
// (Clock), as it does right before it hands a request upstream: now is
// that reading, and the request counts as in flight from it, unless it
// had to wait in its pool's queue (then from the core's own reading when
// it got the slot). The front-end may take now as the upstream's start.
func (c *Core) AdmitAt(ctx context.Context, a *Admission, now time.Time) (o Outcome, ok bool) {
	return c.admit(ctx, a, now)
}

// admit is Admit with now, a reading of the clock, or the zero Time: the
// ledger reads the clock itself.
func (c *Core) admit(ctx context.Context, a *Admission, now time.Time) (o Outcome, ok bool) {
	p := a.Pool
	if p.slots == nil {
		return c.decideAt(a, now)
	}
	if p.tryAcquire() {
		// A free slot: no place in the queue is taken, so the ledger's
		// own decision refuses a restricted key (one ledger step, not a
		// look first and then the decision).
		a.held = heldSlot
		return c.decide(a, now)
	}
	if !a.Limits.Shadow && (a.Limits.Budget > 0 || a.Limits.MaxInFlight > 0) {
		if d, restricted := c.ledger.Restricted(a.Key, a.Limits); restricted {
			// A key restricted by an outage's hung requests may be let
			// go once the pool answers again; with nothing but refusals
			// coming, only the window's passing tells.
			if now := c.clock.Now(); p.health.failing.Load() && !p.health.outage(now) {
				c.answeringAgain(p, now)
				d, restricted = c.ledger.Restricted(a.Key, a.Limits)
			}
			if restricted {
				a.Decision = d
				return Restricted, false
			}
		}
	}
	if err := p.acquire(ctx); err != nil {
		switch {
		case errors.Is(err, errQueueFull):
			return QueueFull, false
		case errors.Is(err, errQueueTimeout):
			return QueueTimeout, false
		}
		return AbortedInQueue, false
	}
	a.held = heldSlot
	return c.decide(a, time.Time{}) // after a wait in the queue, now is past
}

// Decide is Admit without the pool's limit and queue: the request is
// decided at once and only counted in its pool. It is for a front-end
// beside a server that holds the connections itself (the sidecar beside
// nginx, where limit_conn and upstream max_conns do a pool's job).
func (c *Core) Decide(a *Admission) (o Outcome, ok bool) { return c.decideAt(a, time.Time{}) }

// DecideAt is Decide for a front-end that has just read the core's clock:
// the request counts as in flight from now, and the core does not read the
// clock.
func (c *Core) DecideAt(a *Admission, now time.Time) (o Outcome, ok bool) { return c.decideAt(a, now) }

func (c *Core) decideAt(a *Admission, now time.Time) (Outcome, bool) {
	a.Pool.enter()
	a.held = heldCount
	return c.decide(a, now)
}

// decide asks the ledger as of now, or of its own reading when now is
// zero.
func (c *Core) decide(a *Admission, now time.Time) (Outcome, bool) {
	if h := &a.Pool.health; h.failing.Load() {
		t := now
		if t.IsZero() {
			t = c.clock.Now()
		}
		if !h.outage(t) {
			c.answeringAgain(a.Pool, t)
		}
	}
	var d budget.Decision
	var t budget.Ticket
	if now.IsZero() {
		d, t = c.ledger.Admit(a.Key, a.Limits)
	} else {
		d, t = c.ledger.AdmitAt(a.Key, a.Limits, now)
	}
	a.Decision, a.ticket = d, t
	if d.NewlyRestricted {
		c.restricted(a, &d)
	}
	if !d.Proceed() {
		c.leave(a)
		if d.Outcome == budget.TooManyInFlight {
			return ConcurrencyLimited, false
		}
		return Restricted, false
	}
	if d.Shadowed {
		return ShadowRestricted, true
	}
	return OK, true
}

// Finish ends a's request: Charge, then Count.
// A request that failed upstream while most of its pool's requests fail is
// not charged to its key's budget (the outage rule, outage.go).
func (c *Core) Finish(a *Admission, worker time.Duration, reached bool, o Outcome) {
	var now time.Time
	if reached {
		now = c.clock.Now()
	}
	c.finish(a, now, worker, reached, o)
}

// FinishAt is Finish for a front-end that has just read the core's clock
// (Clock), as it does when the upstream's answer ends: now is that
// reading, and the core does not read the clock again. The charge is as of
// now (its bucket, the key's usage, a restriction it starts).
func (c *Core) FinishAt(a *Admission, now time.Time, worker time.Duration, reached bool, o Outcome) {
	c.finish(a, now, worker, reached, o)
}

// finish is Finish with the clock read once: now is used when reached.
func (c *Core) finish(a *Admission, now time.Time, worker time.Duration, reached bool, o Outcome) {
	if reached && a.Pool != nil {
		h := &a.Pool.health
		h.record(now, o == UpstreamError)
		if o == UpstreamError {
			outage := h.outage(now)
			if outage && !h.failing.Load() {
				h.since.Store(now.UnixNano())
				h.failing.Store(true)
				c.log.Warn("upstream failing: most of the pool's requests fail, and those that fail are not charged to keys' budgets",
					"pool", a.Pool.name, "window", (outageWindow * time.Second).String())
			}
			if outage {
				a.Pool.m.uncharged.Add(worker.Seconds())
				c.Charge(a, 0, false)
				c.Count(a, o, worker, reached)
				return
			}
		} else if h.failing.Load() && !h.outage(now) {
			c.answeringAgain(a.Pool, now)
		}
	}
	c.charge(a, now, worker, reached)
	c.Count(a, o, worker, reached)
}

// Charge ends the request's in-flight accounting: with its worker time
// when it reached the upstream (handed upstream to the end of the
// upstream's answer, even if the client left), else without a charge. It
// frees the pool slot and logs a key the charge took over its budget. A
// second Charge does nothing.
func (c *Core) Charge(a *Admission, worker time.Duration, reached bool) {
	c.charge(a, time.Time{}, worker, reached)
}

// charge is Charge as of now, a reading of the clock; the zero now reads
// it.
func (c *Core) charge(a *Admission, now time.Time, worker time.Duration, reached bool) {
	if a.ticket.Valid() {
		var d budget.Decision
		switch {
		case !reached:
			c.ledger.Cancel(a.ticket)
		case now.IsZero():
			d = c.ledger.Finish(a.ticket, worker)
		default:
			d = c.ledger.FinishAt(a.ticket, worker, now)
		}
		if d.NewlyRestricted {
			c.restricted(a, &d)
		}
		a.ticket = budget.Ticket{}
	}
	c.leave(a)
}

// Cancel ends the request's in-flight accounting without a charge.
func (c *Core) Cancel(a *Admission) { c.Charge(a, 0, false) }

func (c *Core) leave(a *Admission) {
	switch a.held {
	case heldSlot:
		a.Pool.release()
	case heldCount:
		a.Pool.leave()
	}
	a.held = heldNone
}

// Count counts the request in the metrics under o, with its worker time
// when it reached the upstream.
func (c *Core) Count(a *Admission, o Outcome, worker time.Duration, reached bool) {
	if a.Pool == nil {
		return
	}
	pm := a.Pool.m
	pm.requests[o].Inc()
	if reached {
		t := worker.Seconds()
		if w := pm.workerSecs[o]; w != nil {
			w.Add(t)
		}
		pm.upstream.Observe(t)
	}
}

// ChargeDirect charges worker time for which no ticket was in flight (a
// sidecar's log line whose check it never saw, or that came after its
// ticket expired). The work was done whatever the key's state, so a
// restricted key is still charged.
func (c *Core) ChargeDirect(a *Admission, worker time.Duration) { c.ChargeN(a, 1, worker) }

// ChargeN is ChargeDirect for n requests of a's key and pool that took
// worker between them (a sidecar's log lines of one caller, summed): one
// ledger step for all of them.
func (c *Core) ChargeN(a *Admission, n int, worker time.Duration) {
	if d := c.ledger.Charge(a.Key, a.Limits, n, worker); d.NewlyRestricted {
		c.restricted(a, &d)
	}
}

// Field is one header field of an answer.
type Field struct{ Name, Value string }

// Refusal is the answer to a refused request, as data: a front-end writes
// Status, every Header field and Body in its own way (the proxy to its
// client; the sidecar hands them to nginx in its check answer).
type Refusal struct {
	Status int
	Header []Field // canonical names (http.Header keys)
	Body   []byte  // JSON, one line ending in "\n"
}

// Refusal renders the answer for a request Admit refused with o: 429 for
// the key (Restricted, ConcurrencyLimited) with Retry-After, the RateLimit
// fields and a JSON body saying why and until when; 503 for a full pool
// (QueueFull, QueueTimeout), without RateLimit fields since the upstream is
// busy, not the key at fault.
func (c *Core) Refusal(a *Admission, o Outcome) Refusal {
	now := c.clock.Now()
	switch o {
	case QueueFull:
		return unavailable(a.Pool, "pool_queue_full", "the "+a.Pool.name+" pool is at capacity and its queue is full")
	case QueueTimeout:
		return unavailable(a.Pool, "pool_queue_timeout", "the "+a.Pool.name+" pool stayed at capacity for "+a.Pool.timeout.String())
	}
	d, lim := &a.Decision, &a.Limits
	r := Refusal{Status: http.StatusTooManyRequests}
	body := map[string]any{"key": a.Key}
	var ra int64
	if o == ConcurrencyLimited {
		ra = 1
		body["error"] = "too_many_in_flight"
		body["message"] = "this key already has " + strconv.Itoa(d.InFlight) + " requests in flight, its limit is " +
			strconv.Itoa(lim.MaxInFlight) + "; wait for one to finish"
		body["in_flight"] = d.InFlight
		body["max_in_flight"] = lim.MaxInFlight
		body["retry_after_seconds"] = 1
	} else {
		ra = 1
		if !d.RestrictedUntil.IsZero() {
			ra = retryAfter(d.RestrictedUntil, now)
			body["restricted_until"] = d.RestrictedUntil.UTC().Format(time.RFC3339)
		}
		body["error"] = "worker_time_budget_exceeded"
		body["message"] = "this key used " + strconv.FormatFloat(d.Used.Seconds(), 'f', 1, 64) +
			" s of upstream worker time in the last " + lim.Window.String() + " (budget " +
			strconv.FormatFloat(lim.Budget.Seconds(), 'f', 1, 64) + " s) and is restricted until " +
			d.RestrictedUntil.UTC().Format(time.RFC3339)
		if d.Fleet {
			// Not restricted: this proxy's slice of the fleet's budget is
			// spent until its next lease (budget.Decision.Fleet).
			body["message"] = "this key's budget (" + strconv.FormatFloat(lim.Budget.Seconds(), 'f', 1, 64) +
				" s of upstream worker time per " + lim.Window.String() + ") is shared by a fleet of proxies and this proxy's share of it is spent for now; retry after " +
				d.RestrictedUntil.UTC().Format(time.RFC3339)
			body["fleet_share_spent"] = true
		}
		body["used_seconds"] = round3(d.Used.Seconds())
		body["budget_seconds"] = lim.Budget.Seconds()
		body["window_seconds"] = lim.Window.Seconds()
		body["retry_after_seconds"] = ra
	}
	r.Header = jsonFields(5)
	r.Header = append(r.Header, Field{"Retry-After", strconv.FormatInt(ra, 10)})
	var arr [512]byte
	if b, split := appendRateLimit(arr[:0], a.Key, lim, d, now); len(b) > 0 {
		s := string(b)
		r.Header = append(r.Header, Field{"Ratelimit-Policy", s[:split]}, Field{"Ratelimit", s[split:]})
	}
	r.Body = jsonLine(body)
	return r
}

// unavailable answers 503 when a pool is full.
func unavailable(p *Pool, code, msg string) Refusal {
	ra := int64(1)
	if p.timeout > time.Second {
		ra = int64(p.timeout / time.Second)
	}
	h := append(jsonFields(3), Field{"Retry-After", strconv.FormatInt(ra, 10)})
	return Refusal{Status: http.StatusServiceUnavailable, Header: h, Body: jsonLine(map[string]any{
		"error": code, "message": msg + "; retry shortly", "pool": p.name, "retry_after_seconds": ra,
	})}
}

// jsonFields starts an answer's fields with those of a JSON error body
// that no cache may keep.
func jsonFields(n int) []Field {
	return append(make([]Field, 0, n), Field{"Content-Type", "application/json"}, Field{"Cache-Control", "no-store"})
}

// jsonLine is v as json.Encoder writes it: one line, HTML-escaped, "\n".
func jsonLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings and numbers get here.
		panic("admit: marshal a refusal body: " + err.Error())
	}
	return append(b, '\n')
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
