package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headroom-dev/headroom/internal/budget"
)

// Leases (docs/fleet.md): a proxy admits a key's requests against a slice
// of the key's remaining budget that leaseScript granted it, atomically,
// from the fleet's usage and the slices the other proxies hold. The ledger
// queues a key when its slice runs low; the loop here answers the queue as
// soon as it is woken, so no request waits on Redis.

// leaseMargin is how much longer Redis counts a slice as reserved than the
// proxy may use it: room for clock skew between proxies and for the last
// push of a proxy that stops using it.
const leaseMargin = time.Second

// leaseScript writes one proxy's usage of a key (its buckets and in-flight
// time: the same absolute fields a push writes) and grants it a slice: what
// it asks (what it has left plus a new part), at most the budget minus the
// fleet's usage in the window (in-flight included) minus the unused slices
// other proxies hold. It replaces the proxy's previous slice, so an unused
// remainder returns to the fleet. Returns {granted ns, fleet usage ns,
// others' reserved ns, proxies using the key}.
//
// KEYS[1] usage hash. ARGV: 1 proxy id, 2 now (unix ms), 3 head bucket
// index, 4 weight of the bucket sliding out, 5 budget ns, 6 left ns, 7 want
// ns, 8 slice lifetime in Redis (ms), 9 in-flight freshness (ms), 10 own
// in-flight ns, 11 hash expiry (ms), then pairs of own bucket index and ns.
var leaseScript = redis.NewScript(`
local id, now, head = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local frac, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local left, want = tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl, stale, live = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
for i = 12, #ARGV, 2 do
  local f = ARGV[i] .. ':' .. id
  if ARGV[i+1] == '0' then
    redis.call('HDEL', KEYS[1], f)
  else
    redis.call('HSET', KEYS[1], f, ARGV[i+1])
  end
end
if live == '0' then
  redis.call('HDEL', KEYS[1], 'live:' .. id)
else
  redis.call('HSET', KEYS[1], 'live:' .. id, ARGV[2] .. ':' .. live)
end
local used, reserved, seen = 0, 0, {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local name, proxy = string.match(all[i], '^([^:]+):(.+)$')
  local v = all[i+1]
  if name == 'live' then
    local at, ns = string.match(v, '^(%d+):(%d+)$')
    if at and now - tonumber(at) <= stale then
      used = used + tonumber(ns)
      seen[proxy] = true
    end
  elseif name == 'lease' then
    local ns, exp = string.match(v, '^(%d+):(%d+)$')
    if ns and proxy ~= id and tonumber(exp) > now then
      reserved = reserved + tonumber(ns)
      seen[proxy] = true
    end
  elseif name then
    local idx, ns = tonumber(name), tonumber(v)
    if idx and ns then
      if idx > head - 15 and idx <= head then
        used = used + ns
        seen[proxy] = true
      elseif idx == head - 15 then
        used = used + ns * frac
      end
    end
  end
end
local grant = left + want
local avail = budget - used - reserved
if grant > avail then grant = avail end
if grant < 0 then grant = 0 end
grant = math.floor(grant)
redis.call('HSET', KEYS[1], 'lease:' .. id, string.format('%d:%d', grant, now + ttl))
redis.call('PEXPIRE', KEYS[1], ARGV[11])
local proxies = 0
for _ in pairs(seen) do proxies = proxies + 1 end
return {grant, math.floor(used), math.floor(reserved), proxies}`)

// channel is the pub/sub channel of restriction events.
func (s *Redis) channel() string { return s.prefix + "restrictions" }

// proxiesKey is the sorted set of proxies by last sync.
func (s *Redis) proxiesKey() string { return s.prefix + "proxies" }

