package httpwire

import (
	"bufio"
	"strings"
	"testing"
)

// The checks writers use agree with what the reader accepts.
func TestValidAgreesWithTheReader(t *testing.T) {
	for _, tc := range []struct {
		method, host, value string
		ok                  bool
	}{
		{"GET", "127.0.0.1:8080", "v", true},
		{"M-SEARCH", "[::1]:80", "a\tb c", true},
		{"GET", "h", "obs-text \xe9", true},
		{"G T", "h", "v", false},
		{"G\x00T", "h", "v", false},
		{"GET", `"`, "v", false},
		{"GET", "h", "\x7f", false},
		{"GET", "h", "nul\x00", false},
		{"", "h", "v", false},
	} {
		valid := ValidToken(tc.method) && ValidHost(tc.host) && ValidFieldValue(tc.value)
		if valid != tc.ok {
			t.Errorf("%q %q %q: valid %v, want %v", tc.method, tc.host, tc.value, valid, tc.ok)
		}
		if strings.ContainsAny(tc.method+tc.host+tc.value, "\r\n") {
			continue
		}
		var r Request
		err := ReadRequest(bufio.NewReader(strings.NewReader(tc.method+" / HTTP/1.1\r\nHost: "+tc.host+"\r\nX: "+tc.value+"\r\n\r\n")), &r, 0)
		if (err == nil) != tc.ok {
			t.Errorf("%q %q %q: the reader says %v, the checks %v", tc.method, tc.host, tc.value, err, valid)
		}
	}
}
