package findings

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
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

// maxValueLen caps a dimension value: user agents of several kilobytes exist
// (and attackers send them), and a summary key should not pin them in memory.
const maxValueLen = 256

// appendValue appends r's value for dimension d; ok is false when the record
// has none (no key, say).
func appendValue(dst []byte, d Dimension, client, key, ua, method, path, referer string, status int) ([]byte, bool) {
	switch d {
	case DimUserAgent:
		if ua == "" || ua == "-" {
			return append(dst, "(none)"...), true
		}
		return append(dst, truncate(ua)...), true
	case DimKey:
		if key == "" || key == "-" {
			return dst, false
		}
		return appendKey(dst, key), true
	case DimClient:
		return appendClientPrefix(dst, client), true
	case DimPath:
		return appendPathTemplate(dst, path), true
	case DimReferer:
		return appendRefererDomain(dst, referer), true
	case DimStatus:
		if status == 0 {
			return append(dst, '-'), true
		}
		return strconv.AppendInt(dst, int64(status), 10), true
	case DimMethod:
		if method == "" {
			return append(dst, '-'), true
		}
		return append(dst, truncate(method)...), true
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
		return append(dst, truncate(key)...)
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

func truncate(s string) string {
	if len(s) <= maxValueLen {
		return s
	}
	i := maxValueLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i-- // do not split a character
	}
	return s[:i]
}

// appendClientPrefix appends the network a client address belongs to
// ("203.0.113.0/24", "2001:db8:1::/48"); anything that is not an address
// (a unix socket, a hostname) is kept as it is.
func appendClientPrefix(dst []byte, client string) []byte {
	if client == "" || client == "-" {
		return append(dst, "(none)"...)
	}
	if strings.IndexByte(client, ':') < 0 {
		// IPv4 fast path: no parsing, no allocation.
		if i := strings.LastIndexByte(client, '.'); i > 0 && strings.Count(client, ".") == 3 {
			dst = append(dst, client[:i]...)
			return append(dst, ".0/24"...)
		}
		return append(dst, truncate(client)...)
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return append(dst, truncate(client)...)
	}
	if a.Is4In6() {
		return appendClientPrefix(dst, a.Unmap().String())
	}
	p, err := a.Prefix(48)
	if err != nil {
		return append(dst, truncate(client)...)
	}
	return p.AppendTo(dst)
}

// appendRefererDomain appends the lower-cased host of a referer URL, or
// "(none)" when the request had none.
func appendRefererDomain(dst []byte, ref string) []byte {
	if ref == "" || ref == "-" {
		return append(dst, "(none)"...)
	}
	s := ref
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "]") {
		s = s[:i]
	}
	if s == "" {
		return append(dst, "(none)"...)
	}
	start := len(dst)
	dst = append(dst, truncate(s)...)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; 'A' <= c && c <= 'Z' {
			dst[i] = c + 'a' - 'A'
		}
	}
	return dst
}

// appendPathTemplate appends the path with its query dropped and identifiers
// replaced, so that "/v2/applications/33591900/metrics.json" and every other
// application's metrics count as one endpoint, and all images in a folder as
// "/images/*.jpg".
func appendPathTemplate(dst []byte, path string) []byte {
	dst, _, _ = appendPathTemplateClass(dst, path)
	return dst
}

// appendPathTemplateClass is appendPathTemplate that also returns
// staticPath(path) when it found it on the way (known), which it does
// unless the path is not absolute or is cut at maxSegments.
func appendPathTemplateClass(dst []byte, path string) (_ []byte, class string, known bool) {
	if i := indexAny2(path, '?', '#'); i >= 0 {
		path = path[:i]
	}
	if path == "" || path == "-" {
		return append(dst, '-'), "", true
	}
	if path[0] != '/' {
		// "*" (OPTIONS), absolute-form targets, garbage: keep a bounded prefix.
		return append(dst, truncate(path)...), "", false
	}
	const maxSegments = 6
	n := 0
	for len(path) > 0 {
		path = path[1:] // the '/'
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i:]
		} else {
			path = ""
		}
		if n == maxSegments {
			return append(dst, "/…"...), "", false
		}
		n++
		dst = append(dst, '/')
		if path == "" { // the last segment: what staticPath looks at
			class, known = staticClass(seg), true
		}
		switch {
		case class != "":
			dst = append(dst, '*')
			dst = append(dst, seg[strings.LastIndexByte(seg, '.'):]...)
		case isIdentifier(seg):
			dst = append(dst, ":id"...)
		default:
			dst = append(dst, truncate(seg)...)
		}
	}
	return dst, class, known
}

