package admin

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// FuzzRestrictUntil (issue 17 item 9): POST /v1/keys/{key}/restrict takes
// ?for=DURATION, ?until=RFC3339 or the same in a JSON body. Whatever they
// say, the answer is an error or a restriction that ends in the future:
// exactly for= after now, at until=, or the key's restrict_for.
func FuzzRestrictUntil(f *testing.F) {
	f.Add("10m", "", "")
	f.Add("", "2030-01-02T15:04:05Z", "")
	f.Add("-5s", "", "")
	f.Add("", "", `{"for": "1h"}`)
	f.Add("", "", `{"until": "1999-01-01T00:00:00Z"}`)
	f.Add("0s", "yesterday", `{"for": 5}`)
	f.Add("9223372036854775807ns", "", "")
	now := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, forS, untilS, body string) {
		q := url.Values{}
		if forS != "" {
			q.Set("for", forS)
		}
		if untilS != "" {
			q.Set("until", untilS)
		}
		r := httptest.NewRequest("POST", "/v1/keys/k/restrict?"+q.Encode(), strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		got, err := restrictUntil(r, now, 5*time.Minute)
		if err != nil {
			return
		}
		if !got.After(now) {
			t.Fatalf("for=%q until=%q body %q: restricted until %s, not after now", forS, untilS, body, got)
		}
		if d, perr := time.ParseDuration(forS); forS != "" && (perr != nil || !got.Equal(now.Add(d))) {
			t.Fatalf("for=%q: until %s, want now + %s", forS, got, d)
		}
	})
}

// FuzzLedgerKey: what an admin types as {key} (a raw key, a fingerprint,
// addr:IP) becomes a key the ledger holds: a fingerprint or an address
// key, the raw key never.
func FuzzLedgerKey(f *testing.F) {
	for _, s := range []string{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "fp-0123456789abcdef", "addr:203.0.113.7", "", "FP-0123456789ABCDEF", "addr:", "fp-0123"} {
		f.Add(s)
	}
	fp := admit.NewFingerprinter([]byte("test-secret-0123456789"))
	f.Fuzz(func(t *testing.T, s string) {
		k := fp.LedgerKey(s)
		switch {
		case config.IsFingerprint(s) || strings.HasPrefix(s, admit.AddrPrefix):
			if k != s {
				t.Fatalf("LedgerKey(%q) = %q: a fingerprint or address key is taken as it is", s, k)
			}
		case !config.IsFingerprint(k):
			t.Fatalf("LedgerKey(%q) = %q: not a fingerprint", s, k)
		case k != fp.Fingerprint(s):
			t.Fatalf("LedgerKey(%q) = %q, its fingerprint is %q", s, k, fp.Fingerprint(s))
		}
	})
}
