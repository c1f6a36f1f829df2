package store

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/store/redisaddr"
)

// The Redis layout, all names under the prefix (default "headroom:"):
//
//	u:{KEY}:WIDTH        hash, one per key and bucket width (ns), expiring a
//	                     window after its last push:
//	                       IDX:PROXY   -> that proxy's worker ns in bucket IDX
//	                       live:PROXY  -> "PUSHED_MS:IN_FLIGHT_NS"
//	                       lease:PROXY -> "LEFT_NS:EXPIRES_MS": what the proxy
//	                                      has not spent of its slice (lease.go)
//	{restrictions}       hash: KEY -> "UNTIL_NS:MADE_AT_NS"; until 0 is a lift
//	{restrictions}:v     counter, bumped at every change of restrictions
//	restrictions         pub/sub channel: "KEY UNTIL_NS MADE_AT_NS" at every
//	                     restriction or lift, so the fleet applies it at once
//	proxies              sorted set: proxy id -> last sync (unix ms): the
//	                     divisor of the even share while Redis is away
//	epoch                random value set by the first proxy to find it missing
//
// The braces are Redis Cluster hash tags: everything about one key is in
// one hash (one slot), so the lease script runs on one node, and the
// restriction script's two keys share the tag {restrictions}.
//
// KEY is the ledger's key: a fingerprint (fp-…, a keyed HMAC of the API
// key; every proxy of the fleet needs the same keys.secret) or addr:IP.
// Raw API keys never reach Redis.
//
// Each proxy writes only its own fields, with absolute values (HSET, not
// INCRBY), so a push can be repeated or replayed in full without counting
// anything twice, and a proxy reads the fleet's usage as the sum of the
// other proxies' fields. A proxy that restarts gets a new id: its old fields
// are then simply "another proxy's" usage until they slide out of the window.
//
// epoch tells a proxy that Redis lost its data (a restart without
// persistence): when it changes, the proxy pushes everything it holds for
// the current window again (budget.Ledger.Resync), so a Redis restart loses
// nothing the proxies still hold.

const (
	// DefaultRedisPrefix is the key prefix when RedisOptions.Prefix is empty.
	DefaultRedisPrefix = "headroom:"
	// DefaultSyncInterval is the sync period when RedisOptions.Interval is zero.
	DefaultSyncInterval = time.Second
	// DefaultMaxKeys bounds the keys pulled and pushed per sync.
	DefaultMaxKeys = 10000

	// maxBackoff is the longest wait between attempts while Redis is down.
	maxBackoff = 30 * time.Second
	// liftKeep is how long a lift stays in the restrictions hash: long
	// enough for every proxy to have read it.
	liftKeep = 10 * time.Minute
	// maxCleanup bounds the stale fields and records deleted per sync.
	maxCleanup = 1000
)

// RedisOptions configures a Redis store.
type RedisOptions struct {
	// URL is where Redis is, in any form redisaddr.Parse reads: one server
	// (redis://, rediss://), Sentinel (redis-sentinel://) or a Cluster seed
	// list (redis-cluster://). Empty: Target.
	URL string
	// Target is the parsed address, for callers that built it otherwise
	// (the config file's sentinel_addrs or cluster_addrs).
	Target redisaddr.Target
	// Prefix starts every Redis key; "" means DefaultRedisPrefix. Give
	// fleets sharing one Redis different prefixes.
	Prefix string
	// Interval is the sync period; 0 means DefaultSyncInterval.
	Interval time.Duration
	// Timeout bounds each Redis round trip (dial, read, write); 0 means
	// Interval. Requests never wait on it: only the sync loop does.
	Timeout time.Duration
	// MaxKeys bounds the keys pulled and the keys pushed per sync; 0 means
	// DefaultMaxKeys. With more active keys, successive syncs take turns.
	MaxKeys int
	// LeaseTTL is how long a proxy may use a slice of a key's budget
	// before it must have a new one; 0 means budget.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ID names this proxy in Redis; "" means a random id per process.
	ID string
	// Clock is the ledger's clock. Nil: budget.SystemClock.
	Clock budget.Clock
	// Logger receives state changes (Redis lost, Redis back). Nil:
	// slog.Default().
	Logger *slog.Logger
}

