package analyze

import (
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// FuzzCompileFilter feeds arbitrary --where expressions to the parser and
// evaluates what compiles against a record: no panic either way.
func FuzzCompileFilter(f *testing.F) {
	for _, s := range []string{
		"status>=500", "status=4xx", "path~^/api/", "ua!~bot", "time>=2019-04-04T00:00:00Z",
		"not (status=200 or method=HEAD) and request_time>1.5s", "tenant=acme", "bytes>10k",
		"path~(a|b", "((status=1)", `referer="a b"`, "time<2h", "upstream_status!=2xx",
	} {
		f.Add(s)
	}
	rec := accesslog.Record{Time: time.Date(2019, 4, 4, 1, 0, 0, 0, time.UTC), Client: "2001:db8::1",
		Method: "GET", Path: "/api/v1/items/42?x=1", Status: 503, BytesSent: 1234, RequestTime: time.Second,
		UserAgent: "Googlebot/2.1", Referer: "https://example.com/x",
		Extra: []accesslog.Field{{Name: "tenant", Value: "acme"}, {Name: "request_length", Value: "77"}}}
	now := time.Date(2019, 4, 5, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := CompileFilter(expr, now, time.UTC)
		if err != nil {
			return
		}
		flt.Match(&rec, make([]byte, 0, 64))
	})
}