// serveLeases answers the ledger's queued lease requests in one pipeline
// and publishes its queued restrictions. It reports whether it had anything
// to send (and so learnt whether Redis answers). Call with syncMu held.
func (s *Redis) serveLeases(ctx context.Context, l *budget.Ledger) (bool, error) {
	sent, err := s.publishRestrictions(ctx, l)
	if err != nil {
		return true, err
	}
	s.ledger.Store(l)
	s.leaseReqs = l.LeaseRequests(s.leaseReqs[:0], s.maxKeys)
	if len(s.leaseReqs) == 0 {
		return sent, nil
	}
	asked := time.Now()
	cmds, err := s.runLeases(ctx, true)
	if err != nil && isNoScript(err) {
		// A Redis that restarted, or a new cluster node, has not seen the
		// script: load it (on every node) and ask again. The script only
		// writes absolute values, so running part of a batch twice is
		// harmless.
		if lerr := leaseScript.Load(ctx, s.rdb).Err(); lerr != nil {
			err = lerr
		} else {
			cmds, err = s.runLeases(ctx, true)
		}
	}
	if err != nil {
		for i := range s.leaseReqs {
			l.LeaseFailed(s.leaseReqs[i].Key)
		}
		s.leases.WithLabelValues("error").Add(float64(len(s.leaseReqs)))
		return true, fmt.Errorf("redis lease (%d keys): %w", len(s.leaseReqs), err)
	}
	n := l.FleetSize()
	for i, c := range cmds {
		r := &s.leaseReqs[i]
		v, err := c.Int64Slice()
		if err != nil || len(v) != 4 {
			l.LeaseFailed(r.Key)
			s.leases.WithLabelValues("error").Inc()
			continue
		}
		granted, used := time.Duration(v[0]), time.Duration(v[1])
		exhausted := used >= r.Budget
		g := budget.LeaseGrant{Left: granted, TTL: s.leaseTTL, Exhausted: exhausted}
		res := l.GrantLease(r.Key, g)
		if res.Restricted {
			s.log.Warn("key over its worker-time budget across the fleet", "key", r.Key, "used", used.Round(time.Millisecond).String(), "budget", r.Budget.String())
		}
		if res.Late || res.StillLapsed {
			s.lateAnswer(r.Key, res, time.Since(asked))
		}
		switch {
		case exhausted:
			s.leases.WithLabelValues("exhausted").Inc()
		case granted < r.Left+r.Want:
			s.leases.WithLabelValues("short").Inc()
		default:
			s.leases.WithLabelValues("granted").Inc()
		}
		n = max(n, int(v[3]))
	}
	if n > l.FleetSize() {
		l.SetFleetSize(n)
		s.fleetSize.Set(float64(n))
		s.mu.Lock()
		s.fleetN = n
		s.mu.Unlock()
	}
	// Restrictions the answers started go out now, not at the next wake.
	_, err = s.publishRestrictions(ctx, l)
	return true, err
}

// lateLogEvery spaces the log lines about late lease answers.
const lateLogEvery = 10 * time.Second

// lateAnswer logs (at most once per lateLogEvery, with a count of those
// since the last line) an answer that came back after the key's slice had
// lapsed, or already past its own lifetime: the key admits nothing here
// while its slice is lapsed (headroom_store_lease_lapses_total counts the
// lapses). took is the round trip; an answer can also be late for waiting
// on the loop (a long sync) before it was sent.
func (s *Redis) lateAnswer(key string, res budget.GrantResult, took time.Duration) {
	s.late++
	now := time.Now()
	if now.Sub(s.lateLogged) < lateLogEvery {
		return
	}
	s.log.Warn("redis lease answer came back after the key's slice lapsed: while it is lapsed the key admits nothing here (429, fleet_share_spent), until an answer comes back within a slice's lifetime or Redis is declared away",
		"key", key, "answered_in", took.Round(time.Millisecond).String(), "lease_ttl", s.leaseTTL.String(),
		"still_lapsed", res.StillLapsed, "late_answers", s.late)
	s.late, s.lateLogged = 0, now
}

func isNoScript(err error) bool { return err != nil && strings.Contains(err.Error(), "NOSCRIPT") }

// runLeases sends one leaseScript per request in a pipeline: EVALSHA, or
// EVAL (the whole script) when byHash is false.
func (s *Redis) runLeases(ctx context.Context, byHash bool) ([]*redis.Cmd, error) {
	now := s.clock.Now()
	nowMs := now.UnixMilli()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(s.leaseReqs))
	args := make([]any, 0, 11+2*budget.Buckets)
	for i := range s.leaseReqs {
		r := &s.leaseReqs[i]
		width := int64(r.Width)
		cur := now.UnixNano() / width
		within := now.UnixNano() - cur*width
		frac := float64(width-within) / float64(width)
		args = args[:0]
		args = append(args, s.id, nowMs, cur, strconv.FormatFloat(frac, 'f', 6, 64),
			int64(r.Budget), int64(r.Left), int64(r.Want),
			(s.leaseTTL + leaseMargin).Milliseconds(), s.staleLive().Milliseconds(),
			int64(r.InFlight), (time.Duration(budget.Buckets+1)*r.Width + 10*time.Second).Milliseconds())
		for b, w := range r.Work {
			args = append(args, r.Head-budget.Buckets+1+int64(b), w)
		}
		key := []string{s.usageKey(r.Key, r.Width)}
		if byHash {
			cmds[i] = leaseScript.EvalSha(ctx, pipe, key, args...)
		} else {
			cmds[i] = leaseScript.Eval(ctx, pipe, key, args...)
		}
	}
	if s.replicated {
		// Behind Sentinel, a grant the master had not yet passed to its
		// replica is forgotten by a failover while the proxy spends it:
		// wait (briefly) for the replica to have it. Best effort: with
		// the replica down the grants still stand.
		pipe.Do(ctx, "WAIT", 1, 100)
	}
	_, err := pipe.Exec(ctx)
	return cmds, err
}

