package weburl

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "http://127.0.0.1:8000", want: "http://127.0.0.1:8000"},
		{in: "https://api.example.com/v1?x=1", want: "https://api.example.com/v1?x=1"},
		{in: " http://[::1]:8000/ ", want: "http://[::1]:8000/"},
		{in: "HTTP://example.com", want: "http://example.com"},
		// Issue 17: the spellings a newcomer types.
		{in: "127.0.0.1:8000", err: `"127.0.0.1:8000" has no scheme: write http://127.0.0.1:8000 (or https:// for TLS)`},
		{in: "localhost:8000", err: `"localhost:8000" has no scheme: write http://localhost:8000`},
		{in: "localhost:8000/api", err: "write http://localhost:8000/api"},
		{in: "example.com", err: "write http://example.com"},
		{in: "//example.com", err: "write http://example.com"},
		{in: "[::1]:8000", err: "write http://[::1]:8000"},
		{in: "ftp://example.com/", err: "must be http:// or https://, not ftp://"},
		{in: "http://", err: "has no host"},
		{in: "http://:8000", err: "has no host"},
		{in: "http://exa mple.com", err: "is not a URL: invalid character"},
		{in: "", err: "empty URL"},
	} {
		u, err := Parse(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error containing %q", tc.in, u, err, tc.err)
			}
		case err != nil || u.String() != tc.want:
			t.Errorf("Parse(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8000", "127.0.0.1:8000", "localhost:8000", "ftp://x", "http://", "https://[::1]/p?q#f", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			if u != nil {
				t.Fatalf("Parse(%q) returned a URL with its error", s)
			}
			return
		}
		if sc := strings.ToLower(u.Scheme); sc != "http" && sc != "https" || u.Hostname() == "" {
			t.Fatalf("Parse(%q) accepted %#v", s, u)
		}
	})
}
