package testenv

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// RepoTestdata returns the path of a file under the repository's top-level
// testdata directory, so every package's tests read the same committed
// samples instead of a copy each (or a machine-local path that skips).
func RepoTestdata(t testing.TB, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate the repository")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "testdata", filepath.FromSlash(name))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: committed sample missing: %v", err)
	}
	return p
}

// RealSample returns the path of an uncompressed copy of a committed real
// log sample (testdata/real/NAME.gz), written once into the test's temp dir:
// the tests that count lines or bytes want the plain text.
func RealSample(t testing.TB, name string) string {
	t.Helper()
	src := RepoTestdata(t, "real/"+name+".gz")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatalf("testenv: %s: %v", src, err)
	}
	dst := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), ".gz"))
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatalf("testenv: %s: %v", src, err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
