// Package admin is the guard's admin HTTP API over the admission core:
// health, metrics, and the keys (usage, restrictions) that an operator
// looks at and acts on. The proxy and the sidecar serve the same API.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/headroom-dev/headroom/internal/adminui"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
)

// StoreHealth is a store that can be unreachable (Redis): /healthz shows
// its state. The guard stays healthy while its store is down: it enforces
// budgets with its local view.
type StoreHealth interface {
	Health() (up bool, detail any)
}

// Options configures the admin API. Core is required.
type Options struct {
	Core *admit.Core
	// Health, if set, is the store's health, shown in /healthz.
	Health StoreHealth
	// Logger receives operators' actions. Nil: slog.Default().
	Logger *slog.Logger
	// Role names the front-end on the admin page: "proxy" (the default)
	// or "sidecar", whose pools nginx enforces, not the guard.
	Role string
	// Started is when the guard started, for the page's uptime. Zero: when
	// Handler is called.
	Started time.Time
}

// api is the admin API's state.
type api struct {
	core    *admit.Core
	health  StoreHealth
	log     *slog.Logger
	role    string
	started time.Time
}

// Handler returns the admin API handler:
//
//	GET    /healthz                      liveness (never needs the token)
//	GET    /metrics                      Prometheus metrics, prefixed headroom_
//	GET    /v1/keys[?limit=N]            keys by usage, highest first (fingerprints only)
//	GET    /v1/keys/{key}                one key: worker_seconds, in_flight, restricted_until, …
//	POST   /v1/keys/{key}/restrict       restrict now [?for=10m | ?until=RFC3339]
//	DELETE /v1/keys/{key}/restriction    lift a restriction and forgive the window's usage
//	GET    /                             the live page (internal/adminui)
//	GET    /v1/overview[?top=N]          what the page shows: top keys, restricted keys, pools, totals, store
//
// {key} is a raw API key (fingerprinted on arrival, never stored or
// logged), a fingerprint (fp-…) or a client address (addr:IP). With
// admin.token set, every endpoint but /healthz and / needs
// "Authorization: Bearer TOKEN" (the page at / holds no data and asks
// for the token).
func Handler(o Options) http.Handler {
	g := &api{core: o.Core, health: o.Health, log: o.Logger, role: o.Role, started: o.Started}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.role == "" {
		g.role = "proxy"
	}
	if g.started.IsZero() {
		g.started = g.core.Clock().Now()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := map[string]any{"status": "ok", "keys_tracked": g.core.Ledger().Len()}
		if g.health != nil {
			// Still 200: with its store down the proxy serves and enforces
			// on its local view; "degraded" says the fleet view is stale.
			up, detail := g.health.Health()
			h["store"] = detail
			if !up {
				h["status"] = "degraded"
			}
		}
		writeJSON(w, http.StatusOK, h)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.core.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/keys", g.listKeys)
	mux.HandleFunc("GET /v1/keys/{key}", g.getKey)
	mux.HandleFunc("POST /v1/keys/{key}/restrict", g.restrictKey)
	mux.HandleFunc("DELETE /v1/keys/{key}/restriction", g.liftKey)
	ui := adminui.Handler(adminui.Options{Source: g, TokenRequired: func() bool { return g.adminToken() != "" }})
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET /v1/overview", ui)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The page holds no data: it asks for the token, then polls
		// /v1/overview with it.
		if r.URL.Path != "/healthz" && r.URL.Path != "/" {
			if tok := g.adminToken(); tok != "" {
				got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
				if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
					w.Header().Set("WWW-Authenticate", `Bearer realm="headroom admin"`)
					writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized", "message": "send Authorization: Bearer <admin token>"})
					return
				}
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// adminToken is the configured token, read from admin.token_file when set
// (re-read on reload, so a rotated token takes effect without a restart).
func (g *api) adminToken() string {
	a := g.core.Config().Admin
	if a.TokenFile == "" {
		return a.Token
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		// Fail closed: an unreadable token file must not open the API.
		g.log.Error("read admin token file", "err", err)
		return "\x00unreadable"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

// KeyJSON is one key as the admin API shows it.
type KeyJSON struct {
	Key              string  `json:"key"`
	Tier             string  `json:"tier"`
	Label            string  `json:"label,omitempty"` // the override's label in the config file
	WorkerSeconds    float64 `json:"worker_seconds"`
	BudgetSeconds    float64 `json:"budget_seconds"`
	RemainingSeconds float64 `json:"remaining_seconds"`
	WindowSeconds    float64 `json:"window_seconds"`
	InFlight         int     `json:"in_flight"`
	MaxInFlight      int     `json:"max_in_flight"`
	Requests         int64   `json:"requests"`
	Restricted       bool    `json:"restricted"`
	RestrictedUntil  *string `json:"restricted_until"`
	Shadow           bool    `json:"shadow"`
}

func (g *api) keyJSON(s budget.KeyStatus) KeyJSON {
	lim := g.core.Limits(s.Key)
	k := KeyJSON{
		Key:              s.Key,
		Tier:             g.core.Tier(s.Key),
		Label:            g.core.Label(s.Key),
		WorkerSeconds:    round3(s.WorkerSeconds),
		BudgetSeconds:    lim.Budget.Seconds(),
		RemainingSeconds: round3(s.Remaining.Seconds()),
		WindowSeconds:    lim.Window.Seconds(),
		InFlight:         s.InFlight,
		MaxInFlight:      lim.MaxInFlight,
		Requests:         s.Requests,
		Shadow:           lim.Shadow,
	}
	if !s.RestrictedUntil.IsZero() {
		u := s.RestrictedUntil.UTC().Format(time.RFC3339)
		k.Restricted, k.RestrictedUntil = true, &u
	}
	return k
}

func (g *api) listKeys(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 100000 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_limit", "message": "limit must be an integer from 1 to 100000"})
			return
		}
		limit = n
	}
	top := g.core.Ledger().Top(limit, g.core.Limits)
	keys := make([]KeyJSON, 0, len(top))
	for _, s := range top {
		keys = append(keys, g.keyJSON(s))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys, "keys_tracked": g.core.Ledger().Len()})
}

func (g *api) getKey(w http.ResponseWriter, r *http.Request) {
	key := g.core.LedgerKey(r.PathValue("key"))
	writeJSON(w, http.StatusOK, g.keyJSON(g.core.Ledger().Status(key, g.core.Limits(key))))
}

func (g *api) restrictKey(w http.ResponseWriter, r *http.Request) {
	key := g.core.LedgerKey(r.PathValue("key"))
	lim := g.core.Limits(key)
	now := g.core.Clock().Now()
	until, err := restrictUntil(r, now, lim.RestrictFor)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_duration", "message": err.Error()})
		return
	}
	g.core.Ledger().Restrict(key, until)
	g.log.Warn("key restricted by an operator", "key", key, "until", until.UTC().Format(time.RFC3339), "admin", r.RemoteAddr)
	writeJSON(w, http.StatusOK, g.keyJSON(g.core.Ledger().Status(key, lim)))
}

// restrictUntil reads ?for=DURATION or ?until=RFC3339 (or the same fields
// of a JSON body); the default is the key's restrict_for.
func restrictUntil(r *http.Request, now time.Time, def time.Duration) (time.Time, error) {
	q := r.URL.Query()
	forS, untilS := q.Get("for"), q.Get("until")
	if forS == "" && untilS == "" && r.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var body struct {
			For   string `json:"for"`
			Until string `json:"until"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil && err != io.EOF {
			return time.Time{}, fmt.Errorf("body: %w (expected {\"for\": \"10m\"} or {\"until\": \"RFC 3339 time\"})", err)
		}
		forS, untilS = body.For, body.Until
	}
	switch {
	case forS != "":
		d, err := time.ParseDuration(forS)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("for=%q: want a positive duration such as 10m or 1h", forS)
		}
		return now.Add(d), nil
	case untilS != "":
		t, err := time.Parse(time.RFC3339, untilS)
		if err != nil || !t.After(now) {
			return time.Time{}, fmt.Errorf("until=%q: want a future RFC 3339 time such as 2026-01-02T15:04:05Z", untilS)
		}
		return t, nil
	}
	if def <= 0 {
		def = 5 * time.Minute
	}
	return now.Add(def), nil
}

func (g *api) liftKey(w http.ResponseWriter, r *http.Request) {
	key := g.core.LedgerKey(r.PathValue("key"))
	g.core.Ledger().Lift(key)
	g.log.Warn("key restriction lifted by an operator", "key", key, "admin", r.RemoteAddr)
	writeJSON(w, http.StatusOK, g.keyJSON(g.core.Ledger().Status(key, g.core.Limits(key))))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
