package guard

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/connlimit"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// connLogEvery spaces the log lines of refused connections: a flood of
// them is one line per interval with the count, not one line each.
const connLogEvery = 10 * time.Second

// limitConnections wraps the proxy's listener with the connections caps
// of cfg (issue 17), counted in headroom_connections_open and
// headroom_connections_refused_total{reason} and logged when they bite.
func (g *Guard) limitConnections(l net.Listener, cfg *config.Config) net.Listener {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headroom_connections_refused_total",
		Help: "Client connections refused with 503 for going over connections.max (reason total) or connections.per_client (per_client).",
	}, []string{"reason"})
	var cl *connlimit.Listener
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "headroom_connections_open",
		Help: "Client connections open now.",
	}, func() float64 { return float64(cl.Open()) })
	g.core.Registry().MustRegister(refused, open)

	var mu sync.Mutex
	last := map[connlimit.Reason]time.Time{}
	since := map[connlimit.Reason]int{}
	c := cfg.Connections
	cl = connlimit.New(l, connlimit.Options{
		Max: c.Max, PerClient: c.PerClient, Exempt: g.core.TrustedPeer,
		Refused: func(r connlimit.Reason, client netip.Addr, n int) {
			refused.WithLabelValues(string(r)).Inc()
			mu.Lock()
			since[r]++
			now := time.Now()
			if now.Sub(last[r]) < connLogEvery {
				mu.Unlock()
				return
			}
			count := since[r]
			last[r], since[r] = now, 0
			mu.Unlock()
			if r == connlimit.Total {
				g.log.Warn("connection refused: the proxy holds connections.max client connections",
					"max", c.Max, "open", n, "client", client.String(), "refused", count, "in", connLogEvery.String())
			} else {
				g.log.Warn("connection refused: this client holds connections.per_client connections",
					"per_client", c.PerClient, "open", n, "client", client.String(), "refused", count, "in", connLogEvery.String())
			}
		},
	})
	return cl
}
