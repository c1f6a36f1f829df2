package findings

import (
	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/dims"
	"github.com/headroom-dev/headroom/internal/heavy"
)

// values is the current record's value in each dimension, computed once per
// record for every detector and summary that takes it in, with each value's
// hash and, on demand, its interned string.
type values struct {
	vals    []byte
	valEnd  [numDims]int
	valOK   [numDims]bool
	valHash [numDims]uint64 // heavy.Hash of each value
	valStr  [numDims]string // the interned value, once valInt says so
	valInt  [numDims]bool
	intern  *heavy.Interner
	buf     []byte // composite keys ("dim\x00value") are built here
}

// compute fills the values of r, taking the endpoint and referer domain
// from shared when another consumer of the pass computed them.
func (v *values) compute(r *accesslog.Record, shared *dims.Shared) {
	v.vals = v.vals[:0]
	for d := range numDims {
		switch {
		case shared != nil && d == DimPath:
			v.vals, v.valOK[d] = append(v.vals, shared.Template...), true
		case shared != nil && d == DimReferer:
			v.vals, v.valOK[d] = append(v.vals, shared.Referer...), true
		default:
			v.vals, v.valOK[d] = appendValue(v.vals, d, r.Client, r.Key, r.UserAgent, r.Method, r.Path, r.Referer, r.Status)
		}
		v.valEnd[d] = len(v.vals)
		start := 0
		if d > 0 {
			start = v.valEnd[d-1]
		}
		v.valHash[d] = heavy.Hash(v.vals[start:])
		v.valInt[d] = false
	}
}

// value is the current record's value in dimension d (valid until the next
// record) and whether it has one.
func (v *values) value(d Dimension) ([]byte, bool) {
	start := 0
	if d > 0 {
		start = v.valEnd[d-1]
	}
	return v.vals[start:v.valEnd[d]], v.valOK[d]
}

// interned is the current record's value in dimension d as a string shared
// through the interner, looked up at most once per record however many
// summaries take it in.
func (v *values) interned(d Dimension) string {
	if !v.valInt[d] {
		b, _ := v.value(d)
		v.valStr[d] = v.intern.Get(b, v.valHash[d])
		v.valInt[d] = true
	}
	return v.valStr[d]
}

// count adds the current record's value in dimension d to t.
func (v *values) count(t *topK, d Dimension, w, a, b int64) {
	val, _ := v.value(d)
	h := v.valHash[d]
	e := t.Lookup(val, h)
	if e == nil {
		e = t.Insert(v.interned(d), h)
	}
	e.W += w
	e.V.A += a
	e.V.B += b
}

// addComposite counts the record under "dimension\x00value" for each of
// dims in one summary, for attributing rare events (errors, slow requests)
// without a summary per dimension.
func (v *values) addComposite(t *topK, w int64, dims ...Dimension) {
	for _, d := range dims {
		if val, ok := v.value(d); ok {
			v.buf = append(append(v.buf[:0], byte('0'+d), 0), val...)
			addBytes(t, v.buf, w, 0, 0)
		}
	}
}

func appendUint(dst []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

// hashString mixes s into h eight bytes at a time. Not a seeded hash: the
// same log gives the same findings on every run, and a collision only
// forgets a fetch.
func hashString(h uint64, s string) uint64 {
	const m = 0xff51afd7ed558ccd
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		h = (h ^ v) * m
		h ^= h >> 32
	}
	var v uint64
	for j := 0; i < len(s); i, j = i+1, j+8 {
		v |= uint64(s[i]) << j
	}
	h = (h ^ v ^ uint64(len(s))<<56) * m
	return h ^ h>>29
}
