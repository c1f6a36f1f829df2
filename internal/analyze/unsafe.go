package analyze

import "unsafe"

// unsafeString views b as a string without copying; the caller keeps b
// unchanged while the string is in use (derived keys in scratch buffers are
// only looked up, and cloned when stored).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
