package findings

import (
	"strconv"
	"strings"

	"github.com/headroom-dev/headroom/internal/dims"
)

// Dimension is one way of slicing requests to say who did what.
type Dimension int

// The dimensions findings attribute changes to. Client is the /24 (IPv4) or
// /48 (IPv6) prefix: one crawler or one office rarely stays on one address.
const (
	DimUserAgent Dimension = iota
	DimKey
	DimClient
	DimPath
	DimReferer
	DimStatus
	DimMethod
	numDims
)

var dimNames = [numDims]string{"user_agent", "key", "client", "path", "referer", "status", "method"}

// String is the dimension's name in JSON and text.
func (d Dimension) String() string {
	if d < 0 || d >= numDims {
		return "dimension(" + strconv.Itoa(int(d)) + ")"
	}
	return dimNames[d]
}

// label is how the text report names a value of the dimension.
func (d Dimension) label() string {
	switch d {
	case DimUserAgent:
		return "user agent"
	case DimKey:
		return "key"
	case DimClient:
		return "clients in"
	case DimPath:
		return "path"
	case DimReferer:
		return "referer"
	case DimStatus:
		return "status"
	case DimMethod:
		return "method"
	}
	return d.String()
}

// appendValue appends r's value for dimension d; ok is false when the record
// has none (no key, say).
func appendValue(dst []byte, d Dimension, client, key, ua, method, path, referer string, status int) ([]byte, bool) {
	switch d {
	case DimUserAgent:
		if ua == "" || ua == "-" {
			return append(dst, dims.None...), true
		}
		return append(dst, dims.Truncate(ua)...), true
	case DimKey:
		if key == "" || key == "-" {
			return dst, false
		}
		return appendKey(dst, key), true
	case DimClient:
		return dims.AppendClientNetwork(dst, client), true
	case DimPath:
		return dims.AppendPathTemplate(dst, path), true
	case DimReferer:
		return dims.AppendRefererDomain(dst, referer), true
	case DimStatus:
		if status == 0 {
			return append(dst, '-'), true
		}
		return strconv.AppendInt(dst, int64(status), 10), true
	case DimMethod:
		if method == "" {
			return append(dst, '-'), true
		}
		return append(dst, dims.Truncate(method)...), true
	}
	return dst, false
}

// appendKey appends a key as reports may show it. headroom's own log
// carries fingerprints (fp-…) or client addresses (addr:…), shown as they
// are; anything else may be an API key in clear (a JSON log's api_key, a
// log_format with $http_x_api_key), and API keys never appear in clear in
// headroom's output: it becomes its first characters and a hash, enough to
// tell keys apart and to find one in the log, not to use it.
func appendKey(dst []byte, key string) []byte {
	if isFingerprint(key) || strings.HasPrefix(key, "addr:") {
		return append(dst, dims.Truncate(key)...)
	}
	if n := len(key) / 4; n > 0 {
		dst = append(dst, key[:min(n, 4)]...)
	}
	dst = append(dst, "…"...)
	const hexdigits = "0123456789abcdef"
	h := hashString(0x6b6579, key)
	for i := 60; i >= 32; i -= 4 {
		dst = append(dst, hexdigits[h>>uint(i)&0xf])
	}
	return dst
}

// isFingerprint matches the guard's key fingerprints, fp- and 16 hex digits.
func isFingerprint(s string) bool {
	if len(s) != 19 || !strings.HasPrefix(s, "fp-") {
		return false
	}
	for i := 3; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
