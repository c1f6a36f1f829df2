package testenv

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Case is one line of a cases file: its fields before the last, and the
// last field's bytes.
type Case struct {
	Line   int
	Fields []string
	Data   []byte
}

// QuotedCases reads a cases file: one case per line, tab-separated fields
// of which the last is a Go quoted string (so a case can hold bare CRs,
// NULs and other bytes a text file would mangle). Blank lines and lines
// starting with # are skipped. A malformed line fails the test with its
// number.
func QuotedCases(t testing.TB, path string) []Case {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read cases: %v", err)
	}
	defer f.Close()
	var cases []Case
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		data, err := strconv.Unquote(parts[len(parts)-1])
		if err != nil {
			t.Fatalf("%s:%d: the last field is not a Go quoted string: %v", path, n, err)
		}
		cases = append(cases, Case{Line: n, Fields: parts[:len(parts)-1], Data: []byte(data)})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read cases %s: %v", path, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s holds no cases", path)
	}
	return cases
}
