package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestVersion builds the binary as the Makefile does (the release version
// set at link time) and checks that both `headroom version` and
// `headroom --version` print it with the revision and Go version.
func TestVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "headroom")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/headroom-dev/headroom/internal/buildinfo.version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`^headroom v9\.8\.7-test \(revision ([0-9a-f]{12}(-dirty)?|unknown)(, [0-9TZ:-]+)?, go1\.[0-9.]+\)\n$`)
	var first string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("headroom %v: %v\n%s", args, err, out)
		}
		if !want.Match(out) {
			t.Errorf("headroom %v printed %q, want a line matching %s", args, out, want)
		}
		if first == "" {
			first = string(out)
		} else if string(out) != first {
			t.Errorf("headroom --version printed %q, headroom version %q", out, first)
		}
	}
}
