package main

import (
	"log/slog"
	"strings"

	"github.com/headroom-dev/headroom/internal/guard"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/store"
)

// applyStoreFlag sets cfg.Store from --store: memory, redis://… (the fleet
// store), or a PATH (the memory store snapshotted there), for `headroom
// proxy` and `headroom sidecar` alike.
func applyStoreFlag(cfg *config.Config, v string) {
	switch {
	case strings.HasPrefix(v, "redis://"), strings.HasPrefix(v, "rediss://"):
		cfg.Store.Type, cfg.Store.URL = "redis", v
	case v == "memory", strings.Contains(v, "://"):
		cfg.Store.Type = v
	default:
		cfg.Store.Type, cfg.Store.Snapshot = "memory", v
	}
}

// openStore returns the store cfg names (nil: usage in memory only) and a
// function that releases it.
func openStore(cfg *config.Config, lg *slog.Logger, what string) (guard.Snapshotter, func(), error) {
	switch {
	case cfg.Store.Type == "redis":
		s, err := store.NewRedis(store.RedisOptions{
			URL:      cfg.Store.URL,
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
