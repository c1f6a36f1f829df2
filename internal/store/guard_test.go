package store_test

import (
	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/lifecycle"
	"github.com/headroom-dev/headroom/internal/store"
)

// File is what `headroom proxy` hands the guard (an external test package,
// so the guard may import store without an import cycle).
var _ lifecycle.Snapshotter = (*store.File)(nil)

// Redis is the fleet store: it syncs while the proxy runs and shows in
// /healthz.
var (
	_ lifecycle.Snapshotter = (*store.Redis)(nil)
	_ lifecycle.Syncer      = (*store.Redis)(nil)
	_ admin.StoreHealth     = (*store.Redis)(nil)
)
