package admit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

func TestFingerprint(t *testing.T) {
	a, b := NewFingerprinter([]byte("secret-one-0123456789")), NewFingerprinter([]byte("secret-two-0123456789"))
	fp := a.Fingerprint("sk_live_123")
	if !config.IsFingerprint(fp) {
		t.Fatalf("%q is not a fingerprint", fp)
	}
	if a.Fingerprint("sk_live_123") != fp {
		t.Error("not stable")
	}
	if b.Fingerprint("sk_live_123") == fp {
		t.Error("the secret does not change the fingerprint")
	}
	if a.Fingerprint("sk_live_124") == fp {
		t.Error("two keys, one fingerprint")
	}
	for in, want := range map[string]string{fp: fp, "addr:10.0.0.1": "addr:10.0.0.1", "sk_live_123": fp} {
		if got := a.LedgerKey(in); got != want {
			t.Errorf("LedgerKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFingerprintCache: a remembered fingerprint is the computed one, and
// the cache stays bounded when more keys than it holds go by.
func TestFingerprintCache(t *testing.T) {
	f := NewFingerprinter([]byte("secret-one-0123456789"))
	for i := range fingerprintCacheMax + 100 {
		k := "sk_live_" + strconv.Itoa(i)
		want := f.compute(k)
		for range 2 { // first computed, then (while there is room) remembered
			if got := f.Fingerprint(k); got != want {
				t.Fatalf("Fingerprint(%q) = %q, want %q", k, got, want)
			}
		}
	}
	if n := f.cached.Load(); n > fingerprintCacheMax {
		t.Errorf("%d keys cached, at most %d", n, fingerprintCacheMax)
	}
	n := 0
	f.cache.Range(func(k, v any) bool {
		n++
		if v != f.compute(k.(string)) {
			t.Errorf("cached %q for %q, computed %q", v, k, f.compute(k.(string)))
		}
		return true
	})
	if n > fingerprintCacheMax {
		t.Errorf("%d entries in the cache, at most %d", n, fingerprintCacheMax)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "usage.snapshot.secret")
	s1, created, err := LoadOrCreateSecret(path)
	if err != nil || !created || len(s1) != 64 {
		t.Fatalf("create: %q %v %v", s1, created, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	s2, created, err := LoadOrCreateSecret(path)
	if err != nil || created || string(s2) != string(s1) {
		t.Fatalf("reload: %q %v %v", s2, created, err)
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, _, err := LoadOrCreateSecret(path); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short secret: %v", err)
	}
}

func TestRawKeySources(t *testing.T) {
	f, err := newKeyFinder(config.Keys{Sources: []config.KeySource{{Header: "x-api-key"}, {Bearer: true}, {Query: "api_key"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		target string
		hdr    [2]string
		want   string
	}{
		{"/", [2]string{"X-Api-Key", "h1"}, "h1"},
		{"/", [2]string{"Authorization", "Bearer  b1 "}, "b1"},
		{"/", [2]string{"Authorization", "bearer b2"}, "b2"},
		{"/", [2]string{"Authorization", "Basic dXNlcjpwYXNz"}, ""},
		{"/?api_key=q1", [2]string{}, "q1"},
		{"/?api_key=q1", [2]string{"X-Api-Key", "h1"}, "h1"}, // first source wins
		{"/?other=1", [2]string{}, ""},
	} {
		r := httptest.NewRequest("GET", c.target, nil)
		if c.hdr[0] != "" {
			r.Header.Set(c.hdr[0], c.hdr[1])
		}
		if got := f.rawKey(&Request{Header: r.Header, Query: r.URL.RawQuery}); got != c.want {
			t.Errorf("%s %v: key %q, want %q", c.target, c.hdr, got, c.want)
		}
	}
}

// A Request without header fields (Header nil, as documented) has no key
// but its query's, and its client is its peer even from a trusted proxy.
func TestRequestWithoutHeader(t *testing.T) {
	f, err := newKeyFinder(config.Keys{Sources: []config.KeySource{{Header: "x-api-key"}, {Bearer: true}, {Query: "api_key"}}, TrustedProxies: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.rawKey(&Request{}); got != "" {
		t.Errorf("no header, no query: key %q, want none", got)
	}
	if got := f.rawKey(&Request{Query: "api_key=q1"}); got != "q1" {
		t.Errorf("no header: key %q, want the query's q1", got)
	}
	peer := PeerAddr("10.0.0.5:1234")
	if got := f.clientAddr(&Request{Peer: peer}); got != peer {
		t.Errorf("no header from a trusted proxy: client %v, want the peer %v", got, peer)
	}
}

func TestPoolRouting(t *testing.T) {
	cfg := &config.Config{Pools: []config.Pool{
		{Name: "api", PathPrefixes: []string{"/api/", "/v2/"}, MaxConcurrent: 1},
		{Name: "partner", Hosts: []string{"partner.example.com"}, MaxConcurrent: 1},
		{Name: "ui", MaxConcurrent: 1},
	}}
	m := newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	rt := &router{}
	for _, c := range cfg.Pools {
		p := newPool(c, m.pool(c.Name))
		if len(c.PathPrefixes) == 0 && len(c.Hosts) == 0 {
			rt.catchAll = p
			continue
		}
		rt.pools, rt.rules = append(rt.pools, p), append(rt.rules, c)
	}
	for _, c := range []struct{ host, path, want string }{
		{"app.example.com", "/api/x", "api"},
		{"app.example.com", "/v2/applications/1/metrics.json", "api"},
		{"PARTNER.example.com:8443", "/dashboard", "partner"},
		{"partner.example.com", "/api/x", "api"}, // first match wins
		{"app.example.com", "/apix", "ui"},
		{"app.example.com", "/", "ui"},
	} {
		r := httptest.NewRequest("GET", "http://"+c.host+c.path, nil)
		if got := rt.pick(r.Host, r.URL.Path).name; got != c.want {
			t.Errorf("%s%s -> %s, want %s", c.host, c.path, got, c.want)
		}
	}
}

// The client address is the peer, or an address the request's own
// X-Forwarded-For names when the peer is trusted; never anything else.
func FuzzClientAddr(f *testing.F) {
	f.Add("10.0.0.5:1234", "203.0.113.9, 10.0.0.7")
	f.Add("192.0.2.1:80", "198.51.100.1")
	f.Add("[::1]:9", "::ffff:203.0.113.9,  garbage ,10.1.1.1")
	kf, err := newKeyFinder(config.Keys{Sources: []config.KeySource{{Bearer: true}}, TrustedProxies: []string{"10.0.0.0/8", "::1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &Request{Peer: PeerAddr(remote), Header: http.Header{"X-Forwarded-For": {xff}}}
		got := kf.clientAddr(r)
		peer := PeerAddr(remote)
		if got == peer {
			return
		}
		if !peer.IsValid() || !kf.isTrusted(peer) {
			t.Fatalf("untrusted peer %q, but the client is %v", remote, got)
		}
		for part := range strings.SplitSeq(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(part)); err == nil && a.Unmap() == got {
				return
			}
		}
		t.Fatalf("client %v is neither the peer %q nor in X-Forwarded-For %q", got, remote, xff)
	})
}
