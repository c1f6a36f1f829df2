package dims

import (
	"net/netip"
	"strings"
)

// AppendRefererDomain writes the lower-cased host of a referer URL (host
// names are case-insensitive: Forum.Example.com is forum.example.com), None
// when the request had no referer.
func AppendRefererDomain(dst []byte, ref string) []byte {
	if ref == "" || ref == "-" {
		return append(dst, None...)
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
			ref = ref[1:i]
		}
	} else if i := strings.LastIndexByte(ref, ':'); i >= 0 && strings.IndexByte(ref, ':') == i {
		ref = ref[:i]
	}
	if ref == "" {
		return append(dst, None...)
	}
	start := len(dst)
	dst = append(dst, Truncate(ref)...)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; 'A' <= c && c <= 'Z' {
			dst[i] = c + 'a' - 'A'
		}
	}
	return dst
}

// RefererDomain is AppendRefererDomain as a string.
func RefererDomain(ref string) string {
	if ref == "" || ref == "-" {
		return None
	}
	return string(AppendRefererDomain(nil, ref))
}

// SiteDomain is the registrable part of a host name ("forum.example.co.uk"
// → "example.co.uk"), close enough to the public suffix list for telling a
// site's own pages from other sites without shipping the list.
func SiteDomain(host string) string {
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
