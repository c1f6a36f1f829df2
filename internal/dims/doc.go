// Package dims holds the dimensions every consumer of an access log slices
// records by — the endpoint (path template), the client network, the
// referer domain, the agent's family — so that the tables of `logs analyze`
// and the findings name the same endpoint, network or site the same way
// (issue 11: a finding said /img/*.jpg where the --by template table said
// /img/:id.jpg), and Values, the record's value in each dimension computed
// once per record for all of them.
//
// A record with no value in a dimension (no referer, no user agent, no
// path) has the value None, in every table and finding alike.
package dims

import "unicode/utf8"

// None is the value of a dimension the record has nothing for.
const None = "(none)"

// MaxValueLen caps a dimension value: user agents of several kilobytes exist
// (and attackers send them), and a summary key should not pin them in memory.
const MaxValueLen = 256

// Truncate cuts s to MaxValueLen bytes without splitting a character.
func Truncate(s string) string {
	if len(s) <= MaxValueLen {
		return s
	}
	i := MaxValueLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Shared is a record's values in the dimensions that more than one
// consumer of the same pass needs, computed once: the engine's tables fill
// it and the findings collector reads it (issue 11: one pass, one set of
// dimensions). The slices are reused from record to record.
type Shared struct {
	Template []byte // AppendPathTemplate of the path
	Referer  []byte // AppendRefererDomain of the referer
}