// Redis shares a ledger's usage and restrictions with the other proxies of
// a fleet through Redis. It implements the guard's store contract
// (Restore, Save) plus Sync, the loop that pulls the fleet's usage and
// pushes this proxy's every Interval, and Health and the prometheus
// Collector methods for the admin API. Redis is never on the request path:
// when it is down or slow, the proxy keeps deciding on its local view (the
// fleet's usage as last pulled plus its own), logs the change of state once,
// and retries with backoff.
type Redis struct {
	rdb      redis.UniversalClient
	prefix   string
	id       string
	interval time.Duration
	timeout  time.Duration
	maxKeys  int
	clock    budget.Clock
	log      *slog.Logger
	addr     string

	// Sync state, used by one sync at a time (syncMu).
	syncMu    sync.Mutex
	epoch     string
	restrVer  int64
	refs      []budget.KeyRef
	ups       []budget.KeyUsage
	leaseReqs []budget.LeaseRequest
	events    []budget.RestrictionEvent
	leaseTTL  time.Duration
	// late answers since lateLogged, the last line about them (lateAnswer).
	late       int
	lateLogged time.Time
	// replicated: behind Sentinel, where grants wait for the replica.
	replicated bool

	mu        sync.Mutex // guards the health fields
	state     int        // stateUnknown, stateUp, stateDown
	fleetN    int        // proxies last seen
	lastErr   string
	changedAt time.Time
	lastSync  time.Time

	up       prometheus.Gauge
	errs     *prometheus.CounterVec
	duration prometheus.Histogram
	pushed   prometheus.Counter
	pulled   prometheus.Counter

	leases    *prometheus.CounterVec
	fleetSize prometheus.Gauge
	degraded  prometheus.Gauge
	lapses    prometheus.CounterFunc
	ledger    atomic.Pointer[budget.Ledger] // the ledger served, for lapses
}

var quietRedisLog sync.Once

// redisLogger routes go-redis's internal log to slog at debug level.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

const (
	stateUnknown = iota
	stateUp
	stateDown
)

