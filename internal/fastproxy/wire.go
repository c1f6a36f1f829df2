package fastproxy

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/httpwire"
	"github.com/headroom-dev/headroom/internal/requestid"
)

// The wire format of the guard's HTTP/1.1 front-ends, as append-style
// functions over a parsed head: the fast path (this package) and the
// event loop (internal/evproxy) write every head with them, so that a
// request and its answer read the same byte for byte whichever served
// them.

// Forward is what AppendRequestHead needs beside the request itself.
type Forward struct {
	Upstream  string     // the upstream's host:port: the Host of a request without one
	Trusted   bool       // the peer is a trusted proxy: its X-Forwarded-For chain is kept
	Peer      netip.Addr // the connection's peer
	Client    netip.Addr // the client the guard resolved (X-Real-Ip), if valid
	RequestID []byte     // the request's X-Request-Id
}

// Body framing for AppendRequestHead besides a length (>= 0).
const (
	NoBody      int64 = -1 // the request has no body: no framing field
	ChunkedBody int64 = -2 // Transfer-Encoding: chunked
)

// AppendRequestHead appends r's head as it goes upstream: the target as
// sent, HTTP/1.1, hop-by-hop fields and the fields the proxy writes
// itself removed, X-Forwarded-For (the trusted chain, then the peer),
// X-Forwarded-Host/Proto, X-Real-Ip, exactly one X-Request-Id, and the
// body's framing (a length, NoBody or ChunkedBody).
func AppendRequestHead(b []byte, r *httpwire.Request, f *Forward, length int64) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.Target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if len(r.Host) > 0 {
		b = append(b, r.Host...)
	} else {
		b = append(b, f.Upstream...)
	}
	b = append(b, "\r\n"...)
	for i := range r.Fields {
		fl := &r.Fields[i]
		if r.IsHopByHop(fl.Name) || skipForward(fl.Name) {
			continue
		}
		b = append(b, fl.Name...)
		b = append(b, ": "...)
		b = append(b, fl.Value...)
		b = append(b, "\r\n"...)
	}
	// As httputil.ProxyRequest.SetXForwarded: the trusted chain so far
	// (only from a trusted proxy), then the peer.
	b = append(b, "X-Forwarded-For: "...)
	if f.Trusted {
		for i := range r.Fields {
			if fl := &r.Fields[i]; httpwire.EqualFold(fl.Name, "x-forwarded-for") {
				b = append(b, fl.Value...)
				b = append(b, ", "...)
			}
		}
	}
	if f.Peer.IsValid() {
		b = f.Peer.AppendTo(b)
	}
	b = append(b, "\r\n"...)
	if len(r.Host) > 0 {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, r.Host...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Proto: http\r\n"...)
	// X-Real-Ip as the net/http path writes it: the client the guard
	// resolved, never a client's own claim (issue 17).
	if f.Client.IsValid() {
		b = append(b, "X-Real-Ip: "...)
		b = f.Client.AppendTo(b)
		b = append(b, "\r\n"...)
	}
	// Exactly one X-Request-Id: the trusted proxy's, or the proxy's own
	// (RequestID); the client's fields of that name were skipped.
	b = appendRequestID(b, f.RequestID)
	switch {
	case length == NoBody:
	case length == ChunkedBody:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	default:
		b = appendLength(b, length)
	}
	return append(b, "\r\n"...)
}

// RequestID is r's X-Request-Id: the client's own (a view of r) when it
// is a trusted proxy that sent exactly one well-formed id, otherwise a new
// one appended to buf[:0].
func RequestID(r *httpwire.Request, trusted bool, buf []byte) []byte {
	if trusted {
		var id []byte
		n := 0
		for i := range r.Fields {
			if f := &r.Fields[i]; isRequestID(f.Name) {
				id = f.Value
				n++
			}
		}
		if n == 1 && requestid.Valid(id) {
			return id
		}
	}
	return requestid.Append(buf[:0])
}

func isRequestID(name []byte) bool { return httpwire.EqualFold(name, "x-request-id") }

