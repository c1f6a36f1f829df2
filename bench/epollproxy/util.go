package main

import "bytes"

func indexBytes(b, sep []byte) int { return bytes.Index(b, sep) }

// indexCRLF is the index of the CRLF at or after i in h, which ends with one.
func indexCRLF(h []byte, i int) int { return i + bytes.Index(h[i:], []byte("\r\n")) }

func indexByteFrom(b []byte, c byte, from int) int {
	if from > len(b) {
		return -1
	}
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

// spanOf is where v, a subslice of buf, lies in it.
func spanOf(buf, v []byte) span {
	from := cap(buf) - cap(v)
	return span{from, from + len(v)}
}

// field splits a header line (without its CRLF) into name and value, the
// value's surrounding whitespace trimmed; false for a line that is not a
// field (no colon, an empty name or one with whitespace or controls, an
// obs-fold, a CR or LF inside).
func field(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name = line[:colon]
	for _, b := range name {
		if b <= ' ' || b == 0x7f {
			return nil, nil, false
		}
	}
	value = line[colon+1:]
	for _, b := range value {
		if b == '\r' || b == '\n' || b == 0 {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true
}

// equalFold compares b with lower, which is in lower case, ASCII only.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func equalFoldBytes(a, b []byte) bool { return bytes.EqualFold(a, b) }

// forTokens calls f with each non-empty element of a comma-separated list.
func forTokens(v []byte, f func(t []byte)) {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte{','})
		if t = bytes.Trim(t, " \t"); len(t) > 0 {
			f(t)
		}
	}
}

// hopByHop says whether name is one of the fields RFC 9110 section 7.6.1
// says a proxy must not forward (those httputil.ReverseProxy and
// bench/fasthttpproxy drop), besides the ones a Connection field names.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 7:
		return equalFold(name, "trailer") || equalFold(name, "upgrade")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding")
	case 18:
		return equalFold(name, "proxy-authenticate")
	case 19:
		return equalFold(name, "proxy-authorization")
	}
	return false
}
