package findings

import "github.com/headroom-dev/headroom/internal/heavy"

// topK is the findings' heavy-hitter summary: heavy's Space-Saving policy
// (see heavy.SpaceSaving for the bounds it keeps), at most k entries ranked
// by one weight W with an over-estimate Err, each carrying two auxiliary
// sums (bytes when weighting by requests, requests when weighting by
// bytes, logged seconds, ...), exact since the key entered the summary.
// Every heavy hitter (weight above total/k) is present, which is all the
// attribution needs, and memory stays k entries whatever the cardinality of
// user agents, clients or paths in the log.
type topK = heavy.Summary[ab]

// ab are a topK entry's auxiliary sums.
type ab struct{ A, B int64 }

func newTopK(k int) *topK { return heavy.NewSpaceSaving[ab](k, nil) }

// newTopKIn is newTopK whose new keys are taken through in.
func newTopKIn(k int, in *heavy.Interner) *topK { return heavy.NewSpaceSaving[ab](k, in) }

// mergeAB sums auxiliary sums (topK.Merge).
func mergeAB(dst, src *ab, _ bool) {
	dst.A += src.A
	dst.B += src.B
}

// add counts key with weight w and auxiliary sums a and b.
func add(t *topK, key string, w, a, b int64) {
	e, _ := t.Get(key)
	e.W += w
	e.V.A += a
	e.V.B += b
}

// addBytes is add of a key that may alias a reused buffer (taken through
// t's interner, or copied, only when it enters the summary).
func addBytes(t *topK, key []byte, w, a, b int64) {
	e, _ := t.GetBytes(key, heavy.Hash(key))
	e.W += w
	e.V.A += a
	e.V.B += b
}