// publishRestrictions pushes the ledger's queued restriction events to the
// restrictions hash and announces them on the channel, so every proxy
// applies them within a round trip instead of at its next sync.
func (s *Redis) publishRestrictions(ctx context.Context, l *budget.Ledger) (bool, error) {
	s.events = l.Restrictions(s.events[:0])
	if len(s.events) == 0 {
		return false, nil
	}
	pipe := s.rdb.Pipeline()
	for _, ev := range s.events {
		untilNs, atNs := restrictionNs(ev.Until, ev.Since, s.clock.Now())
		pipe.Eval(ctx, setIfNewer, []string{s.restrictionsKey(), s.versionKey()}, ev.Key, untilNs, atNs)
		pipe.Publish(ctx, s.channel(), ev.Key+" "+untilNs+" "+atNs)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// The events stay marked for the next push (ExportChanges).
		return true, fmt.Errorf("redis publish restrictions (%d keys): %w", len(s.events), err)
	}
	return true, nil
}

// restrictionNs formats a restriction event as setIfNewer takes it.
func restrictionNs(until, since, now time.Time) (string, string) {
	if since.IsZero() || since.Unix() == 0 {
		since = now
	}
	var u int64
	if !until.IsZero() {
		u = until.UnixNano()
	}
	return strconv.FormatInt(u, 10), strconv.FormatInt(since.UnixNano(), 10)
}

// subscribe applies the restriction events other proxies publish until ctx
// is done. go-redis reconnects (and resubscribes) on its own after an
// outage or a failover; what was published meanwhile arrives with the next
// sync's pull of the restrictions hash.
func (s *Redis) subscribe(ctx context.Context, l *budget.Ledger) {
	ps := s.rdb.Subscribe(ctx, s.channel())
	defer ps.Close()
	ch := ps.Channel(redis.WithChannelHealthCheckInterval(5 * time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			key, until, at, err := parseEvent(m.Payload)
			if err != nil {
				s.log.Debug("redis store: ignoring a malformed restriction event", "err", err)
				continue
			}
			l.ApplyRestriction(key, until, at)
		}
	}
}

// parseEvent reads "KEY UNTIL_NS MADE_AT_NS".
func parseEvent(p string) (string, time.Time, time.Time, error) {
	f := strings.Fields(p)
	if len(f) != 3 {
		return "", time.Time{}, time.Time{}, errors.New("want 3 fields")
	}
	u, err1 := strconv.ParseInt(f[1], 10, 64)
	a, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || u < 0 || a <= 0 {
		return "", time.Time{}, time.Time{}, errors.New("bad times")
	}
	var until time.Time
	if u > 0 {
		until = time.Unix(0, u)
	}
	return f[0], until, time.Unix(0, a), nil
}

// heartbeat records this proxy in the fleet's set and counts the proxies
// seen recently: the divisor of the even share while Redis is away.
func (s *Redis) heartbeat(ctx context.Context, l *budget.Ledger) error {
	now := s.clock.Now()
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, s.proxiesKey(), redis.Z{Score: float64(now.UnixMilli()), Member: s.id})
	pipe.ZRemRangeByScore(ctx, s.proxiesKey(), "-inf", strconv.FormatInt(now.Add(-s.staleLive()).UnixMilli(), 10))
	card := pipe.ZCard(ctx, s.proxiesKey())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis heartbeat: %w", err)
	}
	l.SetFleetSize(int(card.Val()))
	s.fleetSize.Set(float64(card.Val()))
	s.mu.Lock()
	s.fleetN = int(card.Val())
	s.mu.Unlock()
	return nil
}
