package guard

import (
	"context"
	"errors"
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
	clock := o.Clock
	if clock == nil {
		clock = budget.SystemClock{}
	}
	ledger := budget.New(budget.Options{Clock: clock})
	if o.Snapshots != nil {
		if err := o.Snapshots.Restore(ledger); err != nil {
			// Partial failure is data: start empty and say so, rather than
			// refusing to protect the upstream at all.
			lg.Error("restore usage from the store; starting with empty usage", "store", cfg.Store.Type, "err", err)
		} else if n := ledger.Len(); n > 0 && cfg.Store.Type == "redis" {
			lg.Info("restrictions pulled from the redis store", "keys", n)
		} else if n > 0 {
			lg.Info("usage restored from snapshot", "keys", n, "path", cfg.Store.Snapshot)
		}
	}
	g, err := New(Options{Config: cfg, Ledger: ledger, Clock: clock, Logger: lg})
	if err != nil {
		return err
	}
	defer g.Close()
	if h, ok := o.Snapshots.(StoreHealth); ok {
		g.storeHealth = h
	}
	if c, ok := o.Snapshots.(prometheus.Collector); ok {
		if err := g.reg.Register(c); err != nil {
			return fmt.Errorf("register store metrics: %w", err)
		}
	}

	pl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen for clients (listen %s): %w", cfg.Listen, err)
	}
	errLog := log.New(slogWriter{lg}, "", 0)
	proxySrv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          errLog,
	}
	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()

	var adminSrv *http.Server
	var adminAddr net.Addr
	if cfg.Admin.Listen != "off" {
		al, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			pl.Close()
			return fmt.Errorf("listen for the admin API (admin %s): %w", cfg.Admin.Listen, err)
		}
		adminAddr = al.Addr()
		adminSrv = &http.Server{
			Handler:           g.Admin(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       cfg.Timeouts.Idle.D(),
			ErrorLog:          errLog,
		}
		go func() { errc <- adminSrv.Serve(al) }()
	}
	lg.Info("headroom proxy listening", "listen", pl.Addr().String(), "upstream", cfg.Upstream,
		"admin", addrString(adminAddr), "pools", len(cfg.Pools), "shadow", cfg.Shadow)
	if o.Ready != nil {
		o.Ready(pl.Addr(), adminAddr)
	}

	var tick <-chan time.Time
	stopSync := func() {}
	if s, ok := o.Snapshots.(Syncer); ok {
		sctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Sync(sctx, ledger)
		}()
		stopSync = func() { cancel(); <-done }
		defer stopSync()
	} else if o.Snapshots != nil {
		t := time.NewTicker(cfg.Store.SnapshotInterval.D())
		defer t.Stop()
		tick = t.C
	}
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
			if o.LoadConfig != nil {
				if next, err := o.LoadConfig(); err != nil {
					g.m.reloads.WithLabelValues("error").Inc()
					lg.Error("reload refused; keeping the running configuration", "err", err)
				} else if err := g.Reload(next); err != nil {
					lg.Error("reload refused", "err", err)
				}
			}
			if err := g.ReopenAccessLog(); err != nil {
				lg.Error("reopen access log", "err", err)
			}
		case <-o.Reopen:
			if err := g.ReopenAccessLog(); err != nil {
				lg.Error("reopen access log", "err", err)
			}
		case <-tick:
			if err := o.Snapshots.Save(ledger); err != nil {
				lg.Error("save usage snapshot", "err", err)
			}
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
	if adminSrv != nil {
		actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = adminSrv.Shutdown(actx)
		acancel()
	}
	if o.Snapshots != nil {
		stopSync()
		if err := o.Snapshots.Save(ledger); err != nil {
			lg.Error("save usage snapshot at shutdown", "err", err)
			if runErr == nil {
				runErr = fmt.Errorf("save usage snapshot: %w", err)
			}
		} else if cfg.Store.Type == "redis" {
			lg.Info("last usage pushed to the redis store", "keys", ledger.Len())
		} else {
			lg.Info("usage snapshot written", "path", cfg.Store.Snapshot, "keys", ledger.Len())
		}
	}
	return runErr
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}
