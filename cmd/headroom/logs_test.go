package main

import (
	"github.com/headroom-dev/headroom/internal/testenv"

	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// runHeadroom runs the command line in-process, as main would.
func runHeadroom(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestLogsAnalyzeJSON(t *testing.T) {
	realApacheLog := testenv.RealSample(t, "elastic-apache-combined-2015.log")
	out, stderr, err := runHeadroom(t, "", "logs", "analyze", realApacheLog, "--json", "--where", "status>=400", "--by", "status")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep struct {
		Records   int64             `json:"records"`
		Malformed *int64            `json:"malformed"`
		Findings  []json.RawMessage `json:"findings"`
		Top       map[string]any    `json:"top"`
		Groups    struct {
			By []string `json:"by"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	// 217 4xx + 3 5xx in the sample, counted independently in
	// internal/analyze's TestRealCombined.
	if rep.Records != 220 || rep.Malformed == nil || *rep.Malformed != 0 || rep.Findings == nil || rep.Top["client"] == nil {
		t.Errorf("records=%d malformed=%v findings=%v top client=%v", rep.Records, rep.Malformed, rep.Findings, rep.Top["client"])
	}
	if strings.Join(rep.Groups.By, ",") != "status" {
		t.Errorf("groups by %v", rep.Groups.By)
	}
	if !strings.Contains(stderr, "format auto → combined") {
		t.Errorf("stderr does not say which format was detected: %q", stderr)
	}
}

func TestLogsAnalyzeStdinAndErrors(t *testing.T) {
	line := `192.0.2.1 - - [04/Apr/2019:06:20:00 +0000] "GET /t/42 HTTP/1.1" 200 512 "-" "curl/7.64.0"` + "\n"
	out, stderr, err := runHeadroom(t, strings.Repeat(line, 3), "logs", "analyze", "-", "--format", "combined")
	if err != nil || !strings.Contains(out, "3 records from stdin (combined)") {
		t.Errorf("stdin: err=%v\n%s\n%s", err, out, stderr)
	}
	_, _, err = runHeadroom(t, "", "logs", "analyze", "../../go.mod")
	if err == nil || !strings.Contains(err.Error(), "not a log format") {
		t.Errorf("go.mod as a log: err = %v", err)
	}
	_, _, err = runHeadroom(t, line, "logs", "analyze", "-", "--where", "status>>5")
	if err == nil || !strings.Contains(err.Error(), "--where") {
		t.Errorf("bad --where: err = %v", err)
	}
}
