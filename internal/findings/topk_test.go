package findings

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// zipfStream returns keys with a heavy head and a long tail, and their true
// counts.
func zipfStream(seed uint64, n int) ([]string, map[string]int64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	z := rand.NewZipf(rng, 1.3, 1, 100000)
	keys := make([]string, n)
	truth := map[string]int64{}
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", z.Uint64())
		truth[keys[i]]++
	}
	return keys, truth
}

// Space-Saving's guarantees: every key heavier than n/k is tracked, and
// each tracked count over-estimates by at most its recorded error.
func TestTopKGuarantees(t *testing.T) {
	const n, k = 200000, 32
	for _, seed := range []uint64{1, 2, 3} {
		keys, truth := zipfStream(seed, n)
		tk := newTopK(k)
		for _, key := range keys {
			tk.add(key, 1, 0, 0)
		}
		if len(tk.entries) > k || tk.indexed() != len(tk.entries) {
			t.Fatalf("seed %d: %d entries, %d indexed, capacity %d", seed, len(tk.entries), tk.indexed(), k)
		}
		for key, c := range truth {
			e, ok := tk.get(key)
			if c > n/k && !ok {
				t.Errorf("seed %d: heavy key %s (%d > n/k=%d) not tracked", seed, key, c, n/k)
			}
			if ok && (e.W < c || e.W-e.Err > c) {
				t.Errorf("seed %d: key %s count %d, err %d; true %d is outside [W-Err, W]", seed, key, e.W, e.Err, c)
			}
		}
	}
}

// Merging two summaries of halves keeps the heavy hitters of the whole.
func TestTopKMergeKeepsHeavyHitters(t *testing.T) {
	const n, k = 100000, 32
	keys, truth := zipfStream(7, n)
	a, b := newTopK(k), newTopK(k)
	for i, key := range keys {
		if i%2 == 0 {
			a.addBytes([]byte(key), 1, 10, 0)
		} else {
			b.addBytes([]byte(key), 1, 10, 0)
		}
	}
	a.merge(b)
	if len(a.entries) > k {
		t.Fatalf("%d entries after merge, capacity %d", len(a.entries), k)
	}
	for key, c := range truth {
		if c > 2*n/k {
			e, ok := a.get(key)
			if !ok {
				t.Errorf("heavy key %s (%d) lost in merge", key, c)
				continue
			}
			if e.W < c {
				t.Errorf("key %s: merged count %d under true %d", key, e.W, c)
			}
		}
	}
	sorted := a.sorted()
	for i := 1; i < len(sorted); i++ {
		if sorted[i].W > sorted[i-1].W {
			t.Fatal("sorted() is not heaviest first")
		}
	}
}

// Keys passed as bytes may alias a buffer the caller reuses.
func TestTopKClonesKeys(t *testing.T) {
	tk := newTopK(4)
	buf := []byte("alpha")
	tk.addBytes(buf, 1, 0, 0)
	copy(buf, "omega")
	if _, ok := tk.get("alpha"); !ok {
		t.Fatal("key changed with the caller's buffer")
	}
}

func BenchmarkTopKAdd(b *testing.B) {
	keys, _ := zipfStream(1, 1<<16)
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
	}
	tk := newTopK(12)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk.addBytes(bs[i&(len(bs)-1)], 1, 100, 0)
	}
}

// Summaries filled from bytes are looked up by string (get, merge): both
// hashes must agree on every length, the inline short path included.
func TestKeyHashBytesMatchesString(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 40)
	seen := map[uint64]string{}
	for n := 0; n <= len(buf); n++ {
		for range 200 {
			b := buf[:n]
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			h := keyHash(b)
			if hs := keyHashString(string(b)); h != hs {
				t.Fatalf("keyHash(%q) = %#x, keyHashString = %#x", b, h, hs)
			}
			if prev, ok := seen[h]; ok && prev != string(b) {
				t.Fatalf("keyHash collision: %q and %q", prev, b)
			}
			seen[h] = string(b)
		}
	}
}
