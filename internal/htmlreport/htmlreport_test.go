package htmlreport

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/analyze"
	"github.com/headroom-dev/headroom/internal/findings"
	"github.com/headroom-dev/headroom/internal/findings/findingstest"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// report analyzes a generated log with both seeds' causes: a client that
// starts fetching every image twice, and an exporter with a 5 s timeout.
func report(t testing.TB, mutate func(*accesslog.Record)) *findings.Report {
	t.Helper()
	recs := findingstest.Generate(findingstest.Options{
		Seed: 3, Days: 6, PageViewsPerHour: 60,
		DoubleUA: findingstest.PicViewerUA, DoubleFrom: time.Date(2019, 3, 30, 12, 0, 0, 0, time.UTC),
		Exporter: true,
	})
	c := findings.NewCollector(findings.Options{Seed: 1})
	for i := range recs {
		if mutate != nil {
			mutate(&recs[i])
		}
		c.Observe(&recs[i])
	}
	rep, err := findings.Analyze(c, findings.AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// fullReport reads the same generated log through the real engine, so the
// page has the overview and tables as well (Options.Summary).
func fullReport(t testing.TB) *analyze.Report {
	t.Helper()
	recs := findingstest.Generate(findingstest.Options{
		Seed: 3, Days: 6, PageViewsPerHour: 60,
		DoubleUA: findingstest.PicViewerUA, DoubleFrom: time.Date(2019, 3, 30, 12, 0, 0, 0, time.UTC),
		Exporter: true,
	})
	path := filepath.Join(t.TempDir(), "access.log")
	var b strings.Builder
	for i := range recs {
		b.WriteString(findingstest.FormatHeadroom(&recs[i]) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := analyze.Run(context.Background(), analyze.Options{Inputs: []string{path}, Format: "headroom", Findings: &findings.AnalyzeOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := res.Report()
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func renderHTML(t testing.TB, rep *findings.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, rep, Options{Sources: []string{"access.log"}}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReportIsSelfContained(t *testing.T) {
	html := renderHTML(t, report(t, nil))
	for _, re := range []string{`<script[^>]+src=`, `<link[^>]+href=`, `https?://[^"' ]*\.js`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("report loads something from outside (%q); it must open offline", m)
		}
	}
	for _, want := range []string{"echarts", `id="traffic"`, `id="stack"`, `id="scatter"`, `id="histogram"`, "level_shift", "client_timeout", "markLine", findingstest.ExporterUA} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Findings come before the charts.
	if f, c := strings.Index(html, `id="finding-1"`), strings.Index(html, `id="traffic"`); f < 0 || c < 0 || f > c {
		t.Errorf("findings (at %d) must precede the charts (at %d)", f, c)
	}
}

func TestLogValuesCannotBreakOutOfTheScripts(t *testing.T) {
	const evil = `</script><script>document.title="pwned"</script><!--`
	html := renderHTML(t, report(t, func(r *accesslog.Record) {
		if r.UserAgent == findingstest.PicViewerUA {
			r.UserAgent = "Evil " + evil
		}
	}))
	if strings.Contains(html, `<script>document.title="pwned"`) {
		t.Fatal("a user agent from the log injected a script into the report")
	}
	if !strings.Contains(html, `Evil &lt;/script&gt;`) {
		t.Error("the evil user agent should appear, escaped, in the findings")
	}
}

func TestWriteRejectsNil(t *testing.T) {
	if err := Write(&bytes.Buffer{}, nil, Options{}); err == nil {
		t.Fatal("Write(nil) succeeded")
	}
}

// TestChartsRenderInChromium opens the report in headless Chromium: every
// chart must draw a canvas and no script may throw. The page records both on
// <body> (data-rendered, data-errors), read back with --dump-dom; a
// screenshot is kept in the test's output directory.
func TestChartsRenderInChromium(t *testing.T) {
	chromium := testenv.RequireBinary(t, "chromium", "chromium-browser", "google-chrome")
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	full := fullReport(t)
	var html bytes.Buffer
	if err := Write(&html, full.Detail, Options{Sources: []string{"access.log"}, Summary: full}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) (stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args := append([]string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir=" + filepath.Join(dir, "profile"),
			"--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
		}, extra...)
		args = append(args, "file://"+page)
		cmd := exec.CommandContext(ctx, chromium, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, tail(errb.String(), 3000))
		}
		return out.String(), errb.String()
	}
	dom, stderr := run("--dump-dom")
	body := regexp.MustCompile(`<body [^>]*data-charts[^>]*>`).FindString(dom)
	if body == "" {
		t.Fatalf("no <body> in the dumped DOM:\n%s", tail(dom, 2000))
	}
	attr := func(name string) string {
		m := regexp.MustCompile(name + `="([^"]*)"`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return m[1]
	}
	if e := attr("data-errors"); e != "" {
		t.Errorf("scripts threw in the browser: %s", e)
	}
	// Traffic, worker time, top contributors, scatter, histogram, by hour
	// of day and by day: every one drawn.
	charts, _ := strconv.Atoi(attr("data-charts"))
	rendered, _ := strconv.Atoi(attr("data-rendered"))
	if charts != 7 || rendered != charts {
		t.Errorf("%d of %d charts rendered (want 7 of 7); body tag: %s", rendered, charts, body)
	}
	if n := strings.Count(dom, "<canvas"); n < 7 {
		t.Errorf("%d canvases in the DOM, want one per chart (7)", n)
	}
	for _, id := range []string{"overview", "tables", "status", "worker-by-endpoint", "latency-by-endpoint", "top-path_template", "top-client", "top-prefix", "top-not_found", "top-ua_family", "top-os", "top-user_agent", "top-key"} {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("section %q missing from the rendered page", id)
		}
	}
	if size := html.Len(); size > 4<<20 {
		t.Errorf("report is %d bytes; it must stay a few MB whatever the log", size)
	}
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "CONSOLE") && (strings.Contains(line, "Uncaught") || strings.Contains(line, "Error")) {
			t.Errorf("browser console error: %s", line)
		}
	}

	shot := filepath.Join(dir, "report.png")
	run("--screenshot="+shot, "--window-size=1280,3000", "--hide-scrollbars")
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 20_000 {
		t.Fatalf("screenshot %s missing or nearly empty (%v, %d bytes)", shot, err, sizeOf(st))
	}
	// Keep the screenshot and the page past the test's temporary directory
	// (one fixed place, overwritten each run) for a person to look at.
	keep := os.Getenv("HEADROOM_SCREENSHOT_DIR")
	if keep == "" {
		keep = filepath.Join(os.TempDir(), "headroom-htmlreport")
	}
	if err := os.MkdirAll(keep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report.png", "report.html"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keep, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot: %s (%d bytes), page: %s", filepath.Join(keep, "report.png"), st.Size(), filepath.Join(keep, "report.html"))
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
