package budget

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestKeyIndexMatchesMap drives keyIndex with random inserts and removes,
// with hashes drawn from a few values so tags collide and probe runs wrap
// around the table, and checks every key against a Go map.
func TestKeyIndexMatchesMap(t *testing.T) {
	for _, spread := range []uint64{3, 64, 1 << 40} {
		r := rand.New(rand.NewPCG(spread, 7))
		var ix keyIndex
		var keys []string
		var free []uint32
		want := map[string]uint32{}
		hashOf := map[string]uint64{}
		hash := func(k string) uint64 {
			if h, ok := hashOf[k]; ok {
				return h
			}
			h := r.Uint64N(spread) << 32 // only the tag matters
			if spread == 64 {
				h |= 63 << 32 // same home, different tags
				h ^= r.Uint64N(2) << 63
			}
			hashOf[k] = h
			return h
		}
		for step := range 20000 {
			k := fmt.Sprintf("k%d", r.IntN(500))
			h := hash(k)
			slot, ok := ix.find(h, k, keys)
			ws, wok := want[k]
			if ok != wok || ok && slot != ws {
				t.Fatalf("spread %d step %d: find(%q) = %d,%v, want %d,%v", spread, step, k, slot, ok, ws, wok)
			}
			if !ok {
				var s uint32
				if n := len(free); n > 0 {
					s, free = free[n-1], free[:n-1]
				} else {
					keys = append(keys, "")
					s = uint32(len(keys) - 1)
				}
				keys[s] = k
				ix.insert(h, s)
				want[k] = s
			} else if r.IntN(2) == 0 {
				ix.remove(h, slot)
				keys[slot] = ""
				free = append(free, slot)
				delete(want, k)
			}
			if ix.n != len(want) {
				t.Fatalf("spread %d step %d: n = %d, want %d", spread, step, ix.n, len(want))
			}
		}
		for k, s := range want {
			if got, ok := ix.find(hash(k), k, keys); !ok || got != s {
				t.Fatalf("spread %d: find(%q) = %d,%v, want %d", spread, k, got, ok, s)
			}
		}
	}
}

func TestShardSize(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n%64 != 0 {
		t.Errorf("shard is %d bytes, not a multiple of a cache line", n)
	}
}
