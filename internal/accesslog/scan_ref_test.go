package accesslog

import (
	"math/rand/v2"
	"testing"
)

// The byte-by-byte scanners that scanQuoted and findUntil replaced: the
// SIMD-searching versions must find the same positions.
func scanQuotedRef(line []byte, start int) int {
	for i := start; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func findUntilRef(line []byte, pos int, until string, list bool) int {
	c0 := until[0]
	for i := pos; i < len(line); i++ {
		if line[i] != c0 {
			continue
		}
		if len(line)-i < len(until) || s2(line[i:i+len(until)]) != until {
			continue
		}
		if list && c0 == ' ' && i > pos {
			if line[i-1] == ',' || (line[i-1] == ':' && i >= 2 && line[i-2] == ' ') {
				continue
			}
			if i+2 < len(line) && line[i+1] == ':' && line[i+2] == ' ' {
				continue
			}
		}
		return i
	}
	return -1
}

func TestScannersMatchByteByByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const alphabet = `ab "\\ ,:]-[x1`
	untils := []string{" ", `"`, `" `, "] ", " :", ", ", "|", "]"}
	buf := make([]byte, 80)
	for n := 0; n < 20000; n++ {
		line := buf[:rng.IntN(len(buf))]
		for i := range line {
			line[i] = alphabet[rng.IntN(len(alphabet))]
		}
		for start := 0; start <= len(line); start++ {
			if got, want := scanQuoted(line, start), scanQuotedRef(line, start); got != want {
				t.Fatalf("scanQuoted(%q, %d) = %d, want %d", line, start, got, want)
			}
			for _, u := range untils {
				for _, list := range []bool{false, true} {
					if got, want := findUntil(line, start, u, list), findUntilRef(line, start, u, list); got != want {
						t.Fatalf("findUntil(%q, %d, %q, %v) = %d, want %d", line, start, u, list, got, want)
					}
				}
			}
		}
	}
}
