package heavy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// ab is a payload of two auxiliary sums, as findings counts them.
type ab struct{ A, B int64 }

func addAB(dst, src *ab, _ bool) { dst.A += src.A; dst.B += src.B }

// count adds key with weight w and aux sums a and b (Space-Saving).
func count(s *Summary[ab], key string, w, a, b int64) {
	e, _ := s.Get(key)
	e.W += w
	e.V.A += a
	e.V.B += b
}

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
func TestSpaceSavingGuarantees(t *testing.T) {
	const n, k = 200000, 32
	for _, seed := range []uint64{1, 2, 3} {
		keys, truth := zipfStream(seed, n)
		s := NewSpaceSaving[ab](k, nil)
		for _, key := range keys {
			count(s, key, 1, 0, 0)
		}
		if s.Len() > k || s.Indexed() != s.Len() {
			t.Fatalf("seed %d: %d entries, %d indexed, capacity %d", seed, s.Len(), s.Indexed(), k)
		}
		for key, c := range truth {
			e := s.Find(key)
			if c > n/k && e == nil {
				t.Errorf("seed %d: heavy key %s (%d > n/k=%d) not tracked", seed, key, c, n/k)
			}
			if e != nil && (e.W < c || e.W-e.Err > c) {
				t.Errorf("seed %d: key %s count %d, err %d; true %d is outside [W-Err, W]", seed, key, e.W, e.Err, c)
			}
		}
	}
}

// Merging two summaries of halves keeps the heavy hitters of the whole.
func TestSpaceSavingMergeKeepsHeavyHitters(t *testing.T) {
	const n, k = 100000, 32
	keys, truth := zipfStream(7, n)
	a, b := NewSpaceSaving[ab](k, nil), NewSpaceSaving[ab](k, nil)
	for i, key := range keys {
		s := a
		if i%2 == 1 {
			s = b
		}
		e, _ := s.GetBytes([]byte(key), Hash([]byte(key)))
		e.W++
		e.V.A += 10
	}
	a.Merge(b, addAB)
	if a.Len() > k || a.Indexed() != a.Len() {
		t.Fatalf("%d entries (%d indexed) after merge, capacity %d", a.Len(), a.Indexed(), k)
	}
	for key, c := range truth {
		if c > 2*n/k {
			e := a.Find(key)
			if e == nil {
				t.Errorf("heavy key %s (%d) lost in merge", key, c)
				continue
			}
			if e.W < c {
				t.Errorf("key %s: merged count %d under true %d", key, e.W, c)
			}
		}
	}
	sorted := a.Sorted()
	for i := 1; i < len(sorted); i++ {
		if sorted[i].W > sorted[i-1].W {
			t.Fatal("Sorted() is not heaviest first")
		}
	}
}

// Keys passed as bytes may alias a buffer the caller reuses.
func TestSummaryClonesKeys(t *testing.T) {
	for _, in := range []*Interner{nil, NewInterner(8)} {
		s := NewSpaceSaving[ab](4, in)
		buf := []byte("alpha")
		s.GetBytes(buf, Hash(buf))
		copy(buf, "omega")
		if s.Find("alpha") == nil {
			t.Fatal("key changed with the caller's buffer")
		}
		p := NewPrune[ab](4, byA)
		p.Get(string(buf)) // "omega", through a string that aliases buf
		copy(buf, "sigma")
		if p.Find("omega") == nil {
			t.Fatal("key changed with the caller's buffer (Get)")
		}
	}
}

