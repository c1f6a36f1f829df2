package guard

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
)

var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// record counts the request in the metrics and writes its access log line.
// A client that left early is logged with 499 at the moment it left, next
// to the upstream's real status and time: both truths (seeds/03).
func (g *Guard) record(fr *front, rw *responseWriter, r *http.Request, ex *exchange, o admit.Outcome) {
	now := g.clock.Now()
	end := now
	if !ex.upStart.IsZero() && ex.upEnd.IsZero() { // a panic mid-copy: still charge what the upstream did
		ex.upEnd = end
	}
	status, sent := rw.status, rw.bytes
	if status == 0 && ex.upStatus == http.StatusSwitchingProtocols {
		// ReverseProxy writes a 101 straight to the hijacked connection.
		status = http.StatusSwitchingProtocols
	}
	upStatus := ex.upStatus
	if ex.upBroken != nil {
		// The client got a status line and part of a body, then a cut
		// connection: log and count what it was, an upstream failure, as
		// nginx's $upstream_status says 502 for an upstream that fails.
		status = http.StatusBadGateway
		var ne net.Error
		if errors.Is(ex.upBroken, context.DeadlineExceeded) || errors.As(ex.upBroken, &ne) && ne.Timeout() {
			status = http.StatusGatewayTimeout
		}
		upStatus, o = status, admit.UpstreamError
		g.log.Error("upstream response broken off", "upstream", ex.adm.Config().Upstream, "status", ex.upStatus,
			"bytes", sent, "method", r.Method, "path", r.URL.Path, "key", ex.adm.Key, "err", ex.upBroken)
	}
	ex.mu.Lock()
	gone := ex.goneAt
	ex.mu.Unlock()
	if o == admit.BodyTimeout || o == admit.BodyTooLarge {
		// Answered (408, 413); a read past the deadline also cancels the
		// request's context, which is not the client leaving.
		gone = time.Time{}
	} else if gone.IsZero() && (r.Context().Err() != nil || o == admit.AbortedInQueue || o == admit.BodyIncomplete) {
		// The client left, but the AfterFunc noting when has not run yet.
		gone = end
	}
	if !gone.IsZero() && !gone.After(end) {
		status, end = accesslog.StatusClientClosed, gone
		if ex.respAt.IsZero() || gone.Before(ex.respAt) {
			// Gone before there was anything to send: whatever was
			// written went into a dead connection's buffer.
			sent = 0
		}
		if o == admit.OK || o == admit.ShadowRestricted {
			o = admit.ClientAbort
		}
	}
	reached := !ex.upStart.IsZero()
	g.core.FinishAt(&ex.adm, now, ex.upEnd.Sub(ex.upStart), reached, o)
	if g.alog == nil {
		return
	}
	e := accesslog.Entry{
		Record: accesslog.Record{
			Time:            end,
			Key:             ex.adm.Key,
			Method:          r.Method,
			Path:            ex.adm.RedactQuery(r.RequestURI),
			Proto:           r.Proto,
			Host:            r.Host,
			Status:          status,
			BytesSent:       sent,
			RequestTime:     end.Sub(ex.adm.Start),
			UpstreamStatus:  upStatus,
			HasUpstreamTime: !ex.upStart.IsZero(),
			Referer:         r.Referer(),
			UserAgent:       r.UserAgent(),
			Pool:            ex.adm.Pool.Name(),
		},
		Outcome:   o.String(),
		RequestID: ex.rid[0],
	}
	e.SetClient(ex.adm.Client)
	if e.HasUpstreamTime {
		e.UpstreamTime = ex.upEnd.Sub(ex.upStart)
	}
	bp := lineBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	if fr.json {
		b = accesslog.AppendJSON(b, &e)
	} else {
		b = accesslog.AppendHeadroom(b, &e)
	}
	if err := g.alog.Write(b); err != nil {
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