func appendRequestID(b, rid []byte) []byte {
	b = append(b, "X-Request-Id: "...)
	b = append(b, rid...)
	return append(b, "\r\n"...)
}

// AppendResponseHead appends the head of the upstream's answer resp to
// r as the client gets it: hop-by-hop fields and the upstream's
// RateLimit and X-Request-Id removed, Date if it had none, the key's
// RateLimit fields, the request's X-Request-Id, the body re-framed for the
// client. chunkOut says the body goes to the client chunked (a chunked or
// close-delimited body to an HTTP/1.1 client); keep comes back false when
// the connection must close after it (such a body to an HTTP/1.0 client).
func AppendResponseHead(b []byte, r *httpwire.Request, resp *httpwire.Response, adm *admit.Admission, rid []byte, keep bool) (out []byte, chunkOut, keepOut bool) {
	kind := resp.Body(isHead(r.Method))
	b = appendStatusLine(b, resp.Status, resp.Reason)
	if !resp.Has("date") {
		b = append(b, dateField()...)
	}
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if resp.IsHopByHop(f.Name) || skipResponse(f.Name) {
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	var rlBuf [512]byte
	if rl, split := adm.AppendRateLimit(rlBuf[:0], adm.Start); len(rl) > 0 {
		b = append(b, "Ratelimit-Policy: "...)
		b = append(b, rl[:split]...)
		b = append(b, "\r\nRatelimit: "...)
		b = append(b, rl[split:]...)
		b = append(b, "\r\n"...)
	}
	b = appendRequestID(b, rid)
	switch kind {
	case httpwire.LengthBody:
		b = appendLength(b, resp.ContentLength)
	case httpwire.ChunkedBody, httpwire.CloseBody:
		if r.Minor == 1 {
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
			chunkOut = true
		} else {
			keep = false
		}
	case httpwire.NoBody:
		if resp.ContentLength >= 0 && resp.Status >= 200 && resp.Status != 204 {
			b = appendLength(b, resp.ContentLength) // HEAD, 304: the length of what a GET would get
		}
	}
	b = appendConnection(b, r, keep)
	return append(b, "\r\n"...), chunkOut, keep
}

// AppendAnswer appends an answer the proxy makes itself (a refusal, an
// upstream failure, a body fault) to r: the status line, fields in
// net/http's order (sorted, then Date and Content-Length) with the
// request's X-Request-Id among them when rid is not empty, the Connection
// field keep asks for, then body.
func AppendAnswer(b []byte, r *httpwire.Request, status int, fields []admit.Field, body, rid []byte, keep bool) []byte {
	b = appendStatusLine(b, status, nil)
	sorted := fields
	if !slices.IsSortedFunc(fields, compareFields) {
		sorted = slices.SortedFunc(slices.Values(fields), compareFields)
	}
	id := len(rid) > 0
	for _, f := range sorted {
		if id && f.Name > requestid.Header {
			b, id = appendRequestID(b, rid), false
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if id {
		b = appendRequestID(b, rid)
	}
	b = appendConnection(b, r, keep)
	b = append(b, dateField()...)
	b = appendLength(b, int64(len(body)))
	b = append(b, "\r\n"...)
	return append(b, body...)
}

func compareFields(a, b admit.Field) int { return strings.Compare(a.Name, b.Name) }

// AppendMalformed appends the answer to a request the parser refused
// with status (400, 431, 501, 505), after which the connection closes
// (RFC 9112 §9.6 lets nothing after a framing error be trusted). rid, if
// not empty, names a request that was parsed, admitted and logged.
func AppendMalformed(b []byte, status int, rid []byte) []byte {
	text := statusText[status]
	if text == "" {
		status, text = 400, statusText[400]
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\n"...)
	if len(rid) > 0 {
		b = appendRequestID(b, rid)
	}
	b = append(b, "Connection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(text)+5), 10)
	b = append(b, "\r\n\r\n"...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	return append(b, '\n')
}

// UpstreamFailure is the answer for an upstream that could not be
// reached (502), did not answer in time (504, for a timeout error) or
// answered with a malformed message (502), and the reason for the log.
func UpstreamFailure(err error, timeout bool) (status int, body []byte, msg string) {
	status, msg = 502, "the upstream could not be reached"
	switch {
	case timeout:
		status, msg = 504, "the upstream did not answer in time"
	case errors.Is(err, httpwire.ErrMalformed):
		msg = "the upstream sent a malformed response"
	}
	return status, JSONBody(map[string]any{"error": "upstream_unavailable", "message": msg}), msg
}

// JSONBody is v as the proxy's JSON answers carry it: one line.
func JSONBody(v any) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// JSONFields are the fields of the proxy's own JSON answers.
var JSONFields = []admit.Field{{Name: "Cache-Control", Value: "no-store"}, {Name: "Content-Type", Value: "application/json"}}

// Ending is a request's story as it ends, for Finish.
type Ending struct {
	Adm       *admit.Admission
	Req       *httpwire.Request
	RequestID []byte
	// UpStart and UpEnd bound the upstream's part (zero: it was not
	// reached); RespAt is when its answer's head came.
	UpStart, UpEnd, RespAt time.Time
	// End is when the request ended; Gone when the client left, if it
	// did (zero otherwise).
	End, Gone time.Time
	UpStatus  int   // the upstream's status
	Status    int   // what the client was answered
	Sent      int64 // body bytes written to the client
}

// Finish charges and counts the request e, and gives its access-log
// record to log (if not nil): a client that left is logged 499 at the
// moment it left, next to the upstream's real status and time (seeds/03).
func Finish(core *admit.Core, log func(*accesslog.Record, netip.Addr, admit.Outcome, string), e *Ending, o admit.Outcome) {
	end, status, sent, gone := e.End, e.Status, e.Sent, e.Gone
	if !gone.IsZero() && !gone.After(end) {
		status, end = StatusClientClosed, gone
		if e.RespAt.IsZero() || gone.Before(e.RespAt) {
			sent = 0
		}
		if o == admit.OK || o == admit.ShadowRestricted {
			o = admit.ClientAbort
		}
	}
	reached := !e.UpStart.IsZero()
	core.Finish(e.Adm, e.UpEnd.Sub(e.UpStart), reached, o)
	if log == nil {
		return
	}
	r := e.Req
	proto := "HTTP/1.1"
	if r.Minor == 0 {
		proto = "HTTP/1.0"
	}
	// rec is only valid during the call (Options.Log): views of the
	// head's bytes.
	rec := accesslog.Record{
		Time:            end,
		Key:             e.Adm.Key,
		Method:          view(r.Method),
		Path:            e.Adm.RedactQuery(view(r.Target)),
		Proto:           proto,
		Host:            view(r.Host),
		Status:          status,
		BytesSent:       sent,
		RequestTime:     end.Sub(e.Adm.Start),
		UpstreamStatus:  e.UpStatus,
		HasUpstreamTime: reached,
		Referer:         view(r.Get("referer")),
		UserAgent:       view(r.Get("user-agent")),
		Pool:            e.Adm.Pool.Name(),
	}
	if reached {
		rec.UpstreamTime = e.UpEnd.Sub(e.UpStart)
	}
	log(&rec, e.Adm.Client, o, view(e.RequestID))
}

// DecodePath is the target's path as net/http decodes it (the core routes
// pools by path prefix: "/%61pi/" must land in the same pool as "/api/");
// false for an escape that does not decode.
func DecodePath(raw []byte) (string, bool) { return decodePath(raw) }

// HeaderView gives the core r's fields (admit.Header) as views of the
// head's bytes.
func HeaderView(r *httpwire.Request) admit.Header { return headerView{r} }

// View is b as a string without a copy, valid while b is.
func View(b []byte) string { return view(b) }

// Idempotent reports a method a stale keep-alive connection's failure
// lets the proxy send again.
func Idempotent(m []byte) bool { return idempotent(m) }

// SlackFor is the lateness allowed on a timeout of d.
func SlackFor(d time.Duration) time.Duration { return slackFor(d) }

// WatchAfter is how long the upstream may take to start answering before
// the proxy watches for the client leaving meanwhile.
const WatchAfter = watchAfter
