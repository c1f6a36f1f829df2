package findings

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// API keys never appear in clear; fingerprints and addresses do.
func TestKeyValues(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"fp-3fa94c0d1e2b5a67", "fp-3fa94c0d1e2b5a67"},
		{"addr:203.0.113.5", "addr:203.0.113.5"},
		{"fp-3FA94C0D1E2B5A67", "fp-3…"},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_l…"},
		{"abc", "…"},
	} {
		got, ok := appendValue(nil, DimKey, "", tc.in, "", "", "", "", 0)
		if !ok || !strings.HasPrefix(string(got), tc.want) {
			t.Errorf("key %q shown as %q, want it to start with %q", tc.in, got, tc.want)
		}
		if tc.want != tc.in && (strings.Contains(string(got), tc.in) || len(got) != len(tc.want)+8) {
			t.Errorf("key %q shown as %q: not masked to a prefix and 8 hex digits", tc.in, got)
		}
	}
	a, _ := appendValue(nil, DimKey, "", "key-one-aaaaaaaa", "", "", "", "", 0)
	b, _ := appendValue(nil, DimKey, "", "key-one-bbbbbbbb", "", "", "", "", 0)
	if string(a) == string(b) {
		t.Errorf("two keys masked alike: %q", a)
	}
}

func TestParseCompare(t *testing.T) {
	now := time.Date(2019, 4, 10, 12, 0, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2019, 4, d, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		in           string
		period, base Window
		err          string
	}{
		{in: "2019-04-04..2019-04-05", period: Window{day(4), day(5)}, base: Window{day(3), day(4)}},
		{in: "2019-04-04..2019-04-06,2019-03-28..2019-03-30", period: Window{day(4), day(6)}, base: Window{time.Date(2019, 3, 28, 0, 0, 0, 0, time.UTC), time.Date(2019, 3, 30, 0, 0, 0, 0, time.UTC)}},
		{in: "2h..1h", period: Window{now.Add(-2 * time.Hour), now.Add(-time.Hour)}, base: Window{now.Add(-3 * time.Hour), now.Add(-2 * time.Hour)}},
		{in: "", err: "empty"},
		{in: "2019-04-04", err: "not a range"},
		{in: "2019-04-05..2019-04-04", err: "before it starts"},
		{in: "yesterday..today", err: "want an RFC 3339 time"},
		{in: "a..b,c..d,e..f", err: "at most two ranges"},
	} {
		c, err := ParseCompare(tc.in, now, time.UTC)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCompare(%q) error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCompare(%q): %v", tc.in, err)
			continue
		}
		if !c.Period.Start.Equal(tc.period.Start) || !c.Period.End.Equal(tc.period.End) || !c.Baseline.Start.Equal(tc.base.Start) || !c.Baseline.End.Equal(tc.base.End) {
			t.Errorf("ParseCompare(%q) = %+v, want period %+v baseline %+v", tc.in, c, tc.period, tc.base)
		}
	}
}

func FuzzParseCompare(f *testing.F) {
	for _, s := range []string{"2019-04-04..2019-04-05", "2h..1h,4h..3h", "..", ",", "1d..0s", "2019-04-04T00:00:00Z..2019-04-04T00:00:00Z"} {
		f.Add(s)
	}
	now := time.Date(2019, 4, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCompare(s, now, time.UTC)
		if err != nil {
			return
		}
		if !c.Period.End.After(c.Period.Start) || !c.Baseline.End.After(c.Baseline.Start) {
			t.Fatalf("ParseCompare(%q) accepted an empty or reversed window: %+v", s, c)
		}
	})
}

// FuzzCollector feeds arbitrary records (any bytes in any field, negative or
// huge numbers, any time) through Observe, Merge, Analyze and the renderers:
// nothing may panic, and the JSON must encode.
func FuzzCollector(f *testing.F) {
	f.Add("203.0.113.5", "k", "GET", "/a/1.jpg?x", "https://x.example/", "curl/8", "h", 200, int64(100), int64(4668), int64(30000), true, int64(1554357600))
	f.Add("", "", "", "", "", "", "", 0, int64(-1), int64(-5), int64(0), false, int64(0))
	f.Add("::ffff:1.2.3.4", "fp-0123456789abcdef", "\xff", "*", "-", "\x00", "_", 499, int64(1<<62), int64(1<<40), int64(-1), true, int64(-62135596800))
	f.Add("1.2.3.4", "", "GET", "/x.jpg", "", "curl/8", "", 200, int64(10), int64(1), int64(1), false, int64(1<<39))
	f.Fuzz(func(t *testing.T, client, key, method, path, ref, ua, host string, status int, bytes, rtMs, utMs int64, hasUT bool, sec int64) {
		c, o := NewCollector(Options{MaxBuckets: 16, RefetchSlots: 64, Samples: 8}), NewCollector(Options{MaxBuckets: 16, RefetchSlots: 64, Samples: 8})
		base := time.Unix(sec%(1<<40), 0).UTC()
		for i := range 5 {
			r := accesslog.Record{
				Time: base.Add(time.Duration(i) * time.Minute), Client: client, Key: key, Method: method, Path: path,
				Host: host, Status: status, BytesSent: bytes, RequestTime: time.Duration(rtMs) * time.Millisecond,
				UpstreamTime: time.Duration(utMs) * time.Millisecond, HasUpstreamTime: hasUT, Referer: ref, UserAgent: ua,
			}
			if i == 3 {
				r.Time = time.Time{}
			}
			if i%2 == 0 {
				c.Observe(&r)
			} else {
				o.Observe(&r)
			}
		}
		c.Merge(o)
		cmp := Compare{Period: Window{base, base.Add(time.Hour)}, Baseline: Window{base.Add(-time.Hour), base}}
		for _, opt := range []AnalyzeOptions{{}, {Compare: &cmp, SiteHosts: []string{host}}} {
			rep, err := Analyze(c, opt)
			if err != nil {
				continue // a comparison outside the log is a user error, reported
			}
			if err := WriteText(io.Discard, rep.Findings, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := json.Marshal(rep.Findings); err != nil {
				t.Fatalf("findings do not encode: %v", err)
			}
		}
	})
}
