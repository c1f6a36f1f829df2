// Package demo runs the guard's whole story on loopback with nothing to
// install (`headroom demo`): a slow upstream with a fixed pool of workers
// (unicorn), the guard in front of it, a UI user making cheap requests and
// seed 03's exporter, an API key asking for 10-30 s reports with a 5 s
// client timeout. It shows the key being restricted once its worker time
// (in-flight included) passes its budget, the UI's latency before and after,
// and what the abandoned requests really cost compared with what the client
// saw, then points at the access log for `headroom logs analyze`.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// StoryLength is the run length the default timings are written for; a
// shorter run compresses every timing by Duration/StoryLength.
const StoryLength = 30 * time.Second

// Options configures a demo run. Zero fields take the defaults in
// DefaultOptions. Times are for a StoryLength run: Run scales them down
// (never up) for a shorter Duration, so an 8 s run tells the same story.
type Options struct {
	Duration time.Duration // how long the clients run (default 30s)
	Workers  int           // upstream workers (default 4)

	Budget      time.Duration // worker time per Window for each key (default 20s)
	Window      time.Duration // sliding window (default 1m)
	RestrictFor time.Duration // restriction once over budget (default 2m)
	MaxInFlight int           // the guard's per-key concurrency cap; 0 = none (the default)
	APIPool     int           // if > 0, an "api" pool with this many upstream slots; 0 = no pools

	APIConcurrency int           // the exporter's parallel requests (default 2)
	APIMinWork     time.Duration // its reports' work upstream (default 10s..30s)
	APIMaxWork     time.Duration
	ClientTimeout  time.Duration // the exporter's timeout (default 5s)
	APIStart       time.Duration // when the exporter starts (default 3s)
	UIWork         time.Duration // each UI page's work (default 50ms)
	UIEvery        time.Duration // time between UI page requests (default 200ms)

	// Drain is the longest the demo waits after Duration for requests
	// still running upstream, so their real cost is known (default 40s).
	Drain time.Duration

	// AccessLog is the guard's access log file; "" = access.log in a new
	// temporary directory.
	AccessLog string

	// Out receives the live view and the summary; nil = io.Discard.
	Out io.Writer
	// Live rewrites one status line in place (a terminal); otherwise a
	// progress line is printed every few seconds.
	Live bool
	// Width is the terminal's width, to keep the live line on one row;
	// 0 = 100.
	Width int
	// Seed makes the exporter's report sizes reproducible.
	Seed uint64
}

// DefaultOptions returns the 30-second story's settings.
func DefaultOptions() Options {
	return Options{
		Duration:       StoryLength,
		Workers:        4,
		Budget:         20 * time.Second,
		Window:         time.Minute,
		RestrictFor:    2 * time.Minute,
		APIConcurrency: 2,
		APIMinWork:     10 * time.Second,
		APIMaxWork:     30 * time.Second,
		ClientTimeout:  5 * time.Second,
		APIStart:       3 * time.Second,
		UIWork:         50 * time.Millisecond,
		UIEvery:        200 * time.Millisecond,
		Drain:          40 * time.Second,
		Seed:           3,
	}
}

