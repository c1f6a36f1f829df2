package heavy

import (
	"iter"
	"slices"
	"strings"
)

// Policy is what a full summary does with a new key.
type Policy uint8

const (
	// SpaceSaving (Metwally et al.) keeps at most k entries ranked by one
	// weight, W. A new key replaces the entry of least W (the first such
	// entry in index order), inherits that W as its error Err and starts
	// its payload at zero. It guarantees, for every key, with total the sum
	// of all weights counted:
	//   - an entry's W over-estimates its key's true weight by at most Err,
	//     and Err ≤ total/k: 0 ≤ W − true ≤ Err ≤ total/k;
	//   - every key whose true weight exceeds total/k is present.
	// Payload sums are exact since the key last entered the summary. Merge
	// sums matching keys, W and Err alike, then keeps the k entries
	// heaviest by W (ties by key). With total the sum of the parts'
	// totals, a merged entry (after any number of merges) keeps
	// W − Err ≤ true (the count a caller can rely on),
	// W − true ≤ Err ≤ total/k and true − W ≤ total/k;
	// W alone may be under the truth, since a key the other part had
	// dropped counts 0 from it. After one merge of two summaries of
	// disjoint parts every key heavier than 2·total/k is present (one
	// heavier than total/k only may be trimmed).
	SpaceSaving Policy = iota + 1
	// Prune counts up to capacity keys exactly. A new key in a full summary
	// first prunes it back to the keys ranked in the top quarter of capacity
	// by any of its measures (ties at a measure's cut-off kept in key
	// order, a zero never kept; so at most measures × capacity/4 keys
	// survive a prune), so memory stays bounded and the heavy
	// hitters by every measure survive, not only by one weight. A key
	// dropped and seen again restarts from zero, so a reported value is a
	// lower bound; Bound(i) adds up, over every prune, the largest value of
	// measure i that prune dropped, so it bounds from above how far below
	// the truth any reported value of measure i can be:
	// reported ≤ true ≤ reported + Bound(i). Merge sums matching keys and
	// the two bounds (pruning again when the keys exceed capacity, which
	// adds to the bound in the same way).
	Prune
)

// Entry is one key's counts. W and Err are the Space-Saving weight and its
// over-estimate (left to the caller under Prune); V is the caller's payload.
// Under Prune an entry's address is stable while it holds its key: a caller
// may keep a pointer to it (a link from another summary's entry) and check
// it with Holds before use. (A Space-Saving merge that trims rebuilds its
// entries.)
type Entry[V any] struct {
	Key    string
	W, Err int64
	V      V
	tag    uint32 // the low 32 bits of Hash(Key): its home in the index
	// mark is 0 when the entry holds no key, 1 for a key that entered
	// since the last prune, else the gen of the last prune that kept it.
	mark uint32
}

// Holds reports whether the entry still holds key. An entry dropped by a
// prune holds no key until it is reused, so a stale link never matches.
func (e *Entry[V]) Holds(key string) bool { return e.mark != 0 && e.Key == key }

// Summary is a bounded heavy-hitter summary of string keys with one
// overflow Policy. Its entries live in chunks that never move (stable
// addresses), found through an open-addressing index keyed by Hash: the
// caller may pass a hash it computed once for several summaries, and
// replacing or dropping an entry costs no map deletion.
type Summary[V any] struct {
	policy         Policy
	chunkBits      uint
	capacity       int
	chunks         [][]Entry[V]
	first          []Entry[V] // chunks[0]: a Space-Saving summary's only one
	n              int        // entry indices in use: [0, n)
	live           int        // of which hold a key
	slots          []int32    // linear probing; entry index + 1, 0 when free
	in             *Interner
	*pruneState[V]               // Prune only: a Space-Saving summary stays small
	one            [1][]Entry[V] // chunks of a Space-Saving summary
}

// pruneState is what only the Prune policy needs.
type pruneState[V any] struct {
	free     []int32 // indices of dropped entries, reused last first
	measures []func(*Entry[V]) int64
	bound    []int64
	pruned   bool
	gen      uint32
	idx      []int32 // prune's scratch
	vals     []int64 // prune's scratch
	tied     []int32 // prune's scratch
}

// NewSpaceSaving returns a Space-Saving summary of k entries. New keys
// passed as bytes are taken through in when it is not nil, or copied.
func NewSpaceSaving[V any](k int, in *Interner) *Summary[V] {
	k = max(k, 1)
	s := &Summary[V]{policy: SpaceSaving, capacity: k, chunkBits: uint(bitsFor(k)), slots: make([]int32, slotsFor(k)), in: in}
	s.chunks = s.one[:0]
	return s
}

