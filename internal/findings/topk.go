package findings

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
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
//
// Entries are found through a small open-addressing table keyed by the
// key's hash (keyHash), which the collector computes once per record and
// value and passes to every summary the value goes into: no summary hashes a
// string again, and replacing the lightest entry costs no map deletion.
type topK struct {
	k       int
	entries []tkEntry
	slots   []int32   // linear probing; entry index + 1, 0 when free
	in      *interner // nil: every new key is copied
}

// hashSeed seeds keyHash. Hashes only place entries in the tables; which
// entries a summary holds, and in what order, never depends on them.
var hashSeed = maphash.MakeSeed()

// keyHash is the hash every summary and the interner index keys by. Most
// values (statuses, methods, networks, short paths and domains) are at most
// 16 bytes: those are mixed inline, which costs less than a call to the
// runtime's hash.
func keyHash(b []byte) uint64 {
	n := len(b)
	if n > 16 {
		return maphash.Bytes(hashSeed, b)
	}
	var lo, hi uint64
	switch {
	case n >= 8:
		lo, hi = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[n-8:])
	case n >= 4:
		lo, hi = uint64(binary.LittleEndian.Uint32(b)), uint64(binary.LittleEndian.Uint32(b[n-4:]))
	case n > 0:
		lo = uint64(b[0])<<16 | uint64(b[n>>1])<<8 | uint64(b[n-1])
	}
	h1, h0 := bits.Mul64(lo^shortSeed[0], hi^shortSeed[1]^uint64(n))
	return h1 ^ h0
}

// keyHashString is keyHash of a string's bytes.
func keyHashString(s string) uint64 {
	if len(s) > 16 {
		return maphash.String(hashSeed, s)
	}
	var buf [16]byte
	return keyHash(buf[:copy(buf[:], s)])
}

// shortSeed seeds keyHash's inline mixing of short keys.
var shortSeed = [2]uint64{maphash.Comparable(hashSeed, 1) | 1, maphash.Comparable(hashSeed, 2) | 1}

// interner shares the strings of dimension values among a collector's
// summaries. The same network or path recurs in every time bucket, and a
// full Space-Saving summary takes in a new key on every miss, so copying
// each one would allocate on most log lines. Bounded: forgotten when full.
//
// Open addressing keyed by keyHash; probes read a compact array of 32-bit
// tags (a fragment of the hash) and touch a string only when its tag
// matches, so a lookup costs about one cache line.
type interner struct {
	tags []uint32 // 0: free
	strs []string
	n    int
	max  int
}

func newInterner(max int) *interner {
	n := 1 << bitsFor(2*max)
	return &interner{tags: make([]uint32, n), strs: make([]string, n), max: max}
}

// get returns b as a shared string; h is keyHash(b).
func (in *interner) get(b []byte, h uint64) string {
	if len(b) == 0 {
		return ""
	}
	mask := uint64(len(in.tags) - 1)
	tag := uint32(h>>32) | 1
	i := h & mask
	for ; in.tags[i] != 0; i = (i + 1) & mask {
		if in.tags[i] == tag && in.strs[i] == string(b) {
			return in.strs[i]
		}
	}
	s := string(b)
	if in.n >= in.max {
		clear(in.tags)
		clear(in.strs)
		in.n = 0
		i = h & mask
	}
	in.tags[i], in.strs[i] = tag, s
	in.n++
	return s
}

type tkEntry struct {
	Key    string
	W, Err int64
	A, B   int64
	h      uint64 // keyHash(Key)
}

func newTopK(k int) *topK {
	return &topK{k: k, entries: make([]tkEntry, 0, k), slots: make([]int32, slotsFor(k))}
}

// slotsFor sizes the index of n entries: a power of two at least 2n.
func slotsFor(n int) int { return 1 << bitsFor(max(2*n, 8)) }

// find returns the index of the entry with key and hash h, or -1.
func find[K ~string | ~[]byte](t *topK, key K, h uint64) int {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1
		}
		if e := &t.entries[s-1]; e.h == h && e.Key == string(key) {
			return int(s - 1)
		}
	}
}

// link indexes entry i (whose key is not indexed yet).
func (t *topK) link(i int) {
	mask := uint64(len(t.slots) - 1)
	j := t.entries[i].h & mask
	for t.slots[j] != 0 {
		j = (j + 1) & mask
	}
	t.slots[j] = int32(i + 1)
}

