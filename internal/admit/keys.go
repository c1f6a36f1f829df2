package admit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/guard/config"
)

// AddrPrefix marks ledger keys that are client addresses (requests that
// carried no key). Addresses are not secrets, so they stay readable in the
// admin API and the access log; API keys never do.
const AddrPrefix = "addr:"

// fingerprintPrefix marks ledger keys that are fingerprints of API keys.
const fingerprintPrefix = "fp-"

// Fingerprinter turns API keys into stable, non-reversible names: the first
// 8 bytes of HMAC-SHA256(secret, key), hex, prefixed "fp-". A keyed hash,
// not a plain one, because API keys are often short or structured enough to
// brute-force from an unkeyed digest found in a log. Safe for concurrent use.
type Fingerprinter struct {
	pool sync.Pool // of *hasher, since hmac.New allocates several blocks

	// cache maps keys seen recently to their fingerprints, so a key's
	// requests after its first cost a lookup instead of an HMAC. Kept in
	// memory only, like the request that carried the key; never logged
	// or saved. Bounded to about fingerprintCacheMax keys: when full it is
	// emptied, at most once a minute, and until then new keys are
	// fingerprinted without being remembered.
	cache   sync.Map // raw key (string) -> fingerprint (string)
	cached  atomic.Int64
	cleared atomic.Int64 // when the cache was last emptied, Unix nanoseconds
}

const fingerprintCacheMax = 8192

type hasher struct {
	h   hash.Hash
	buf []byte // the key copied in, as hmac has no WriteString
}

// NewFingerprinter returns a Fingerprinter keyed by secret.
func NewFingerprinter(secret []byte) *Fingerprinter {
	s := append([]byte(nil), secret...)
	return &Fingerprinter{pool: sync.Pool{New: func() any { return &hasher{h: hmac.New(sha256.New, s)} }}}
}

// Fingerprint returns key's fingerprint, e.g. fp-3fa94c0d1e2b5a67.
func (f *Fingerprinter) Fingerprint(key string) string {
	if fp, ok := f.cache.Load(key); ok {
		return fp.(string)
	}
	fp := f.compute(key)
	if f.cached.Load() >= fingerprintCacheMax {
		now, last := time.Now().UnixNano(), f.cleared.Load()
		if now-last < int64(time.Minute) || !f.cleared.CompareAndSwap(last, now) {
			return fp
		}
		f.cache.Clear()
		f.cached.Store(0)
	}
	// A copy: the key may be a slice of a larger header buffer.
	if _, loaded := f.cache.LoadOrStore(strings.Clone(key), fp); !loaded {
		f.cached.Add(1)
	}
	return fp
}

func (f *Fingerprinter) compute(key string) string {
	hs := f.pool.Get().(*hasher)
	hs.h.Reset()
	hs.buf = append(hs.buf[:0], key...)
	hs.h.Write(hs.buf)
	var sum [sha256.Size]byte
	hs.h.Sum(sum[:0])
	f.pool.Put(hs)
	var out [len(fingerprintPrefix) + 16]byte
	copy(out[:], fingerprintPrefix)
	hex.Encode(out[len(fingerprintPrefix):], sum[:8])
	return string(out[:])
}

// LedgerKey turns what an admin typed (a raw key, a fingerprint, or an
// addr:IP) into the key the ledger knows.
func (f *Fingerprinter) LedgerKey(s string) string {
	if config.IsFingerprint(s) || strings.HasPrefix(s, AddrPrefix) {
		return s
	}
	return f.Fingerprint(s)
}

// keyFinder finds a request's key and its client address.
type keyFinder struct {
	sources []config.KeySource // headers canonicalized
	trusted []netip.Prefix
	redact  map[string]bool // query parameters never logged
	lens    uint64          // redactLens(redact)
}

func newKeyFinder(k config.Keys) (*keyFinder, error) {
	f := &keyFinder{redact: map[string]bool{}}
	for _, s := range k.Sources {
		if s.Header != "" {
			s.Header = http.CanonicalHeaderKey(s.Header)
		}
		if s.Query != "" {
			f.redact[s.Query] = true
		}
		f.sources = append(f.sources, s)
	}
	for _, q := range k.RedactQuery {
		f.redact[q] = true
	}
	f.lens = redactLens(f.redact)
	for i, p := range k.TrustedProxies {
		pre, err := config.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("keys.trusted_proxies[%d]: %w", i, err)
		}
		f.trusted = append(f.trusted, pre)
	}
	return f, nil
}

// noHeader is the Header of a Request that gives none (Request.Header
// nil).
type noHeader struct{}

func (noHeader) Get(string) string      { return "" }
func (noHeader) Values(string) []string { return nil }

