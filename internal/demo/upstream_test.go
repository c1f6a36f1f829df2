package demo

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestUpstreamServesOneRequestPerWorker(t *testing.T) {
	up, err := StartUpstream(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	const n = 6
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/x?work=200ms", up.URL()), nil)
			req.Header.Set("X-Request-Id", fmt.Sprint(i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	recs := up.Records()
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	// Never more than 2 requests worked on at once.
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, r := range recs {
		if !r.Finished || !r.API || r.Worker() < 200*time.Millisecond {
			t.Fatalf("record %+v: want a finished API request that worked at least 200ms", r)
		}
		edges = append(edges, edge{r.Started, +1}, edge{r.Done, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].d < edges[j].d
		}
		return edges[i].at.Before(edges[j].at)
	})
	busy, most := 0, 0
	for _, e := range edges {
		busy += e.d
		most = max(most, busy)
	}
	if most > 2 || most < 1 {
		t.Fatalf("%d requests were worked on at once by 2 workers", most)
	}
	if !up.Idle() {
		t.Fatalf("upstream not idle after all answers: %+v", up.Stats())
	}
}

func TestUpstreamRejectsBadWork(t *testing.T) {
	up, err := StartUpstream(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	resp, err := http.Get(up.URL() + "/ui/x?work=forever")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

// The upstream keeps working after the client gave up, as unicorn does:
// the client's time and the worker's time differ.
func TestAbandonedRequestKeepsTheWorker(t *testing.T) {
	up, err := StartUpstream(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	api := &APIClient{Base: up.URL(), Key: "k", Concurrency: 1, MinWork: 600 * time.Millisecond, MaxWork: 600 * time.Millisecond,
		Timeout: 100 * time.Millisecond, RetryEvery: time.Second, Seed: 1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { api.Run(ctx); close(done) }()
	for len(api.Samples()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	s := api.Samples()[0]
	if !s.Abandoned || s.Status != 0 {
		t.Fatalf("first sample %+v: want abandoned at the client's timeout", s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !up.Idle() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range up.Records() {
		if r.ID == s.ID {
			if !r.Finished || r.Worker() < 600*time.Millisecond {
				t.Fatalf("upstream record %+v: want the full 600ms worked", r)
			}
			return
		}
	}
	t.Fatalf("no upstream record for %s", s.ID)
}
