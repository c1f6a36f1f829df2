// Package admit is the guard's admission core: the one place that decides
// whether a request may reach the upstream, and that charges it afterwards.
// Every front-end of the guard (the net/http proxy, the sidecar beside
// nginx, a faster HTTP/1.1 path) is a thin layer that speaks its protocol
// and asks the core.
//
// The contract, per request:
//
//  1. Begin takes the request's identity as data (a Request: the key
//     sources' header values, the raw query, the peer address, host and
//     path) and fills an Admission: the ledger key (an API key's
//     fingerprint, or addr:IP), the client address, the key's limits and
//     the pool. Nothing is admitted yet; a front-end may now do its own
//     work (the proxy reads the body).
//  2. Admit decides. Proceed: the Admission holds a ticket in the ledger
//     (and a pool slot when pools are enforced); the request's time counts
//     as in flight from now. Refused: the Outcome says why, and Refusal
//     renders the answer as data (status, header fields, JSON body) for
//     the front-end to write in its own way.
//  3. Finish takes the end back: the upstream's worker time, whether the
//     request reached the upstream at all, and its Outcome. It charges the
//     ledger (or cancels the ticket), frees the slot, counts the metrics
//     and logs a key that the charge took over its budget. Charge and
//     Count are Finish's two halves, for a front-end that learns them at
//     different moments (the sidecar charges a lost log line at expiry).
//
// Begin, Admit and Finish do not allocate for a known API key on the way
// through (an addr: key costs its string); an Admission is a value the
// front-end keeps in its own per-request state. A refusal allocates (its
// body), which only a refused request pays.
//
// The core owns what all front-ends share: the configuration in force
// (swapped atomically by Reload, so a request sees one configuration from
// Begin to Finish), key identification and fingerprints, the per-key
// policy, pools, the ledger, and the request metrics.
package admit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// Options configures a Core. Only Config is required.
type Options struct {
	// Config is the configuration, already validated (config.Load or
	// config.Parse; code that builds one calls SetDefaults and Validate).
	Config *config.Config

	// Ledger holds usage and restrictions. If nil, New creates one on
	// Clock. Pass one to share it with a store that restores and snapshots
	// it.
	Ledger *budget.Ledger

	// Clock measures worker time and dates refusals. If nil,
	// budget.SystemClock is used. It must be the Ledger's clock.
	Clock budget.Clock

	// Secret keys the fingerprints of API keys. If nil, New uses
	// Config.Keys.Secret, else the file Config.Keys.SecretFile, else a
	// secret kept in Config.Store.Snapshot+".secret" (created on first use),
	// else a random secret for this process only, with a warning:
	// fingerprints then change at every start.
	Secret []byte

	// Logger receives keys restricted and reloads. If nil, slog.Default()
	// is used.
	Logger *slog.Logger

	// Registry receives the request metrics. If nil, New creates one (so
	// several cores in one process, as in tests, do not collide).
	Registry *prometheus.Registry
}

// Core is the admission core. Create it with New; it is safe for
// concurrent use.
type Core struct {
	clock  budget.Clock
	ledger *budget.Ledger
	fp     *Fingerprinter
	log    *slog.Logger
	reg    *prometheus.Registry
	m      *metrics

	st atomic.Pointer[state]

	mu    sync.Mutex // serializes reloads; guards poolM
	poolM map[string]*poolMetrics
}

// state is everything a reload replaces, swapped atomically so a request
// sees one consistent configuration.
type state struct {
	cfg    *config.Config
	keys   *keyFinder
	policy *policy
	router *router
}

