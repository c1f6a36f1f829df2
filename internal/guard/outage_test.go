package guard

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// Issue 17 item 3: an upstream outage locked every key out after it ended:
// each request the proxy timed out (504) was charged its whole timeout, so
// every key that had waited on the hung upstream was restricted. Worker
// time the upstream spent failing as a whole does not restrict keys; a key
// whose own requests time out while the pool is answered still pays.
func TestUpstreamOutageDoesNotRestrictKeys(t *testing.T) {
	const yaml = "budget: {worker_time: 100ms, window: 1m, restrict_for: 5m}\n" +
		"timeouts: {upstream: 300ms, upstream_header: 300ms}\n"
	var hung atomic.Bool
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hung.Load() || r.Header.Get("X-Api-Key") == "slow-key" {
			<-r.Context().Done() // the proxy gives up on it
			return
		}
		w.Write([]byte("ok"))
	})

	t.Run("the whole upstream hangs", func(t *testing.T) {
		e := newEnv(t, envOpts{yaml: yaml, upstream: upstream})
		hung.Store(true)
		keys := []string{"k-1", "k-2", "k-3", "k-4"}
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := e.do("GET", "/report", "X-Api-Key", k); res.status != http.StatusGatewayTimeout {
					t.Errorf("%s during the outage: status %d, want 504", k, res.status)
				}
			}()
		}
		wg.Wait()
		hung.Store(false)
		for _, k := range keys {
			if res := e.do("GET", "/report", "X-Api-Key", k); res.status != http.StatusOK {
				t.Errorf("%s after the outage: status %d, want 200 (the outage's time is not the key's)", k, res.status)
			}
		}
		m := metricsText(t, e)
		if !strings.Contains(m, `headroom_requests_total{outcome="upstream_error",pool="default"} 4`) ||
			!strings.Contains(m, `headroom_outage_uncharged_seconds_total{pool="default"}`) {
			t.Errorf("the outage's requests are not counted:\n%s", grepLines(m, "upstream_error\"}\n"+"outage"))
		}
		if !strings.Contains(e.logs.String(), "upstream failing") {
			t.Errorf("no log line says the upstream is failing:\n%s", e.logs.String())
		}
	})

	t.Run("one key's requests time out, the rest are answered", func(t *testing.T) {
		e := newEnv(t, envOpts{yaml: yaml, upstream: upstream})
		for range 6 {
			if res := e.do("GET", "/page", "X-Api-Key", "fast-key"); res.status != http.StatusOK {
				t.Fatalf("fast key: status %d", res.status)
			}
		}
		if res := e.do("GET", "/report", "X-Api-Key", "slow-key"); res.status != http.StatusGatewayTimeout {
			t.Fatalf("slow key: status %d, want 504", res.status)
		}
		if res := e.do("GET", "/report", "X-Api-Key", "slow-key"); res.status != http.StatusTooManyRequests {
			t.Errorf("slow key after 300ms of timed-out work on a 100ms budget: status %d, want 429", res.status)
		}
		if res := e.do("GET", "/page", "X-Api-Key", "fast-key"); res.status != http.StatusOK {
			t.Errorf("fast key: status %d", res.status)
		}
	})

	t.Run("a key restricted by its hung requests' time in flight", func(t *testing.T) {
		clock := budget.NewManualClock(t0)
		arrived := make(chan struct{}, 8)
		var hang atomic.Bool
		hang.Store(true)
		e := newEnv(t, envOpts{clock: clock, yaml: "budget: {worker_time: 2s, window: 1m, restrict_for: 5m}\n" +
			"timeouts: {upstream: 300ms, upstream_header: 300ms}\n",
			upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hang.Load() {
					arrived <- struct{}{}
					<-r.Context().Done()
					return
				}
				w.Write([]byte("ok"))
			})})
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.do("GET", "/report", "X-Api-Key", "hung-key")
			}()
		}
		for range 3 {
			testenv.Recv(t, "a request on the hung upstream", arrived)
		}
		clock.Advance(time.Second) // 3 s in flight, over the 2 s budget
		if res := e.do("GET", "/report", "X-Api-Key", "hung-key"); res.status != http.StatusTooManyRequests {
			t.Fatalf("3 s in flight on a 2 s budget: status %d, want 429", res.status)
		}
		wg.Wait() // the three time out: the outage shows
		hang.Store(false)
		clock.Advance(11 * time.Second) // the outage's failures leave the window
		if res := e.do("GET", "/page", "X-Api-Key", "other-key"); res.status != http.StatusOK {
			t.Fatalf("after the outage: status %d", res.status)
		}
		if res := e.do("GET", "/report", "X-Api-Key", "hung-key"); res.status != http.StatusOK {
			t.Errorf("the hung key after the outage: status %d, want 200 (only the outage's requests put it over)", res.status)
		}
		if !strings.Contains(e.logs.String(), "restriction lifted: only the upstream outage's requests put the key over its budget") {
			t.Errorf("no log line says why the restriction was lifted:\n%s", e.logs.String())
		}
	})
}
