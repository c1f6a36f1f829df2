// Package lifecycle is what a running guard front-end (`headroom proxy`,
// `headroom sidecar`) does around its own listeners, in one place: the
// ledger restored from the store at start and kept in it while running
// (a sync loop, or a snapshot ticker) and saved at shutdown, the admin
// API's server, reloads, and the server for the front door.
package lifecycle

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
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
// this one runs (internal/store's Redis fleet store). Persist starts Sync in
// its own goroutine after Restore, instead of calling Save periodically, and
// stops it (cancelling ctx) before the final Save. Sync must never block
// requests: they only ever touch the ledger.
type Syncer interface {
	Sync(ctx context.Context, l *budget.Ledger)
}

// OpenLedger builds the ledger and restores it from snaps (nil: none). A
// failed restore is logged and the guard starts empty: better unprotected
// usage than no protection at all.
func OpenLedger(cfg *config.Config, clock budget.Clock, lg *slog.Logger, snaps Snapshotter) *budget.Ledger {
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
	return ledger
}

// RegisterStore adds the store's own metrics, if it has any, to reg.
func RegisterStore(reg prometheus.Registerer, snaps Snapshotter) error {
	if c, ok := snaps.(prometheus.Collector); ok {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register store metrics: %w", err)
		}
	}
	return nil
}

// FrontServer is the server for the guard's front door: the proxy's
// clients, or the sidecar's nginx. Header reads are bounded (slowloris);
// bodies are bounded by the handler (timeouts.body), responses by the
// upstream's timeouts.
func FrontServer(h http.Handler, cfg *config.Config, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          errLog,
	}
}

// ServeAdmin opens the admin API (unless it is "off") and serves h on it,
// reporting a failure on errc. It returns the server (nil when off) and
// its address.
func ServeAdmin(h http.Handler, cfg *config.Config, errLog *log.Logger, errc chan<- error) (*http.Server, net.Addr, error) {
	if cfg.Admin.Listen == "off" {
		return nil, nil, nil
	}
	al, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen for the admin API (admin %s): %w", cfg.Admin.Listen, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		ErrorLog:          errLog,
	}
	go func() { errc <- srv.Serve(al) }()
	return srv, al.Addr(), nil
}

// StopAdmin gives the admin API a moment to finish its answers.
func StopAdmin(srv *http.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// Reloader is what a reload replaces the configuration of.
type Reloader interface {
	Reload(*config.Config) error
	// ReloadRefused counts a reload whose configuration did not load.
	ReloadRefused()
}

// ReloadFrom applies the configuration load returns; a bad one is
// refused, counted and logged, and the running configuration kept.
func ReloadFrom(r Reloader, load func() (*config.Config, error), lg *slog.Logger) {
	if load == nil {
		return
	}
	next, err := load()
	if err != nil {
		r.ReloadRefused()
		lg.Error("reload refused; keeping the running configuration", "err", err)
		return
	}
	if err := r.Reload(next); err != nil {
		lg.Error("reload refused", "err", err)
	}
}

// Persistence keeps the ledger in the store while the guard runs: a
// Syncer (the Redis fleet store) syncs in its own loop; any other store is
// saved on every tick of Tick.
type Persistence struct {
	snaps  Snapshotter
	ledger *budget.Ledger
	Tick   <-chan time.Time // nil with a Syncer or no store
	stop   func()
}

// ExpireEvery is how often a running guard forgets idle keys
// (budget.Ledger.Expire). A key is idle once its window has slid past its
// last request, so a few seconds' delay beyond that costs nothing.
const ExpireEvery = 10 * time.Second

// Persist starts keeping ledger in snaps (nil: nowhere), saving every
// `every` unless snaps is a Syncer, and forgetting idle keys every
// ExpireEvery whatever the store. Call Stop (deferred) and Close.
func Persist(snaps Snapshotter, ledger *budget.Ledger, every time.Duration) *Persistence {
	return persist(snaps, ledger, every, ExpireEvery)
}

func persist(snaps Snapshotter, ledger *budget.Ledger, every, expireEvery time.Duration) *Persistence {
	p := &Persistence{snaps: snaps, ledger: ledger, stop: func() {}}
	stopExpiry := expireIdle(ledger, expireEvery)
	defer func() {
		stop := p.stop
		p.stop = func() { stop(); stopExpiry() }
	}()
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

// expireIdle forgets the ledger's idle keys on a timer until stopped
// (issue 17: idle keys were dropped only when new traffic arrived, so the
// memory stayed at its peak while the proxy was idle).
func expireIdle(ledger *budget.Ledger, every time.Duration) (stop func()) {
	t := time.NewTicker(every)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-t.C:
				ledger.Expire()
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { t.Stop(); close(quit); <-done }) }
}

// Save is a periodic save on Tick.
func (p *Persistence) Save(lg *slog.Logger) {
	if err := p.snaps.Save(p.ledger); err != nil {
		lg.Error("save usage snapshot", "err", err)
	}
}

// Stop stops the loop or ticker without a last save; after Close it does
// nothing.
func (p *Persistence) Stop() { p.stop() }

// Close stops the loop and writes what the ledger holds one last time
// (the usage of the requests just drained). A failed last save is
// returned: the caller's exit status should say the usage may be lost.
func (p *Persistence) Close(cfg *config.Config, lg *slog.Logger) error {
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

// AddrString names a listener's address for a log line ("off" when nil).
func AddrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// SlogWriter routes a standard logger's lines (net/http's, ReverseProxy's)
// to an slog.Logger, as warnings.
type SlogWriter struct{ L *slog.Logger }

func (w SlogWriter) Write(p []byte) (int, error) {
	w.L.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

// ErrorLog is a standard logger writing to lg through SlogWriter.
func ErrorLog(lg *slog.Logger) *log.Logger { return log.New(SlogWriter{lg}, "", 0) }
