package guard

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// Snapshotter keeps the ledger across restarts; internal/store's file
// store is the one `headroom proxy` uses.
type Snapshotter interface {
	// Restore loads the last snapshot into l. A missing snapshot is not an
	// error.
	Restore(l *budget.Ledger) error
	// Save writes l's state durably.
	Save(l *budget.Ledger) error
}

// Syncer is a store that keeps the ledger in step with other proxies while
// this one runs (internal/store's Redis fleet store). Run starts Sync in its
// own goroutine after Restore, instead of calling Save periodically, and
// stops it (cancelling ctx) before the final Save. Sync must never block
// requests: they only ever touch the ledger.
type Syncer interface {
	Sync(ctx context.Context, l *budget.Ledger)
}

// StoreHealth is a store that can be unreachable (Redis): /healthz shows
// its state. The proxy stays healthy while its store is down: it enforces
// budgets with its local view.
type StoreHealth interface {
	Health() (up bool, detail any)
}

// ServerOptions configures Run. Only Config is required.
type ServerOptions struct {
	// Config is the validated starting configuration.
	Config *config.Config

	// LoadConfig produces the configuration to switch to when a reload is
	// requested (the CLI re-reads the file and re-applies its flags). If
	// nil, reload requests only reopen the access log.
	LoadConfig func() (*config.Config, error)

	// Reload delivers reload requests (SIGHUP): reload the configuration
	// and reopen the access log. Nil: never.
	Reload <-chan struct{}
	// Reopen delivers reopen requests (SIGUSR1): reopen the access log
	// only. Nil: never.
	Reopen <-chan struct{}

	// Snapshots restores the ledger at start and saves it every
	// Config.Store.SnapshotInterval and at shutdown. Nil: usage is kept in
	// memory only. If it is also a Syncer, it syncs instead of periodic
	// saves; a StoreHealth shows in /healthz; a prometheus.Collector is
	// served at /metrics.
	Snapshots Snapshotter

	// Logger receives operational messages. Nil: slog.Default().
	Logger *slog.Logger
	// Clock is the ledger's clock. Nil: budget.SystemClock.
	Clock budget.Clock

	// Ready, if set, is called once both listeners are open, with their
	// addresses (admin is nil when the admin API is off). Tests listen on
	// port 0 and learn the ports here.
	Ready func(proxy, admin net.Addr)
}

// Run serves the proxy and the admin API until ctx is cancelled (SIGTERM,
// SIGINT), then stops accepting, drains requests in flight for up to
// timeouts.shutdown, and writes a last snapshot.
func Run(ctx context.Context, o ServerOptions) error {
	cfg := o.Config
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	g, ledger, err := openGuard(cfg, o.Clock, lg, o.Snapshots)
	if err != nil {
		return err
	}
	defer g.Close()

	pl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen for clients (listen %s): %w", cfg.Listen, err)
	}
	errLog := log.New(slogWriter{lg}, "", 0)
	proxySrv, err := g.NewFrontend(cfg, errLog)
	if err != nil {
		pl.Close()
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	adminSrv, adminAddr, err := serveAdmin(g, cfg, errLog, errc)
	if err != nil {
		proxySrv.Close()
		return err
	}
	lg.Info("headroom proxy listening", "listen", pl.Addr().String(), "upstream", cfg.Upstream,
		"admin", addrString(adminAddr), "pools", len(cfg.Pools), "shadow", cfg.Shadow, "fast_path", cfg.FastPath)
	if o.Ready != nil {
		o.Ready(pl.Addr(), adminAddr)
	}

	p := persist(o.Snapshots, ledger, cfg.Store.SnapshotInterval.D())
	defer func() { p.stop() }()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = fmt.Errorf("serve: %w", err)
			break loop
		case <-o.Reload:
			g.reloadFrom(o.LoadConfig, lg)
			if err := g.ReopenAccessLog(); err != nil {
				lg.Error("reopen access log", "err", err)
			}
		case <-o.Reopen:
			if err := g.ReopenAccessLog(); err != nil {
				lg.Error("reopen access log", "err", err)
			}
		case <-p.Tick:
			p.save(lg)
		}
	}

	// Drain: stop accepting, let requests in flight finish (their upstream
	// time is charged), then save what they used.
	lg.Info("shutting down: draining requests in flight", "timeout", cfg.Timeouts.Shutdown.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Shutdown.D())
	defer cancel()
	if err := proxySrv.Shutdown(sctx); err != nil {
		lg.Warn("drain timed out; cancelling upstream requests still running", "err", err)
		proxySrv.Close()
	}
	if err := g.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		lg.Error("close guard", "err", err)
	}
	stopAdmin(adminSrv)
	if err := p.close(cfg, lg); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}