// NewRedis returns a Redis store for opts. It does not connect: the first
// Restore or Sync does, and a Redis that is down at start is reported and
// retried like any other outage.
func NewRedis(opts RedisOptions) (*Redis, error) {
	target := opts.Target
	if opts.URL != "" {
		t, err := redisaddr.Parse(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("store: redis address: %w", err)
		}
		target = t
	}
	if len(target.Addrs) == 0 {
		return nil, errors.New("store: no redis address: give a URL (" + redisaddr.Forms + ")")
	}
	s := &Redis{
		prefix:     opts.Prefix,
		id:         opts.ID,
		interval:   opts.Interval,
		maxKeys:    opts.MaxKeys,
		clock:      opts.Clock,
		log:        opts.Logger,
		addr:       target.Redacted(),
		replicated: target.Kind == redisaddr.Sentinel,
		restrVer:   -1,
	}
	if s.prefix == "" {
		s.prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(s.prefix, "{}") {
		return nil, fmt.Errorf("store: redis prefix %q must not contain braces: they would change the keys' hash tags in a cluster", s.prefix)
	}
	if s.interval <= 0 {
		s.interval = DefaultSyncInterval
	}
	if s.maxKeys <= 0 {
		s.maxKeys = DefaultMaxKeys
	}
	if s.clock == nil {
		s.clock = budget.SystemClock{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.id == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		s.id = hex.EncodeToString(b[:])
	}
	if strings.ContainsAny(s.id, ": ") {
		return nil, fmt.Errorf("store: redis proxy id %q must not contain ':' or spaces", s.id)
	}
	s.timeout = opts.Timeout
	if s.timeout <= 0 {
		s.timeout = s.interval
	}
	s.leaseTTL = opts.LeaseTTL
	if s.leaseTTL <= 0 {
		s.leaseTTL = budget.DefaultLeaseTTL
	}
	s.rdb = redis.NewUniversalClient(universalOptions(target, s.timeout))
	// go-redis logs every failed dial on its own (a line per attempt while
	// Redis is down); the store reports outages once per change of state,
	// so the library's lines go to debug.
	quietRedisLog.Do(func() { redis.SetLogger(redisLogger{s.log}) })

	s.up = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "headroom_store_up",
		Help: "1 when the last sync with the Redis fleet store succeeded, 0 while it fails (the proxy then enforces with local usage).",
	})
	s.errs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headroom_store_errors_total",
		Help: "Failed syncs with the Redis fleet store, by step (pull, push).",
	}, []string{"op"})
	s.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "headroom_store_sync_duration_seconds",
		Help:    "Time one sync with the Redis fleet store took (pull and push).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	s.pushed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "headroom_store_keys_pushed_total",
		Help: "Keys whose usage or restriction this proxy pushed to the Redis fleet store.",
	})
	s.pulled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "headroom_store_keys_pulled_total",
		Help: "Keys whose fleet usage this proxy pulled from the Redis fleet store.",
	})
	s.leases = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headroom_store_leases_total",
		Help: "Answers to this proxy's requests for a slice of a key's budget, by result: granted (in full), short (less than asked: the fleet's budget is nearly spent), exhausted (the fleet's usage reached the budget), error (Redis did not answer).",
	}, []string{"result"})
	s.fleetSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "headroom_store_fleet_proxies",
		Help: "Proxies seen syncing with the Redis fleet store recently: while Redis is away, each enforces budget / this many on its own usage.",
	})
	s.degraded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "headroom_store_degraded",
		Help: "1 while Redis is away and this proxy enforces with the leases it holds, then an even share of each budget (budget / headroom_store_fleet_proxies).",
	})
	s.lapses = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "headroom_store_lease_lapses_total",
		Help: "Times a key's slice of its budget lapsed on this proxy with its renewal unanswered while Redis still answered (late): the key was refused here (429, fleet_share_spent) until an answer came back in time, or Redis was declared away.",
	}, func() float64 {
		if l := s.ledger.Load(); l != nil {
			return float64(l.LeaseLapses())
		}
		return 0
	})
	for _, r := range []string{"granted", "short", "exhausted", "error"} {
		s.leases.WithLabelValues(r)
	}
	s.errs.WithLabelValues("pull")
	s.errs.WithLabelValues("push")
	s.errs.WithLabelValues("lease")
	return s, nil
}

// Describe implements prometheus.Collector.
func (s *Redis) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Redis) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.collectors() {
		c.Collect(ch)
	}
}

func (s *Redis) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.up, s.errs, s.duration, s.pushed, s.pulled, s.leases, s.fleetSize, s.degraded, s.lapses}
}

// RedisHealth is the store's state as /healthz shows it.
type RedisHealth struct {
	Type     string     `json:"type"`
	Addr     string     `json:"addr"`
	Up       bool       `json:"up"`
	Since    *time.Time `json:"since,omitempty"`     // when Up last changed
	LastSync *time.Time `json:"last_sync,omitempty"` // last successful sync
	Error    string     `json:"error,omitempty"`     // why it is down
	// Degraded: Redis is away, and budgets are enforced on the leases
	// held, then on an even share of FleetProxies.
	Degraded     bool `json:"degraded"`
	FleetProxies int  `json:"fleet_proxies"`
}

// Health reports whether the last sync succeeded, with details.
func (s *Redis) Health() (bool, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := RedisHealth{Type: "redis", Addr: s.addr, Up: s.state == stateUp, Error: s.lastErr,
		Degraded: s.state == stateDown, FleetProxies: s.fleetN}
	if !s.changedAt.IsZero() {
		t := s.changedAt.UTC()
		h.Since = &t
	}
	if !s.lastSync.IsZero() {
		t := s.lastSync.UTC()
		h.LastSync = &t
	}
	return h.Up, h
}

// Close closes the connections to Redis.
func (s *Redis) Close() error { return s.rdb.Close() }

