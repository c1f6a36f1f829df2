package analyze

import (
	"slices"
	"strings"
)

// counters are what every table row and time bucket adds up.
type counters struct {
	Requests int64
	Bytes    int64
	WorkerNs int64 // upstream (worker) time, nanoseconds
	Errors   int64 // 5xx answers
}

func (c *counters) add(o *counters) {
	c.Requests += o.Requests
	c.Bytes += o.Bytes
	c.WorkerNs += o.WorkerNs
	c.Errors += o.Errors
}

type topEntry struct {
	counters
	key  string
	aux  string // derived value cached with the key (a user agent's family)
	mark uint32 // == topTable.gen: kept by the current prune
	// link is aux's entry in the table aux is counted in (observeAux),
	// valid while that entry still holds aux as its key.
	link *topEntry
	// os and osLink are a user agent's operating system family and its
	// entry in the OS table, as aux and link are for the agent's family.
	os     string
	osLink *topEntry
	// lat holds the latency distributions of an endpoint (path template
	// table only), for its quantiles.
	lat *latency
}

// topTable counts requests, bytes and worker time per value of one
// dimension in bounded memory. Up to capacity values are counted exactly;
// beyond that the table prunes itself back to the values that rank high by
// any of the three measures (a lossy-counting variant of space-saving that
// keeps the heavy hitters by requests, by bytes and by worker time alike).
// A value dropped and seen again restarts from zero, so counts are lower
// bounds; lost records the largest counts ever dropped, which bounds how far
// below the truth any reported count can be.
type topTable struct {
	m        map[string]*topEntry
	capacity int
	lost     counters // maximum pruned counts (error bound)
	pruned   bool
	free     []*topEntry
	gen      uint32
	vals     []int64     // prune's scratch
	all      []*topEntry // prune's scratch
	tied     []*topEntry // prune's scratch
}

func newTopTable(capacity int) *topTable {
	return &topTable{m: make(map[string]*topEntry, 64), capacity: capacity}
}

// get returns the entry for key, creating it (with a copy of key, which may
// alias a reused buffer) when new; isNew tells the caller to fill aux.
func (t *topTable) get(key string) (e *topEntry, isNew bool) {
	if e, ok := t.m[key]; ok {
		return e, false
	}
	if len(t.m) >= t.capacity {
		t.prune()
	}
	if n := len(t.free); n > 0 {
		e = t.free[n-1]
		t.free = t.free[:n-1]
		*e = topEntry{}
	} else {
		e = &topEntry{}
	}
	e.key = strings.Clone(key)
	t.m[e.key] = e
	return e, true
}

func (t *topTable) observe(key string, c *counters) *topEntry {
	e, _ := t.get(key)
	e.add(c)
	return e
}

// observeAux counts from.aux (a client's network, an agent's family): through
// from.link when it still points at aux's entry, which saves hashing aux
// on every line, or else by lookup, remembering the entry in from.link.
// Entries freed by prune lose their key, so a stale link never matches.
func (t *topTable) observeAux(from *topEntry, c *counters) {
	t.observeLinked(from.aux, &from.link, c)
}

// observeLinked counts value through *link when it still points at value's
// entry, or else by lookup, remembering the entry in *link.
func (t *topTable) observeLinked(value string, link **topEntry, c *counters) {
	if l := *link; l != nil && l.key != "" && l.key == value {
		l.add(c)
		return
	}
	*link = t.observe(value, c)
}