// unlink removes entry i from the index (backward-shift deletion, so no
// tombstones accumulate).
func (t *topK) unlink(i int) {
	mask := uint64(len(t.slots) - 1)
	j := t.entries[i].h & mask
	for t.slots[j] != int32(i+1) {
		j = (j + 1) & mask
	}
	for {
		t.slots[j] = 0
		k := j
		for {
			k = (k + 1) & mask
			s := t.slots[k]
			if s == 0 {
				return
			}
			home := t.entries[s-1].h & mask
			// Move s back into the hole at j unless its home lies
			// cyclically in (j, k].
			if j <= k {
				if j < home && home <= k {
					continue
				}
			} else if j < home || home <= k {
				continue
			}
			t.slots[j] = s
			j = k
			break
		}
	}
}

// reindex rebuilds the index of all entries.
func (t *topK) reindex() {
	if n := slotsFor(max(t.k, len(t.entries))); n != len(t.slots) {
		t.slots = make([]int32, n)
	} else {
		clear(t.slots)
	}
	for i := range t.entries {
		t.link(i)
	}
}

// indexed is how many entries the index finds where they are, or -1 when
// it holds a slot too many (for tests).
func (t *topK) indexed() int {
	used := 0
	for _, s := range t.slots {
		if s != 0 {
			used++
		}
	}
	if used != len(t.entries) {
		return -1
	}
	n := 0
	for i, e := range t.entries {
		if e.h == keyHashString(e.Key) && find(t, e.Key, e.h) == i {
			n++
		}
	}
	return n
}

// addBytes counts key (which may alias a reused buffer: it is cloned only
// when it enters the summary) with weight w and auxiliary sums a and b.
func (t *topK) addBytes(key []byte, w, a, b int64) { t.addHashed(key, keyHash(key), w, a, b) }

// addHashed is addBytes for a key whose keyHash is h.
func (t *topK) addHashed(key []byte, h uint64, w, a, b int64) {
	if t.hit(key, h, w, a, b) {
		return
	}
	if t.in != nil {
		t.insert(t.in.get(key, h), h, w, a, b)
		return
	}
	t.insert(string(key), h, w, a, b)
}

// hit counts key, whose keyHash is h, when the summary tracks it, and
// reports whether it did; the caller inserts it otherwise.
func (t *topK) hit(key []byte, h uint64, w, a, b int64) bool {
	i := find(t, key, h)
	if i < 0 {
		return false
	}
	e := &t.entries[i]
	e.W += w
	e.A += a
	e.B += b
	return true
}

// add is addBytes for a string key.
func (t *topK) add(key string, w, a, b int64) {
	h := keyHashString(key)
	if i := find(t, key, h); i >= 0 {
		e := &t.entries[i]
		e.W += w
		e.A += a
		e.B += b
		return
	}
	t.insert(strings.Clone(key), h, w, a, b)
}

// insert adds a key the summary may keep (a copy, not an alias).
func (t *topK) insert(key string, h uint64, w, a, b int64) {
	if len(t.entries) < t.k {
		t.entries = append(t.entries, tkEntry{Key: key, W: w, A: a, B: b, h: h})
		t.link(len(t.entries) - 1)
		return
	}
	// Replace the lightest entry; the newcomer inherits its weight as error
	// (the Space-Saving rule) but starts its auxiliary sums afresh.
	mi, mw := 0, t.entries[0].W
	for i := 1; i < len(t.entries); i++ {
		if w := t.entries[i].W; w < mw {
			mi, mw = i, w
		}
	}
	old := t.entries[mi]
	t.unlink(mi)
	t.entries[mi] = tkEntry{Key: key, W: old.W + w, Err: old.W, A: a, B: b, h: h}
	t.link(mi)
}

// merge folds o into t (the mergeable-summaries rule: sum matching keys, keep
// the k heaviest).
func (t *topK) merge(o *topK) {
	if o == nil {
		return
	}
	if n := slotsFor(len(t.entries) + len(o.entries)); n > len(t.slots) {
		t.slots = make([]int32, n)
		for i := range t.entries {
			t.link(i)
		}
	}
	for _, e := range o.entries {
		if i := find(t, e.Key, e.h); i >= 0 {
			x := &t.entries[i]
			x.W += e.W
			x.Err += e.Err
			x.A += e.A
			x.B += e.B
			continue
		}
		t.entries = append(t.entries, e)
		t.link(len(t.entries) - 1)
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
	t.reindex()
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
	i := find(t, key, keyHashString(key))
	if i < 0 {
		return tkEntry{}, false
	}
	return t.entries[i], true
}
