package httpwire

// ValidToken reports whether s is a token (RFC 9110 §5.6.2): what a method
// and a field name must be. Writers check what they send with it, so that
// what they write is what this package's reader accepts.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether s may be sent as a field value: visible
// bytes, obs-text, SP and HTAB; no control byte, no CR or LF (RFC 9110
// §5.5).
func ValidFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if !fieldByte[s[i]] {
			return false
		}
	}
	return true
}

// ValidHost reports whether s may be sent as a Host field: the bytes of a
// URI authority's host and port (RFC 3986 §3.2.2), as this package's
// request reader checks them.
func ValidHost(s string) bool { return validHost([]byte(s)) }
