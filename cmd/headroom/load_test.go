package main

import (
	"strings"
	"testing"
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
