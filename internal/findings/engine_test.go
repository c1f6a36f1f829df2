package findings_test

import (
	"github.com/headroom-dev/headroom/internal/testenv"

	"bufio"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/analyze"
	"github.com/headroom-dev/headroom/internal/findings"
	"github.com/headroom-dev/headroom/internal/findings/findingstest"
)

var keep = flag.String("keep", "", "write the generated logs of the engine tests to this directory")

// writeLog writes a generated log in headroom's access-log format.
func writeLog(t *testing.T, name string, o findingstest.Options) string {
	t.Helper()
	dir := t.TempDir()
	if *keep != "" {
		dir = *keep
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	recs := findingstest.Generate(o)
	for i := range recs {
		w.WriteString(findingstest.FormatHeadroom(&recs[i]))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// runEngine reads the log through the real engine (parallel workers, each
// with its own collector) and analyzes the merged collector.
func runEngine(t *testing.T, path string, aopt findings.AnalyzeOptions, format ...string) (*findings.Report, *analyze.Result) {
	t.Helper()
	f := "headroom"
	if len(format) > 0 {
		f = format[0]
	}
	res, err := analyze.Run(context.Background(), analyze.Options{
		Inputs:    []string{path},
		Format:    f,
		Workers:   3,
		ChunkSize: 256 << 10, // several chunks per worker, so merging matters
		Findings:  &aopt,
	})
	if err != nil {
		t.Fatalf("analyze.Run: %v", err)
	}
	if res.Malformed != 0 {
		t.Fatalf("%d malformed lines in the generated log: %+v", res.Malformed, res.MalformedExamples)
	}
	full, err := res.Report()
	if err != nil {
		t.Fatal(err)
	}
	rep := full.Detail
	var b strings.Builder
	if err := findings.WriteText(&b, rep.Findings, nil); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	return rep, res
}

func contributes(f findings.Finding, dim, value string) bool {
	for _, c := range f.Contributors {
		if c.Dimension == dim && c.Value == value {
			return true
		}
	}
	return false
}

func TestEngineFindsTheInjectedCause(t *testing.T) {
	shiftAt := time.Date(2019, 4, 4, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		opt       findingstest.Options
		kind, dim string
		value     string
	}{
		{"doubled", findingstest.Options{Seed: 21, Days: 14, PageViewsPerHour: 80, DayNoise: 0.05, DoubleUA: findingstest.PicViewerUA, DoubleFrom: shiftAt},
			findings.KindLevelShift, "user_agent", findingstest.PicViewerUA},
		{"exporter", findingstest.Options{Seed: 22, Days: 2, Exporter: true},
			findings.KindClientTimeout, "user_agent", findingstest.ExporterUA},
		{"exporter-guarded", findingstest.Options{Seed: 26, Days: 2, Exporter: true, ExporterGuarded: true},
			findings.KindClientTimeout, "key", findingstest.ExporterKey},
		{"crawler", findingstest.Options{Seed: 23, Days: 2, Crawler: true},
			findings.KindCrawler, "user_agent", findingstest.CrawlerUA},
		{"hotlink", findingstest.Options{Seed: 24, Days: 2, Hotlink: true},
			findings.KindHotlink, "referer", findingstest.HotlinkSite},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, res := runEngine(t, writeLog(t, tc.name+".log", tc.opt), findings.AnalyzeOptions{})
			if rep.Records != res.Records() {
				t.Errorf("collector saw %d records, engine %d", rep.Records, res.Records())
			}
			if len(rep.Findings) == 0 {
				t.Fatal("no findings")
			}
			top := rep.Findings[0]
			if top.Kind != tc.kind || !contributes(top, tc.dim, tc.value) {
				t.Fatalf("top finding %s %q %+v; want %s naming %s=%s", top.Kind, top.Title, top.Contributors, tc.kind, tc.dim, tc.value)
			}
			if tc.kind == findings.KindLevelShift && (top.ChangeAt == nil || top.ChangeAt.Sub(shiftAt).Abs() > 2*time.Hour) {
				t.Errorf("change at %v, want %v ± 2h", top.ChangeAt, shiftAt)
			}
		})
	}
}

func TestEngineCleanLogHasNoLevelShift(t *testing.T) {
	rep, _ := runEngine(t, writeLog(t, "clean.log", findingstest.Options{Seed: 25, Days: 14, PageViewsPerHour: 80, Weekly: 0.1, DayNoise: 0.1}), findings.AnalyzeOptions{})
	for _, f := range rep.Findings {
		if f.Kind == findings.KindLevelShift {
			t.Errorf("false level shift on a clean log: %s", f.Title)
		}
	}
}

// BenchmarkEngine reads one generated log through the engine alone and with
// the findings collector plugged in, to show what the findings cost.
func BenchmarkEngine(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	recs := findingstest.Generate(findingstest.Options{Seed: 1, Days: 2, PageViewsPerHour: 300, Exporter: true, Crawler: true})
	for i := range recs {
		w.WriteString(findingstest.FormatHeadroom(&recs[i]))
		w.WriteByte('\n')
	}
	w.Flush()
	f.Close()
	st, _ := os.Stat(path)
	for _, withFindings := range []bool{false, true} {
		name := "engine"
		if withFindings {
			name = "engine+findings"
		}
		b.Run(name, func(b *testing.B) {
			var lines int64
			b.ReportAllocs()
			b.SetBytes(st.Size())
			for i := 0; i < b.N; i++ {
				opt := analyze.Options{Inputs: []string{path}, Format: "headroom"}
				if withFindings {
					opt.Findings = &findings.AnalyzeOptions{}
				}
				res, err := analyze.Run(context.Background(), opt)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := res.Report(); err != nil {
					b.Fatal(err)
				}
				lines = res.Lines
			}
			b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// A real log: four days of a personal site's traffic with its own daily
// cycle, crawlers and scripts. No level shift or client timeout may be
// invented; the crawlers must be named; the missing timings must be said.
func TestEngineOnARealLog(t *testing.T) {
	rep, res := runEngine(t, testenv.RepoTestdata(t, "real/elastic-apache-combined-2015.log.gz"), findings.AnalyzeOptions{}, "auto")
	if res.Records() != 10000 {
		t.Fatalf("%d records, want 10000", res.Records())
	}
	var crawler, noTimes bool
	for _, f := range rep.Findings {
		switch f.Kind {
		case findings.KindLevelShift, findings.KindClientTimeout, findings.KindErrorBurst:
			t.Errorf("invented finding on a real log: %s %s", f.Kind, f.Title)
		case findings.KindCrawler:
			crawler = contributes(f, "user_agent", "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)")
		case findings.KindAbortAccounting:
			noTimes = strings.Contains(f.Title, "no request or upstream times")
		}
	}
	if !crawler {
		t.Error("no crawler finding naming Yahoo! Slurp, the log's heaviest crawler")
	}
	if !noTimes {
		t.Error("the report should say the log has no request times")
	}
}
