package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoBinary builds headroom and runs `headroom demo` as a user would,
// compressed to a few seconds, checking the story it prints and the access
// log it leaves.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the demo for about 10 s")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "headroom")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "demo-access.log")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--duration", "6s", "--access-log", logPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("headroom demo: %v\n%s", err, out)
	}
	text := string(out)
	t.Log("\n" + text)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+[0-9.]+s\s+the key's next request finds it at [0-9.]+ worker-seconds`),
		regexp.MustCompile(`(?m)^UI latency`),
		regexp.MustCompile(`(?m)^\s+the client saw\s+[0-9.]+ s`),
		regexp.MustCompile(`(?m)^\s+headroom charged\s+[0-9.]+ s`),
		regexp.MustCompile(`(?m)analyze it: headroom logs analyze --format headroom ` + regexp.QuoteMeta(logPath) + `$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s", want)
		}
	}
	// Not a terminal: plain progress lines, no cursor control.
	if strings.Contains(text, "\x1b[") || strings.Contains(text, "\r") {
		t.Error("terminal control sequences in non-terminal output")
	}
	st, err := os.Stat(logPath)
	if err != nil {
		t.Fatalf("access log: %v", err)
	}
	if st.Size() == 0 {
		t.Fatalf("access log %s is empty", logPath)
	}
}
