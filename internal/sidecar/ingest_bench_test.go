package sidecar

import (
	"strconv"
	"testing"
)

// BenchmarkIngest: one log line from nginx, as the syslog reader hands it
// over; matched to a ticket opened by a check, and without a check; and
// without a check from the access log file, line by line (IngestLine) and
// a read at a time (LineBatch, flushed every 100 lines).
func BenchmarkIngest(b *testing.B) {
	b.Run("unmatched", func(b *testing.B) {
		e := newSidecarEnv(&testing.T{}, "budget: {worker_time: 1h}\n")
		l := line("none", e.sc.Core().Fingerprint("k1"), 200, "0.002")
		b.ReportAllocs()
		for b.Loop() {
			if res, err := e.sc.Ingest(l); res != LineUnmatched {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("matched", func(b *testing.B) {
		e := newSidecarEnv(&testing.T{}, "budget: {worker_time: 1h}\n")
		fp := e.sc.Core().Fingerprint("k1")
		lines := make([][]byte, b.N)
		for i := range lines {
			id := "r" + strconv.Itoa(i)
			e.check(id, "/api/x", "X-Api-Key: k1")
			lines[i] = line(id, fp, 200, "0.002")
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if res, err := e.sc.Ingest(lines[i]); res != LineMatched {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("file-unmatched", func(b *testing.B) {
		e := newSidecarEnv(&testing.T{}, "budget: {worker_time: 1h}\n")
		l := fileLine(&testing.T{}, "-", e.sc.Core().Fingerprint("k1"), 200, "0.002")
		b.ReportAllocs()
		for b.Loop() {
			if res, err := e.sc.IngestLine(l); res != LineUnmatched {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("file-batched", func(b *testing.B) {
		e := newSidecarEnv(&testing.T{}, "budget: {worker_time: 1h}\n")
		l := fileLine(&testing.T{}, "-", e.sc.Core().Fingerprint("k1"), 200, "0.002")
		batch := e.sc.NewLineBatch()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if res, err := batch.Ingest(l); res != LineUnmatched {
				b.Fatal(res, err)
			}
			if i++; i%100 == 0 {
				batch.Flush()
			}
		}
		batch.Flush()
	})
}
