package guard

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

// partitionKey is the draft's "pk" Byte Sequence for a ledger key: the
// fingerprint's 8 bytes, or the address text. Never the API key itself:
// the draft asks servers not to return sensitive partition keys.
func partitionKey(key string) string {
	var raw []byte
	if strings.HasPrefix(key, fingerprintPrefix) {
		if b, err := hex.DecodeString(key[len(fingerprintPrefix):]); err == nil {
			raw = b
		}
	}
	if raw == nil {
		raw = []byte(key)
	}
	return ":" + base64.StdEncoding.EncodeToString(raw) + ":"
}

// setRateLimit writes the RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers (draft 10) for key, replacing any the
// upstream sent.
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
func setRateLimit(h http.Header, key string, lim budget.Limits, used time.Duration, inFlight int, until, now time.Time) {
	h.Del("RateLimit-Policy")
	h.Del("RateLimit")
	if lim.Budget <= 0 && lim.MaxInFlight <= 0 {
		return
	}
	pk := partitionKey(key)
	var pol, cur []byte
	if lim.Budget > 0 {
		pol = append(pol, `"`+policyWorkerTime+`";q=`...)
		pol = strconv.AppendInt(pol, int64(lim.Budget/time.Second), 10)
		pol = append(pol, ";w="...)
		pol = strconv.AppendInt(pol, int64(math.Ceil(lim.Window.Seconds())), 10)
		pol = append(pol, `;headroom-qu="worker-seconds";pk=`...)
		pol = append(pol, pk...)

		cur = append(cur, `"`+policyWorkerTime+`";r=`...)
		cur = strconv.AppendInt(cur, int64(max(lim.Budget-used, 0)/time.Second), 10)
		if !until.IsZero() && until.After(now) {
			cur = append(cur, ";t="...)
			cur = strconv.AppendInt(cur, retryAfter(until, now), 10)
		}
		cur = append(cur, ";pk="...)
		cur = append(cur, pk...)
	}
	if lim.MaxInFlight > 0 {
		if len(pol) > 0 {
			pol = append(pol, ", "...)
			cur = append(cur, ", "...)
		}
		pol = append(pol, `"`+policyConcurrency+`";q=`...)
		pol = strconv.AppendInt(pol, int64(lim.MaxInFlight), 10)
		pol = append(pol, `;qu="concurrent-requests";pk=`...)
		pol = append(pol, pk...)
		cur = append(cur, `"`+policyConcurrency+`";r=`...)
		cur = strconv.AppendInt(cur, int64(max(lim.MaxInFlight-inFlight, 0)), 10)
		cur = append(cur, ";pk="...)
		cur = append(cur, pk...)
	}
	h["Ratelimit-Policy"] = []string{string(pol)}
	h["Ratelimit"] = []string{string(cur)}
}

// retryAfter is the whole seconds from now until t, at least 1.
func retryAfter(t, now time.Time) int64 {
	s := int64(math.Ceil(t.Sub(now).Seconds()))
	return max(s, 1)
}
