// Package guard is headroom's reverse proxy: it charges every request's
// upstream worker time to the caller's key, refuses keys that went over
// their budget, keeps pools of upstream capacity apart (so API traffic can
// never hold every worker the UI needs), and writes an access log that tells
// both the client's and the upstream's side of each request.
//
// The model is DESIGN.md's "The guard's model"; the incident behind it is
// seeds/03: an nginx+Lua guard that charged requests when the client gave up
// instead of when the upstream finished, so a client with a 5 s timeout ran
// 30 s requests nearly for free.
//
// A Guard is an http.Handler (the proxy) plus an admin handler (health,
// metrics, keys); Run wires both to listeners, signals and the snapshot store
// for `headroom proxy`, and `headroom demo` embeds a Guard directly.
package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/lifecycle"
)

// upstreamShards is how many parents the upstream calls' contexts are
// spread over (Guard.upstream).
const upstreamShards = 16

// Options configures a Guard. Only Config is required.
type Options struct {
	// Config is the configuration, already validated (config.Load or
	// config.Parse; code that builds one calls SetDefaults and Validate).
	Config *config.Config

	// Ledger holds usage and restrictions. If nil, New creates one on
	// Clock. Pass one to share it with a store that restores and snapshots
	// it.
	Ledger *budget.Ledger

	// Clock measures worker time and dates log lines. If nil,
	// budget.SystemClock is used. It must be the Ledger's clock.
	Clock budget.Clock

	// Secret keys the fingerprints of API keys. If nil, New uses
	// Config.Keys.Secret, else the file Config.Keys.SecretFile, else a
	// secret kept in Config.Store.Snapshot+".secret" (created on first use),
	// else a random secret for this process only, with a warning:
	// fingerprints then change at every start.
	Secret []byte

	// Transport carries requests upstream. If nil, an http.Transport with
	// Config.Timeouts (dial, upstream_header, idle) and no proxy from the
	// environment is used.
	Transport http.RoundTripper

	// AccessLog receives the access log. If nil, the log goes to
	// Config.AccessLog.Path ("-" is standard output, "" means no access
	// log).
	AccessLog io.Writer

	// Logger receives operational messages: upstream failures, keys
	// restricted, reloads. If nil, slog.Default() is used.
	Logger *slog.Logger

	// Health, if set, is the store's health, which the admin API shows in
	// /healthz.
	Health admin.StoreHealth

	// Registry receives the metrics the admin handler serves at /metrics.
	// If nil, New creates one (so several Guards in one process, as in
	// tests, do not collide).
	Registry *prometheus.Registry
}

// Guard is the proxy. Create it with New; it is safe for concurrent use.
// It is a front-end of the admission core (internal/admit): the core
// identifies, admits and charges each request, the Guard proxies it and
// writes its access log line.
type Guard struct {
	core      *admit.Core
	clock     budget.Clock
	log       *slog.Logger
	transport http.RoundTripper
	admin     http.Handler

	front atomic.Pointer[front]

	alog      *accesslog.File // nil: no access log
	flushStop chan struct{}
	flushDone chan struct{}

	// upstream is the parent of every upstream call's context: detached
	// from the client (a client that leaves must not cancel the call), but
	// cancelled by Shutdown when draining takes too long. Each call's
	// context is the child of one of its shards, picked at random: a
	// context registers with and leaves its parent under the parent's lock,
	// which one parent for every request made a point of contention.
	upstream       [upstreamShards]context.Context
	cancelUpstream context.CancelFunc
	active         sync.WaitGroup
	closeOnce      sync.Once

	// sendTimedOut counts and logs a client connection closed by
	// timeouts.client_send (sendTimeouts), on either front-end.
	sendTimedOut func(net.Conn)
}

// front is the proxy's own part of the configuration, replaced with the
// core's at a reload.
type front struct {
	proxy    *httputil.ReverseProxy
	upstream *url.URL
	json     bool
}

// New returns a Guard for opts. It opens the access log and starts its
// flusher; call Shutdown or Close to flush and release them.
func New(opts Options) (*Guard, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("guard: Options.Config is required")
	}
	core, err := admit.New(admit.Options{
		Config: cfg, Ledger: opts.Ledger, Clock: opts.Clock, Secret: opts.Secret,
		Logger: opts.Logger, Registry: opts.Registry,
	})
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	g := &Guard{
		core:      core,
		clock:     core.Clock(),
		log:       opts.Logger,
		transport: opts.Transport,
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.transport == nil {
		g.transport = newTransport(cfg.Timeouts)
	}
	fr, err := g.buildFront(cfg)
	if err != nil {
		return nil, err
	}
	g.front.Store(fr)

	switch {
	case opts.AccessLog != nil:
		g.alog = accesslog.NewFile(opts.AccessLog)
	case cfg.AccessLog.Path != "":
		if g.alog, err = accesslog.OpenFile(cfg.AccessLog.Path); err != nil {
			return nil, err
		}
	}
	var cancels [upstreamShards]context.CancelFunc
	for i := range g.upstream {
		g.upstream[i], cancels[i] = context.WithCancel(context.Background())
	}
	g.cancelUpstream = func() {
		for _, cancel := range cancels {
			cancel()
		}
	}
	g.sendTimedOut = g.newSendTimeouts().timedOut
	g.admin = admin.Handler(admin.Options{Core: core, Health: opts.Health, Logger: g.log})
	if g.alog != nil {
		g.flushStop, g.flushDone = make(chan struct{}), make(chan struct{})
		go g.flushLoop(cfg.AccessLog.FlushInterval.D())
	}
	return g, nil
}

