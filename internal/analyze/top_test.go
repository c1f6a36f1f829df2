package analyze

import (
	"fmt"
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
		observe(tab, fmt.Sprintf("rare-%d", i), &one)
		if i%100 == 0 {
			observe(tab, "frequent", &counters{Requests: 1, Bytes: 1})
		}
		if i%5000 == 0 {
			observe(tab, "big-downloads", &counters{Requests: 1, Bytes: 50_000_000})
			observe(tab, "slow-reports", &counters{Requests: 1, WorkerNs: 30e9})
		}
		if tab.Len() > capacity {
			t.Fatalf("table grew to %d entries (capacity %d)", tab.Len(), capacity)
		}
	}
	check := func(measure func(*topEntry) int64, key string, want counters) {
		t.Helper()
		top := tab.Top(1, measure)
		if len(top) == 0 || top[0].Key != key || top[0].V.counters != want {
			t.Errorf("top = %+v, want %s with %+v", top, key, want)
		}
	}
	check(byRequests, "frequent", counters{Requests: 10_000, Bytes: 10_000})
	check(byBytes, "big-downloads", counters{Requests: 200, Bytes: 200 * 50_000_000})
	check(byWorker, "slow-reports", counters{Requests: 200, WorkerNs: 200 * 30e9})
	if !tab.Pruned() || tab.Bound(0) < 1 {
		t.Errorf("pruned=%v bound=%d: the report must say counts are approximate", tab.Pruned(), tab.Bound(0))
	}
}

// A value dropped in several prunes is under-counted by the sum of its
// drops; the table's bound (the report's ErrorBound) must cover that, which
// the largest single drop did not.
func TestTopTableBoundCoversRepeatedDrops(t *testing.T) {
	tab := newTopTable(8) // keeps the top 2 by each measure
	one := counters{Requests: 1}
	var victim int64
	for round := range 6 {
		observe(tab, "victim", &one)
		victim++
		for i := range 8 {
			observe(tab, fmt.Sprintf("r%d-%d", round, i), &counters{Requests: 5, Bytes: 5, WorkerNs: 5})
		}
	}
	got := int64(0)
	if e := tab.Find("victim"); e != nil {
		got = e.V.Requests
	}
	if got > victim || victim > got+tab.Bound(0) {
		t.Fatalf("victim: reported %d, true %d, bound %d", got, victim, tab.Bound(0))
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

// TestTopTablePruneIsDeterministic: a table over capacity with many equal
// counts keeps the same values on every run, whatever order the map
// iterates in (reports of large logs must not change between runs).
func TestTopTablePruneIsDeterministic(t *testing.T) {
	kept := func() string {
		tab := newTopTable(64)
		one := counters{Requests: 1, Bytes: 1}
		for i := range 1000 {
			observe(tab, fmt.Sprintf("client-%03d", i), &one)
		}
		var keys []string
		for _, e := range tab.Top(64, byRequests) {
			keys = append(keys, e.Key)
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
