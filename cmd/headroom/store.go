package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/lifecycle"
	"github.com/headroom-dev/headroom/internal/store"
	"github.com/headroom-dev/headroom/internal/store/redisaddr"
)

// applyStoreFlag sets cfg.Store from --store: memory, a Redis URL (the
// fleet store: redis://, rediss://, redis-sentinel://, redis-cluster://…),
// or a PATH (the memory store snapshotted there), for `headroom proxy` and
// `headroom sidecar` alike.
func applyStoreFlag(cfg *config.Config, v string) {
	scheme, _, _ := strings.Cut(v, "://")
	switch {
	case strings.Contains(v, "://") && strings.HasPrefix(scheme, "redis"):
		cfg.Store.Type, cfg.Store.URL = "redis", v
		cfg.Store.SentinelAddrs, cfg.Store.MasterName, cfg.Store.ClusterAddrs = nil, "", nil
	case v == "memory", strings.Contains(v, "://"):
		cfg.Store.Type = v
	default:
		cfg.Store.Type, cfg.Store.Snapshot = "memory", v
	}
}

// openStore returns the store cfg names (nil: usage in memory only) and a
// function that releases it.
func openStore(cfg *config.Config, lg *slog.Logger, what string) (lifecycle.Snapshotter, func(), error) {
	switch {
	case cfg.Store.Type == "redis":
		var target redisaddr.Target
		if cfg.Store.URL == "" {
			t, err := redisaddr.FromAddrs(cfg.Store.SentinelAddrs, cfg.Store.MasterName, cfg.Store.ClusterAddrs)
			if err != nil {
				return nil, nil, fmt.Errorf("store: %w", err)
			}
			target = t
		}
		s, err := store.NewRedis(store.RedisOptions{
			URL:      cfg.Store.URL,
			Target:   target,
			Prefix:   cfg.Store.Prefix,
			Interval: cfg.Store.SyncInterval.D(),
			Timeout:  cfg.Store.SyncTimeout.D(),
			MaxKeys:  cfg.Store.MaxKeys,
			Logger:   lg,
		})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close() }, nil
	case cfg.Store.Snapshot != "":
		s, err := store.NewFile(store.FileOptions{Path: cfg.Store.Snapshot})
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	}
	lg.Warn("no --snapshot: usage and restrictions are lost when the " + what + " restarts")
	return nil, func() {}, nil
}