// pruneChunk is the chunk size of a Prune summary (1<<pruneChunkBits
// entries), which grows one chunk at a time.
const pruneChunkBits = 6

// NewPrune returns a Prune summary of capacity keys ranked by measures.
func NewPrune[V any](capacity int, measures ...func(*Entry[V]) int64) *Summary[V] {
	capacity = max(capacity, 1)
	return &Summary[V]{policy: Prune, capacity: capacity, chunkBits: uint(min(bitsFor(capacity), pruneChunkBits)),
		slots:      make([]int32, slotsFor(min(capacity, 32))),
		pruneState: &pruneState[V]{measures: measures, bound: make([]int64, len(measures))}}
}

// slotsFor sizes the index of n entries: a power of two at least 2n.
func slotsFor(n int) int { return 1 << bitsFor(max(2*n, 8)) }

// at is entry i.
func (s *Summary[V]) at(i int) *Entry[V] {
	if uint(i) < uint(len(s.first)) {
		return &s.first[i]
	}
	return &s.chunks[i>>s.chunkBits][i&(1<<s.chunkBits-1)]
}

// Len is how many keys the summary holds.
func (s *Summary[V]) Len() int {
	if s == nil {
		return 0
	}
	return s.live
}

// Cap is the most keys the summary holds (k, or the capacity).
func (s *Summary[V]) Cap() int { return s.capacity }

// Pruned reports whether a Prune summary (or one merged into it) ever
// dropped a key, so that its counts are lower bounds.
func (s *Summary[V]) Pruned() bool { return s.pruneState != nil && s.pruned }

// Bound is Prune's error bound of measure i (see Prune).
func (s *Summary[V]) Bound(i int) int64 { return s.bound[i] }

// find returns the index of the entry with key and hash h, or -1.
func find[K ~string | ~[]byte, V any](s *Summary[V], key K, h uint64) int {
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		j := s.slots[i]
		if j == 0 {
			return -1
		}
		if e := s.at(int(j - 1)); e.tag == uint32(h) && e.Key == string(key) {
			return int(j - 1)
		}
	}
}

// Lookup returns the entry of key, whose Hash is h, or nil.
func (s *Summary[V]) Lookup(key []byte, h uint64) *Entry[V] {
	if i := find(s, key, h); i >= 0 {
		return s.at(i)
	}
	return nil
}

// Find returns the entry of key, or nil (also on a nil summary).
func (s *Summary[V]) Find(key string) *Entry[V] {
	if s == nil {
		return nil
	}
	if i := find(s, key, HashString(key)); i >= 0 {
		return s.at(i)
	}
	return nil
}

// Get returns the entry of key, inserting it (with a copy of key, which may
// alias a reused buffer) when absent; isNew says it was.
func (s *Summary[V]) Get(key string) (e *Entry[V], isNew bool) {
	h := HashString(key)
	if i := find(s, key, h); i >= 0 {
		return s.at(i), false
	}
	return s.Insert(strings.Clone(key), h), true
}

// GetBytes is Get of a key whose Hash is h, passed as bytes the caller may
// reuse: a new key is taken through the interner, or copied.
func (s *Summary[V]) GetBytes(key []byte, h uint64) (e *Entry[V], isNew bool) {
	if i := find(s, key, h); i >= 0 {
		return s.at(i), false
	}
	if s.in != nil {
		return s.Insert(s.in.Get(key, h), h), true
	}
	return s.Insert(string(key), h), true
}

// Insert adds key, whose Hash is h and which the summary does not hold, and
// returns its entry. key is kept: it must not alias a reused buffer. A full
// summary makes room by its policy first; the returned entry's payload is
// zero, and under SpaceSaving its W and Err are the replaced entry's W.
func (s *Summary[V]) Insert(key string, h uint64) *Entry[V] {
	if s.live >= s.capacity {
		if s.policy == SpaceSaving {
			return s.replaceLightest(key, h)
		}
		s.prune()
	}
	var i int
	if s.pruneState != nil && len(s.free) > 0 {
		n := len(s.free)
		i = int(s.free[n-1])
		s.free = s.free[:n-1]
	} else {
		i = s.n
		if i>>s.chunkBits == len(s.chunks) {
			size := 1 << s.chunkBits
			if s.policy == SpaceSaving {
				size = s.capacity // its one chunk
			}
			s.chunks = append(s.chunks, make([]Entry[V], size))
			s.first = s.chunks[0]
		}
		s.n++
	}
	s.live++
	if 2*s.live > len(s.slots) {
		s.slots = make([]int32, 2*len(s.slots))
		s.reindex()
	}
	e := s.at(i)
	*e = Entry[V]{Key: key, tag: uint32(h), mark: 1}
	s.link(i)
	return e
}

