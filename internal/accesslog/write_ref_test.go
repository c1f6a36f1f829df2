package accesslog

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// The escapers append whole runs between escaped bytes; these are the
// byte-at-a-time versions they replaced, kept to compare against.
func refEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

func refJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, `\u00`...)
				b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func refSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	ms := d.Milliseconds()
	b = strconv.AppendInt(b, ms/1000, 10)
	b = append(b, '.')
	frac := ms % 1000
	if frac < 100 {
		b = append(b, '0')
	}
	if frac < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, frac, 10)
}

func TestEscapersMatchTheByteAtATimeOnes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []string{"", "plain", `"`, `\`, "\x00", "\x7f", "é", "\xff", "a\"b\\c\x01d", "日本\xe6\x97", "ok\u2028"}
	for range 20000 {
		n := r.IntN(40)
		s := make([]byte, n)
		for i := range s {
			if r.IntN(3) == 0 {
				s[i] = byte(r.IntN(256))
			} else {
				s[i] = byte(' ' + r.IntN(95))
			}
		}
		cases = append(cases, string(s))
	}
	for _, s := range cases {
		if got, want := appendEscaped([]byte("x"), s), refEscaped([]byte("x"), s); !bytes.Equal(got, want) {
			t.Fatalf("appendEscaped(%q) = %q, want %q", s, got, want)
		}
		if got, want := appendJSONString([]byte("x"), s), refJSONString([]byte("x"), s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestNumbersMatchStrconv(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, 9 * time.Millisecond, 10 * time.Millisecond,
		99 * time.Millisecond, 100 * time.Millisecond, 999 * time.Millisecond, time.Second, 9999 * time.Millisecond,
		10 * time.Second, 29904 * time.Millisecond, 1234567 * time.Millisecond, time.Millisecond - 1} {
		if got, want := appendSeconds(nil, d), refSeconds(nil, d); !bytes.Equal(got, want) {
			t.Errorf("appendSeconds(%v) = %s, want %s", d, got, want)
		}
	}
	for _, s := range []int{-1, 0, 1, 99, 100, 200, 499, 999, 1000, 12345} {
		if got, want := appendStatus(nil, s), strconv.AppendInt(nil, int64(s), 10); !bytes.Equal(got, want) {
			t.Errorf("appendStatus(%d) = %s, want %s", s, got, want)
		}
	}
}

// The Record forms write what an Entry with SetClient writes.
func TestRecordFormsMatchEntries(t *testing.T) {
	clients := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("fe80::1%eth0"), {}}
	for _, e := range sampleEntries() {
		e.RequestID = "req-1"
		for _, c := range clients {
			ent := e
			ent.SetClient(c)
			if got, want := AppendHeadroomRecord(nil, &e.Record, c), AppendHeadroom(nil, &ent); !bytes.Equal(got, want) {
				t.Errorf("AppendHeadroomRecord(%v) = %q, want %q", c, got, want)
			}
			if got, want := AppendJSONRecord(nil, &e.Record, c, e.Outcome, e.RequestID), AppendJSON(nil, &ent); !bytes.Equal(got, want) {
				t.Errorf("AppendJSONRecord(%v) = %q, want %q", c, got, want)
			}
		}
	}
}

// escapes8 finds an escaped byte in a word exactly when the table does.
func TestEscapes8(t *testing.T) {
	check := func(w [8]byte) {
		want := false
		for _, c := range w {
			want = want || escapedByte[c]
		}
		if got := escapes8(load8(string(w[:]))); got != want {
			t.Fatalf("escapes8(%q) = %v, want %v", w, got, want)
		}
	}
	for c := range 256 {
		for p := range 8 {
			w := [8]byte{'a', 'Z', '~', ' ', '!', '#', '[', ']'}
			w[p] = byte(c)
			check(w)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		var w [8]byte
		for i := range w {
			if r.IntN(8) == 0 {
				w[i] = byte(r.IntN(256))
			} else {
				w[i] = byte(' ' + r.IntN(95))
			}
		}
		check(w)
	}
}

func TestRFC3339NanoMatchesAppendFormat(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("", -8*3600), time.FixedZone("", 5*3600+1800), time.FixedZone("X", 0)}
	if ny, err := time.LoadLocation("America/New_York"); err == nil {
		zones = append(zones, ny)
	}
	r := rand.New(rand.NewPCG(5, 6))
	base := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	for i := range 20000 {
		at := base.Add(time.Duration(r.Int64N(int64(400 * 24 * time.Hour))))
		switch i % 4 {
		case 0:
			at = at.Truncate(time.Second)
		case 1:
			at = at.Truncate(time.Millisecond)
		case 2:
			at = at.Add(time.Duration(i % 3)) // runs within a second: the cached text
		}
		at = at.In(zones[i%len(zones)])
		if got, want := appendRFC3339Nano([]byte("x"), at), at.AppendFormat([]byte("x"), time.RFC3339Nano); !bytes.Equal(got, want) {
			t.Fatalf("appendRFC3339Nano(%v) = %s, want %s", at, got, want)
		}
	}
	for _, at := range []time.Time{{}, time.Date(12345, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got, want := appendRFC3339Nano(nil, at), at.AppendFormat(nil, time.RFC3339Nano); !bytes.Equal(got, want) {
			t.Errorf("appendRFC3339Nano(%v) = %s, want %s", at, got, want)
		}
	}
}
