package store_test

import (
	"github.com/headroom-dev/headroom/internal/guard"
	"github.com/headroom-dev/headroom/internal/store"
)

// File is what `headroom proxy` hands the guard (an external test package,
// so the guard may import store without an import cycle).
var _ guard.Snapshotter = (*store.File)(nil)

// Redis is the fleet store: it syncs while the proxy runs and shows in
// /healthz.
var (
	_ guard.Snapshotter = (*store.Redis)(nil)
	_ guard.Syncer      = (*store.Redis)(nil)
	_ guard.StoreHealth = (*store.Redis)(nil)
)
