package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/pflag"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

// guardFlags are the flags `headroom proxy` and `headroom sidecar` share.
// Each one, when given, overrides the same setting of the --config file;
// each command registers them with its own help text.
type guardFlags struct {
	configPath     string
	admin          string
	adminToken     string
	adminInsecure  bool
	budget         time.Duration
	window         time.Duration
	restrictFor    time.Duration
	maxInFlight    int
	shadow         bool
	keyHeaders     []string
	keyQuery       []string
	keyBearer      bool
	trustedProxies []string
	pools          []string
	store          string
	snapshot       string
	secretFile     string
	logFormat      string
}

// guardHelp is the help text of the shared flags whose meaning differs
// a little between the proxy and the sidecar.
type guardHelp struct {
	maxInFlight, keyQuery, trustedProxy, pool, store, snapshot string
}

// register adds the shared flags to fl.
func (g *guardFlags) register(fl *pflag.FlagSet, h guardHelp) {
	fl.StringVar(&g.admin, "admin", config.DefaultAdminListen, "admin API `address` (health, metrics, keys), or off")
	fl.StringVar(&g.adminToken, "admin-token", "", "require this bearer `token` on the admin API (or $HEADROOM_ADMIN_TOKEN)")
	fl.BoolVar(&g.adminInsecure, "admin-insecure", false, "allow a non-loopback --admin without a token")
	fl.DurationVar(&g.budget, "budget", config.DefaultWorkerTime, "worker time each key may use per window (0 = no budget)")
	fl.DurationVar(&g.window, "window", config.DefaultWindow, "sliding window the budget is counted over")
	fl.DurationVar(&g.restrictFor, "restrict-for", config.DefaultRestrictFor, "how long a key over budget is restricted")
	fl.IntVar(&g.maxInFlight, "max-in-flight", 0, h.maxInFlight)
	fl.BoolVar(&g.shadow, "shadow", false, "compute and log decisions, but never refuse a request")
	fl.StringSliceVar(&g.keyHeaders, "key-header", nil, "request `header` carrying the API key (repeatable; default X-Api-Key)")
	fl.StringSliceVar(&g.keyQuery, "key-query", nil, h.keyQuery)
	fl.BoolVar(&g.keyBearer, "key-bearer", false, "take the key from Authorization: Bearer (on by default when no key flag is given)")
	fl.StringSliceVar(&g.trustedProxies, "trusted-proxy", nil, h.trustedProxy)
	fl.StringArrayVar(&g.pools, "pool", nil, h.pool)
	fl.StringVar(&g.store, "store", "memory", h.store)
	fl.StringVar(&g.snapshot, "snapshot", "", h.snapshot)
	fl.StringVar(&g.secretFile, "secret-file", "", "`file` holding the fingerprint secret (default: kept next to --snapshot)")
	fl.StringVar(&g.logFormat, "log-format", "text", "operational log `format` on stderr: text or json")
}

// readConfig returns the --config file's settings, or an empty
// configuration when there is none.
func (g *guardFlags) readConfig() (*config.Config, error) {
	if g.configPath == "" {
		return &config.Config{}, nil
	}
	data, err := os.ReadFile(g.configPath)
	if err != nil {
		return nil, fmt.Errorf("read --config: %w", err)
	}
	cfg, err := config.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", g.configPath, err)
	}
	return cfg, nil
}

// setter returns set(name, apply), which applies a flag when it was given,
// or when there is no --config file and the flag has a default: with a
// file, an absent flag leaves the file's value alone.
func (g *guardFlags) setter(fl *pflag.FlagSet) func(name string, apply func()) {
	return func(name string, apply func()) {
		if fl.Changed(name) || (g.configPath == "" && fl.Lookup(name).DefValue != "") {
			apply()
		}
	}
}

// apply sets on cfg the shared flags that were given (see setter), and the
// admin token from $HEADROOM_ADMIN_TOKEN when neither the file nor a flag
// gives one.
func (g *guardFlags) apply(fl *pflag.FlagSet, cfg *config.Config) error {
	set := g.setter(fl)
	set("admin", func() { cfg.Admin.Listen = g.admin })
	if tok := os.Getenv("HEADROOM_ADMIN_TOKEN"); tok != "" && cfg.Admin.Token == "" && cfg.Admin.TokenFile == "" {
		cfg.Admin.Token = tok
	}
	set("admin-token", func() { cfg.Admin.Token = g.adminToken })
	set("admin-insecure", func() { cfg.Admin.AllowInsecure = g.adminInsecure })
	dur := func(v time.Duration) *config.Duration { d := config.Duration(v); return &d }
	set("budget", func() { cfg.Budget.WorkerTime = dur(g.budget) })
	set("window", func() { cfg.Budget.Window = dur(g.window) })
	set("restrict-for", func() { cfg.Budget.RestrictFor = dur(g.restrictFor) })
	set("max-in-flight", func() { cfg.Budget.MaxInFlight = &g.maxInFlight })
	set("shadow", func() { cfg.Shadow = g.shadow })
	if fl.Changed("key-header") || fl.Changed("key-query") || fl.Changed("key-bearer") {
		cfg.Keys.Sources = nil
		for _, h := range g.keyHeaders {
			cfg.Keys.Sources = append(cfg.Keys.Sources, config.KeySource{Header: h})
		}
		if g.keyBearer {
			cfg.Keys.Sources = append(cfg.Keys.Sources, config.KeySource{Bearer: true})
		}
		for _, q := range g.keyQuery {
			cfg.Keys.Sources = append(cfg.Keys.Sources, config.KeySource{Query: q})
		}
	}
	set("trusted-proxy", func() { cfg.Keys.TrustedProxies = g.trustedProxies })
	if fl.Changed("pool") {
		cfg.Pools = nil
		for _, s := range g.pools {
			p, err := config.ParsePool(s)
			if err != nil {
				return fmt.Errorf("--pool: %w", err)
			}
			cfg.Pools = append(cfg.Pools, p)
		}
	}
	set("store", func() { applyStoreFlag(cfg, g.store) })
	set("snapshot", func() { cfg.Store.Snapshot = g.snapshot })
	set("secret-file", func() { cfg.Keys.SecretFile = g.secretFile })
	return nil
}

// logger returns the operational logger on stderr in --log-format.
func (g *guardFlags) logger() (*slog.Logger, error) {
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", g.logFormat)
}

// onSignal returns a channel that holds one pending token whenever s
// arrives (signals that come while one is pending are merged: a reload
// or a reopen done once covers them all), and a function that stops it.
func onSignal(s os.Signal) (<-chan struct{}, func()) {
	sig := make(chan os.Signal, 1)
	out := make(chan struct{}, 1)
	signal.Notify(sig, s)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sig:
				select {
				case out <- struct{}{}:
				default: // one is already pending
				}
			case <-done:
				return
			}
		}
	}()
	return out, func() { signal.Stop(sig); close(done) }
}
