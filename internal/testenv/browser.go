package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser is a headless Chromium (Debian's chromium) driven over the
// DevTools protocol with chromedp, for tests of the pages headroom serves.
// It records what the page says on its console and every uncaught
// exception, so a test can require a page that runs clean.
type Browser struct {
	Ctx context.Context // chromedp.Run(b.Ctx, …)
	t   testing.TB

	mu     sync.Mutex
	errors []string
	shots  int
}

// StartBrowser starts Chromium for the test (skipped locally, failed in
// CI, when it is not installed) and stops it at the end. Every chromedp
// action under Ctx times out after timeout.
func StartBrowser(t testing.TB, timeout time.Duration) *Browser {
	t.Helper()
	exe := RequireBinary(t, "chromium", "chromium-browser", "google-chrome")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.WindowSize(1600, 1000),
		chromedp.DisableGPU,
		// As root (CI here) Chromium refuses to start with its sandbox.
		chromedp.NoSandbox,
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	b := &Browser{Ctx: ctx, t: t}
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	// Subscribe before the first action, so no message of the page is lost.
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.record(fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
			}
		}
	}()
	return b
}

func (b *Browser) record(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, s)
}

// Errors returns the console errors, uncaught exceptions and browser log
// errors seen so far.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Screenshot saves the whole page as a numbered PNG named for what it shows
// in the test's artifact directory (kept with `go test -artifacts`), and
// logs where.
func (b *Browser) Screenshot(t *testing.T, name string) string {
	t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	b.mu.Lock()
	b.shots++
	n := b.shots
	b.mu.Unlock()
	path := filepath.Join(t.ArtifactDir(), fmt.Sprintf("%02d-%s.png", n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("screenshot %s", path)
	return path
}