// The Space-Saving rule, step by step: the first entry of least W gives its
// place to a newcomer, which inherits that W as its error and starts its
// payload at zero; merge sums matching keys, then keeps the k heaviest in
// (W desc, key asc) order, and keeps o's order when nothing is trimmed.
func TestSpaceSavingRule(t *testing.T) {
	type step struct {
		key     string
		w, a    int64
		entries string // after the step, in index order: key:W/Err/A
	}
	s := NewSpaceSaving[ab](3, nil)
	for i, st := range []step{
		{"x", 5, 1, "x:5/0/1"},
		{"y", 2, 1, "x:5/0/1 y:2/0/1"},
		{"z", 2, 1, "x:5/0/1 y:2/0/1 z:2/0/1"},
		{"w", 1, 7, "x:5/0/1 w:3/2/7 z:2/0/1"}, // y and z tie at 2: the first goes
		{"v", 1, 1, "x:5/0/1 w:3/2/7 v:3/2/1"},
		{"x", 1, 1, "x:6/0/2 w:3/2/7 v:3/2/1"},
		{"u", 4, 0, "x:6/0/2 u:7/3/0 v:3/2/1"},
	} {
		count(s, st.key, st.w, st.a, 0)
		if got := dump(s); got != st.entries {
			t.Fatalf("step %d (%s): %s, want %s", i, st.key, got, st.entries)
		}
	}
	o := NewSpaceSaving[ab](3, nil)
	count(o, "b", 1, 1, 0)
	count(o, "a", 1, 1, 0)
	m := NewSpaceSaving[ab](3, nil)
	m.Merge(o, addAB)
	if got := dump(m); got != "b:1/0/1 a:1/0/1" {
		t.Fatalf("merge into an empty summary: %s, want o's order", got)
	}
	count(o, "v", 3, 0, 0)
	s.Merge(o, addAB)
	if got := dump(s); got != "u:7/3/0 v:6/2/1 x:6/0/2" {
		t.Fatalf("merge: %s", got)
	}
	if s.Indexed() != s.Len() {
		t.Fatal("index out of step after merge")
	}
}

func dump(s *Summary[ab]) string {
	var b strings.Builder
	for e := range s.All() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d/%d/%d", e.Key, e.W, e.Err, e.V.A)
	}
	return b.String()
}

func byA(e *Entry[ab]) int64 { return e.V.A }
func byB(e *Entry[ab]) int64 { return e.V.B }

// The prune rule, table by table: the top quarter of capacity by each
// measure is kept, ties at the cut-off in key order, zero never; the bound
// adds up each prune's largest dropped value.
func TestPruneRule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adds   []string // key:A:B, in order; the last one triggers the prune
		kept   string   // sorted keys after
		bounds [2]int64
	}{
		{"by each measure", []string{"a:9:0", "b:1:9", "c:2:0", "d:1:1", "e:1:1", "f:1:1", "g:1:1", "h:1:1", "new:1:0"}, "a b c d new", [2]int64{1, 1}},
		{"ties in key order", []string{"h:1:0", "g:1:0", "f:1:0", "e:1:0", "d:1:0", "c:1:0", "b:1:0", "a:1:0", "z:1:0"}, "a b z", [2]int64{1, 0}},
		{"zero never kept", []string{"a:0:0", "b:0:0", "c:0:0", "d:0:0", "e:0:0", "f:0:0", "g:0:0", "h:0:0", "z:1:0"}, "z", [2]int64{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewPrune[ab](8, byA, byB)
			for _, add := range tc.adds {
				var key string
				var a, b int64
				fmt.Sscanf(strings.ReplaceAll(add, ":", " "), "%s %d %d", &key, &a, &b)
				e, _ := s.Get(key)
				e.V.A += a
				e.V.B += b
			}
			var keys []string
			for e := range s.All() {
				keys = append(keys, e.Key)
			}
			slices.Sort(keys)
			if got := strings.Join(keys, " "); got != tc.kept || !s.Pruned() || s.Indexed() != s.Len() {
				t.Errorf("kept %q (pruned %v, %d of %d indexed), want %q", got, s.Pruned(), s.Indexed(), s.Len(), tc.kept)
			}
			if got := [2]int64{s.Bound(0), s.Bound(1)}; got != tc.bounds {
				t.Errorf("bounds %v, want %v", got, tc.bounds)
			}
		})
	}
}

