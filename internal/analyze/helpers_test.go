package analyze

import (
	"testing"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

func mustFormat(tb testing.TB, name string) *accesslog.Format {
	tb.Helper()
	f, err := accesslog.LookupFormat(name, accesslog.FormatOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

var benchRec accesslog.Record

func recordOf(tb testing.TB, p accesslog.Parser, line []byte) *accesslog.Record {
	if err := p.Parse(line, &benchRec); err != nil {
		tb.Fatal(err)
	}
	return &benchRec
}
