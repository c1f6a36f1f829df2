package main

import (
	"strings"
	"testing"
)

// Issue 17 item 16: an unknown flag names the closest one and --help.
func TestUnknownFlagSuggestsTheClosest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--rat", "3/s"}, "unknown flag --rat: did you mean --rate? (headroom load --help lists every flag)"},
		{[]string{"logs", "analyze", "--fromat", "json"}, "unknown flag --fromat: did you mean --format? (headroom logs analyze --help lists every flag)"},
		{[]string{"proxy", "--budgett", "3s"}, "unknown flag --budgett: did you mean --budget?"},
		{[]string{"proxy", "--upstrem", "http://x"}, "did you mean --upstream?"},
		{[]string{"host", "watch", "--intervl", "3s"}, "did you mean --interval?"},
		{[]string{"sidecar", "--ticket", "1m"}, "did you mean --ticket-ttl?"},
		{[]string{"proxy", "--zzzzzz"}, "unknown flag --zzzzzz (headroom proxy --help lists every flag)"},
		{[]string{"load", "-x"}, "unknown flag -x (headroom load --help lists every flag)"},
		{[]string{"load", "--duration", "soon"}, `invalid argument "soon" for "--duration" flag`},
		{[]string{"load", "--duration", "soon"}, "(headroom load --help lists every flag)"},
	} {
		root := newRootCmd()
		root.SetArgs(tc.args)
		root.SetOut(new(strings.Builder))
		root.SetErr(new(strings.Builder))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("headroom %s: error %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"rate", "rate", 0}, {"rat", "rate", 1}, {"fromat", "format", 2}, {"kitten", "sitting", 3}, {"", "abc", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
