package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/lifecycle"
)

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
	Snapshots lifecycle.Snapshotter

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
	ledger := lifecycle.OpenLedger(cfg, o.Clock, lg, o.Snapshots)
	health, _ := o.Snapshots.(admin.StoreHealth)
	g, err := New(Options{Config: cfg, Ledger: ledger, Clock: o.Clock, Logger: lg, Health: health})
	if err != nil {
		return err
	}
	defer g.Close()
	if err := lifecycle.RegisterStore(g.core.Registry(), o.Snapshots); err != nil {
		return err
	}

	pl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen for clients (listen %s): %w", cfg.Listen, err)
	}
	errLog := lifecycle.ErrorLog(lg)
	proxySrv, err := g.NewFrontend(cfg, errLog)
	if err != nil {
		pl.Close()
		return err
	}
	pl = g.limitConnections(pl, cfg)
	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	adminSrv, adminAddr, err := lifecycle.ServeAdmin(g.Admin(), cfg, errLog, errc)
	if err != nil {
		proxySrv.Close()
		return err
	}
	lg.Info("headroom proxy listening", "listen", pl.Addr().String(), "upstream", cfg.Upstream,
		"admin", lifecycle.AddrString(adminAddr), "pools", len(cfg.Pools), "shadow", cfg.Shadow)
	if o.Ready != nil {
		o.Ready(pl.Addr(), adminAddr)
	}

	p := lifecycle.Persist(o.Snapshots, ledger, cfg.Store.SnapshotInterval.D())
	defer p.Stop()
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
			lifecycle.ReloadFrom(g, o.LoadConfig, lg)
			if err := g.ReopenAccessLog(); err != nil {
				lg.Error("reopen access log", "err", err)
			}
		case <-o.Reopen:
			if err := g.ReopenAccessLog(); err != nil {
				lg.Error("reopen access log", "err", err)
			}
		case <-p.Tick:
			p.Save(lg)
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
	lifecycle.StopAdmin(adminSrv)
	if err := p.Close(cfg, lg); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
