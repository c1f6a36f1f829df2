package sidecar

import (
	"bytes"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

func TestSidecarParseSyslog(t *testing.T) {
	cases := []struct {
		name, in, tag, msg string
		err                error
	}{
		// What nginx sends (ngx_syslog_add_header), with and without
		// nohostname, and a space-padded day.
		{"hostname", "<190>Nov 30 11:00:04 web-1 headroom: a b c", "headroom", "a b c", nil},
		{"nohostname", "<190>Nov 30 11:00:04 headroom: a b c", "headroom", "a b c", nil},
		{"padded day", "<190>Nov  3 01:02:03 headroom: x", "headroom", "x", nil},
		{"one-digit pri", "<7>Nov 30 11:00:04 headroom: x", "headroom", "x", nil},
		{"trailing newline", "<190>Nov 30 11:00:04 headroom: x\r\n", "headroom", "x", nil},
		{"any tag", "<190>Nov 30 11:00:04 host other: x", "", "x", nil},
		{"colon in message", "<190>Nov 30 11:00:04 headroom: [30/Nov/2026:11:00:04 +0000]: y", "headroom", "[30/Nov/2026:11:00:04 +0000]: y", nil},
		{"other tag", "<190>Nov 30 11:00:04 web-1 nginx: x", "headroom", "", errSyslogTag},
		{"tag prefix is not the tag", "<190>Nov 30 11:00:04 headroomx: x", "headroom", "", errSyslogTag},
		{"no pri", "Nov 30 11:00:04 headroom: x", "headroom", "", errSyslogPRI},
		{"pri too long", "<1900>Nov 30 11:00:04 headroom: x", "headroom", "", errSyslogPRI},
		{"empty pri", "<>Nov 30 11:00:04 headroom: x", "headroom", "", errSyslogPRI},
		{"unclosed pri", "<190", "headroom", "", errSyslogPRI},
		{"rfc 5424", "<190>1 2026-11-30T11:00:04Z web-1 headroom - - - x", "headroom", "", errSyslogHeader},
		{"short timestamp", "<190>Nov 30 11:00 headroom: x", "headroom", "", errSyslogHeader},
		{"no tag end", "<190>Nov 30 11:00:04 headroom x", "headroom", "", errSyslogHeader},
		{"too many words", "<190>Nov 30 11:00:04 a b headroom: x", "headroom", "", errSyslogHeader},
		{"empty message", "<190>Nov 30 11:00:04 headroom: \n", "headroom", "", errSyslogEmpty},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, err := ParseSyslog([]byte(c.in), c.tag)
			if err != c.err || string(msg) != c.msg {
				t.Errorf("ParseSyslog(%q) = %q, %v; want %q, %v", c.in, msg, err, c.msg, c.err)
			}
		})
	}
}

func TestSidecarParseSyslogDoesNotAllocate(t *testing.T) {
	b := []byte("<190>Nov 30 11:00:04 web-1 headroom: a b c")
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseSyslog(b, "headroom") }); n != 0 {
		t.Errorf("%v allocations per datagram", n)
	}
}

// FuzzSidecarSyslog feeds arbitrary datagrams to the whole ingest path:
// syslog framing, the log_format parser, the ticket lookup and the charge.
func FuzzSidecarSyslog(f *testing.F) {
	for _, s := range [][]byte{
		line("req-1", "fp-0123456789abcdef", 200, "0.250"),
		line("req-1", "fp-0123456789abcdef", 499, "1.000, 2.000"),
		line("req-2", "-", 429, "-"),
		[]byte("<190>Nov 30 11:00:04 web-1 headroom: x"),
		[]byte("<190>Nov  3 11:00:04 headroom: 1.2.3.4 - - [30/Nov/2026:11:00:04 +0000] \"GET /\\x22 HTTP/1.1\" 200 0 \"-\" \"a\\\"b\" 0.1 200 0.1 addr:1.2.3.4  id "),
	} {
		f.Add(s)
	}
	cfg := &config.Config{Listen: DefaultListen, NoUpstream: true}
	cfg.SetDefaults()
	clock := budget.NewManualClock(time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC))
	core, err := admit.New(admit.Options{Config: cfg, Clock: clock, Secret: []byte("test-secret-0123456789")})
	if err != nil {
		f.Fatal(err)
	}
	sc, err := New(Options{Core: core, Tag: DefaultSyslogTag})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		msg, perr := ParseSyslog(b, DefaultSyslogTag)
		if perr == nil && (len(msg) == 0 || !bytes.Contains(b, msg)) {
			t.Fatalf("ParseSyslog(%q) = %q: not a non-empty part of the datagram", b, msg)
		}
		res, err := sc.Ingest(b)
		switch res {
		case LineMalformed:
			if err == nil {
				t.Fatalf("malformed without a reason: %q", b)
			}
		case LineMatched, LineLate, LineUnmatched, LineNoUpstream:
			if err != nil || perr != nil {
				t.Fatalf("%s with error %v (syslog %v): %q", res, err, perr, b)
			}
		default:
			t.Fatalf("unknown result %q", res)
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("Ingest modified its input")
		}
		if sc.Pending() != 0 {
			t.Fatal("a log line opened a ticket")
		}
	})
}
