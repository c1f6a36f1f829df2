package guard

import (
	"context"
	"log"
	"net"
	"net/netip"
	"net/url"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/evproxy"
	"github.com/headroom-dev/headroom/internal/fastproxy"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/lifecycle"
)

// Frontend is the server that takes the proxy's clients: an *http.Server
// over the Guard (ServeHTTP), or the fast HTTP/1.1 path
// (internal/fastproxy) with that same http.Server behind it for what the
// fast path hands off.
type Frontend interface {
	Serve(l net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// NewFrontend returns the front server for cfg: the fast path (the
// event loop over it with cfg.EventLoop, where there is epoll), unless
// cfg.NetHTTP is set or the upstream is not a plain http:// URL without a
// base path (the fast path forwards targets as they are and speaks no
// TLS); then net/http.
func (g *Guard) NewFrontend(cfg *config.Config, errLog *log.Logger) (Frontend, error) {
	std := lifecycle.FrontServer(g, cfg, errLog)
	framed := &framedServer{Server: std, maxHead: cfg.MaxHeaderBytes, log: g.log,
		send: cfg.Timeouts.ClientSend.D(), sendTimedOut: g.sendTimedOut}
	if cfg.NetHTTP {
		return framed, nil
	}
	addr, ok := fastUpstream(cfg.Upstream)
	if !ok {
		g.log.Info("serving with net/http: the fast path takes an http:// upstream without a base path", "upstream", cfg.Upstream)
		return framed, nil
	}
	o := fastproxy.Options{
		Core:         g.core,
		Upstream:     addr,
		Log:          g.logRecord,
		Logger:       g.log,
		Fallback:     std,
		MaxHeadBytes: cfg.MaxHeaderBytes,
		SendTimedOut: g.sendTimedOut,
	}
	if cfg.EventLoop {
		ev, err := evproxy.New(evproxy.Options{Options: o})
		if err == nil {
			return ev, nil
		}
		g.log.Warn("serving with the fast path: no event loop", "err", err)
	}
	return fastproxy.New(o)
}

func fastUpstream(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), true
	}
	return u.Host, true
}

// logRecord writes the access-log line of a request the fast path served,
// in the format configured now.
func (g *Guard) logRecord(rec *accesslog.Record, client netip.Addr, o admit.Outcome, requestID string) {
	if g.alog == nil {
		return
	}
	bp := lineBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	if g.front.Load().json {
		b = accesslog.AppendJSONRecord(b, rec, client, o.String(), requestID)
	} else {
		b = accesslog.AppendHeadroomRecord(b, rec, client)
	}
	if err := g.alog.Write(b); err != nil {
		g.log.Error("write access log", "err", err)
	}
	*bp = b
	lineBuffers.Put(bp)
}
