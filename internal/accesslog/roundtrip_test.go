package accesslog

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func mustFormat(t testing.TB, name string) *Format {
	t.Helper()
	f, err := LookupFormat(name, FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// wantBack is what a reader should get back from e as the writer wrote it,
// at the log's resolution: whole seconds of time, milliseconds of
// durations, strings escaped as nginx escapes them (readers keep the
// escapes, as they do for nginx's own logs), absent values empty.
func wantBack(e *Entry, jsonLine bool) Record {
	r := e.Record
	r.Extra = nil
	if e.addr.IsValid() {
		r.Client = e.addr.String()
	}
	r.RequestTime = r.RequestTime.Truncate(time.Millisecond)
	r.UpstreamTime = r.UpstreamTime.Truncate(time.Millisecond)
	if r.RequestTime < 0 {
		r.RequestTime = 0
	}
	if r.UpstreamTime < 0 || !r.HasUpstreamTime {
		r.UpstreamTime = 0
	}
	if r.UpstreamStatus < 0 {
		r.UpstreamStatus = 0
	}
	if jsonLine {
		// JSON strings are UTF-8: each byte that is not becomes U+FFFD,
		// as encoding/json writes it.
		for _, s := range []*string{&r.Method, &r.Path, &r.Proto, &r.Host, &r.Referer, &r.UserAgent, &r.Client, &r.Key, &r.Pool} {
			*s = validUTF8(*s)
		}
		return r
	}
	r.Time = r.Time.Truncate(time.Second)
	for _, s := range []*string{&r.Method, &r.Path, &r.Proto, &r.Referer, &r.UserAgent, &r.Client, &r.Key, &r.Pool} {
		*s = string(appendEscaped(nil, *s))
	}
	r.Host = "" // not in HeadroomFormat
	if r.Client == "" {
		r.Client = "-" // $remote_addr as logged: readers keep nginx's "-"
	}
	return r
}

func validUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func sameRecord(got, want Record) string {
	var diffs []string
	if !got.Time.Equal(want.Time) {
		diffs = append(diffs, fmt.Sprintf("time %v, want %v", got.Time, want.Time))
	}
	got.Time, want.Time, got.Extra, want.Extra = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(got, want) {
		diffs = append(diffs, fmt.Sprintf("\n got %+v\nwant %+v", got, want))
	}
	return strings.Join(diffs, "; ")
}

// roundTrip writes e in both formats headroom writes and reads each line
// back with the format `headroom logs analyze` reads it with.
func roundTrip(t *testing.T, e *Entry) {
	t.Helper()
	for _, c := range []struct {
		format string
		write  func([]byte, *Entry) []byte
		json   bool
	}{
		{"headroom", AppendHeadroom, false},
		{"json", AppendJSON, true},
	} {
		line := c.write(nil, e)
		if len(line) == 0 || line[len(line)-1] != '\n' || strings.IndexByte(string(line[:len(line)-1]), '\n') >= 0 {
			t.Fatalf("%s: not one line: %q", c.format, line)
		}
		var got Record
		if err := mustFormat(t, c.format).NewParser().Parse(line[:len(line)-1], &got); err != nil {
			t.Fatalf("%s: the reader refuses what the writer wrote: %v\n%s", c.format, err, line)
		}
		if d := sameRecord(got, wantBack(e, c.json)); d != "" {
			t.Errorf("%s: %s\nline %s", c.format, d, line)
		}
	}
}

// TestAccessLogRoundTrip: what the proxy writes, `headroom logs analyze`
// reads back as the same record, in both formats.
func TestAccessLogRoundTrip(t *testing.T) {
	entries := sampleEntries()
	withAddr := entries[0]
	withAddr.Client = ""
	withAddr.SetClient(netip.MustParseAddr("2001:db8::7"))
	noUpstream := entries[1]
	noUpstream.HasUpstreamTime, noUpstream.UpstreamStatus = false, 0
	entries = append(entries, withAddr, noUpstream)
	for i := range entries {
		t.Run(fmt.Sprint(i), func(t *testing.T) { roundTrip(t, &entries[i]) })
	}
}

// FuzzAccessLogRoundTrip: for any request the proxy can log, the reader
// gets back what the writer wrote. Key, Pool and Client are tokens the
// proxy makes itself (fingerprints, addr:IP, configured pool names,
// addresses), so they are drawn without spaces; everything the client
// sends is arbitrary bytes.
func FuzzAccessLogRoundTrip(f *testing.F) {
	f.Add(int64(1_486_306_142), "203.0.113.7", "fp-3fa94c0d1e2b5a67", "GET", "/v2/x?api_key=REDACTED", "HTTP/1.1", "api.example.com",
		499, int64(0), int64(4668), 200, int64(29904), true, "-", "NewRelic Exporter", "api")
	f.Add(int64(0), "::1", "addr:::1", "POST", "/ui/\"q\"\\p\x01é", "HTTP/2.0", "", 200, int64(1234), int64(12), 0, int64(0), false, "https://e/é", "a\"b", "ui")
	// Found by the fuzzer: a byte that is not UTF-8 comes back as U+FFFD
	// from the JSON line.
	f.Add(int64(0), "0", "0", "0", "0", "0", "\xff", 200, int64(1234), int64(12), 0, int64(0), false, "0", "0", "0")
	f.Fuzz(func(t *testing.T, unix int64, client, key, method, path, proto, host string, status int, bytes, reqMS int64,
		upStatus int, upMS int64, hasUp bool, referer, agent, pool string) {
		token := func(s string) string {
			s = strings.Map(func(r rune) rune {
				if r <= ' ' || r == 0x7f {
					return -1
				}
				return r
			}, s)
			if s == "-" {
				return ""
			}
			return s
		}
		text := func(s string) string {
			if s == "-" {
				return ""
			}
			return s
		}
		e := Entry{Record: Record{
			// A proxy logs the present: from 2000 on (the reader's
			// $time_local starts in 1970).
			Time:   time.Unix(946_684_800+(unix&(1<<33-1)), 0).UTC(),
			Client: token(client), Key: token(key), Pool: token(pool),
			Method: token(method), Path: token(path), Proto: token(proto), Host: text(host),
			Status: max(status%1000, 100), BytesSent: max(bytes, 0),
			RequestTime:    time.Duration(max(reqMS%1e9, 0)) * time.Millisecond,
			UpstreamStatus: max(upStatus%1000, 0), HasUpstreamTime: hasUp,
			Referer: text(referer), UserAgent: text(agent),
		}, Outcome: "ok"}
		if hasUp {
			e.UpstreamTime = time.Duration(max(upMS%1e9, 0)) * time.Millisecond
		}
		roundTrip(t, &e)
	})
}

// TestRequestIDRoundTrip: an entry's request id is the JSON line's last
// key, read back as the extra field "request_id" (`--where
// request_id=…`); the headroom line, which has no place for it, is the
// same with or without one.
func TestRequestIDRoundTrip(t *testing.T) {
	e := sampleEntries()[0]
	plain := AppendHeadroom(nil, &e)
	e.RequestID = `7dd614978fe75976000000000000002a`
	if got := AppendHeadroom(nil, &e); string(got) != string(plain) {
		t.Errorf("headroom line changed by the request id:\n%s%s", got, plain)
	}
	roundTrip(t, &e)
	line := AppendJSON(nil, &e)
	if !strings.HasSuffix(string(line), `,"request_id":"7dd614978fe75976000000000000002a"}`+"\n") {
		t.Errorf("JSON line does not end with the request id: %s", line)
	}
	var r Record
	if err := mustFormat(t, "json").NewParser().Parse(line[:len(line)-1], &r); err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Get("request_id"); !ok || v != e.RequestID {
		t.Errorf("read back request_id %q (%v), want %q", v, ok, e.RequestID)
	}
	// A trusted proxy's id is the client's bytes (visible ASCII): escaped
	// as any JSON string.
	e.RequestID = `a"b\c`
	line = AppendJSON(nil, &e)
	if err := mustFormat(t, "json").NewParser().Parse(line[:len(line)-1], &r); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Get("request_id"); v != e.RequestID {
		t.Errorf("read back request_id %q, want %q", v, e.RequestID)
	}
}
