// Package heavy owns the heavy-hitter summary that headroom logs analyze's
// tables (internal/analyze) and its findings (internal/findings) count
// values in: one hash (Hash, HashString), one string interner, one
// open-addressing index over entries with stable addresses, one order
// (weight descending, then key), one merge rule and one error bound per
// policy. Two overflow policies sit behind the one Summary type, each with
// the guarantee it keeps: SpaceSaving (one weight; findings) and Prune
// (several measures; analyze's tables, which rank by requests, bytes and
// worker time alike, where Space-Saving on one weight would lose the heavy
// hitters of the other two).
package heavy
