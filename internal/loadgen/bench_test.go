package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkShardRecord is the per-request bookkeeping: three histograms,
// counters and the status breakdown under one uncontended lock.
func BenchmarkShardRecord(b *testing.B) {
	sh := newShard()
	now := time.Now()
	o := outcome{intended: now, sent: now.Add(50 * time.Microsecond), firstByte: now.Add(300 * time.Microsecond),
		done: now.Add(320 * time.Microsecond), status: 200, bytes: 150}
	b.ReportAllocs()
	for b.Loop() {
		sh.record(&o)
	}
}

// BenchmarkRunClosed is the whole closed-model loop against a loopback
// server in the same process (so the figure includes the server's work);
// b.N requests by 8 users.
func BenchmarkRunClosed(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, world!")
	}))
	defer srv.Close()
	tg, _ := ParseTarget(srv.URL)
	b.ReportAllocs()
	b.ResetTimer()
	res, err := Run(context.Background(), Options{Targets: []Target{tg}, VUs: 8, Duration: time.Hour, MaxRequests: int64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	if res.Completed != int64(b.N) {
		b.Fatalf("completed %d of %d", res.Completed, b.N)
	}
}