// isIdentifier tells whether a path segment names one object among many
// (a number, a hash, a UUID, a long token) rather than an endpoint.
func isIdentifier(seg string) bool {
	if seg == "" {
		return false
	}
	digits, hex, other := 0, 0, 0
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hex++
		case c == '-' || c == '_' || c == '.':
		default:
			other++
		}
	}
	switch {
	case digits == len(seg):
		return true
	case digits > 0 && other == 0 && len(seg) >= 8:
		return true // hex hashes, UUIDs
	case digits >= 3 && len(seg) >= 16:
		return true // tokens, slugs with ids
	}
	return false
}

// indexAny2 is strings.IndexAny for two bytes, without building a set on
// every call (it runs several times per log line).
func indexAny2(s string, a, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == a || s[i] == b {
			return i
		}
	}
	return -1
}

// staticClass says what kind of static object a path's last segment is:
// "image", "media", "download", "asset", or "" when it is not static.
func staticClass(seg string) string {
	i := strings.LastIndexByte(seg, '.')
	if i < 0 || len(seg)-i > 6 {
		return ""
	}
	var ext [6]byte
	n := copy(ext[:], seg[i+1:])
	for j := 0; j < n; j++ {
		if c := ext[j]; 'A' <= c && c <= 'Z' {
			ext[j] = c + 'a' - 'A'
		}
	}
	switch string(ext[:n]) {
	case "jpg", "jpeg", "png", "gif", "webp", "avif", "svg", "ico", "bmp", "tif", "tiff", "heic":
		return "image"
	case "mp4", "webm", "mov", "m4v", "mp3", "ogg", "wav", "flac", "m3u8", "ts":
		return "media"
	case "zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "pdf", "iso", "dmg", "exe", "deb", "rpm", "apk", "tar":
		return "download"
	case "css", "js", "mjs", "woff", "woff2", "ttf", "otf", "eot", "map":
		return "asset"
	}
	return ""
}

// staticPath is staticClass for a whole request target.
func staticPath(path string) string {
	if i := indexAny2(path, '?', '#'); i >= 0 {
		path = path[:i]
	}
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	return staticClass(path)
}

// botPatterns mark automated user agents: crawlers announce themselves, and
// scripts keep their library's default agent.
var botPatterns = [][]byte{
	[]byte("bot"), []byte("crawl"), []byte("spider"), []byte("slurp"),
	[]byte("curl/"), []byte("wget/"), []byte("python-requests"), []byte("python-urllib"),
	[]byte("aiohttp"), []byte("go-http-client"), []byte("java/"), []byte("libwww-perl"),
	[]byte("apache-httpclient"), []byte("okhttp/"), []byte("scrapy"), []byte("headlesschrome"),
	[]byte("phantomjs"), []byte("facebookexternalhit"), []byte("httpclient"), []byte("node-fetch"),
	[]byte("axios/"), []byte("feedfetcher"), []byte("archiver"), []byte("scan"),
}

// isBot reports whether ua looks automated; scratch is a reusable buffer.
func isBot(ua string, scratch []byte) (bool, []byte) {
	if ua == "" || ua == "-" {
		return false, scratch
	}
	b := append(scratch[:0], truncate(ua)...)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	for _, p := range botPatterns {
		if bytes.Contains(b, p) {
			return true, b
		}
	}
	return false, b
}

// siteDomain is the registrable part of a host name ("forum.example.co.uk"
// → "example.co.uk"), close enough to the public suffix list for telling a
// site's own pages from other sites without shipping the list.
func siteDomain(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return host
	}
	labels := strings.Split(host, ".")
	if len(labels) <= 2 {
		return host
	}
	n := 2
	tld, second := labels[len(labels)-1], labels[len(labels)-2]
	if len(tld) == 2 && (len(second) <= 3 || second == "gouv") {
		n = 3 // co.uk, com.au, ac.jp, gouv.fr
	}
	return strings.Join(labels[len(labels)-n:], ".")
}
