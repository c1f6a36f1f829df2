package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Sample is one request as its client saw it.
type Sample struct {
	ID        string
	Start     time.Time
	Latency   time.Duration // until the response was read, or the client gave up
	Status    int           // 0 when there was no response
	Abandoned bool          // the client's timeout fired first
	Err       string        // any other failure
	Work      time.Duration // the work the request asked for
}

// newClient returns an HTTP client for a simulated user. Each has its own
// transport, so one user's connections never wait behind another's.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// do sends one GET and reads the whole answer.
func do(ctx context.Context, c *http.Client, url, id, apiKey string, work time.Duration) Sample {
	s := Sample{ID: id, Start: time.Now(), Work: work}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	req.Header.Set("X-Request-Id", id)
	req.Header.Set("User-Agent", "headroom-demo")
	if apiKey != "" {
		req.Header.Set("X-Api-Key", apiKey)
		req.Header.Set("User-Agent", "NewRelic Exporter (headroom demo)")
	}
	resp, err := c.Do(req)
	if err == nil {
		s.Status = resp.StatusCode
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	s.Latency = time.Since(s.Start)
	if err != nil {
		var te interface{ Timeout() bool }
		switch {
		case ctx.Err() != nil:
			s.Err = "stopped"
		case errors.As(err, &te) && te.Timeout():
			s.Abandoned = true
		default:
			s.Err = err.Error()
		}
	}
	return s
}

// recorder collects samples from several goroutines.
type recorder struct {
	mu      sync.Mutex
	samples []Sample
}

func (r *recorder) add(s Sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

func (r *recorder) all() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sample(nil), r.samples...)
}

// lastAnswered returns the most recent request that got a response.
func (r *recorder) lastAnswered() (Sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.samples) - 1; i >= 0; i-- {
		if r.samples[i].Status != 0 {
			return r.samples[i], true
		}
	}
	return Sample{}, false
}

// UIUser is the application's people clicking through its pages: a new
// cheap page request every Every, whoever is still waiting for earlier ones
// (people keep arriving when the site is slow), with a browser's long
// Timeout, so slowness shows as latency rather than errors.
type UIUser struct {
	Base    string        // the guard's URL
	Work    time.Duration // each page's work upstream
	Every   time.Duration // time between page requests
	Timeout time.Duration
	rec     recorder
}

// maxOutstanding bounds the UI's requests waiting at once, so a starved
// upstream cannot make the demo open connections without end.
const maxOutstanding = 256

// Run makes requests until ctx ends, then waits for those outstanding
// (they end with ctx).
func (u *UIUser) Run(ctx context.Context) {
	c := newClient(u.Timeout)
	sem := make(chan struct{}, maxOutstanding)
	var wg sync.WaitGroup
	t := time.NewTicker(u.Every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				url := fmt.Sprintf("%s/ui/dashboard?work=%s", u.Base, u.Work)
				// Pages still waiting when the demo stops are kept: they are
				// the starved ones.
				u.rec.add(do(ctx, c, url, "ui-"+strconv.Itoa(i), "", u.Work))
			}()
		default: // too many waiting: this visitor gives up before asking
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// Samples returns the requests made so far.
func (u *UIUser) Samples() []Sample { return u.rec.all() }

// APIClient is seed 03's exporter: it asks for expensive reports (each
// taking MinWork..MaxWork of a worker) Concurrency at a time, gives up on
// each after Timeout and asks again straight away; refused (429), it retries
// after RetryEvery, ignoring Retry-After as such scripts do.
type APIClient struct {
	Base             string
	Key              string
	Concurrency      int
	MinWork, MaxWork time.Duration
	Timeout          time.Duration
	RetryEvery       time.Duration
	Seed             uint64
	rec              recorder
}

// Run makes requests until ctx ends.
func (a *APIClient) Run(ctx context.Context) {
	c := newClient(a.Timeout)
	var wg sync.WaitGroup
	for w := range a.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(a.Seed, uint64(w)))
			for i := 0; ctx.Err() == nil; i++ {
				work := a.MinWork + time.Duration(r.Int64N(int64(a.MaxWork-a.MinWork)+1))
				work = work.Round(100 * time.Millisecond)
				url := fmt.Sprintf("%s/api/v2/applications/33591900/metrics.json?work=%s", a.Base, work)
				// A request already sent runs to its own timeout when the
				// demo ends, so every one is abandoned, answered or refused.
				s := do(context.WithoutCancel(ctx), c, url, fmt.Sprintf("api-%d-%d", w, i), a.Key, work)
				a.rec.add(s)
				if !s.Abandoned && s.Status != http.StatusOK {
					sleep(ctx, a.RetryEvery)
				}
			}
		}()
	}
	wg.Wait()
}

// Samples returns the requests made so far.
func (a *APIClient) Samples() []Sample { return a.rec.all() }

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