func newTransport(t config.Timeouts) *http.Transport {
	return &http.Transport{
		// Never the environment's HTTP_PROXY: the upstream is ours.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   t.Dial.D(),
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       t.Idle.D(),
		ResponseHeaderTimeout: t.UpstreamHeader.D(),
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   t.Dial.D(),
		// A proxy passes encodings through: without this the transport
		// asks the upstream for gzip on behalf of clients that never did,
		// then spends the proxy's CPU undoing it.
		DisableCompression: true,
	}
}

// buildFront compiles the proxy's part of cfg.
func (g *Guard) buildFront(cfg *config.Config) (*front, error) {
	up, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	fr := &front{upstream: up, json: cfg.AccessLog.Format == "json"}
	fr.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { g.rewrite(fr, pr) },
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.upstreamError,
		Transport:      g.transport,
		BufferPool:     bufferPool{},
		ErrorLog:       lifecycle.ErrorLog(g.log),
	}
	return fr, nil
}

// Core returns the admission core the Guard is a front-end of.
func (g *Guard) Core() *admit.Core { return g.core }

// Ledger returns the ledger the Guard charges.
func (g *Guard) Ledger() *budget.Ledger { return g.core.Ledger() }

// Fingerprint returns the fingerprint of an API key as this Guard logs it.
func (g *Guard) Fingerprint(key string) string { return g.core.Fingerprint(key) }

// Config returns the configuration in force.
func (g *Guard) Config() *config.Config { return g.core.Config() }

// Admin returns the admin API handler (internal/admin) over the Guard's
// core.
func (g *Guard) Admin() http.Handler { return g.admin }

// ReloadRefused counts a reload whose configuration did not load.
func (g *Guard) ReloadRefused() { g.core.ReloadRefused() }

// Reload replaces the configuration. An invalid cfg is refused with the
// reason and the running configuration stays. Listen addresses, the admin
// API, the store, the fingerprint secret and the connection timeouts are
// fixed at start; changes to them are logged and take effect at restart.
func (g *Guard) Reload(cfg *config.Config) error {
	if err := cfg.Validate(); err != nil {
		g.core.ReloadRefused()
		return fmt.Errorf("keeping the running configuration: %w", err)
	}
	fr, err := g.buildFront(cfg)
	if err != nil {
		g.core.ReloadRefused()
		return fmt.Errorf("keeping the running configuration: %w", err)
	}
	if err := g.core.Reload(cfg); err != nil {
		return err
	}
	g.front.Store(fr)
	return nil
}

// ReopenAccessLog reopens the access log file (after logrotate moved it).
func (g *Guard) ReopenAccessLog() error {
	if g.alog == nil {
		return nil
	}
	return g.alog.Reopen()
}

func (g *Guard) flushLoop(every time.Duration) {
	defer close(g.flushDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := g.alog.Flush(); err != nil {
				g.log.Error("write access log", "err", err)
			}
		case <-g.flushStop:
			return
		}
	}
}

// Shutdown waits for requests in flight to finish (call it after the
// http.Server stopped accepting), then flushes and closes the access log.
// If ctx ends first, upstream calls still running are cancelled (and
// charged the time they ran) and ctx's error is returned.
func (g *Guard) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		g.active.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		g.cancelUpstream()
		<-done
	}
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close cancels upstream calls still running, and flushes and closes the
// access log. It does not wait for requests; Shutdown does.
func (g *Guard) Close() error {
	var err error
	g.closeOnce.Do(func() {
		g.cancelUpstream()
		if g.alog != nil {
			close(g.flushStop)
			<-g.flushDone
			err = g.alog.Close()
		}
	})
	return err
}

// bufferPool recycles ReverseProxy's copy buffers. It pools pointers to
// arrays, which a returned slice converts back to without allocating
// (a *[]byte would need a new slice header at every Put).
type bufferPool struct{}

const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*[copyBufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize {
		copyBuffers.Put((*[copyBufferSize]byte)(b))
	}
}