// replaceLightest is Space-Saving's overflow: the first entry of least W
// gives its place and its W (as error) to key.
func (s *Summary[V]) replaceLightest(key string, h uint64) *Entry[V] {
	es := s.first[:s.n] // a Space-Saving summary has one chunk
	mi, mw := 0, es[0].W
	for i := 1; i < len(es); i++ {
		if w := es[i].W; w < mw {
			mi, mw = i, w
		}
	}
	s.unlink(mi)
	e := &es[mi]
	*e = Entry[V]{Key: key, W: mw, Err: mw, tag: uint32(h), mark: 1}
	s.link(mi)
	return e
}

// link indexes entry i (whose key is not indexed yet).
func (s *Summary[V]) link(i int) {
	mask := uint64(len(s.slots) - 1)
	j := uint64(s.at(i).tag) & mask
	for s.slots[j] != 0 {
		j = (j + 1) & mask
	}
	s.slots[j] = int32(i + 1)
}

// unlink removes entry i from the index (backward-shift deletion, so no
// tombstones accumulate).
func (s *Summary[V]) unlink(i int) {
	mask := uint64(len(s.slots) - 1)
	j := uint64(s.at(i).tag) & mask
	for s.slots[j] != int32(i+1) {
		j = (j + 1) & mask
	}
	for {
		s.slots[j] = 0
		k := j
		for {
			k = (k + 1) & mask
			x := s.slots[k]
			if x == 0 {
				return
			}
			home := uint64(s.at(int(x-1)).tag) & mask
			// Move x back into the hole at j unless its home lies
			// cyclically in (j, k].
			if j <= k {
				if j < home && home <= k {
					continue
				}
			} else if j < home || home <= k {
				continue
			}
			s.slots[j] = x
			j = k
			break
		}
	}
}

// reindex rebuilds the index of the live entries.
func (s *Summary[V]) reindex() {
	clear(s.slots)
	for i := range s.n {
		if s.at(i).mark != 0 {
			s.link(i)
		}
	}
}

// Indexed is how many entries the index finds where they are, or -1 when
// it holds a slot too many or too few: a consistency check for tests.
func (s *Summary[V]) Indexed() int {
	used := 0
	for _, x := range s.slots {
		if x != 0 {
			used++
		}
	}
	if used != s.live {
		return -1
	}
	n := 0
	for i := range s.n {
		if e := s.at(i); e.mark != 0 && e.tag == uint32(HashString(e.Key)) && find(s, e.Key, uint64(e.tag)) == i {
			n++
		}
	}
	return n
}

// All yields the entries in index order (the order they took their places).
func (s *Summary[V]) All() iter.Seq[*Entry[V]] {
	return func(yield func(*Entry[V]) bool) {
		if s == nil {
			return
		}
		for i := range s.n {
			if e := s.at(i); e.mark != 0 && !yield(e) {
				return
			}
		}
	}
}

// order is the one order of entries: by weight, heaviest first, then by key.
func order(wa, wb int64, ka, kb string) int {
	switch {
	case wa > wb:
		return -1
	case wa < wb:
		return 1
	}
	return strings.Compare(ka, kb)
}

// Sorted returns copies of the entries, heaviest by W first, ties by key
// (nil on a nil summary).
func (s *Summary[V]) Sorted() []Entry[V] {
	if s == nil {
		return nil
	}
	out := make([]Entry[V], 0, s.live)
	for e := range s.All() {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Entry[V]) int { return order(a.W, b.W, a.Key, b.Key) })
	return out
}

// Top returns the n entries heaviest by measure, ties by key, leaving out
// those whose measure is not positive.
func (s *Summary[V]) Top(n int, measure func(*Entry[V]) int64) []*Entry[V] {
	out := make([]*Entry[V], 0, s.live)
	for e := range s.All() {
		if measure(e) > 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *Entry[V]) int { return order(measure(a), measure(b), a.Key, b.Key) })
	return out[:min(n, len(out))]
}

