package admit

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactQuery(t *testing.T) {
	red := map[string]bool{"api_key": true, "token": true}
	for in, want := range map[string]string{
		"/a":                        "/a",
		"/a?page=2":                 "/a?page=2",
		"/a?api_key=sk_123":         "/a?api_key=REDACTED",
		"/a?x=1&api_key=sk_123&y=2": "/a?x=1&api_key=REDACTED&y=2",
		"/a?api%5Fkey=sk_123":       "/a?api%5Fkey=REDACTED",
		"/a?token=1&token=2":        "/a?token=REDACTED&token=REDACTED",
		"/a?api_key":                "/a?api_key",
		"/a?api_key=&b=c":           "/a?api_key=REDACTED&b=c",
		"/a?tokenizer=on":           "/a?tokenizer=on",
		"/a?x=%zz&token=sk_1":       "/a?x=%zz&token=REDACTED",
	} {
		if got := redactQuery(in, red); got != want {
			t.Errorf("redactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRedactQuery(f *testing.F) {
	f.Add("/a?api_key=sk_live_123&x=1")
	f.Add("/a?%61pi_key=secret")
	f.Add("/?&&=&api_key=a=b")
	red := map[string]bool{"api_key": true}
	f.Fuzz(func(t *testing.T, uri string) {
		out := redactQuery(uri, red)
		q := strings.IndexByte(out, '?')
		if q < 0 {
			if out != uri {
				t.Fatalf("changed a URI without a query: %q -> %q", uri, out)
			}
			return
		}
		if out[:q] != uri[:q] {
			t.Fatalf("changed the path: %q -> %q", uri, out)
		}
		for part := range strings.SplitSeq(out[q+1:], "&") {
			name, value, ok := strings.Cut(part, "=")
			if n, err := url.QueryUnescape(name); err == nil && n == "api_key" && ok && value != "REDACTED" {
				t.Fatalf("api_key value kept: %q -> %q", uri, out)
			}
		}
	})
}
