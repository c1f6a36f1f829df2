package heavy

import (
	"fmt"
	"testing"
)

// stream decodes fuzz input into keys (a small alphabet, so that keys
// repeat) and weights, the summary size and a split point.
func stream(data []byte) (k, split int, keys []string, ws []int64) {
	if len(data) < 2 {
		return 1, 0, nil, nil
	}
	k = 1 + int(data[0]%8)
	split = int(data[1])
	for i := 2; i+1 < len(data); i += 2 {
		keys = append(keys, fmt.Sprintf("v%d", data[i]%24))
		ws = append(ws, 1+int64(data[i+1]%16))
	}
	return k, split % (len(keys) + 1), keys, ws
}

// checkSpaceSaving checks a summary of one stream against the exact
// weights: 0 ≤ W − true ≤ Err ≤ total/k for every entry, and every key
// heavier than total/k present.
func checkSpaceSaving(t *testing.T, s *Summary[ab], truth map[string]int64, total int64) {
	t.Helper()
	k := int64(s.Cap())
	if s.Len() > s.Cap() || s.Indexed() != s.Len() {
		t.Fatalf("%d entries, %d indexed, k %d", s.Len(), s.Indexed(), k)
	}
	for key, w := range truth {
		e := s.Find(key)
		if e == nil {
			if w*k > total {
				t.Errorf("key %s of weight %d > total/k = %d/%d missing", key, w, total, k)
			}
			continue
		}
		if d := e.W - w; d < 0 || d > e.Err || e.Err*k > total {
			t.Errorf("key %s: W %d, Err %d, true %d, total/k %d/%d", key, e.W, e.Err, w, total, k)
		}
	}
}

// checkMerged checks a merge of Space-Saving summaries of two parts: the
// bounds findings relies on, W − Err ≤ true (W − Err is what it reports),
// W − true ≤ Err ≤ total/k, true − W ≤ total/k, and every key heavier than
// 2·total/k present. W alone may fall under the truth, and a key heavier
// than total/k only may be trimmed (the seed corpus holds such a case): a
// key the other part had dropped counts 0 from it.
func checkMerged(t *testing.T, s *Summary[ab], truth map[string]int64, total int64) {
	t.Helper()
	k := int64(s.Cap())
	if s.Len() > s.Cap() || s.Indexed() != s.Len() {
		t.Fatalf("merged: %d entries, %d indexed, k %d", s.Len(), s.Indexed(), k)
	}
	for key, w := range truth {
		e := s.Find(key)
		if e == nil {
			if w*k > 2*total {
				t.Errorf("merged: key %s of weight %d > 2·total/k = 2·%d/%d missing", key, w, total, k)
			}
			continue
		}
		if e.W-e.Err > w || e.W-w > e.Err || e.Err*k > total || w-e.W > total/k {
			t.Errorf("merged: key %s: W %d, Err %d, true %d, total/k %d/%d", key, e.W, e.Err, w, total, k)
		}
	}
}

// checkPrune checks a Prune summary (measures A then B) against the exact
// sums: reported ≤ true ≤ reported + Bound for every key and measure, 0
// standing for a key it does not hold.
func checkPrune(t *testing.T, s *Summary[ab], truth map[string]ab) {
	t.Helper()
	if s.Indexed() != s.Len() {
		t.Fatalf("%d entries, %d indexed", s.Len(), s.Indexed())
	}
	for key, tr := range truth {
		var got ab
		if e := s.Find(key); e != nil {
			got = e.V
		}
		for m, pair := range [][2]int64{{got.A, tr.A}, {got.B, tr.B}}[:len(s.measures)] {
			if rep, tru := pair[0], pair[1]; rep > tru || tru > rep+s.Bound(m) {
				t.Errorf("key %s measure %d: reported %d, true %d, bound %d", key, m, rep, tru, s.Bound(m))
			}
		}
	}
	for e := range s.All() {
		if _, ok := truth[e.Key]; !ok {
			t.Errorf("key %s was never counted", e.Key)
		}
	}
}

// FuzzSummary checks both policies' bounds against a map of exact counts,
// on one stream and on the merge of its two parts.
func FuzzSummary(f *testing.F) {
	f.Add([]byte{3, 5, 1, 1, 2, 2, 1, 3, 4, 9, 1, 1, 5, 0, 6, 15, 1, 1})
	f.Add([]byte{0, 0, 1, 1, 2, 1, 1, 1})
	f.Add([]byte{7, 40, 0, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 6, 1, 7, 1, 8, 1, 9, 1, 10, 1, 11, 1, 12, 1, 0, 9, 0, 9})
	f.Add([]byte{1, 3, 0, 1, 1, 1, 2, 1, 0, 1, 3, 1, 2, 1, 4, 1, 0, 1, 5, 1, 6, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, split, keys, ws := stream(data)
		// Space-Saving on the whole stream, and merged from its parts.
		whole := NewSpaceSaving[ab](k, nil)
		parts := [2]*Summary[ab]{NewSpaceSaving[ab](k, NewInterner(4)), NewSpaceSaving[ab](k, nil)}
		truth := map[string]int64{}
		var total int64
		for i, key := range keys {
			e, _ := whole.Get(key)
			e.W += ws[i]
			p := parts[0]
			if i >= split {
				p = parts[1]
			}
			e, _ = p.GetBytes([]byte(key), Hash([]byte(key)))
			e.W += ws[i]
			truth[key] += ws[i]
			total += ws[i]
		}
		checkSpaceSaving(t, whole, truth, total)
		parts[0].Merge(parts[1], addAB)
		checkMerged(t, parts[0], truth, total)

		// Prune, ranked by count (A) and weight (B), capacity 4k.
		pw := NewPrune[ab](4*k, byA, byB)
		pp := [2]*Summary[ab]{NewPrune[ab](4*k, byA, byB), NewPrune[ab](4*k, byA, byB)}
		exact := map[string]ab{}
		for i, key := range keys {
			for _, s := range []*Summary[ab]{pw, pp[min(i/max(split, 1), 1)]} {
				e, _ := s.Get(key)
				e.V.A++
				e.V.B += ws[i]
			}
			x := exact[key]
			x.A++
			x.B += ws[i]
			exact[key] = x
		}
		checkPrune(t, pw, exact)
		pp[0].Merge(pp[1], addAB)
		checkPrune(t, pp[0], exact)
	})
}
