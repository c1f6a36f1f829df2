package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/adminui"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/buildinfo"
)

// The admin API is the admin page's Source (internal/adminui): the page at
// "/" and GET /v1/overview on the admin address, for the proxy and the
// sidecar.
var _ adminui.Source = (*api)(nil)

// Snapshot implements adminui.Source: the top keys by usage, the restricted
// keys, the pools' occupancy and the store's state, at most top keys in
// each list (the ledger's bounded selection: no list of every key).
func (g *api) Snapshot(top int) adminui.Snapshot {
	cfg := g.core.Config()
	led := g.core.Ledger()
	s := adminui.Snapshot{
		Role:        g.role,
		Version:     buildinfo.Read().Version,
		Started:     g.started,
		Shadow:      cfg.Shadow,
		KeysTracked: led.Len(),
		Store:       adminui.Store{Type: "memory", State: "memory"},
	}
	sidecar := g.role == "sidecar"
	for _, ks := range led.Top(top, g.core.Limits) {
		s.Top = append(s.Top, g.uiKey(ks))
	}
	var restricted []budget.KeyStatus
	restricted, s.RestrictedTotal = led.TopRestricted(top, g.core.Limits)
	for _, ks := range restricted {
		s.Restricted = append(s.Restricted, g.uiKey(ks))
	}
	for _, p := range g.core.Pools() {
		row := adminui.Pool{Name: p.Name(), InFlight: p.Active(), Queued: p.Waiting()}
		if !sidecar {
			// The sidecar sorts requests into pools for the metrics; nginx
			// enforces their concurrency, not the sidecar.
			row.MaxConcurrent, row.QueueMax = p.MaxConcurrent(), p.QueueMax()
		}
		s.Pools = append(s.Pools, row)
	}
	if g.health != nil {
		up, detail := g.health.Health()
		s.Store = adminui.Store{Type: cfg.Store.Type, State: "up", Detail: detail}
		if !up {
			s.Store.State = "degraded"
		}
	}
	return s
}

// Gatherer implements adminui.Source: the registry /metrics serves.
func (g *api) Gatherer() prometheus.Gatherer { return g.core.Registry() }

func (g *api) uiKey(ks budget.KeyStatus) adminui.Key {
	lim := g.core.Limits(ks.Key)
	k := adminui.Key{
		Key:           ks.Key,
		Label:         g.core.Label(ks.Key),
		Tier:          g.core.Tier(ks.Key),
		WorkerSeconds: round3(ks.WorkerSeconds),
		BudgetSeconds: lim.Budget.Seconds(),
		WindowSeconds: lim.Window.Seconds(),
		InFlight:      ks.InFlight,
		MaxInFlight:   lim.MaxInFlight,
		Requests:      ks.Requests,
		Shadow:        lim.Shadow,
	}
	if !ks.RestrictedUntil.IsZero() {
		u := ks.RestrictedUntil.UTC().Truncate(time.Second)
		k.RestrictedUntil = &u
	}
	return k
}