// A value dropped in several prunes is under-counted by the sum of its
// drops: the bound must cover it, where the largest single drop does not.
func TestPruneBoundAddsUpDrops(t *testing.T) {
	s := NewPrune[ab](4, byA) // keeps 1 key per prune
	truth := map[string]ab{}
	add := func(key string, a int64) {
		e, _ := s.Get(key)
		e.V.A += a
		x := truth[key]
		x.A += a
		truth[key] = x
	}
	for round := range 5 {
		add("victim", 3)
		add(fmt.Sprintf("big-%d", round), 100)
		add(fmt.Sprintf("pad-%d-a", round), 1)
		add(fmt.Sprintf("pad-%d-b", round), 1)
	}
	checkPrune(t, s, truth)
	if s.Bound(0) < truth["victim"].A {
		t.Fatalf("bound %d under the victim's loss %d", s.Bound(0), truth["victim"].A)
	}
}

// Links between summaries: an entry's address is stable while it holds its
// key, and a dropped one never matches a stale link, even once reused.
func TestPruneEntriesStayPut(t *testing.T) {
	s := NewPrune[ab](8, byA)
	keep, _ := s.Get("heavy")
	keep.V.A = 1000
	light, _ := s.Get("light")
	light.V.A = 1
	for i := range 100 {
		e, _ := s.Get(fmt.Sprintf("v%d", i))
		e.V.A = 2
	}
	if !keep.Holds("heavy") || s.Find("heavy") != keep || keep.V.A != 1000 {
		t.Fatal("a kept entry moved or lost its counts")
	}
	if light.Holds("light") {
		t.Fatal("a dropped entry still holds its key")
	}
	if e, _ := s.Get("light"); e.V.A != 0 {
		t.Fatal("a dropped key must restart from zero")
	}
}

// The same stream gives the same summary on every run: many tied values,
// kept in key order (analyze's tables were once kept in a map's order).
func TestPruneIsDeterministic(t *testing.T) {
	kept := func() string {
		s := NewPrune[ab](64, byA)
		rng := rand.New(rand.NewPCG(5, 9))
		for _, i := range rng.Perm(1000) {
			e, _ := s.Get(fmt.Sprintf("client-%03d", i))
			e.V.A++
		}
		var keys []string
		for _, e := range s.Top(64, byA) {
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

// Summaries filled from bytes are looked up by string (Find, Merge): both
// hashes must agree on every length, the inline short path included.
func TestHashBytesMatchesString(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 40)
	seen := map[uint64]string{}
	for n := 0; n <= len(buf); n++ {
		for range 200 {
			b := buf[:n]
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			h := Hash(b)
			if hs := HashString(string(b)); h != hs {
				t.Fatalf("Hash(%q) = %#x, HashString = %#x", b, h, hs)
			}
			if prev, ok := seen[h]; ok && prev != string(b) {
				t.Fatalf("Hash collision: %q and %q", prev, b)
			}
			seen[h] = string(b)
		}
	}
}

func TestInternerShares(t *testing.T) {
	in := NewInterner(2)
	b := []byte("value")
	s1 := in.Get(b, Hash(b))
	copy(b, "VALUE")
	if s1 != "value" {
		t.Fatal("interned string aliases the caller's buffer")
	}
	if s2 := in.Get([]byte("value"), Hash([]byte("value"))); s2 != "value" || in.n != 1 {
		t.Fatalf("second Get: %q, %d strings", s2, in.n)
	}
	in.Get([]byte("x"), Hash([]byte("x")))
	in.Get([]byte("y"), Hash([]byte("y"))) // full: forgets
	if in.n != 1 {
		t.Fatalf("%d strings after forgetting, want 1", in.n)
	}
}

func BenchmarkSpaceSavingAdd(b *testing.B) {
	keys, _ := zipfStream(1, 1<<16)
	bs := make([][]byte, len(keys))
	hs := make([]uint64, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
		hs[i] = Hash(bs[i])
	}
	s := NewSpaceSaving[ab](12, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i & (len(bs) - 1)
		e, _ := s.GetBytes(bs[j], hs[j])
		e.W++
		e.V.A += 100
	}
}

func BenchmarkPruneGet(b *testing.B) {
	keys, _ := zipfStream(1, 1<<16)
	s := NewPrune[ab](4096, byA, byB)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, _ := s.Get(keys[i&(len(keys)-1)])
		e.V.A++
	}
}
