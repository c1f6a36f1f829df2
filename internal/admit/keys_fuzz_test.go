package admit

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

// FuzzKeyFromRequest (issue 17 item 9): whatever a request's key header,
// Authorization and query say, the key found is one of them as given
// (trimmed), in the order of the sources, and what the core charges is a
// fingerprint or the client address: never the raw key.
func FuzzKeyFromRequest(f *testing.F) {
	f.Add("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "", "")
	f.Add("", "Bearer tok-123", "")
	f.Add("", "bearer   ", "api_key=k%20q&x=1")
	f.Add("  padded  ", "Basic dXNlcjpwYXNz", "api_key=&api_key=second")
	f.Add("", "", "api_key=%zz;api_key=semi")
	f.Add("fp-0123456789abcdef", "Bearer addr:10.0.0.1", "api_key=addr:1.2.3.4")
	kf, err := newKeyFinder(config.Keys{Sources: []config.KeySource{{Header: "X-Api-Key"}, {Bearer: true}, {Query: "api_key"}}})
	if err != nil {
		f.Fatal(err)
	}
	c, _ := newCore(f, "keys: {sources: [{header: X-Api-Key}, {bearer: true}, {query: api_key}]}\n")
	f.Fuzz(func(t *testing.T, header, auth, query string) {
		h := http.Header{}
		if header != "" {
			h.Set("X-Api-Key", header)
		}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		r := &Request{Header: h, Query: query, Peer: netip.MustParseAddr("192.0.2.10"), Host: "app", Path: "/api/x"}
		got := kf.rawKey(r)
		// The sources in order; a blank one is no key.
		want := strings.TrimSpace(header)
		if want == "" {
			want = bearerOf(auth)
		}
		if want == "" {
			q, _ := url.ParseQuery(query)
			want = q.Get("api_key")
		}
		if got != want {
			t.Fatalf("rawKey(header %q, auth %q, query %q) = %q, want %q", header, auth, query, got, want)
		}
		var a Admission
		c.Begin(r, &a)
		switch {
		case got == "":
			if a.Key != "addr:192.0.2.10" {
				t.Fatalf("no key, charged to %q, want the client address", a.Key)
			}
		case !config.IsFingerprint(a.Key) || a.Key == got && !config.IsFingerprint(got):
			t.Fatalf("key %q charged as %q: not a fingerprint", got, a.Key)
		case strings.Contains(a.Key, got) && len(got) > 3 && !config.IsFingerprint(got):
			t.Fatalf("the raw key %q shows in its ledger key %q", got, a.Key)
		}
	})
}

func bearerOf(auth string) string {
	if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return ""
}
