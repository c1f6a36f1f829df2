package heavy

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// hashSeed seeds Hash. Hashes only place entries in the index; which
// entries a summary holds, and in what order, never depends on them.
var hashSeed = maphash.MakeSeed()

// Hash is the hash every summary and the interner index keys by. Most
// values (statuses, methods, networks, short paths and domains) are at most
// 16 bytes: those are mixed inline, which costs less than a call to the
// runtime's hash.
func Hash(b []byte) uint64 {
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

// HashString is Hash of a string's bytes.
func HashString(s string) uint64 {
	if len(s) > 16 {
		return maphash.String(hashSeed, s)
	}
	var buf [16]byte
	return Hash(buf[:copy(buf[:], s)])
}

// shortSeed seeds Hash's inline mixing of short keys.
var shortSeed = [2]uint64{maphash.Comparable(hashSeed, 1) | 1, maphash.Comparable(hashSeed, 2) | 1}

// Interner shares the strings of values among summaries. The same network
// or path recurs in every time bucket, and a full Space-Saving summary takes
// in a new key on every miss, so copying each one would allocate on most log
// lines. Bounded: forgotten when full.
//
// Open addressing keyed by Hash; probes read a compact array of 32-bit tags
// (a fragment of the hash) and touch a string only when its tag matches, so
// a lookup costs about one cache line.
type Interner struct {
	tags []uint32 // 0: free
	strs []string
	n    int
	max  int
}

// NewInterner returns an interner that holds up to max strings.
func NewInterner(max int) *Interner {
	n := 1 << bitsFor(2*max)
	return &Interner{tags: make([]uint32, n), strs: make([]string, n), max: max}
}

// Get returns b as a shared string; h is Hash(b).
func (in *Interner) Get(b []byte, h uint64) string {
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

// bitsFor is the smallest b with 1<<b >= n.
func bitsFor(n int) int {
	b := 0
	for 1<<b < n {
		b++
	}
	return b
}