// Restore pulls the fleet's restrictions (and the usage of any key the
// ledger already holds) at start. An error (Redis down) is not fatal: the
// proxy starts with local usage and the sync loop catches up.
func (s *Redis) Restore(l *budget.Ledger) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.syncBound())
	defer cancel()
	return s.SyncOnce(ctx, l)
}

// Save pushes what changed since the last sync (at shutdown, after the
// sync loop stopped), so the fleet keeps the last second of this proxy's
// usage.
func (s *Redis) Save(l *budget.Ledger) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.syncBound())
	defer cancel()
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	err := s.push(ctx, l, false)
	s.report(err, "push")
	return err
}

// Sync keeps l in step with the fleet until ctx is done: it answers the
// ledger's lease requests and publishes its restrictions as soon as the
// ledger asks (budget.Ledger.FleetWake), applies the restrictions other
// proxies publish as they arrive, and syncs in full every Interval while
// Redis answers; while it does not, it retries with a backoff doubling up
// to 30 s, and the ledger enforces on the leases it holds, then on an even
// share. It never returns early: errors are reported (log on change of
// state, headroom_store_up, headroom_store_degraded,
// headroom_store_errors_total, Health).
func (s *Redis) Sync(ctx context.Context, l *budget.Ledger) {
	l.EnableLeases(s.leaseTTL)
	s.ledger.Store(l)
	wake := l.FleetWake()
	subDone := make(chan struct{})
	go func() { defer close(subDone); s.subscribe(ctx, l) }()
	defer func() { <-subDone }()
	t := time.NewTimer(s.interval)
	defer t.Stop()
	// retry is the wait before the next attempt while Redis fails, 0 while
	// it answers. The first retry comes soon (a Sentinel failover takes a
	// second or two), then the wait doubles.
	var retry time.Duration
	lastBeat := time.Now()
	fail := func() {
		if retry == 0 {
			retry = min(s.interval, time.Second)
		} else {
			retry = min(retry*2, max(maxBackoff, s.interval))
		}
		resetTimer(t, retry)
	}
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			// The even share's divisor stays fresh even when the full
			// syncs are far apart.
			if retry > 0 || time.Since(lastBeat) < heartbeatEvery {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, s.timeout)
			s.syncMu.Lock()
			err := s.heartbeat(sctx, l)
			s.syncMu.Unlock()
			cancel()
			lastBeat = time.Now()
			s.report(err, "push")
			if err != nil {
				fail()
			}
			l.SetDegraded(retry > 0)
			continue
		case <-wake:
			if retry > 0 {
				// Backing off: the queue waits for the next attempt.
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, s.timeout)
			s.syncMu.Lock()
			sent, err := s.serveLeases(sctx, l)
			s.syncMu.Unlock()
			cancel()
			if sent {
				s.report(err, "lease")
			}
			if err != nil {
				fail()
			}
			l.SetDegraded(retry > 0)
			continue
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, s.syncBound())
		err := s.SyncOnce(sctx, l)
		cancel()
		if err != nil {
			fail()
		} else {
			retry = 0
			lastBeat = time.Now()
			t.Reset(s.interval)
		}
		l.SetDegraded(retry > 0)
	}
}

// heartbeatEvery is how often the lease loop refreshes the fleet's size
// between full syncs.
const heartbeatEvery = 500 * time.Millisecond

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}

// syncBound is the longest one sync may take: its four round trips (pull,
// restrictions, housekeeping, push) at Timeout each, so a Redis that
// trickles its answers cannot hold the loop.
func (s *Redis) syncBound() time.Duration { return 4 * s.timeout }

// SyncOnce pulls the fleet's usage for the keys l holds and its
// restrictions, merges them into l, then pushes l's changes.
func (s *Redis) SyncOnce(ctx context.Context, l *budget.Ledger) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	start := time.Now()
	setEpoch, err := s.pull(ctx, l)
	if err != nil {
		s.report(err, "pull")
		return err
	}
	err = s.push(ctx, l, setEpoch)
	if err == nil {
		err = s.heartbeat(ctx, l)
	}
	if err != nil {
		s.report(err, "push")
		return err
	}
	s.duration.Observe(time.Since(start).Seconds())
	_, err = s.serveLeases(ctx, l)
	s.report(err, "lease")
	return err
}

