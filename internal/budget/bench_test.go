package budget

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// benchKeys returns n distinct keys in a random order, allocated in that
// order: the benchmark walks them sequentially, as a proxy sees a fresh key
// string per request, while the ledger sees them in random order.
func benchKeys(n int) []string {
	perm := rand.New(rand.NewPCG(1, 2)).Perm(n)
	keys := make([]string, n)
	for i, p := range perm {
		keys[i] = fmt.Sprintf("api-key-%016x", uint64(p)*0x9e3779b97f4a7c15)
	}
	return keys
}

// BenchmarkAdmitFinish measures the guard's hot path: one Admit and one
// Finish per op, on a ledger already holding every key (a steady state),
// with the system clock.
func BenchmarkAdmitFinish(b *testing.B) {
	lim := Limits{Budget: time.Hour, Window: time.Minute, RestrictFor: 5 * time.Minute, MaxInFlight: 100}
	for _, n := range []int{1_000, 1_000_000} {
		keys := benchKeys(n)
		l := New(Options{})
		// Insert in an order unrelated to the walk's: a proxy does not see
		// keys again in the order it first saw them. (Inserting in the
		// reverse of the walk, as this benchmark did before issue 12, laid
		// a slice of entries out in the walk's order and gave the old
		// design page and cache-line locality no traffic has.)
		for _, i := range rand.New(rand.NewPCG(5, 6)).Perm(n) {
			_, tk := l.Admit(keys[i], lim)
			l.Finish(tk, time.Millisecond)
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := testenv.StartCPU()
			i := 0
			for b.Loop() {
				d, tk := l.Admit(keys[i], lim)
				if !d.Proceed() {
					b.Fatalf("denied: %+v", d)
				}
				l.Finish(tk, time.Millisecond)
				if i++; i == n {
					i = 0
				}
			}
			cpu.Report(b)
		})
		// The floor any sharded design pays, for comparison in the same
		// run: lock a shard, look the key up in a Go map, read the clock
		// twice (Admit and Finish each need the time).
		b.Run(fmt.Sprintf("keys=%d/floor-map-lock-clock", n), func(b *testing.B) {
			b.ReportAllocs()
			var mu [DefaultShards]sync.Mutex
			maps := make([]map[string]uint32, DefaultShards)
			for i := range maps {
				maps[i] = map[string]uint32{}
			}
			seed := maphash.MakeSeed()
			for i := n - 1; i >= 0; i-- {
				maps[maphash.String(seed, keys[i])%DefaultShards][keys[i]] = uint32(i)
			}
			var sink uint32
			var clk SystemClock
			cpu := testenv.StartCPU()
			i := 0
			for b.Loop() {
				t := clk.Now()
				sh := maphash.String(seed, keys[i]) % DefaultShards
				mu[sh].Lock()
				sink += maps[sh][keys[i]]
				mu[sh].Unlock()
				mu[sh].Lock()
				sink += uint32(clk.Now().Sub(t))
				mu[sh].Unlock()
				if i++; i == n {
					i = 0
				}
			}
			cpu.Report(b)
			_ = sink
		})
		b.Run(fmt.Sprintf("keys=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine walks its own stretch of the keys.
				i := int(next.Add(uint64(n/16+1)) % uint64(n))
				for pb.Next() {
					_, tk := l.Admit(keys[i], lim)
					l.Finish(tk, time.Millisecond)
					if i++; i == n {
						i = 0
					}
				}
			})
		})
	}
}

// BenchmarkAdmitFinishZipf walks 1,000,000 keys with a Zipf (s=1.1)
// popularity, closer to real API traffic than a uniform walk: a few keys
// send most requests and stay in cache.
func BenchmarkAdmitFinishZipf(b *testing.B) {
	const n = 1_000_000
	lim := Limits{Budget: time.Hour, Window: time.Minute, RestrictFor: 5 * time.Minute, MaxInFlight: 100}
	keys := benchKeys(n)
	l := New(Options{})
	for i := range keys {
		_, tk := l.Admit(keys[i], lim)
		l.Finish(tk, time.Millisecond)
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, n-1)
	seq := make([]int32, 1<<20)
	for i := range seq {
		seq[i] = int32(z.Uint64())
	}
	b.Run("keys=1000000", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_, tk := l.Admit(keys[seq[i&(len(seq)-1)]], lim)
			l.Finish(tk, time.Millisecond)
			i++
		}
	})
}

// BenchmarkAdmitNewKeys measures the first sight of a key (insertion).
func BenchmarkAdmitNewKeys(b *testing.B) {
	b.ReportAllocs()
	keys := benchKeys(1_000_000)
	l := New(Options{})
	i := 0
	for b.Loop() {
		_, tk := l.Admit(keys[i], Limits{})
		l.Cancel(tk)
		if i++; i == len(keys) {
			i = 0
			b.StopTimer()
			l = New(Options{})
			b.StartTimer()
		}
	}
}

// BenchmarkSnapshot measures writing and reading a whole ledger of 1,000,000
// active keys (what the periodic snapshot costs), reporting the size.
func BenchmarkSnapshot(b *testing.B) {
	keys := benchKeys(1_000_000)
	l := New(Options{})
	for _, k := range keys {
		_, tk := l.Admit(k, Limits{})
		l.Finish(tk, 250*time.Millisecond)
	}
	var buf bytes.Buffer
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := l.WriteSnapshot(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len())/1e6, "MB")
	})
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := New(Options{}).ReadSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRandomRead is the memory floor under BenchmarkAdmitFinish at a
// million keys: one dependent random read per op (a pointer chase over a
// random cycle of 64-byte lines) in 512 MB, about what the ledger's tables
// take at a million keys, mapped as the tables are (huge pages) and, for
// comparison, on the Go heap (4 KiB pages where THP is "madvise"). No
// decision can cost less than one such read plus its own arithmetic.
func BenchmarkRandomRead(b *testing.B) {
	const size = 512 << 20
	type line struct {
		next uint32
		_    [60]byte
	}
	n := size / int(unsafe.Sizeof(line{}))
	for _, huge := range []bool{true, false} {
		var lines []line
		var mem []byte
		if huge {
			lines, mem = allocHuge[line](n)
		} else {
			lines = make([]line, n)
		}
		// One random cycle through every line (Sattolo's shuffle).
		perm := make([]uint32, n)
		for i := range perm {
			perm[i] = uint32(i)
		}
		r := rand.New(rand.NewPCG(7, 8))
		for i := n - 1; i > 0; i-- {
			j := r.IntN(i)
			perm[i], perm[j] = perm[j], perm[i]
		}
		for i := range perm {
			lines[perm[i]].next = perm[(i+1)%n]
		}
		perm = nil
		name := "pages=huge"
		if !huge || mem == nil {
			name = "pages=4k"
		}
		b.Run(name, func(b *testing.B) {
			cpu := testenv.StartCPU()
			p := uint32(0)
			for b.Loop() {
				p = lines[p].next
			}
			cpu.Report(b)
			if p == 1<<31 {
				b.Log(p)
			}
		})
		freeCells(mem)
	}
}
