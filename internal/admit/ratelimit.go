package admit

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
)

// Policy names in the RateLimit fields.
const (
	policyWorkerTime  = "worker-time"
	policyConcurrency = "concurrency"
)

// appendPartitionKey appends the draft's "pk" Byte Sequence for a ledger
// key: the fingerprint's 8 bytes, or the address text. Never the API key
// itself: the draft asks servers not to return sensitive partition keys.
func appendPartitionKey(b []byte, key string) []byte {
	b = append(b, ':')
	var raw [8]byte
	if len(key) == len(fingerprintPrefix)+16 && strings.HasPrefix(key, fingerprintPrefix) {
		if _, err := hex.Decode(raw[:], []byte(key[len(fingerprintPrefix):])); err == nil {
			b = base64.StdEncoding.AppendEncode(b, raw[:])
			return append(b, ':')
		}
	}
	b = base64.StdEncoding.AppendEncode(b, []byte(key))
	return append(b, ':')
}

// PartitionKey is the "pk" parameter of the RateLimit fields for a ledger
// key, as a client sees it.
func PartitionKey(key string) string { return string(appendPartitionKey(nil, key)) }

// appendRateLimit appends the values of the RateLimit-Policy and RateLimit
// fields of draft-ietf-httpapi-ratelimit-headers (draft 10) for key under
// lim, after decision d, to b; the policy is b[:split] of what was
// appended, the RateLimit value the rest. Nothing is appended for a key
// without limits.
//
// Worker time is not a registered quota unit (the registry has requests,
// content-bytes and concurrent-requests), so the worker-time policy carries
// the vendor-prefixed parameter headroom-qu="worker-seconds" and q, r are
// whole worker-seconds:
//
//	RateLimit-Policy: "worker-time";q=60;w=60;headroom-qu="worker-seconds";pk=:P0ETGc2vRao=:, "concurrency";q=4;qu="concurrent-requests";pk=:P0ETGc2vRao=:
//	RateLimit: "worker-time";r=12;pk=:P0ETGc2vRao=:, "concurrency";r=3;pk=:P0ETGc2vRao=:
//
// t (seconds until quota returns) is given only while the key is
// restricted: under a sliding window quota comes back continuously.
func appendRateLimit(b []byte, key string, lim *budget.Limits, d *budget.Decision, now time.Time) (out []byte, split int) {
	start := len(b)
	if lim.Budget <= 0 && lim.MaxInFlight <= 0 {
		return b, start
	}
	if lim.Budget > 0 {
		b = append(b, `"`+policyWorkerTime+`";q=`...)
		b = strconv.AppendInt(b, int64(lim.Budget/time.Second), 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(math.Ceil(lim.Window.Seconds())), 10)
		b = append(b, `;headroom-qu="worker-seconds";pk=`...)
		b = appendPartitionKey(b, key)
	}
	if lim.MaxInFlight > 0 {
		if len(b) > start {
			b = append(b, ", "...)
		}
		b = append(b, `"`+policyConcurrency+`";q=`...)
		b = strconv.AppendInt(b, int64(lim.MaxInFlight), 10)
		b = append(b, `;qu="concurrent-requests";pk=`...)
		b = appendPartitionKey(b, key)
	}
	split = len(b)
	if lim.Budget > 0 {
		b = append(b, `"`+policyWorkerTime+`";r=`...)
		b = strconv.AppendInt(b, int64(max(lim.Budget-d.Used, 0)/time.Second), 10)
		if until := d.RestrictedUntil; !until.IsZero() && until.After(now) {
			b = append(b, ";t="...)
			b = strconv.AppendInt(b, retryAfter(until, now), 10)
		}
		b = append(b, ";pk="...)
		b = appendPartitionKey(b, key)
	}
	if lim.MaxInFlight > 0 {
		if len(b) > split {
			b = append(b, ", "...)
		}
		b = append(b, `"`+policyConcurrency+`";r=`...)
		b = strconv.AppendInt(b, int64(max(lim.MaxInFlight-d.InFlight, 0)), 10)
		b = append(b, ";pk="...)
		b = appendPartitionKey(b, key)
	}
	return b, split
}

// setRateLimit writes the RateLimit fields into h, replacing any the
// upstream sent. Both values are built in one stack buffer and become one
// string, so the fields cost two allocations per response.
func setRateLimit(h http.Header, key string, lim *budget.Limits, d *budget.Decision, now time.Time) {
	delete(h, "Ratelimit-Policy")
	delete(h, "Ratelimit")
	var arr [512]byte
	b, split := appendRateLimit(arr[:0], key, lim, d, now)
	if len(b) == 0 {
		return
	}
	s := string(b)
	vals := make([]string, 2)
	vals[0], vals[1] = s[:split], s[split:]
	h["Ratelimit-Policy"] = vals[0:1:1]
	h["Ratelimit"] = vals[1:2:2]
}

// retryAfter is the whole seconds from now until t, at least 1.
func retryAfter(t, now time.Time) int64 {
	s := int64(math.Ceil(t.Sub(now).Seconds()))
	return max(s, 1)
}