// report records the outcome of a sync step and logs changes of state.
func (s *Redis) report(err error, op string) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs.WithLabelValues(op).Inc()
		s.up.Set(0)
		s.degraded.Set(1)
		s.lastErr = err.Error()
		if s.state != stateDown {
			s.state, s.changedAt = stateDown, now
			s.log.Error("redis store unreachable: degraded, enforcing budgets with the leases this proxy holds, then an even share of each (budget / proxies last seen) until it is back",
				"addr", s.addr, "fleet_proxies", s.fleetN, "err", err)
		}
		return
	}
	s.up.Set(1)
	s.degraded.Set(0)
	s.lastErr, s.lastSync = "", now
	switch s.state {
	case stateDown:
		s.log.Info("redis store reachable again: fleet sync resumed", "addr", s.addr, "down_for", now.Sub(s.changedAt).Round(time.Millisecond).String())
	case stateUnknown:
		s.log.Info("redis store connected: sharing budgets with the fleet", "addr", s.addr, "prefix", s.prefix, "proxy_id", s.id)
	}
	if s.state != stateUp {
		s.state, s.changedAt = stateUp, now
	}
}

func (s *Redis) usageKey(key string, width time.Duration) string {
	return s.prefix + "u:{" + key + "}:" + strconv.FormatInt(int64(width), 10)
}

func (s *Redis) restrictionsKey() string { return s.prefix + "{restrictions}" }
func (s *Redis) versionKey() string      { return s.prefix + "{restrictions}:v" }
func (s *Redis) epochKey() string        { return s.prefix + "epoch" }

// staleLive is how old another proxy's in-flight report may be and still
// count: a proxy that stopped pushing (died, or lost Redis) stops charging
// the fleet for requests it can no longer report on.
func (s *Redis) staleLive() time.Duration { return max(5*s.interval, 5*time.Second) }

// pull reads the fleet's usage for l's active keys, the epoch and, when it
// changed, the restrictions, and merges them into l. It reports whether
// the epoch is missing (push sets one).
func (s *Redis) pull(ctx context.Context, l *budget.Ledger) (bool, error) {
	s.refs = l.ActiveKeys(s.refs[:0], s.maxKeys)
	pipe := s.rdb.Pipeline()
	epochCmd := pipe.Get(ctx, s.epochKey())
	verCmd := pipe.Get(ctx, s.versionKey())
	usage := make([]*redis.MapStringStringCmd, len(s.refs))
	for i, r := range s.refs {
		usage[i] = pipe.HGetAll(ctx, s.usageKey(r.Key, r.Width))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("redis pull (%d keys): %w", len(s.refs), err)
	}

	// A new or missing epoch: Redis lost its data (or this is the first
	// sync). Push everything this ledger holds again.
	epoch, err := epochCmd.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("redis pull epoch: %w", err)
	}
	setEpoch := epoch == ""
	switch {
	case epoch == "" || (s.epoch != "" && epoch != s.epoch):
		if s.epoch != "" {
			s.log.Warn("redis store lost its data (restarted?): pushing this proxy's usage and restrictions again", "addr", s.addr)
		}
		l.Resync()
		s.restrVer = -1
		// Unknown until the next pull: push proposes one, and whichever
		// proxy's proposal won is adopted then.
		s.epoch = epoch
	case s.epoch == "":
		s.epoch = epoch
	}

	now := s.clock.Now()
	var stale []staleField
	for i, r := range s.refs {
		fields, err := usage[i].Result()
		if err != nil {
			return false, fmt.Errorf("redis pull usage: %w", err)
		}
		u := budget.KeyUsage{Key: r.Key, Width: r.Width, Head: now.UnixNano() / int64(r.Width)}
		stale = s.parseUsage(&u, fields, now, stale)
		l.MergeRemote(&u)
	}
	s.pulled.Add(float64(len(s.refs)))

	ver, err := verCmd.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("redis pull restrictions version: %w", err)
	}
	if ver != s.restrVer {
		if err := s.pullRestrictions(ctx, l, now); err != nil {
			return false, err
		}
		s.restrVer = ver
	}
	if len(stale) > 0 {
		// Housekeeping: left undone, the fields only cost memory in Redis
		// until their hash expires, and the next sync finds them again. It
		// fails when Redis does, and then so would the push.
		pipe := s.rdb.Pipeline()
		for _, f := range stale {
			pipe.HDel(ctx, f.key, f.field)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("redis delete stale fields: %w", err)
		}
	}
	return setEpoch, nil
}

