package analyze

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestTopTableBounded streams a million distinct rare values around a few
// heavy ones: memory stays at capacity, and the heavy hitters by requests,
// by bytes and by worker time all survive with exact counts.
func TestTopTableBounded(t *testing.T) {
	const capacity = 256
	tab := newTopTable(capacity)
	one := counters{Requests: 1, Bytes: 10}
	for i := 0; i < 1_000_000; i++ {
		tab.observe(fmt.Sprintf("rare-%d", i), &one)
		if i%100 == 0 {
			tab.observe("frequent", &counters{Requests: 1, Bytes: 1})
		}
		if i%5000 == 0 {
			tab.observe("big-downloads", &counters{Requests: 1, Bytes: 50_000_000})
			tab.observe("slow-reports", &counters{Requests: 1, WorkerNs: 30e9})
		}
		if len(tab.m) > capacity {
			t.Fatalf("table grew to %d entries (capacity %d)", len(tab.m), capacity)
		}
	}
	check := func(measure func(*topEntry) int64, key string, want counters) {
		t.Helper()
		top := tab.top(1, measure)
		if len(top) == 0 || top[0].key != key || top[0].counters != want {
			t.Errorf("top = %+v, want %s with %+v", top, key, want)
		}
	}
	check(byRequests, "frequent", counters{Requests: 10_000, Bytes: 10_000})
	check(byBytes, "big-downloads", counters{Requests: 200, Bytes: 200 * 50_000_000})
	check(byWorker, "slow-reports", counters{Requests: 200, WorkerNs: 200 * 30e9})
	if !tab.pruned || tab.lost.Requests < 1 {
		t.Errorf("pruned=%v lost=%+v: the report must say counts are approximate", tab.pruned, tab.lost)
	}
}

func TestSeriesCoarsens(t *testing.T) {
	s := newSeries()
	c := counters{Requests: 1}
	// Three years, one record every 10 minutes: minutes would be 157,680
	// buckets; the series must coarsen to stay bounded.
	for sec := int64(1_500_000_000); sec < 1_500_000_000+3*365*86400; sec += 600 {
		s.at(sec).add(&c)
		if len(s.buckets) > maxBuckets {
			t.Fatalf("%d buckets at width %d", len(s.buckets), s.width)
		}
	}
	var total int64
	for _, p := range s.dense(maxSeriesPoints) {
		total += p.Requests
	}
	if want := int64(3 * 365 * 144); total != want {
		t.Errorf("dense series sums to %d, want %d", total, want)
	}
	if s.width < 86400 {
		t.Errorf("width %d after three years, want days or coarser", s.width)
	}
}

func TestKthLargest(t *testing.T) {
	for n := 1; n < 60; n++ {
		for k := 1; k <= n+1; k++ {
			vals := make([]int64, n)
			for i := range vals {
				vals[i] = int64((i * 7919) % 13) // many ties
			}
			sorted := slices.Clone(vals)
			slices.Sort(sorted)
			want := sorted[max(n-k, 0)]
			if got := kthLargest(vals, k); got != want {
				t.Fatalf("n=%d k=%d: got %d want %d", n, k, got, want)
			}
		}
	}
}

// TestTopTablePruneIsDeterministic: a table over capacity with many equal
// counts keeps the same values on every run, whatever order the map
// iterates in (reports of large logs must not change between runs).
func TestTopTablePruneIsDeterministic(t *testing.T) {
	kept := func() string {
		tab := newTopTable(64)
		one := counters{Requests: 1, Bytes: 1}
		for i := range 1000 {
			tab.observe(fmt.Sprintf("client-%03d", i), &one)
		}
		var keys []string
		for _, e := range tab.top(64, byRequests) {
			keys = append(keys, e.key)
		}
		return strings.Join(keys, ",")
	}
	first := kept()
	for run := range 20 {
		if got := kept(); got != first {
			t.Fatalf("run %d kept\n%s\nrun 0 kept\n%s", run+1, got, first)
		}
	}
}
