package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// BenchmarkRedisSync measures one sync (pull the fleet's usage for every
// active key, merge, push every key's changes) against a real
// redis-server over loopback, with every key changed since the last sync:
// the worst case of one sync period. Two other proxies' fields are in
// Redis for each key, so the pull has something to merge.
func BenchmarkRedisSync(b *testing.B) {
	rs := testenv.SharedRedis(b)
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			prefix := fmt.Sprintf("bench%d:", n)
			lg := slog.New(slog.NewTextHandler(io.Discard, nil))
			mk := func(id string) (*budget.Ledger, *Redis) {
				s, err := NewRedis(RedisOptions{URL: rs.URL(), ID: id, Prefix: prefix, Timeout: 10 * time.Second, MaxKeys: n, Logger: lg})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				return budget.New(budget.Options{}), s
			}
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("fp-%016x", i)
			}
			lim := budget.Limits{Budget: time.Hour, Window: time.Minute, RestrictFor: time.Minute}
			charge := func(l *budget.Ledger) {
				for _, k := range keys {
					_, tk := l.Admit(k, lim)
					l.Finish(tk, time.Millisecond)
				}
			}
			for _, id := range []string{"x", "y"} {
				l, s := mk(id)
				charge(l)
				if err := s.SyncOnce(context.Background(), l); err != nil {
					b.Fatal(err)
				}
			}
			l, s := mk("a")
			charge(l)
			if err := s.SyncOnce(context.Background(), l); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				charge(l)
				b.StartTimer()
				if err := s.SyncOnce(context.Background(), l); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		})
	}
}