type staleField struct{ key, field string }

// parseUsage sums the other proxies' fields of one usage hash into u
// (u.Key, Width and Head set), their fresh in-flight time into the newest
// bucket, and appends fields that slid out of the window to stale.
func (s *Redis) parseUsage(u *budget.KeyUsage, fields map[string]string, now time.Time, stale []staleField) []staleField {
	oldest := u.Head - budget.Buckets + 1
	for f, v := range fields {
		name, proxy, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		if name == "live" {
			at, ns, ok := splitInts(v)
			if !ok {
				continue
			}
			age := now.Sub(time.UnixMilli(at))
			if age > time.Duration(budget.Buckets)*u.Width && age > s.staleLive() && len(stale) < maxCleanup {
				stale = append(stale, staleField{s.usageKey(u.Key, u.Width), f})
			}
			if proxy != s.id && age <= s.staleLive() && ns > 0 {
				u.Work[budget.Buckets-1] += ns
			}
			continue
		}
		idx, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			continue
		}
		if idx < oldest {
			if len(stale) < maxCleanup {
				stale = append(stale, staleField{s.usageKey(u.Key, u.Width), f})
			}
			continue
		}
		if proxy == s.id || idx > u.Head {
			continue
		}
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil && ns > 0 {
			u.Work[idx-oldest] += ns
		}
	}
	return stale
}

// splitInts parses "a:b".
func splitInts(v string) (int64, int64, bool) {
	as, bs, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, false
	}
	a, err1 := strconv.ParseInt(as, 10, 64)
	b, err2 := strconv.ParseInt(bs, 10, 64)
	return a, b, err1 == nil && err2 == nil
}

// pullRestrictions reads every restriction record and applies it to l,
// and deletes records that no longer matter (ended restrictions, old
// lifts), only if they did not change meanwhile.
func (s *Redis) pullRestrictions(ctx context.Context, l *budget.Ledger, now time.Time) error {
	recs, err := s.rdb.HGetAll(ctx, s.restrictionsKey()).Result()
	if err != nil {
		return fmt.Errorf("redis pull restrictions: %w", err)
	}
	var expired []staleField
	for key, v := range recs {
		untilNs, atNs, ok := splitInts(v)
		if !ok {
			continue
		}
		var until time.Time
		if untilNs > 0 {
			until = time.Unix(0, untilNs)
		}
		at := time.Unix(0, atNs)
		switch {
		case untilNs > 0 && until.Before(now):
			expired = append(expired, staleField{key, v})
		case untilNs == 0 && now.Sub(at) > liftKeep:
			expired = append(expired, staleField{key, v})
		default:
			l.ApplyRestriction(key, until, at)
		}
	}
	if len(expired) > 0 {
		pipe := s.rdb.Pipeline()
		for i, e := range expired {
			if i == maxCleanup {
				break
			}
			pipe.Eval(ctx, delIfSame, []string{s.restrictionsKey()}, e.key, e.field)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis delete ended restrictions: %w", err)
		}
	}
	return nil
}

// setIfNewer stores a restriction event (ARGV: key, until, made at)
// unless the record holds a newer one, and bumps the version so the fleet
// rereads the restrictions. A restriction replacing a restriction keeps the
// later end (as budget.Ledger.ApplyRestriction does); the same event
// pushed again may extend its own end that way. Times are Unix ns, compared
// as decimal strings: Lua's numbers are doubles, exact only to 2^53, and
// ns must round-trip exactly for the ledger to recognise its own events.
const setIfNewer = `
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local nu, at = ARGV[2], ARGV[3]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local u, a = string.match(cur, '^(%d+):(%d+)$')
  if a and (gt(a, at) or (a == at and (nu == '0' or not gt(nu, u)))) then return 0 end
  if u and nu ~= '0' and gt(u, nu) then nu = u end
end
redis.call('HSET', KEYS[1], ARGV[1], nu .. ':' .. at)
redis.call('INCR', KEYS[2])
return 1`

