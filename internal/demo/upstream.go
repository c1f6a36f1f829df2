package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream is a slow application server with a fixed pool of workers, each
// serving one request at a time, like unicorn (seeds/03): a request waits
// in a backlog until a worker is free, then holds that worker for as long
// as its work takes, whether or not anyone is still waiting for the answer
// (a busy Ruby process does not notice that the client left).
//
// A request's work is its `work` query parameter (a Go duration, "12.5s"),
// or DefaultWork. Requests under /api/ are counted as API work, the rest as
// UI work, so the live view can say who holds the workers.
type Upstream struct {
	workers int
	slots   chan struct{}
	stop    chan struct{}
	ln      net.Listener
	srv     *http.Server
	wg      sync.WaitGroup

	waiting atomic.Int64
	busyAPI atomic.Int64
	busyUI  atomic.Int64

	mu      sync.Mutex
	records []UpstreamRecord
}

// DefaultWork is the work of a request that does not say.
const DefaultWork = 20 * time.Millisecond

// UpstreamRecord is the upstream's own account of one request: the ground
// truth the guard's accounting is checked against.
type UpstreamRecord struct {
	ID       string // the request's X-Request-Id
	API      bool   // under /api/
	Arrived  time.Time
	Started  time.Time // a worker took it (zero if none did)
	Done     time.Time // the worker finished (zero if it had not when the upstream stopped)
	Finished bool
}

// Worker is the time a worker spent on the request.
func (r UpstreamRecord) Worker() time.Duration {
	if r.Started.IsZero() || r.Done.IsZero() {
		return 0
	}
	return r.Done.Sub(r.Started)
}

// Backlog is the time the request waited for a worker.
func (r UpstreamRecord) Backlog() time.Duration {
	if r.Started.IsZero() {
		return 0
	}
	return r.Started.Sub(r.Arrived)
}

// StartUpstream starts an upstream with the given number of workers on a
// loopback port.
func StartUpstream(workers int) (*Upstream, error) {
	if workers < 1 {
		return nil, fmt.Errorf("upstream workers: %d; need at least 1", workers)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start the demo upstream: %w", err)
	}
	u := &Upstream{
		workers: workers,
		slots:   make(chan struct{}, workers),
		stop:    make(chan struct{}),
		ln:      ln,
	}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	// unicorn answers one request per connection.
	u.srv.SetKeepAlivesEnabled(false)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		// Serve returns ErrServerClosed at Close; nothing else can stop a
		// loopback listener we own.
		_ = u.srv.Serve(ln)
	}()
	return u, nil
}

// URL is the upstream's base URL.
func (u *Upstream) URL() string { return "http://" + u.ln.Addr().String() }

// Workers is the size of the worker pool.
func (u *Upstream) Workers() int { return u.workers }

// UpstreamStats is a moment's view of the workers.
type UpstreamStats struct {
	BusyAPI, BusyUI int // workers busy with API and UI requests
	Waiting         int // requests in the backlog
}

// Stats returns the current state of the workers and the backlog.
func (u *Upstream) Stats() UpstreamStats {
	return UpstreamStats{
		BusyAPI: int(u.busyAPI.Load()),
		BusyUI:  int(u.busyUI.Load()),
		Waiting: int(u.waiting.Load()),
	}
}

// Records returns the upstream's account of every request so far.
func (u *Upstream) Records() []UpstreamRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]UpstreamRecord(nil), u.records...)
}

// Idle reports whether no request is waiting or being worked on.
func (u *Upstream) Idle() bool {
	s := u.Stats()
	return s.BusyAPI+s.BusyUI+s.Waiting == 0
}

// Close stops the upstream: requests still waiting or working are cut
// short (recorded as not finished).
func (u *Upstream) Close() {
	select {
	case <-u.stop:
		return
	default:
	}
	close(u.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = u.srv.Shutdown(ctx)
	u.srv.Close()
	u.wg.Wait()
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := UpstreamRecord{
		ID:      r.Header.Get("X-Request-Id"),
		API:     strings.HasPrefix(r.URL.Path, "/api/"),
		Arrived: time.Now(),
	}
	work := DefaultWork
	if s := r.URL.Query().Get("work"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 10*time.Minute {
			http.Error(w, "work: want a duration between 0 and 10m, like 12.5s", http.StatusBadRequest)
			return
		}
		work = d
	}
	defer func() {
		u.mu.Lock()
		u.records = append(u.records, rec)
		u.mu.Unlock()
	}()

	u.waiting.Add(1)
	select {
	case u.slots <- struct{}{}:
		u.waiting.Add(-1)
	case <-u.stop:
		u.waiting.Add(-1)
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	busy := &u.busyUI
	if rec.API {
		busy = &u.busyAPI
	}
	busy.Add(1)
	rec.Started = time.Now()
	t := time.NewTimer(work)
	select {
	case <-t.C:
		rec.Finished = true
	case <-u.stop:
		t.Stop()
	}
	rec.Done = time.Now()
	busy.Add(-1)
	<-u.slots
	if !rec.Finished {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"worked_seconds\":%.3f}\n", rec.Worker().Seconds())
}