// withDefaults fills zero fields and scales the story's timings to Duration.
func (o Options) withDefaults() (Options, float64) {
	d := DefaultOptions()
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setD(&o.Duration, d.Duration)
	if o.Workers == 0 {
		o.Workers = d.Workers
	}
	if o.APIConcurrency == 0 {
		o.APIConcurrency = d.APIConcurrency
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	setD(&o.Budget, d.Budget)
	setD(&o.Window, d.Window)
	setD(&o.RestrictFor, d.RestrictFor)
	setD(&o.APIMinWork, d.APIMinWork)
	setD(&o.APIMaxWork, d.APIMaxWork)
	setD(&o.ClientTimeout, d.ClientTimeout)
	setD(&o.APIStart, d.APIStart)
	setD(&o.UIWork, d.UIWork)
	setD(&o.UIEvery, d.UIEvery)
	setD(&o.Drain, d.Drain)
	if o.Out == nil {
		o.Out = io.Discard
	}
	scale := min(1, float64(o.Duration)/float64(StoryLength))
	for _, p := range []*time.Duration{&o.Budget, &o.Window, &o.RestrictFor, &o.APIMinWork, &o.APIMaxWork,
		&o.ClientTimeout, &o.APIStart, &o.UIWork, &o.UIEvery, &o.Drain} {
		*p = time.Duration(float64(*p) * scale).Round(time.Millisecond)
	}
	// The guard counts windows in whole seconds at least.
	o.Window = max(o.Window, time.Second)
	return o, scale
}

func (o Options) validate() error {
	switch {
	case o.Duration < 2*time.Second:
		return fmt.Errorf("--duration %s is too short for the story; use at least 2s (30s tells it best)", o.Duration)
	case o.Workers < 1 || o.Workers > 256:
		return fmt.Errorf("--workers %d: use 1 to 256 upstream workers", o.Workers)
	case o.APIConcurrency < 1 || o.APIConcurrency > 256:
		return fmt.Errorf("--api-concurrency %d: use 1 to 256", o.APIConcurrency)
	case o.Budget < 0 || o.MaxInFlight < 0 || o.APIPool < 0:
		return errors.New("--budget, --max-in-flight and --api-pool must not be negative")
	case o.APIMaxWork < o.APIMinWork:
		return fmt.Errorf("the API's work range %s..%s is backwards", o.APIMinWork, o.APIMaxWork)
	}
	return nil
}

// Result is what a run observed, for the summary and for tests.
type Result struct {
	Opts      Options // effective (scaled) settings
	Scale     float64
	Start     time.Time
	Ran       time.Duration // from start until the clients stopped
	AccessLog string
	AdminURL  string
	KeyFP     string // the API key's fingerprint (the key itself is never shown)

	Crossed         bool          // the key's usage passed its budget
	CrossedAt       time.Duration // since Start
	RunningAtCross  int
	Restricted      bool
	RestrictedAt    time.Duration // since Start
	UsedAtRestrict  float64       // the key's worker-seconds (in-flight included) when restricted
	RunningAtLimit  int           // its requests in flight then
	Drained         bool          // all its requests finished upstream after the restriction
	DrainedAt       time.Duration
	HeldAllWorkers  []Interval // when API requests held every upstream worker
	KeyWorkerAtEnd  float64    // the ledger's view of the key at the end
	UpstreamPending int        // requests the upstream had not finished when the demo stopped

	UI       []Sample
	API      []Sample
	Upstream []UpstreamRecord
	Log      LogSummary
	GuardLog []string // what the guard logged at warning level and above
}

// Interval is a stretch of the run, as offsets from its start.
type Interval struct{ From, To time.Duration }

// Run plays the story and returns what happened; it writes the live view
// to opts.Out as it goes but not the summary (see Result.WriteSummary).
func Run(ctx context.Context, opts Options) (*Result, error) {
	o, scale := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	logPath := o.AccessLog
	if logPath == "" {
		dir, err := os.MkdirTemp("", "headroom-demo-")
		if err != nil {
			return nil, fmt.Errorf("create a directory for the access log: %w", err)
		}
		logPath = filepath.Join(dir, "access.log")
	}

	up, err := StartUpstream(o.Workers)
	if err != nil {
		return nil, err
	}
	defer up.Close()

	var glog guardLog
	cfg := guardConfig(o, up.URL(), logPath)
	g, err := guard.New(guard.Options{
		Config: cfg,
		Secret: admit.RandomSecret(),
		Logger: slog.New(slog.NewTextHandler(&glog, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("start the guard: %w", err)
	}
	defer g.Close()
	proxyURL, stopProxy, err := serve(g)
	if err != nil {
		return nil, err
	}
	defer stopProxy(context.Background())
	adminURL, stopAdmin, err := serve(g.Admin())
	if err != nil {
		return nil, err
	}
	defer stopAdmin(context.Background())

	apiKey := newAPIKey()
	res := &Result{Opts: o, Scale: scale, AccessLog: logPath, AdminURL: adminURL, KeyFP: g.Fingerprint(apiKey)}
	writeHeader(o.Out, res)

	ui := &UIUser{Base: proxyURL, Work: o.UIWork, Every: o.UIEvery, Timeout: 60 * time.Second}
	api := &APIClient{
		Base: proxyURL, Key: apiKey, Concurrency: o.APIConcurrency,
		MinWork: o.APIMinWork, MaxWork: o.APIMaxWork, Timeout: o.ClientTimeout,
		RetryEvery: max(o.ClientTimeout/5, 100*time.Millisecond), Seed: o.Seed,
	}
	runCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	res.Start = time.Now()
	var clients sync.WaitGroup
	clients.Add(2)
	go func() { defer clients.Done(); ui.Run(runCtx) }()
	go func() {
		defer clients.Done()
		sleep(runCtx, o.APIStart)
		api.Run(runCtx)
	}()

	mon := &monitor{res: res, up: up, ledger: g.Ledger(), ui: ui, api: api,
		lim: budget.Limits{Budget: o.Budget, Window: o.Window}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	end := time.NewTimer(o.Duration)
	defer end.Stop()
	lastLine := time.Time{}
	lineEvery := max(o.Duration/10, 2*time.Second)
	view := func(phase string) {
		now := time.Now()
		line := mon.observe(now, false)
		switch {
		case o.Live && now.Sub(lastLine) >= 200*time.Millisecond:
			width := o.Width
			if width <= 0 {
				width = 100
			}
			fmt.Fprintf(o.Out, "\r\x1b[K%s", truncate(phase+line, width-1))
			lastLine = now
		case !o.Live && now.Sub(lastLine) >= lineEvery:
			fmt.Fprintf(o.Out, "%s%s\n", phase, line)
			lastLine = now
		}
	}
	interrupted := false
run:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break run
		case <-end.C:
			break run
		case <-tick.C:
			view("")
		}
	}
	stopClients()
	res.Ran = time.Since(res.Start)
	// The exporter's requests end at its own timeout; wait for them, then
	// for the upstream to finish what it was given, so the real cost of
	// every abandoned request is known.
	clientsDone := make(chan struct{})
	go func() { clients.Wait(); close(clientsDone) }()
	drainUntil := time.Now().Add(o.Drain)
	lastLine = time.Time{}
	cdone := false
	for {
		select {
		case <-clientsDone:
			cdone = true
		default:
		}
		if (cdone && up.Idle()) || time.Now().After(drainUntil) || ctx.Err() != nil {
			break
		}
		view("draining: ")
		<-tick.C
	}
	mon.observe(time.Now(), true)
	if o.Live {
		fmt.Fprint(o.Out, "\r\x1b[K")
	}
	res.UpstreamPending = countPending(up)
	res.KeyWorkerAtEnd = g.Ledger().Status(res.KeyFP, mon.lim).WorkerSeconds

	// Stop in order: the proxy (its handlers end with the upstream's
	// answers), the upstream (cutting what the drain left), then the guard,
	// which flushes the access log.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up.Close()
	stopProxy(sctx)
	stopAdmin(sctx)
	if err := g.Shutdown(sctx); err != nil {
		return nil, fmt.Errorf("stop the guard: %w", err)
	}
	<-clientsDone
	res.UI, res.API, res.Upstream = ui.Samples(), api.Samples(), up.Records()
	res.GuardLog = glog.lines()
	if res.Log, err = summarizeLog(logPath, res.KeyFP); err != nil {
		return res, err
	}
	if interrupted {
		return res, ctx.Err()
	}
	return res, nil
}

func guardConfig(o Options, upstream, logPath string) *config.Config {
	wt, win, rf := config.Duration(o.Budget), config.Duration(o.Window), config.Duration(o.RestrictFor)
	mif := o.MaxInFlight
	zero := config.Duration(0)
	cfg := &config.Config{
		Listen:   "127.0.0.1:0",
		Upstream: upstream,
		Admin:    config.Admin{Listen: "127.0.0.1:0"},
		Budget:   config.Limits{WorkerTime: &wt, Window: &win, RestrictFor: &rf, MaxInFlight: &mif},
		// The UI user carries no key, so it is known by its address; here
		// that is the loopback address the exporter shares, so the UI is
		// given no worker-time budget: its requests also wait in the
		// upstream's backlog, and the guard (like nginx) counts that wait.
		Overrides: []config.Override{{Client: "127.0.0.1", Limits: config.Limits{WorkerTime: &zero}}},
		// The clients stand where a load balancer would: the guard keeps
		// their X-Request-Id (it replaces an untrusted client's), which
		// the report joins the exporter's requests to the upstream's by.
		// Without X-Forwarded-For the client is still the peer.
		Keys:      config.Keys{TrustedProxies: []string{"127.0.0.1"}},
		AccessLog: config.AccessLog{Path: logPath, FlushInterval: config.Duration(200 * time.Millisecond)},
	}
	if o.APIPool > 0 {
		cfg.Pools = []config.Pool{
			{Name: "api", PathPrefixes: []string{"/api/"}, MaxConcurrent: o.APIPool, Queue: 64, QueueTimeout: config.Duration(o.ClientTimeout)},
			{Name: "ui", MaxConcurrent: 1024},
		}
	}
	cfg.SetDefaults()
	return cfg
}

// serve serves h on a loopback port and returns its URL and a stop function.
func serve(h http.Handler) (string, func(context.Context), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen on loopback: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	var once sync.Once
	return "http://" + ln.Addr().String(), func(ctx context.Context) {
		once.Do(func() {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		})
	}, nil
}

func newAPIKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "nrak-demo-" + hex.EncodeToString(b[:])
}

func countPending(up *Upstream) int {
	s := up.Stats()
	return s.BusyAPI + s.BusyUI + s.Waiting
}

// guardLog keeps the guard's warnings for the summary.
type guardLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *guardLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *guardLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ln := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		if len(ln) > 0 {
			out = append(out, string(ln))
		}
	}
	return out
}