// delIfSame deletes a field only if it still holds the value read.
const delIfSame = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0`

// push sends l's changes in one pipeline: own worker time per bucket and
// in-flight time (absolute values, this proxy's fields only) and
// restriction events. On failure l is resynced, so nothing is lost.
func (s *Redis) push(ctx context.Context, l *budget.Ledger, setEpoch bool) error {
	s.ups = l.ExportChanges(s.ups[:0], s.maxKeys)
	if len(s.ups) == 0 && !setEpoch {
		return nil
	}
	now := s.clock.Now()
	pipe := s.rdb.Pipeline()
	var set []any
	var del []string
	for i := range s.ups {
		u := &s.ups[i]
		key := s.usageKey(u.Key, u.Width)
		set, del = set[:0], del[:0]
		for b, w := range u.Work {
			f := strconv.FormatInt(u.Head-budget.Buckets+1+int64(b), 10) + ":" + s.id
			if w > 0 {
				set = append(set, f, strconv.FormatInt(w, 10))
			} else {
				del = append(del, f)
			}
		}
		live := "live:" + s.id
		if u.InFlight > 0 {
			set = append(set, live, strconv.FormatInt(now.UnixMilli(), 10)+":"+strconv.FormatInt(int64(u.InFlight), 10))
		} else {
			del = append(del, live)
		}
		if !u.LeaseUntil.IsZero() {
			// What is left of the slice, so the fleet's next grants count
			// it as reserved rather than as usage.
			set = append(set, "lease:"+s.id, strconv.FormatInt(int64(u.LeaseLeft), 10)+":"+
				strconv.FormatInt(u.LeaseUntil.Add(leaseMargin).UnixMilli(), 10))
		}
		if len(set) > 0 {
			pipe.HSet(ctx, key, set...)
			// The hash outlives its last push by a window (plus a margin
			// for clock skew), then nothing in it can count.
			pipe.PExpire(ctx, key, time.Duration(budget.Buckets+1)*u.Width+10*time.Second)
		}
		if len(del) > 0 {
			pipe.HDel(ctx, key, del...)
		}
		if u.RestrictionChanged {
			untilNs, atNs := restrictionNs(u.Until, u.Since, now)
			pipe.Eval(ctx, setIfNewer, []string{s.restrictionsKey(), s.versionKey()}, u.Key, untilNs, atNs)
		}
	}
	if setEpoch {
		var b [8]byte
		_, _ = rand.Read(b[:])
		e := hex.EncodeToString(b[:])
		// The first proxy to find the epoch missing sets it; the others
		// read it at their next pull (and push once more: harmless).
		pipe.SetNX(ctx, s.epochKey(), e, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		l.Resync()
		return fmt.Errorf("redis push (%d keys): %w", len(s.ups), err)
	}
	s.pushed.Add(float64(len(s.ups)))
	return nil
}

// universalOptions turns a target into go-redis options: one client type
// (redis.UniversalClient) for a single server, Sentinel and Cluster.
func universalOptions(t redisaddr.Target, timeout time.Duration) *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		Addrs:            t.Addrs,
		DB:               t.DB,
		Username:         t.Username,
		Password:         t.Password,
		MasterName:       t.MasterName,
		SentinelPassword: t.SentinelPassword,
		IsClusterMode:    t.Kind == redisaddr.Cluster,
		DialTimeout:      timeout,
		ReadTimeout:      timeout,
		WriteTimeout:     timeout,
		// The sync loop is the retry: a failed sync is reported and tried
		// again after a backoff, so the client must not retry (and wait)
		// on its own.
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              4,
		// CLIENT SETINFO is Redis 7.2+; Debian's 7.0 refuses it.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if t.TLS {
		host, _, _ := net.SplitHostPort(t.Addrs[0])
		o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return o
}
