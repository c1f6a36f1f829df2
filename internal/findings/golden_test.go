package findings

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"

	"github.com/headroom-dev/headroom/internal/findings/findingstest"
)

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
			testenv.Golden(t, "testdata/"+tc.name+".txt", text.Bytes())
			testenv.Golden(t, "testdata/"+tc.name+".json", append(js, '\n'))
		})
	}
}
