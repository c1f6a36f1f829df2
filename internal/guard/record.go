package guard

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// StatusClientClosed is nginx's non-standard status for a client that
// closed the connection before the response was sent; the access log uses
// it so `headroom logs analyze` and other nginx tooling understand it.
const StatusClientClosed = 499

// record counts the request in the metrics and writes its access log line.
// A client that left early is logged with 499 at the moment it left, next
// to the upstream's real status and time: both truths (seeds/03).
func (g *Guard) record(st *state, rw *responseWriter, r *http.Request, ex *exchange, client netip.Addr, o outcome) {
	end := g.clock.Now()
	status, sent := rw.status, rw.bytes
	if status == 0 && ex.upStatus == http.StatusSwitchingProtocols {
		// ReverseProxy writes a 101 straight to the hijacked connection.
		status = http.StatusSwitchingProtocols
	}
	ex.mu.Lock()
	gone := ex.goneAt
	ex.mu.Unlock()
	if o == outcomeBodyTimeout || o == outcomeBodyTooLarge {
		// Answered (408, 413); a read past the deadline also cancels the
		// request's context, which is not the client leaving.
		gone = time.Time{}
	} else if gone.IsZero() && (r.Context().Err() != nil || o == outcomeAbortedInQueue || o == outcomeBodyIncomplete) {
		// The client left, but the AfterFunc noting when has not run yet.
		gone = end
	}
	if !gone.IsZero() && !gone.After(end) {
		status, end = StatusClientClosed, gone
		if ex.respAt.IsZero() || gone.Before(ex.respAt) {
			// Gone before there was anything to send: whatever was
			// written went into a dead connection's buffer.
			sent = 0
		}
		if o == outcomeOK || o == outcomeShadowRestricted {
			o = outcomeClientAbort
		}
	}
	var upTime float64
	pm := ex.pool.m
	pm.requests[o].Inc()
	if !ex.upStart.IsZero() && !ex.upEnd.IsZero() {
		upTime = ex.upEnd.Sub(ex.upStart).Seconds()
		if c := pm.workerSecs[o]; c != nil {
			c.Add(upTime)
		}
		pm.upstream.Observe(upTime)
	}
	if g.alog == nil {
		return
	}
	e := entry{
		Record: accesslog.Record{
			Time:            end,
			Key:             ex.key,
			Method:          r.Method,
			Path:            redactQuery(r.RequestURI, st.keys.redact),
			Proto:           r.Proto,
			Host:            r.Host,
			Status:          status,
			BytesSent:       sent,
			RequestTime:     end.Sub(ex.start),
			UpstreamStatus:  ex.upStatus,
			HasUpstreamTime: !ex.upStart.IsZero(),
			Referer:         r.Referer(),
			UserAgent:       r.UserAgent(),
			Pool:            ex.pool.name,
		},
		Outcome: o,
	}
	e.setClient(client)
	if e.HasUpstreamTime {
		e.UpstreamTime = ex.upEnd.Sub(ex.upStart)
	}
	bp := lineBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	if st.json {
		b = appendJSON(b, &e)
	} else {
		b = appendHeadroom(b, &e)
	}
	if err := g.alog.write(b); err != nil {
		g.log.Error("write access log", "err", err)
	}
	*bp = b
	lineBuffers.Put(bp)
}

func writeJSONError(w http.ResponseWriter, status int, body map[string]any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
