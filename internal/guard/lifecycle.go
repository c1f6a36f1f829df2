package guard

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// What Run (the proxy) and RunSidecar share around their own listeners:
// the ledger restored from the store, the admin API, reloads, the store's
// sync loop or snapshot ticker, and the last save at shutdown.

// openGuard builds the ledger, restores it from snaps (a failure is
// logged and the guard starts empty: better unprotected usage than no
// protection at all) and wires the store's health and metrics into the
// guard's admin API.
func openGuard(cfg *config.Config, clock budget.Clock, lg *slog.Logger, snaps Snapshotter) (*Guard, *budget.Ledger, error) {
	if clock == nil {
		clock = budget.SystemClock{}
	}
	ledger := budget.New(budget.Options{Clock: clock})
	if snaps != nil {
		if err := snaps.Restore(ledger); err != nil {
			lg.Error("restore usage from the store; starting with empty usage", "store", cfg.Store.Type, "err", err)
		} else if n := ledger.Len(); n > 0 && cfg.Store.Type == "redis" {
			lg.Info("restrictions pulled from the redis store", "keys", n)
		} else if n > 0 {
			lg.Info("usage restored from snapshot", "keys", n, "path", cfg.Store.Snapshot)
		}
	}
	g, err := New(Options{Config: cfg, Ledger: ledger, Clock: clock, Logger: lg})
	if err != nil {
		return nil, nil, err
	}
	if h, ok := snaps.(StoreHealth); ok {
		g.storeHealth = h
	}
	if c, ok := snaps.(prometheus.Collector); ok {
		if err := g.core.Registry().Register(c); err != nil {
			g.Close()
			return nil, nil, fmt.Errorf("register store metrics: %w", err)
		}
	}
	return g, ledger, nil
}

// frontServer is the server for the guard's front door: the proxy's
// clients, or the sidecar's nginx. Header reads are bounded (slowloris);
// bodies are bounded by the handler (timeouts.body), responses by the
// upstream's timeouts.
func frontServer(h http.Handler, cfg *config.Config, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          errLog,
	}
}

// serveAdmin opens the admin API (unless it is "off") and serves it,
// reporting a failure on errc. It returns the server (nil when off) and
// its address.
func serveAdmin(g *Guard, cfg *config.Config, errLog *log.Logger, errc chan<- error) (*http.Server, net.Addr, error) {
	if cfg.Admin.Listen == "off" {
		return nil, nil, nil
	}
	al, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen for the admin API (admin %s): %w", cfg.Admin.Listen, err)
	}
	srv := &http.Server{
		Handler:           g.Admin(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		ErrorLog:          errLog,
	}
	go func() { errc <- srv.Serve(al) }()
	return srv, al.Addr(), nil
}

// stopAdmin gives the admin API a moment to finish its answers.
func stopAdmin(srv *http.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// reloadFrom applies the configuration load returns; a bad one is refused,
// counted and logged, and the running configuration kept.
func (g *Guard) reloadFrom(load func() (*config.Config, error), lg *slog.Logger) {
	if load == nil {
		return
	}
	next, err := load()
	if err != nil {
		g.core.ReloadRefused()
		lg.Error("reload refused; keeping the running configuration", "err", err)
		return
	}
	if err := g.Reload(next); err != nil {
		lg.Error("reload refused", "err", err)
	}
}

// persistence keeps the ledger in the store while the guard runs: a
// Syncer (the Redis fleet store) syncs in its own loop; any other store is
// saved on every tick of Tick.
type persistence struct {
	snaps  Snapshotter
	ledger *budget.Ledger
	Tick   <-chan time.Time // nil with a Syncer or no store
	stop   func()
}

func persist(snaps Snapshotter, ledger *budget.Ledger, every time.Duration) *persistence {
	p := &persistence{snaps: snaps, ledger: ledger, stop: func() {}}
	if s, ok := snaps.(Syncer); ok {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Sync(ctx, ledger)
		}()
		p.stop = func() { cancel(); <-done }
	} else if snaps != nil {
		t := time.NewTicker(every)
		p.Tick = t.C
		p.stop = t.Stop
	}
	return p
}

// save is a periodic save on Tick.
func (p *persistence) save(lg *slog.Logger) {
	if err := p.snaps.Save(p.ledger); err != nil {
		lg.Error("save usage snapshot", "err", err)
	}
}

// close stops the loop and writes what the ledger holds one last time
// (the usage of the requests just drained). A failed last save is
// returned: the caller's exit status should say the usage may be lost.
func (p *persistence) close(cfg *config.Config, lg *slog.Logger) error {
	p.stop()
	p.stop = func() {}
	if p.snaps == nil {
		return nil
	}
	if err := p.snaps.Save(p.ledger); err != nil {
		lg.Error("save usage snapshot at shutdown", "err", err)
		return fmt.Errorf("save usage snapshot: %w", err)
	}
	if cfg.Store.Type == "redis" {
		lg.Info("last usage pushed to the redis store", "keys", p.ledger.Len())
	} else {
		lg.Info("usage snapshot written", "path", cfg.Store.Snapshot, "keys", p.ledger.Len())
	}
	return nil
}
