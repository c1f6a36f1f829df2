package analyze

import "github.com/headroom-dev/headroom/internal/heavy"

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

// topVal is what a table row carries besides its key.
type topVal struct {
	counters
	aux string // derived value cached with the key (a user agent's family)
	// link is aux's entry in the table aux is counted in (observeAux),
	// valid while that entry still holds aux as its key (Entry.Holds).
	link *topEntry
	// os and osLink are a user agent's operating system family and its
	// entry in the OS table, as aux and link are for the agent's family.
	os     string
	osLink *topEntry
	// lat holds the latency distributions of an endpoint (path template
	// table only), for its quantiles.
	lat *latency
}

// topEntry is one row of a topTable; its address is stable while it holds
// its key, so entries of one table link to entries of another.
type topEntry = heavy.Entry[topVal]

// topTable counts requests, bytes and worker time per value of one
// dimension in bounded memory: heavy's Prune policy ranked by those three
// measures. Up to capacity values are counted exactly; beyond that the
// table prunes itself back to the values in the top quarter by any of the
// three (the heavy hitters by requests, by bytes and by worker time alike).
// A value dropped and seen again restarts from zero, so counts are lower
// bounds, and Bound(0) bounds how far below the truth any reported request
// count can be (see heavy.Prune).
type topTable = heavy.Summary[topVal]

func newTopTable(capacity int) *topTable {
	return heavy.NewPrune[topVal](capacity, byRequests, byBytes, byWorker)
}

// observe counts key (which may alias a reused buffer: it is copied when
// new) in t.
func observe(t *topTable, key string, c *counters) *topEntry {
	e, _ := t.Get(key)
	e.V.add(c)
	return e
}

// observeAux counts from.aux (a client's network, an agent's family) in t:
// through from.link when it still points at aux's entry, which saves
// hashing aux on every line, or else by lookup, remembering the entry in
// from.link. Entries dropped by a prune hold no key, so a stale link never
// matches.
func observeAux(t *topTable, from *topEntry, c *counters) {
	observeLinked(t, from.V.aux, &from.V.link, c)
}

// observeLinked counts value in t through *link when it still points at
// value's entry, or else by lookup, remembering the entry in *link.
func observeLinked(t *topTable, value string, link **topEntry, c *counters) {
	if l := *link; l != nil && l.Holds(value) {
		l.V.add(c)
		return
	}
	*link = observe(t, value, c)
}

// mergeTop folds the row src of another shard into dst (topTable.Merge).
func mergeTop(dst, src *topVal, isNew bool) {
	if isNew {
		dst.aux, dst.os = src.aux, src.os
	}
	dst.add(&src.counters)
	if src.lat != nil {
		if dst.lat == nil {
			dst.lat = &latency{req: newSketch()}
		}
		dst.lat.merge(src.lat)
	}
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
