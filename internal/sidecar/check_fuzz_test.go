package sidecar

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// FuzzCheckRequest (issue 17 item 9): whatever headers nginx's check
// subrequest carries (the client address, URI and host the snippet adds,
// the original's key, a request id), the sidecar answers 204 or 403 (the
// only statuses auth_request passes on as meant), names the request's key
// only as a fingerprint or the client address, and the request it
// rebuilds always has an address to fall back on.
func FuzzCheckRequest(f *testing.F) {
	f.Add("203.0.113.7", "/api/report?s=1.5", "app.example.com", "team-a-key", "req-1")
	f.Add("", "", "", "", "")
	f.Add("not-an-ip", "%zz/../?api_key=k", "[::1]:80", "  ", "req-1")
	f.Add("::ffff:10.0.0.1", "*", "h", "Bearer x", "r")
	f.Add("203.0.113.7:5555", "http://absolute.example/p?q", "", "fp-0123456789abcdef", strings.Repeat("x", 300))
	e := &sidecarEnv{}
	f.Fuzz(func(t *testing.T, client, uri, host, key, id string) {
		if e.sc == nil {
			e = newSidecarEnv(&testing.T{}, "budget: {worker_time: 2s, window: 1m, restrict_for: 5m}\nkeys: {sources: [{header: X-Api-Key}, {query: api_key}]}\n")
		}
		r := httptest.NewRequest("GET", "http://127.0.0.1:9092"+CheckPath, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		for name, v := range map[string]string{hdrClient: client, hdrURI: uri, hdrHost: host, "X-Api-Key": key, hdrRequestID: id} {
			if v != "" && !strings.ContainsAny(v, "\r\n") {
				r.Header.Set(name, v)
			}
		}
		if v := identity(r.Header, admit.PeerAddr(r.RemoteAddr), r.Host); !v.Peer.IsValid() {
			t.Fatalf("client %q left the request no address (nginx's is 127.0.0.1)", client)
		}
		w := httptest.NewRecorder()
		e.sc.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent && w.Code != http.StatusForbidden {
			t.Fatalf("check answered %d: auth_request turns it into a 500", w.Code)
		}
		k := w.Header().Get(hdrKey)
		if !config.IsFingerprint(k) && !strings.HasPrefix(k, "addr:") {
			t.Fatalf("the check names the key %q: neither a fingerprint nor an address", k)
		}
		if raw := strings.TrimSpace(key); len(raw) > 3 && !config.IsFingerprint(raw) && strings.Contains(w.Header().Get(hdrKey), raw) {
			t.Fatalf("the raw key %q is in the answer", raw)
		}
	})
}
