package testenv

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// update is the one -update flag of every package that keeps golden files;
// it is registered here so that a package cannot define a second one.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/ instead of comparing with them")

// Update reports whether the test run was asked to rewrite golden files
// (go test -update), for tests that regenerate fixtures other than through
// Golden.
func Update() bool { return *update }

// Golden compares got with the file at path (relative to the package, by
// convention under testdata/). With -update it writes got there instead and
// the test passes, so a reviewer sees the change as a diff of the file.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("create the golden file's directory: %v", err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("rewrite golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it; review the diff):\n%s", path, firstDifference(got, want))
	}
}

// firstDifference shows where got and want part, with some lines of
// context, instead of dumping two whole files into the test log.
func firstDifference(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	i := 0
	for i < len(g) && i < len(w) && bytes.Equal(g[i], w[i]) {
		i++
	}
	var b bytes.Buffer
	from := max(0, i-3)
	b.WriteString("first difference at line ")
	b.WriteString(strconv.Itoa(i + 1))
	b.WriteString(":\n")
	show := func(prefix string, lines [][]byte) {
		for j := from; j < len(lines) && j < i+6; j++ {
			mark := "  "
			if j >= i {
				mark = prefix
			}
			b.WriteString(mark)
			b.Write(lines[j])
			b.WriteByte('\n')
		}
	}
	b.WriteString("--- got\n")
	show("+ ", g)
	b.WriteString("--- want\n")
	show("- ", w)
	return b.String()
}
