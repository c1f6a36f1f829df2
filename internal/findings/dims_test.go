package findings

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

func TestPathTemplate(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/v2/applications/33591900/metrics.json", "/v2/applications/:id/metrics.json"},
		{"/images/a8f3c2d1.jpg", "/images/*.jpg"},
		{"/images/kibana-search.PNG", "/images/*.PNG"},
		{"/t/1234?page=2", "/t/:id"},
		{"/users/3f2b8c1e-9d4a-4b7e-8a1f-2c3d4e5f6a7b/avatar", "/users/:id/avatar"},
		{"/blog/tags/puppet", "/blog/tags/puppet"},
		{"/", "/"},
		{"", "-"},
		{"-", "-"},
		{"*", "*"},
		{"/a/b/c/d/e/f/g/h", "/a/b/c/d/e/f/…"},
		{"/api/v1/search#frag", "/api/v1/search"},
		{"/feed/rss2", "/feed/rss2"},
	} {
		if got := string(appendPathTemplate(nil, tc.in)); got != tc.want {
			t.Errorf("appendPathTemplate(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestClientPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"203.0.113.77", "203.0.113.0/24"},
		{"2001:db8:1:2::5", "2001:db8:1::/48"},
		{"::ffff:198.51.100.9", "198.51.100.0/24"},
		{"unix:", "unix:"},
		{"", "(none)"},
		{"-", "(none)"},
		{"example.org", "example.org"},
	} {
		if got := string(appendClientPrefix(nil, tc.in)); got != tc.want {
			t.Errorf("appendClientPrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRefererDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://Forum.Example.com/t/1?x=1", "forum.example.com"},
		{"http://user:pw@pics.example.net:8080/a", "pics.example.net"},
		{"-", "(none)"},
		{"", "(none)"},
		{"android-app://com.google.android.gm/", "com.google.android.gm"},
		{"http://[2001:db8::1]:80/x", "[2001:db8::1]"},
	} {
		if got := string(appendRefererDomain(nil, tc.in)); got != tc.want {
			t.Errorf("appendRefererDomain(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

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

func TestIsBot(t *testing.T) {
	for _, tc := range []struct {
		ua   string
		want bool
	}{
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true},
		{"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", true},
		{"curl/7.68.0", true},
		{"python-requests/2.31.0", true},
		{"Go-http-client/1.1", true},
		{"Wget/1.21.2", true},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", false},
		{"NewRelic Exporter", false},
		{"-", false},
	} {
		if got, _ := isBot(tc.ua, nil); got != tc.want {
			t.Errorf("isBot(%q) = %v, want %v", tc.ua, got, tc.want)
		}
	}
}

func TestSiteDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"forum.example.com", "example.com"},
		{"www.example.co.uk", "example.co.uk"},
		{"example.com", "example.com"},
		{"Forum.Example.COM.", "example.com"},
		{"cdn.example.com:8443", "example.com"},
		{"203.0.113.5", "203.0.113.5"},
	} {
		if got := siteDomain(tc.in); got != tc.want {
			t.Errorf("siteDomain(%q) = %q, want %q", tc.in, got, tc.want)
		}
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

// FuzzDimensionValues: whatever a log line holds, dimension values are
// bounded, valid where the input was, and templating is idempotent.
func FuzzDimensionValues(f *testing.F) {
	for _, s := range []string{"/v2/applications/33591900/metrics.json?x=1", "https://a.b/c", "203.0.113.5", "2001:db8::1", "/images/x.jpg", "", "-", "///", "/é/ü/123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl := appendPathTemplate(nil, s)
		if again := appendPathTemplate(nil, string(tpl)); string(again) != string(tpl) && strings.HasPrefix(s, "/") && !strings.Contains(string(tpl), "…") && !strings.ContainsAny(s, "?#") {
			t.Fatalf("template not idempotent: %q → %q → %q", s, tpl, again)
		}
		for name, v := range map[string][]byte{
			"path": tpl, "referer": appendRefererDomain(nil, s), "client": appendClientPrefix(nil, s),
		} {
			if len(v) > maxValueLen*2+16 {
				t.Fatalf("%s value of %d bytes for input of %d", name, len(v), len(s))
			}
			if utf8.ValidString(s) && len(s) <= maxValueLen && !utf8.Valid(v) {
				t.Fatalf("%s value %q is not valid UTF-8 although %q is", name, v, s)
			}
		}
		_ = siteDomain(s)
		_, _ = isBot(s, nil)
		_ = staticPath(s)
		// The collector takes the static class from templating when it
		// can: it must be staticPath's.
		if tpl2, class, ok := appendPathTemplateClass(nil, s); string(tpl2) != string(tpl) || ok && class != staticPath(s) {
			t.Fatalf("appendPathTemplateClass(%q) = %q, %q, %v; template %q, staticPath %q", s, tpl2, class, ok, tpl, staticPath(s))
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