// header is r's Header, or noHeader when it has none.
func header(r *Request) Header {
	if r.Header == nil {
		return noHeader{}
	}
	return r.Header
}

// rawKey returns the API key the request carries, or "".
func (f *keyFinder) rawKey(r *Request) string {
	h := header(r)
	for _, s := range f.sources {
		switch {
		case s.Header != "":
			// A blank value is no key: the next source is tried, as for
			// a blank bearer token (found by FuzzKeyFromRequest).
			if v := strings.TrimSpace(h.Get(s.Header)); v != "" {
				return v
			}
		case s.Bearer:
			v := h.Get("Authorization")
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				if t := strings.TrimSpace(v[7:]); t != "" {
					return t
				}
			}
		case s.Query != "":
			if r.Query != "" {
				q, _ := url.ParseQuery(r.Query)
				if v := q.Get(s.Query); v != "" {
					return v
				}
			}
		}
	}
	return ""
}

func (f *keyFinder) isTrusted(a netip.Addr) bool {
	for _, p := range f.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address the request came from. X-Forwarded-For is
// believed only when the peer is a trusted proxy, and then only as far as
// the chain of trusted proxies goes: the rightmost address that is not one
// of ours is the client (anything to its left was written by the client and
// can be forged).
func (f *keyFinder) clientAddr(r *Request) netip.Addr {
	peer := r.Peer
	if len(f.trusted) == 0 || !peer.IsValid() || !f.isTrusted(peer) {
		return peer
	}
	xff := header(r).Values("X-Forwarded-For")
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client // garbage: stop at the last hop we could read
			}
			a = a.Unmap()
			client = a
			if !f.isTrusted(a) {
				return a
			}
		}
	}
	return client
}

// PeerAddr parses a connection's remote address (host:port, or a bare
// host) as the core wants Request.Peer: IPv4-mapped IPv6 unmapped, the
// zero Addr when it does not parse.
func PeerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// LoadOrCreateSecret returns the fingerprint secret kept in path, creating
// it (32 random bytes, hex, mode 0600) when the file does not exist, so
// fingerprints stay the same across restarts without an operator having to
// choose a secret.
func LoadOrCreateSecret(path string) (secret []byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return nil, false, fmt.Errorf("fingerprint secret %s is too short (%d bytes); delete it to have a new one generated", path, len(s))
		}
		return []byte(s), false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("read fingerprint secret: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, false, fmt.Errorf("generate fingerprint secret: %w", err)
	}
	s := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("create fingerprint secret: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("create fingerprint secret: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, false, fmt.Errorf("create fingerprint secret: %w", err)
	}
	return []byte(s), true, nil
}

// RandomSecret returns a fresh secret, for a proxy with nowhere to keep one.
func RandomSecret() []byte {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	return []byte(hex.EncodeToString(raw[:]))
}

// redactQuery returns the request target with the values of the named
// query parameters replaced by REDACTED, so keys passed in URLs never reach
// the log. The rest of the target is kept byte for byte.
func redactQuery(uri string, redact map[string]bool) string {
	return redactQueryLens(uri, redact, redactLens(redact))
}

// redactLens has bit n set when a name n bytes long is redacted (n ≥ 63
// all share bit 63), so most names of a query are passed over by their
// length alone.
func redactLens(redact map[string]bool) uint64 {
	var lens uint64
	for n := range redact {
		lens |= 1 << min(len(n), 63)
	}
	return lens
}

// redacted reports whether the query parameter name (as written, escaped)
// is one of redact's.
func redacted(name string, redact map[string]bool, lens uint64) bool {
	if strings.IndexByte(name, '%') < 0 && lens&(1<<min(len(name), 63)) == 0 {
		return false // unescaped, it is as long, and no redacted name is
	}
	n, err := url.QueryUnescape(name)
	return err == nil && redact[n]
}

func redactQueryLens(uri string, redact map[string]bool, lens uint64) string {
	q := strings.IndexByte(uri, '?')
	if q < 0 || len(redact) == 0 {
		return uri
	}
	query := uri[q+1:]
	needs := false
	for rest := query; ; {
		part, next, more := strings.Cut(rest, "&")
		name, _, _ := strings.Cut(part, "=")
		if redacted(name, redact, lens) {
			needs = true
			break
		}
		if !more {
			break
		}
		rest = next
	}
	if !needs {
		return uri
	}
	var b strings.Builder
	b.Grow(len(uri))
	b.WriteString(uri[:q+1])
	first := true
	for part := range strings.SplitSeq(query, "&") {
		if !first {
			b.WriteByte('&')
		}
		first = false
		name, _, hasValue := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil && redact[n] && hasValue {
			b.WriteString(name)
			b.WriteString("=REDACTED")
			continue
		}
		b.WriteString(part)
	}
	return b.String()
}
