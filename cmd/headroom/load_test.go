package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/testenv"
)

func TestLoadFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "10/s", "--duration", "1s"}, "no URL given"},
		{[]string{"http://127.0.0.1:1/", "--duration", "1s"}, "no load given"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s"}, "no bound given"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--vus", "3", "--duration", "1s"}, "choose one"},
		{[]string{"http://127.0.0.1:1/", "--stages", "1s:10", "--duration", "1s"}, "drop --duration"},
		{[]string{"http://127.0.0.1:1/", "--rate", "fast", "--duration", "1s"}, "--rate"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--threshold", "p95 under 1s"}, "--threshold"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--link-capacity", "fast"}, "--link-capacity"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "-H", "novalue"}, "--header"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--body", "x", "--body-file", "y"}, "choose one"},
		{[]string{"ftp://127.0.0.1/", "--rate", "10/s", "--duration", "1s"}, "http:// or https://"},
		// Issue 17 item 16: Go's raw "first path segment in URL cannot contain colon".
		{[]string{"127.0.0.1:8000", "--rate", "10/s", "--duration", "1s"}, `"127.0.0.1:8000" has no scheme: write http://127.0.0.1:8000`},
		{[]string{"localhost:8000/api", "--rate", "10/s", "--duration", "1s"}, "write http://localhost:8000/api"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--targets", "/nonexistent/targets"}, "--targets"},
	}
	for _, tt := range tests {
		cmd := newLoadCmd()
		cmd.SetArgs(tt.args)
		cmd.SetOut(new(strings.Builder))
		cmd.SetErr(new(strings.Builder))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("load %s: error %v, want one mentioning %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// Issue 17: 100% connection refused exited 0. It is an error (exit 1), not
// a threshold failure (exit 2), and the report says why.
func TestLoadUnreachableTargetFails(t *testing.T) {
	dead := "http://" + testenv.FreePort(t) + "/"
	cmd := newLoadCmd()
	cmd.SetArgs([]string{dead, "--rate", "20/s", "--requests", "10", "--duration", "5s"})
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(new(strings.Builder))
	err := cmd.Execute()
	var ee exitError
	if err == nil || errors.As(err, &ee) || !strings.Contains(err.Error(), "no request got a response from GET "+dead+" (connection refused: 10)") {
		t.Errorf("error %v, want one saying no request got a response (exit 1)", err)
	}
	if !strings.Contains(out.String(), "NO RESPONSE") {
		t.Errorf("the report does not say the target never answered:\n%s", out.String())
	}
}