// Merge folds o (a summary of the same policy and size over another part of
// the stream) into s: matching keys sum W and Err, and add folds o's payload
// into s's (isNew: s did not hold the key, its payload is zero). Entries are
// taken in o's index order, so a merge gives the same summary on every run.
func (s *Summary[V]) Merge(o *Summary[V], add func(dst, src *V, isNew bool)) {
	if o == nil {
		return
	}
	if s.policy == SpaceSaving {
		s.mergeSpaceSaving(o, add)
		return
	}
	for e := range o.All() {
		x, isNew := s.getHashed(e.Key, uint64(e.tag))
		x.W += e.W
		x.Err += e.Err
		add(&x.V, &e.V, isNew)
	}
	s.pruned = s.pruned || o.pruned
	for i := range s.bound {
		s.bound[i] += o.bound[i]
	}
}

// getHashed is Get of an immutable key whose Hash is h.
func (s *Summary[V]) getHashed(key string, h uint64) (*Entry[V], bool) {
	if i := find(s, key, h); i >= 0 {
		return s.at(i), false
	}
	return s.Insert(key, h), true
}

// mergeSpaceSaving sums matching keys, appends o's other keys in its order
// and, when they are more than k, keeps the k first in order of W, then key.
func (s *Summary[V]) mergeSpaceSaving(o *Summary[V], add func(dst, src *V, isNew bool)) {
	var extra []Entry[V]
	for e := range o.All() {
		if i := find(s, e.Key, uint64(e.tag)); i >= 0 {
			x := s.at(i)
			x.W += e.W
			x.Err += e.Err
			add(&x.V, &e.V, false)
			continue
		}
		x := Entry[V]{Key: e.Key, W: e.W, Err: e.Err, tag: e.tag, mark: 1}
		add(&x.V, &e.V, true)
		extra = append(extra, x)
	}
	if s.live+len(extra) <= s.capacity {
		for i := range extra {
			x := s.Insert(extra[i].Key, uint64(extra[i].tag))
			*x = extra[i]
		}
		return
	}
	all := make([]Entry[V], 0, s.live+len(extra))
	for e := range s.All() {
		all = append(all, *e)
	}
	all = append(all, extra...)
	slices.SortFunc(all, func(a, b Entry[V]) int { return order(a.W, b.W, a.Key, b.Key) })
	all = all[:s.capacity]
	s.chunks, s.first, s.n, s.live = s.one[:0], nil, 0, 0
	clear(s.slots)
	for i := range all {
		x := s.Insert(all[i].Key, uint64(all[i].tag))
		*x = all[i]
	}
}

// prune drops the keys not in the top quarter of capacity by any measure
// (Prune). It finds each measure's cut-off by selecting among plain
// integers (cheap) rather than sorting the entries.
func (s *Summary[V]) prune() {
	k := max(s.capacity/4, 1)
	s.gen++
	if s.gen < 2 { // wrapped: 0 and 1 mean no key and a new key
		s.gen = 2
	}
	idx := s.idx[:0]
	for i := range s.n {
		if s.at(i).mark != 0 {
			idx = append(idx, int32(i))
		}
	}
	vals := s.vals[:0]
	for _, measure := range s.measures {
		vals = vals[:0]
		for _, i := range idx {
			vals = append(vals, measure(s.at(int(i))))
		}
		cut := kthLargest(vals, k)
		// Values above the cut-off are kept; ties at it only while the
		// quota lasts, so a summary of equal counts still shrinks. Zero is
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
		tied := s.tied[:0]
		for _, i := range idx {
			e := s.at(int(i))
			switch v := measure(e); {
			case v > cut:
				e.mark = s.gen
			case v == cut && ties > 0 && e.mark != s.gen:
				tied = append(tied, i)
			}
		}
		// Ties beyond the quota are kept in key order: the same stream
		// gives the same summary whatever the entries' places.
		if len(tied) > ties {
			slices.SortFunc(tied, func(a, b int32) int { return strings.Compare(s.at(int(a)).Key, s.at(int(b)).Key) })
			tied = tied[:ties]
		}
		for _, i := range tied {
			s.at(int(i)).mark = s.gen
		}
		s.tied = tied[:0]
	}
	s.vals = vals
	dropped := make([]int64, len(s.measures))
	for _, i := range idx {
		e := s.at(int(i))
		if e.mark == s.gen {
			continue
		}
		for m, measure := range s.measures {
			dropped[m] = max(dropped[m], measure(e))
		}
		*e = Entry[V]{} // holds no key: no link may find it
		s.free = append(s.free, i)
		s.live--
	}
	for m := range s.bound {
		s.bound[m] += dropped[m]
	}
	s.idx = idx[:0]
	s.reindex()
	s.pruned = true
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