// prune keeps the top quarter of capacity by each measure and drops the
// rest, so a prune happens at most once per capacity/4 new values. It finds
// each measure's cut-off by sorting plain integers (cheap) rather than the
// entries.
func (t *topTable) prune() {
	k := max(t.capacity/4, 1)
	t.gen++
	// One pass over the map; the measures then scan a slice.
	all := t.all[:0]
	for _, e := range t.m {
		all = append(all, e)
	}
	vals := t.vals[:0]
	for _, measure := range [...]func(*topEntry) int64{byRequests, byBytes, byWorker} {
		vals = vals[:0]
		for _, e := range all {
			vals = append(vals, measure(e))
		}
		cut := kthLargest(vals, k)
		// Values above the cut-off are kept; ties at it only while the
		// quota lasts, so a table of equal counts still shrinks. Zero is
		// never worth keeping (worker time in a log without it).
		ties := 0
		if cut > 0 {
			ties = k
			for _, v := range vals {
				if v > cut {
					ties--
				}
			}
		}
		tied := t.tied[:0]
		for _, e := range all {
			switch v := measure(e); {
			case v > cut:
				e.mark = t.gen
			case v == cut && ties > 0 && e.mark != t.gen:
				tied = append(tied, e)
			}
		}
		// Ties beyond the quota are kept in key order, not in the map's
		// (random) order: the same log gives the same tables on every run.
		if len(tied) > ties {
			slices.SortFunc(tied, func(a, b *topEntry) int { return strings.Compare(a.key, b.key) })
			tied = tied[:ties]
		}
		for _, e := range tied {
			e.mark = t.gen
		}
		clear(tied)
		t.tied = tied[:0]
	}
	t.vals = vals
	for _, e := range all {
		if e.mark == t.gen {
			continue
		}
		t.lost.Requests = max(t.lost.Requests, e.Requests)
		t.lost.Bytes = max(t.lost.Bytes, e.Bytes)
		t.lost.WorkerNs = max(t.lost.WorkerNs, e.WorkerNs)
		t.lost.Errors = max(t.lost.Errors, e.Errors)
		delete(t.m, e.key)
		e.key, e.link, e.osLink, e.lat = "", nil, nil, nil // no link may find it (observeAux)
		t.free = append(t.free, e)
	}
	clear(all)
	t.all = all[:0]
	t.pruned = true
}

// kthLargest returns the k-th largest of vals (1-based; the smallest when
// k exceeds len(vals)), reordering vals: Hoare's selection, linear on
// average, where a sort would be n log n on every prune.
func kthLargest(vals []int64, k int) int64 {
	if len(vals) == 0 {
		return 0
	}
	target := max(len(vals)-k, 0) // index in ascending order
	lo, hi := 0, len(vals)-1
	for lo < hi {
		pivot := vals[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for vals[i] < pivot {
				i++
			}
			for vals[j] > pivot {
				j--
			}
			if i <= j {
				vals[i], vals[j] = vals[j], vals[i]
				i++
				j--
			}
		}
		switch {
		case target <= j:
			hi = j
		case target >= i:
			lo = i
		default:
			return vals[target]
		}
	}
	return vals[target]
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// merge folds o into t (shards of one run).
func (t *topTable) merge(o *topTable) {
	for _, e := range o.m {
		mine, isNew := t.get(e.key)
		if isNew {
			mine.aux, mine.os = e.aux, e.os
		}
		mine.add(&e.counters)
		if e.lat != nil {
			if mine.lat == nil {
				mine.lat = &latency{req: newSketch()}
			}
			mine.lat.merge(e.lat)
		}
	}
	t.pruned = t.pruned || o.pruned
	t.lost.Requests += o.lost.Requests
	t.lost.Bytes += o.lost.Bytes
	t.lost.WorkerNs += o.lost.WorkerNs
	t.lost.Errors += o.lost.Errors
}

// top returns the n heaviest entries by measure, ties broken by key so
// reports are deterministic.
func (t *topTable) top(n int, measure func(*topEntry) int64) []*topEntry {
	entries := make([]*topEntry, 0, len(t.m))
	for _, e := range t.m {
		if measure(e) > 0 {
			entries = append(entries, e)
		}
	}
	slices.SortFunc(entries, func(a, b *topEntry) int {
		if c := cmpDesc(measure(a), measure(b)); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	return entries[:min(n, len(entries))]
}
