package findings

import (
	"sort"
	"strings"
)

// topK is a Space-Saving summary (Metwally et al.): at most k entries, each
// an over-estimate of its key's weight by at most err. Every heavy hitter
// (weight above total/k) is guaranteed to be present, which is all the
// attribution needs, and memory stays k entries whatever the cardinality of
// user agents, clients or paths in the log.
//
// Each entry carries two auxiliary sums (bytes when weighting by requests,
// requests when weighting by bytes, logged seconds, ...), exact since the key
// entered the summary.
type topK struct {
	k       int
	entries []tkEntry
	index   map[string]int
	last    int       // entry of the last addBytes hit
	in      *interner // nil: every new key is copied
}

// interner shares the strings of dimension values among a collector's
// summaries. The same network or path recurs in every time bucket, and a
// full Space-Saving summary takes in a new key on every miss, so copying
// each one would allocate on most log lines. Bounded: forgotten when full.
type interner struct {
	m   map[string]string
	max int
}

func newInterner(max int) *interner {
	return &interner{m: make(map[string]string), max: max}
}

func (in *interner) get(b []byte) string {
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.m) >= in.max {
		clear(in.m)
	}
	in.m[s] = s
	return s
}

type tkEntry struct {
	Key    string
	W, Err int64
	A, B   int64
}

func newTopK(k int) *topK {
	return &topK{k: k, index: make(map[string]int, k), entries: make([]tkEntry, 0, k)}
}

// addBytes counts key (which may alias a reused buffer: it is cloned only
// when it enters the summary) with weight w and auxiliary sums a and b.
func (t *topK) addBytes(key []byte, w, a, b int64) {
	// Consecutive lines often repeat a value (status 200, GET, the same
	// agent fetching a page's images): check the last hit before hashing.
	if l := t.last; l < len(t.entries) && t.entries[l].Key == string(key) {
		e := &t.entries[l]
		e.W += w
		e.A += a
		e.B += b
		return
	}
	if i, ok := t.index[string(key)]; ok {
		t.last = i
		e := &t.entries[i]
		e.W += w
		e.A += a
		e.B += b
		return
	}
	if t.in != nil {
		t.insert(t.in.get(key), w, a, b)
		return
	}
	t.insert(string(key), w, a, b)
}

// add is addBytes for a string key.
func (t *topK) add(key string, w, a, b int64) {
	if i, ok := t.index[key]; ok {
		e := &t.entries[i]
		e.W += w
		e.A += a
		e.B += b
		return
	}
	t.insert(strings.Clone(key), w, a, b)
}

// insert adds a key the summary may keep (a copy, not an alias).
func (t *topK) insert(key string, w, a, b int64) {
	if len(t.entries) < t.k {
		t.index[key] = len(t.entries)
		t.entries = append(t.entries, tkEntry{Key: key, W: w, A: a, B: b})
		return
	}
	// Replace the lightest entry; the newcomer inherits its weight as error
	// (the Space-Saving rule) but starts its auxiliary sums afresh.
	mi := 0
	for i := 1; i < len(t.entries); i++ {
		if t.entries[i].W < t.entries[mi].W {
			mi = i
		}
	}
	old := t.entries[mi]
	delete(t.index, old.Key)
	t.index[key] = mi
	t.entries[mi] = tkEntry{Key: key, W: old.W + w, Err: old.W, A: a, B: b}
}

// merge folds o into t (the mergeable-summaries rule: sum matching keys, keep
// the k heaviest).
func (t *topK) merge(o *topK) {
	if o == nil {
		return
	}
	for _, e := range o.entries {
		if i, ok := t.index[e.Key]; ok {
			x := &t.entries[i]
			x.W += e.W
			x.Err += e.Err
			x.A += e.A
			x.B += e.B
			continue
		}
		t.index[e.Key] = len(t.entries)
		t.entries = append(t.entries, e)
	}
	if len(t.entries) <= t.k {
		return
	}
	sort.Slice(t.entries, func(i, j int) bool {
		if t.entries[i].W != t.entries[j].W {
			return t.entries[i].W > t.entries[j].W
		}
		return t.entries[i].Key < t.entries[j].Key
	})
	t.entries = t.entries[:t.k]
	clear(t.index)
	for i, e := range t.entries {
		t.index[e.Key] = i
	}
}

// sorted returns the entries heaviest first (a copy).
func (t *topK) sorted() []tkEntry {
	if t == nil {
		return nil
	}
	out := append([]tkEntry(nil), t.entries...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].W != out[j].W {
			return out[i].W > out[j].W
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// get returns the entry for key and whether it is tracked.
func (t *topK) get(key string) (tkEntry, bool) {
	if t == nil {
		return tkEntry{}, false
	}
	i, ok := t.index[key]
	if !ok {
		return tkEntry{}, false
	}
	return t.entries[i], true
}
