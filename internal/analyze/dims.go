package analyze

import (
	"net/netip"
	"strings"
)

// appendPathTemplate writes the template of a request path: the query is
// dropped and segments that are identifiers rather than names collapse, so
// that /v2/applications/33591900/metrics.json and …/33591901/… count as one
// endpoint (/v2/applications/:id/metrics.json). Numbers become :id, long hex
// strings, UUIDs and opaque tokens become :hash; a short file extension is
// kept (/img/33591900.jpg → /img/:id.jpg).
func appendPathTemplate(dst []byte, path string) []byte {
	for i := 0; i < len(path); i++ { // IndexAny("?#") without its setup cost
		if path[i] == '?' || path[i] == '#' {
			path = path[:i]
			break
		}
	}
	if path == "" {
		return append(dst, "(none)"...)
	}
	if path[0] != '/' {
		// "*", an absolute URL or garbage: keep a bounded prefix of it.
		if len(path) > 64 {
			path = path[:64]
		}
		return append(dst, path...)
	}
	for len(path) > 0 {
		// path starts with '/'
		dst = append(dst, '/')
		path = path[1:]
		end := strings.IndexByte(path, '/')
		if end < 0 {
			end = len(path)
		}
		seg := path[:end]
		path = path[end:]
		stem, ext := seg, ""
		if i := strings.LastIndexByte(seg, '.'); i > 0 && len(seg)-i <= 6 && isAlnum(seg[i+1:]) {
			stem, ext = seg[:i], seg[i:]
		}
		switch classifySegment(stem) {
		case segID:
			dst = append(dst, ":id"...)
			dst = append(dst, ext...)
		case segHash:
			dst = append(dst, ":hash"...)
			dst = append(dst, ext...)
		default:
			if len(seg) > 80 {
				seg = seg[:80]
			}
			dst = append(dst, seg...)
		}
		if len(dst) > 512 { // bound the key whatever the URL
			break
		}
	}
	return dst
}

type segClass uint8

const (
	segName segClass = iota
	segID
	segHash
)

func classifySegment(s string) segClass {
	if s == "" {
		return segName
	}
	digits, hex, letters, other := 0, 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			letters++
		case c == '-' || c == '_':
			other++
		default:
			return segName
		}
	}
	switch {
	case digits == len(s), digits > 0 && hex == 0 && letters == 0: // 123, 123_4, 2019-04-04
		return segID
	case letters == 0 && digits > 0 && len(s) >= 16: // hex digests, UUIDs
		return segHash
	case digits > 0 && len(s) >= 20 && (other == 0 || digits >= len(s)/4):
		// Opaque tokens (base64url ids, session keys), but not slugs:
		// "logstash-monitorama-2013" is words joined by dashes.
		return segHash
	}
	return segName
}

func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// appendClientPrefix writes the network a client address belongs to: its
// /24 for IPv4 and /48 for IPv6 (the usual allocation to one site), where a
// crawler farm or one customer's NAT shows up even when each address alone
// is small. Text that is not an address is kept as is.
func appendClientPrefix(dst []byte, client string) []byte {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return append(dst, client...)
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.AppendTo(dst)
}

// refererDomain returns the host of a referer URL ("" stays "").
func refererDomain(ref string) string {
	if ref == "" {
		return ""
	}
	if i := strings.Index(ref, "://"); i >= 0 {
		ref = ref[i+3:]
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c == '/' || c == '?' || c == '#' {
			ref = ref[:i]
			break
		}
	}
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		ref = ref[i+1:]
	}
	if strings.HasPrefix(ref, "[") { // [2001:db8::1]:8080
		if i := strings.IndexByte(ref, ']'); i > 0 {
			return ref[1:i]
		}
	}
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && strings.IndexByte(ref, ':') == i {
		ref = ref[:i]
	}
	return ref
}

// uaFamily names the software behind a user agent: the crawler or tool when
// it says so, else the browser. The order matters: most browsers claim to
// be "Mozilla" and Chrome-based ones also claim "Safari".
func uaFamily(ua string) string {
	if ua == "" {
		return "(none)"
	}
	for _, f := range uaRules {
		if containsFold(ua, f.needle) {
			return f.family
		}
	}
	// Tools name themselves first: "curl/7.64.0", "python-requests/2.22".
	name := ua
	if i := strings.IndexAny(name, "/ ;("); i > 0 {
		name = name[:i]
	}
	if len(name) > 40 {
		name = name[:40]
	}
	return name
}

var uaRules = []struct{ needle, family string }{
	{"googlebot", "Googlebot"},
	{"bingbot", "Bingbot"},
	{"yandex", "YandexBot"},
	{"baiduspider", "Baiduspider"},
	{"duckduckbot", "DuckDuckBot"},
	{"applebot", "Applebot"},
	{"ahrefsbot", "AhrefsBot"},
	{"semrushbot", "SemrushBot"},
	{"mj12bot", "MJ12bot"},
	{"dotbot", "DotBot"},
	{"petalbot", "PetalBot"},
	{"facebookexternalhit", "facebookexternalhit"},
	{"twitterbot", "Twitterbot"},
	{"slackbot", "Slackbot"},
	{"gptbot", "GPTBot"},
	{"claudebot", "ClaudeBot"},
	{"bytespider", "Bytespider"},
	{"amazonbot", "Amazonbot"},
	{"uptimerobot", "UptimeRobot"},
	{"pingdom", "Pingdom"},
	{"headlesschrome", "HeadlessChrome"},
	{"phantomjs", "PhantomJS"},
	{"edg/", "Edge"},
	{"opr/", "Opera"},
	{"samsungbrowser", "Samsung Internet"},
	{"firefox/", "Firefox"},
	{"chromium/", "Chromium"},
	{"crios/", "Chrome"},
	{"chrome/", "Chrome"},
	{"fxios/", "Firefox"},
	{"safari/", "Safari"},
	{"msie ", "Internet Explorer"},
	{"trident/", "Internet Explorer"},
	{"bot", "other bot"},
	{"crawler", "other bot"},
	{"spider", "other bot"},
}

// containsFold reports whether s contains the lower-case ASCII needle,
// ignoring case, without allocating.
func containsFold(s, needle string) bool {
	n := len(needle)
	c0 := needle[0]
	for i := 0; i+n <= len(s); i++ {
		c := s[i]
		if c|0x20 != c0 && c != c0 {
			continue
		}
		j := 1
		for ; j < n; j++ {
			d := s[i+j]
			if d >= 'A' && d <= 'Z' {
				d |= 0x20
			}
			if d != needle[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}