// monitor samples the upstream and the ledger for the live view and the
// timeline.
type monitor struct {
	res    *Result
	up     *Upstream
	ledger *budget.Ledger
	ui     *UIUser
	api    *APIClient
	lim    budget.Limits

	heldSince time.Duration
	freedAt   time.Duration // when a worker came free in a held stretch; 0 = none
	held      bool
}

func (m *monitor) observe(now time.Time, final bool) string {
	r := m.res
	at := now.Sub(r.Start)
	st := m.up.Stats()
	ks := m.ledger.Status(r.KeyFP, m.lim)
	if !r.Crossed && m.lim.Budget > 0 && ks.WorkerSeconds >= m.lim.Budget.Seconds() {
		r.Crossed, r.CrossedAt, r.RunningAtCross = true, at, ks.InFlight
	}
	if !r.Restricted && !ks.RestrictedUntil.IsZero() {
		r.Restricted, r.RestrictedAt = true, at
		r.UsedAtRestrict, r.RunningAtLimit = ks.WorkerSeconds, ks.InFlight
	}
	if r.Restricted && !r.Drained && ks.InFlight == 0 && st.BusyAPI == 0 {
		r.Drained, r.DrainedAt = true, at
	}
	// Stretches when API requests held every worker. A worker freed for
	// an instant and taken by the next API request from the backlog does
	// not end a stretch: it must stay free for heldGap.
	const heldGap = 300 * time.Millisecond
	all := st.BusyAPI >= m.up.Workers()
	switch {
	case all && !m.held:
		m.held, m.heldSince = true, at
	case all:
		m.freedAt = 0
	case m.held && m.freedAt == 0:
		m.freedAt = at
	case m.held && at-m.freedAt >= heldGap:
		m.held = false
		r.HeldAllWorkers = append(r.HeldAllWorkers, Interval{m.heldSince, m.freedAt})
		m.freedAt = 0
	}
	if m.held && final {
		to := at
		if m.freedAt != 0 {
			to = m.freedAt
		}
		r.HeldAllWorkers = append(r.HeldAllWorkers, Interval{m.heldSince, to})
		m.held, m.freedAt = false, 0
	}

	bar := make([]byte, 0, 2*m.up.Workers())
	for i := range m.up.Workers() {
		switch {
		case i < st.BusyAPI:
			bar = append(bar, 'A')
		case i < st.BusyAPI+st.BusyUI:
			bar = append(bar, 'u')
		default:
			bar = append(bar, '.')
		}
	}
	uiLast := "-"
	if s, ok := m.ui.rec.lastAnswered(); ok {
		uiLast = fmtDur(s.Latency)
	}
	state := "allowed"
	if !ks.RestrictedUntil.IsZero() {
		state = "RESTRICTED"
	}
	return fmt.Sprintf("%5.1fs  workers [%s] backlog %-3d UI last page %-6s key %.11s…: %5.1f of %.1f worker-s, %d running, %s",
		at.Seconds(), bar, st.Waiting, uiLast, r.KeyFP, ks.WorkerSeconds, m.lim.Budget.Seconds(), ks.InFlight, state)
}

// truncate cuts s to at most n runes, so a live line never wraps.
func truncate(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
