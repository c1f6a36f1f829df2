// Package requestid makes and checks the X-Request-Id the proxy forwards
// and answers with, on both of its request paths (internal/fastproxy and
// the net/http one in internal/guard), as nginx's $request_id and
// Envoy's x-request-id do.
//
// An id the proxy makes is Len lowercase hex digits, the same shape as
// nginx's $request_id: a prefix drawn at random once per process, then a
// counter. It is unique per request within the process and, through the
// random prefix, across processes and restarts; it costs an atomic add
// and no system call. It is not secret: whoever saw one can guess the
// next. An id is an identifier for logs and traces, not a token.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
)

// Len is the length of an id the proxy makes.
const Len = 32

// MaxLen is the longest id kept from a trusted proxy.
const MaxLen = 128

// Header is the field's name, as net/http canonicalizes it.
const Header = "X-Request-Id"

var (
	prefix  [Len / 2]byte // hex of 8 random bytes, drawn once
	counter atomic.Uint64
)

func init() {
	var r [Len / 4]byte
	rand.Read(r[:]) // never fails (crypto/rand, Go 1.24)
	hex.Encode(prefix[:], r[:])
}

const digits = "0123456789abcdef"

// Append appends a new id (Len bytes) to b.
func Append(b []byte) []byte {
	n := counter.Add(1)
	b = append(b, prefix[:]...)
	var d [Len / 2]byte
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = digits[n&0xf]
		n >>= 4
	}
	return append(b, d[:]...)
}

// New returns a new id.
func New() string {
	var b [Len]byte
	return string(Append(b[:0]))
}

// Valid reports whether v, the one X-Request-Id field of a request from a
// trusted proxy, is kept: 1 to MaxLen bytes of visible ASCII other than a
// comma (RFC 9110 §5.3 lets a recipient join repeated fields with commas,
// so "a,b" is two ids, and a request with two is given a new one).
func Valid[T string | []byte](v T) bool {
	if len(v) == 0 || len(v) > MaxLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' || c == ',' {
			return false
		}
	}
	return true
}
