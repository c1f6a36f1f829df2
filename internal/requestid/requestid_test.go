package requestid

import (
	"strings"
	"sync"
	"testing"
)

func TestNewIsFixedLengthHexAndUnique(t *testing.T) {
	const goroutines, each = 8, 5000
	var mu sync.Mutex
	seen := make(map[string]bool, goroutines*each)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			ids := make([]string, each)
			for i := range ids {
				ids[i] = New()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("id %s made twice", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	for id := range seen {
		if len(id) != Len || strings.Trim(id, "0123456789abcdef") != "" || !Valid(id) {
			t.Fatalf("id %q: want %d lowercase hex digits", id, Len)
		}
		if id[:Len/2] != string(prefix[:]) {
			t.Fatalf("id %q does not start with the process's prefix %s", id, prefix[:])
		}
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	var buf [64]byte
	b := append(buf[:0], "X-Request-Id: "...)
	if n := testing.AllocsPerRun(100, func() { _ = Append(b) }); n != 0 {
		t.Errorf("Append: %v allocations, want 0", n)
	}
}

func TestValid(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"r-1", true},
		{"f81d4fae-7dec-11d0-a765-00a0c91e6bf6", true},
		{"~!\"#$%&'()*+-./:;<=>?@[\\]^_`{|}", true},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
		{"", false},
		{"a b", false},
		{"a,b", false},
		{"a\tb", false},
		{"a\x7f", false},
		{"é", false},
		{"a\x00", false},
	} {
		if got := Valid(c.v); got != c.want {
			t.Errorf("Valid(%q) = %v, want %v", c.v, got, c.want)
		}
		if got := Valid([]byte(c.v)); got != c.want {
			t.Errorf("Valid([]byte(%q)) = %v, want %v", c.v, got, c.want)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	var buf [Len]byte
	b.ReportAllocs()
	for b.Loop() {
		_ = Append(buf[:0])
	}
}