// New returns a Core for o.
func New(o Options) (*Core, error) {
	cfg := o.Config
	if cfg == nil {
		return nil, errors.New("admit: Options.Config is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	c := &Core{
		clock:  o.Clock,
		ledger: o.Ledger,
		log:    o.Logger,
		reg:    o.Registry,
		poolM:  map[string]*poolMetrics{},
	}
	if c.clock == nil {
		c.clock = budget.SystemClock{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.ledger == nil {
		c.ledger = budget.New(budget.Options{Clock: c.clock})
	}
	if c.reg == nil {
		c.reg = prometheus.NewRegistry()
	}
	secret := o.Secret
	if secret == nil {
		var err error
		if secret, err = resolveSecret(cfg, c.log); err != nil {
			return nil, err
		}
	}
	c.fp = NewFingerprinter(secret)
	c.m = newMetrics(c.reg, func() float64 { return float64(c.ledger.Len()) })
	st, err := c.buildState(cfg, nil)
	if err != nil {
		return nil, err
	}
	c.st.Store(st)
	c.reg.MustRegister(newCapacityCollector(c))
	return c, nil
}

func resolveSecret(cfg *config.Config, lg *slog.Logger) ([]byte, error) {
	switch {
	case cfg.Keys.Secret != "":
		return []byte(cfg.Keys.Secret), nil
	case cfg.Keys.SecretFile != "":
		b, err := os.ReadFile(cfg.Keys.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("keys.secret_file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return nil, fmt.Errorf("keys.secret_file: %s holds %d bytes; use at least 16 random bytes (openssl rand -hex 32)", cfg.Keys.SecretFile, len(s))
		}
		return []byte(s), nil
	case cfg.Store.Snapshot != "":
		path := cfg.Store.Snapshot + ".secret"
		s, created, err := LoadOrCreateSecret(path)
		if err != nil {
			return nil, err
		}
		if created {
			lg.Info("created the fingerprint secret; keep it with the snapshot so fingerprints stay the same", "path", path)
		}
		return s, nil
	}
	lg.Warn("no fingerprint secret configured (keys.secret, keys.secret_file or store.snapshot): using a random one, so key fingerprints change at every restart")
	return RandomSecret(), nil
}

// buildState compiles cfg. Pools whose name and limits did not change keep
// their slots, so a reload does not briefly double a pool's concurrency.
func (c *Core) buildState(cfg *config.Config, old *state) (*state, error) {
	keys, err := newKeyFinder(cfg.Keys)
	if err != nil {
		return nil, err
	}
	st := &state{cfg: cfg, keys: keys, policy: compilePolicy(cfg, c.fp)}
	c.mu.Lock()
	defer c.mu.Unlock()
	rt := &router{}
	reuse := func(pc config.Pool) *Pool {
		if old != nil {
			for _, p := range old.router.pools {
				if p.name == pc.Name && p.sameLimits(pc) {
					return p
				}
			}
		}
		return newPool(pc, c.poolMetricsLocked(pc.Name))
	}
	for _, pc := range cfg.Pools {
		p := reuse(pc)
		if len(pc.PathPrefixes) == 0 && len(pc.Hosts) == 0 {
			rt.catchAll = p
			continue
		}
		rt.pools = append(rt.pools, p)
		rt.rules = append(rt.rules, pc)
	}
	if rt.catchAll == nil {
		if old != nil && old.router.catchAll.slots == nil {
			rt.catchAll = old.router.catchAll
		} else {
			rt.catchAll = &Pool{name: "default", m: c.poolMetricsLocked("default")}
		}
	}
	st.router = rt
	return st, nil
}

func (c *Core) poolMetricsLocked(name string) *poolMetrics {
	pm, ok := c.poolM[name]
	if !ok {
		pm = c.m.pool(name)
		c.poolM[name] = pm
	}
	return pm
}

// Reload replaces the configuration. An invalid cfg is refused with the
// reason, counted, and the running configuration stays. Listen addresses,
// the admin API, the store, the fingerprint secret and the connection
// timeouts are fixed at start; changes to them are logged and take effect
// at restart.
func (c *Core) Reload(cfg *config.Config) error {
	if err := cfg.Validate(); err != nil {
		c.m.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("keeping the running configuration: %w", err)
	}
	old := c.st.Load()
	timeoutsChanged := cfg.Timeouts != old.cfg.Timeouts
	if timeoutsChanged {
		// Fixed at start: front-ends read them from Config, some per
		// request (the fast path) and some once (net/http's server), so
		// the running ones stay in force for all alike.
		kept := *cfg
		kept.Timeouts = old.cfg.Timeouts
		cfg = &kept
	}
	st, err := c.buildState(cfg, old)
	if err != nil {
		c.m.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("keeping the running configuration: %w", err)
	}
	var fixed []string
	if cfg.Listen != old.cfg.Listen {
		fixed = append(fixed, "listen")
	}
	if cfg.Admin != old.cfg.Admin {
		fixed = append(fixed, "admin")
	}
	if !reflect.DeepEqual(cfg.Store, old.cfg.Store) {
		fixed = append(fixed, "store")
	}
	if cfg.Keys.Secret != old.cfg.Keys.Secret || cfg.Keys.SecretFile != old.cfg.Keys.SecretFile {
		fixed = append(fixed, "keys.secret")
	}
	if timeoutsChanged {
		fixed = append(fixed, "timeouts")
	}
	if cfg.AccessLog.Path != old.cfg.AccessLog.Path {
		fixed = append(fixed, "access_log.path")
	}
	c.st.Store(st)
	c.m.reloads.WithLabelValues("ok").Inc()
	if len(fixed) > 0 {
		c.log.Warn("configuration reloaded, but these fields only change at restart", "fields", strings.Join(fixed, ", "))
	} else {
		c.log.Info("configuration reloaded", "pools", len(cfg.Pools), "tiers", len(cfg.Tiers), "overrides", len(cfg.Overrides), "shadow", cfg.Shadow)
	}
	return nil
}

// ReloadRefused counts a reload that failed before it reached Reload (the
// file did not load).
func (c *Core) ReloadRefused() { c.m.reloads.WithLabelValues("error").Inc() }

// Config returns the configuration in force.
func (c *Core) Config() *config.Config { return c.st.Load().cfg }

// Ledger returns the ledger the core charges.
func (c *Core) Ledger() *budget.Ledger { return c.ledger }

// Clock returns the core's clock (the ledger's).
func (c *Core) Clock() budget.Clock { return c.clock }

// Registry returns the registry the core's metrics are in; front-ends add
// their own collectors to it.
func (c *Core) Registry() *prometheus.Registry { return c.reg }

// Fingerprint returns the fingerprint of an API key as the core names it.
func (c *Core) Fingerprint(key string) string { return c.fp.Fingerprint(key) }

// LedgerKey turns what an operator typed (a raw key, a fingerprint, or an
// addr:IP) into the key the ledger knows.
func (c *Core) LedgerKey(s string) string { return c.fp.LedgerKey(s) }

// Limits returns the limits in force for a ledger key.
func (c *Core) Limits(key string) budget.Limits { return c.st.Load().policy.limits(key) }

// Tier names where a key's limits come from: its tier, "override", or
// "default".
func (c *Core) Tier(key string) string { return c.st.Load().policy.tier(key) }

// Pool returns the pool named name in the configuration in force, or nil.
func (c *Core) Pool(name string) *Pool { return c.st.Load().router.byName(name) }

// restricted logs (and counts) a key that a decision took over its budget.
func (c *Core) restricted(a *Admission, d *budget.Decision) {
	mode := 0
	if a.Limits.Shadow {
		mode = 1
	}
	a.Pool.m.restricted[mode].Inc()
	if mode == 0 {
		a.Pool.health.noteRestricted(a.Key, c.clock.Now())
	}
	c.log.Warn("key over its worker-time budget",
		"key", a.Key, "used", d.Used.Round(time.Millisecond).String(), "budget", a.Limits.Budget.String(),
		"window", a.Limits.Window.String(), "restricted_until", d.RestrictedUntil.UTC().Format(time.RFC3339),
		"enforced", !a.Limits.Shadow, "pool", a.Pool.name)
}
