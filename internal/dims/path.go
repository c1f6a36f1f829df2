package dims

import "strings"

// AppendPathTemplate writes the template of a request path: the query is
// dropped and segments that are identifiers rather than names collapse, so
// that /v2/applications/33591900/metrics.json and …/33591901/… count as one
// endpoint (/v2/applications/:id/metrics.json). Numbers become :id, long hex
// strings, UUIDs and opaque tokens become :hash; a short file extension is
// kept (/img/33591900.jpg → /img/:id.jpg). An empty path is None.
func AppendPathTemplate(dst []byte, path string) []byte {
	for i := 0; i < len(path); i++ { // IndexAny("?#") without its setup cost
		if path[i] == '?' || path[i] == '#' {
			path = path[:i]
			break
		}
	}
	if path == "" || path == "-" {
		return append(dst, None...)
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
	case letters == 0 && digits > 0 && len(s) >= 8: // hex digests, UUIDs, content hashes
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

// StaticClass says what kind of static object a path's last segment is:
// "image", "media", "download", "asset", or "" when it is not static.
func StaticClass(seg string) string {
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

// StaticPath is StaticClass for a whole request target.
func StaticPath(path string) string {
	for i := 0; i < len(path); i++ {
		if path[i] == '?' || path[i] == '#' {
			path = path[:i]
			break
		}
	}
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	return StaticClass(path)
}
