package tailfile

import (
	"bytes"
	"slices"
	"testing"
)

// splitWhole is what one read of all of data must deliver: its complete
// lines without "\n" or a trailing "\r", the empty ones dropped and those
// longer than maxLine counted instead.
func splitWhole(data []byte, maxLine int) (lines []string, overlong uint64) {
	parts := bytes.Split(data, []byte("\n"))
	for _, p := range parts[:len(parts)-1] { // the last one has no newline yet
		p = bytes.TrimSuffix(p, []byte("\r"))
		switch {
		case len(p) == 0:
		case len(p) > maxLine:
			overlong++
		default:
			lines = append(lines, string(p))
		}
	}
	return lines, overlong
}

// feed gives s the pieces as reads of at most what space() offers.
func feed(s *splitter, pieces [][]byte) (lines []string) {
	fn := func(line []byte) { lines = append(lines, string(line)) }
	for _, p := range pieces {
		for len(p) > 0 {
			n := copy(s.space(), p)
			s.advance(n, fn)
			p = p[n:]
		}
	}
	return lines
}

func TestSplitter(t *testing.T) {
	for _, c := range []struct {
		name     string
		bufSize  int
		maxLine  int
		pieces   []string
		want     []string
		overlong uint64
		pending  int
	}{
		{"lines", 64, 16, []string{"a\nb\nc"}, []string{"a", "b"}, 0, 1},
		{"split anywhere", 8, 6, []string{"ab", "c\nde", "f", "\r", "\ng"}, []string{"abc", "def"}, 0, 1},
		{"buffer full of one line", 8, 6, []string{"abcdef\r", "\n"}, []string{"abcdef"}, 0, 0},
		{"overlong across reads", 8, 3, []string{"abcdefghij", "klm", "no\npq\n"}, []string{"pq"}, 1, 0},
		{"overlong complete in one read", 64, 3, []string{"abcd\nxy\n"}, []string{"xy"}, 1, 0},
		{"max plus cr", 8, 3, []string{"abc\r", "\n"}, []string{"abc"}, 0, 0},
		{"max plus other", 8, 3, []string{"abcd", "\nz\n"}, []string{"z"}, 1, 0},
		{"empty and crlf", 16, 8, []string{"\n\r\n\n", "x\r\n"}, []string{"x"}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSplitter(c.bufSize, c.maxLine)
			var pieces [][]byte
			for _, p := range c.pieces {
				pieces = append(pieces, []byte(p))
			}
			got := feed(s, pieces)
			if !slices.Equal(got, c.want) || s.overlong != c.overlong || s.pending() != c.pending {
				t.Errorf("lines %q, overlong %d, pending %d; want %q, %d, %d", got, s.overlong, s.pending(), c.want, c.overlong, c.pending)
			}
			if s.lines != uint64(len(got)) {
				t.Errorf("counted %d lines, delivered %d", s.lines, len(got))
			}
		})
	}
}

func TestSplitterFinish(t *testing.T) {
	for _, c := range []struct {
		name     string
		data     string
		skip     skipMode
		want     []string
		overlong uint64
	}{
		{"unfinished line", "a\nbc", keep, []string{"a", "bc"}, 0},
		{"unfinished with cr", "bc\r", keep, []string{"bc"}, 0},
		{"nothing unfinished", "a\n", keep, []string{"a"}, 0},
		{"overlong unfinished", "abcdefghijkl", keep, nil, 1},
		{"fragment unfinished", "abc", fragment, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSplitter(8, 4)
			s.skip = c.skip
			got := feed(s, [][]byte{[]byte(c.data)})
			s.finish(func(line []byte) { got = append(got, string(line)) })
			if !slices.Equal(got, c.want) || s.overlong != c.overlong {
				t.Errorf("lines %q, overlong %d; want %q, %d", got, s.overlong, c.want, c.overlong)
			}
			if s.pending() != 0 || s.skip != keep {
				t.Errorf("after finish: pending %d, skip %d", s.pending(), s.skip)
			}
		})
	}
}

// FuzzSplitter: arbitrary data cut at arbitrary points, through a buffer of
// arbitrary size, delivers exactly the lines one read of all of it would, in
// order, and counts the same overlong lines.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\nccc\n"), []byte{1, 2, 3}, uint8(4), uint8(0))
	f.Add([]byte("abcdefghij\nk\n"), []byte{3, 3, 3, 3}, uint8(3), uint8(2))
	f.Add([]byte("\r\n\r\r\n\n"), []byte{1}, uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, data, cuts []byte, maxLine, extra uint8) {
		ml := int(maxLine%32) + 1
		s := newSplitter(ml+2+int(extra%16), ml)
		var pieces [][]byte
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i]))
			}
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		got := feed(s, pieces)
		want, overlong := splitWhole(data, ml)
		if !slices.Equal(got, want) || s.overlong != overlong {
			t.Fatalf("data %q cut %v, max %d: lines %q overlong %d; want %q %d", data, cuts, ml, got, s.overlong, want, overlong)
		}
	})
}

// TestSplitterDoesNotAllocate: splitting a read into lines allocates
// nothing, whatever the number of lines.
func TestSplitterDoesNotAllocate(t *testing.T) {
	s := newSplitter(bufSize, defaultMaxLine)
	chunk := bytes.Repeat([]byte("GET /v1/things 200 0.012 key-1\r\n"), 1000)
	chunk = append(chunk, "unfinish"...)
	n := 0
	fn := func([]byte) { n++ }
	allocs := testing.AllocsPerRun(100, func() {
		m := copy(s.space(), chunk)
		s.advance(m, fn)
	})
	if allocs != 0 {
		t.Errorf("%v allocations a read", allocs)
	}
	if n == 0 {
		t.Error("no lines")
	}
}
