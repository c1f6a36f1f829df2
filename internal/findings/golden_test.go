package findings

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/findings/findingstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenReports pins the text and JSON rendering of two seeded logs, so
// a change in wording, ranking or numbers shows up in review as a diff.
func TestGoldenReports(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  findingstest.Options
	}{
		{"exporter", findingstest.Options{Seed: 31, Days: 2, PageViewsPerHour: 40, Exporter: true}},
		{"doubled", findingstest.Options{Seed: 32, Days: 10, PageViewsPerHour: 40, DoubleUA: findingstest.PicViewerUA, DoubleFrom: time.Date(2019, 4, 2, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := analyzeRecords(t, findingstest.Generate(tc.opt), AnalyzeOptions{})
			var text bytes.Buffer
			if err := WriteText(&text, rep.Findings, time.UTC); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(rep.Findings, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".txt", text.Bytes())
			golden(t, tc.name+".json", append(js, '\n'))
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it after review):\n--- got\n%s", path, got)
	}
}
