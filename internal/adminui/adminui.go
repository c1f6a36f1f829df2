// Package adminui is the guard's live page: what an operator leaves open on
// a wall screen beside the proxy or the sidecar. The admin address answers
// "/" with one self-contained page (HTML, CSS and script embedded in the
// binary: no CDN, works with no network) that polls GET /v1/overview once a
// second: each pool's worker time in use against its capacity, the keys
// using the most of their budget, the restricted keys with an "unrestrict"
// button (the admin API's DELETE /v1/keys/{key}/restriction), requests,
// 429s and client aborts per second, the abort-accounting warnings and the
// store's state.
//
// The overview is computed on the server and bounded: top-N keys (never all
// of them: a ledger holds 100,000 and more) and totals read from the same
// Prometheus registry /metrics serves, so the page and a Grafana dashboard
// (deploy/grafana/headroom.json) count alike. Per-second rates are the
// page's own differences between two polls, as Prometheus' rate() does.
//
// The guard implements Source; the package knows nothing else of it.
package adminui

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the page shows, implemented by the guard (proxy and
// sidecar alike).
type Source interface {
	// Snapshot returns the guard's state now, with at most top keys in
	// each list of keys.
	Snapshot(top int) Snapshot
	// Gatherer is the registry the admin API serves at /metrics.
	Gatherer() prometheus.Gatherer
}

// Snapshot is the guard's state at one moment.
type Snapshot struct {
	Role        string    // "proxy" or "sidecar"
	Version     string    // build (buildinfo)
	Started     time.Time // when the guard started
	Shadow      bool      // shadow mode: decisions logged, not enforced
	KeysTracked int       // keys the ledger holds
	Top         []Key     // highest usage first
	Restricted  []Key     // restricted keys, highest usage first
	// RestrictedTotal is the number of restricted keys, of which
	// Restricted shows the first.
	RestrictedTotal int
	Pools           []Pool
	Store           Store
}

// Key is one key as the page shows it. Key is a fingerprint (fp-…) or a
// client address (addr:…), never a raw API key.
type Key struct {
	Key             string     `json:"key"`
	Label           string     `json:"label,omitempty"` // the override's label from the config file
	Tier            string     `json:"tier"`
	WorkerSeconds   float64    `json:"worker_seconds"` // in the window, in-flight time included
	BudgetSeconds   float64    `json:"budget_seconds"` // 0: no budget
	WindowSeconds   float64    `json:"window_seconds"`
	InFlight        int        `json:"in_flight"`
	MaxInFlight     int        `json:"max_in_flight"` // 0: no cap
	Requests        int64      `json:"requests"`      // admitted in the window
	RestrictedUntil *time.Time `json:"restricted_until"`
	Shadow          bool       `json:"shadow"`
}

// Pool is one pool's occupancy now.
type Pool struct {
	Name          string `json:"name"`
	InFlight      int64  `json:"in_flight"`      // requests upstream now
	MaxConcurrent int    `json:"max_concurrent"` // capacity, in workers; 0: not enforced here
	Queued        int64  `json:"queued"`
	QueueMax      int    `json:"queue_max"`
}

// Store is the state of the usage store.
type Store struct {
	Type   string `json:"type"`   // "memory" or "redis"
	State  string `json:"state"`  // "memory", "up" or "degraded"
	Detail any    `json:"detail"` // what /healthz says of it; nil for memory
}

// Options configures Handler.
type Options struct {
	// Source is the guard. Required.
	Source Source
	// TokenRequired reports whether the admin API wants a bearer token
	// (admin.token or admin.token_file): the page then asks for it before
	// its first poll. Nil: never.
	TokenRequired func() bool
	// Now is the clock the overview is dated with. Nil: time.Now.
	Now func() time.Time
}

// DefaultTop and MaxTop bound the keys an overview lists.
const (
	DefaultTop = 15
	MaxTop     = 100
)

//go:embed page.html
var page []byte

// tokenPage is the page told to ask for the admin token before it polls.
var tokenPage = bytes.Replace(page, []byte(`<meta name="headroom-token" content="none">`), []byte(`<meta name="headroom-token" content="required">`), 1)

// Handler serves the page at "/" and the overview at "/v1/overview". The
// page itself holds no data and needs no token; the overview is served
// behind whatever the caller wraps it in (the admin API's token check).
func Handler(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		// Everything the page needs is inline; it talks only to this address.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		b := page
		if o.TokenRequired != nil && o.TokenRequired() {
			b = tokenPage
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /v1/overview", func(w http.ResponseWriter, r *http.Request) {
		top := DefaultTop
		if v := r.URL.Query().Get("top"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxTop {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_top", "message": fmt.Sprintf("top must be an integer from 1 to %d", MaxTop)})
				return
			}
			top = n
		}
		writeJSON(w, http.StatusOK, Build(o.Source, top, o.Now()))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
