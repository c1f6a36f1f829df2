package loadgen

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  bool
	}{
		{"500/s", 500, false},
		{"500", 500, false},
		{"30000/m", 500, false},
		{"2/ms", 2000, false},
		{"1/1.5s", 1 / 1.5, false},
		{" 10 / s ", 10, false},
		{"0/s", 0, true},
		{"-5/s", 0, true},
		{"abc", 0, true},
		{"5/parsec", 0, true},
		{"5/0s", 0, true},
		{"Inf/s", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseRate(%q) err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("ParseRate(%q) = %g, want %g", tt.in, got, tt.want)
		}
	}
}

func TestParseStages(t *testing.T) {
	got, err := ParseStages("30s:100,1m:1000/s, 10s:5")
	if err != nil {
		t.Fatal(err)
	}
	want := []Stage{{30 * time.Second, 100}, {time.Minute, 1000}, {10 * time.Second, 5}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("stage %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "30s", "x:100", "30s:", "-1s:100", "30s:0", ","} {
		if _, err := ParseStages(bad); err == nil {
			t.Errorf("ParseStages(%q) accepted", bad)
		}
	}
}

func TestParseByteRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"100Mbit", 12.5e6},
		{"100Mbit/s", 12.5e6},
		{"100Mbps", 12.5e6},
		{"1Gbit", 125e6},
		{"1Gbps", 125e6},
		{"800kbit", 100e3},
		{"10MB/s", 10e6},
		{"10MB", 10e6},
		{"10MiB/s", 10 * (1 << 20)},
		{"5KiB", 5 * 1024},
		{"12500000", 12.5e6},
		{"80mbit", 10e6},
	}
	for _, tt := range tests {
		got, err := ParseByteRate(tt.in)
		if err != nil {
			t.Errorf("ParseByteRate(%q): %v", tt.in, err)
			continue
		}
		if math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("ParseByteRate(%q) = %g, want %g", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "fast", "0Mbit", "10Xbit", "10 parsecs", "-1MB"} {
		if _, err := ParseByteRate(bad); err == nil {
			t.Errorf("ParseByteRate(%q) accepted", bad)
		}
	}
}

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		in     string
		metric string
		op     string
		value  float64
	}{
		{"p95<500ms", "p95", "<", 0.5},
		{"P99 <= 1s", "p99", "<=", 1},
		{"errors<1%", "errors", "<", 0.01},
		{"errors<0.01", "errors", "<", 0.01},
		{"rps>100", "rps", ">", 100},
		{"rps>=100/s", "rps", ">=", 100},
		{"dropped<=0.5%", "dropped", "<=", 0.005},
		{"max<2s", "max", "<", 2},
	}
	for _, tt := range tests {
		got, err := ParseThreshold(tt.in)
		if err != nil {
			t.Errorf("ParseThreshold(%q): %v", tt.in, err)
			continue
		}
		if got.Metric != tt.metric || got.Op != tt.op || math.Abs(got.Value-tt.value) > 1e-12 {
			t.Errorf("ParseThreshold(%q) = %+v", tt.in, got)
		}
	}
	for _, bad := range []string{"", "p95", "p95=500ms", "p42<1s", "p95<fast", "errors<200%", "rps>lots", "<5"} {
		if _, err := ParseThreshold(bad); err == nil {
			t.Errorf("ParseThreshold(%q) accepted", bad)
		}
	}
	th, _ := ParseThreshold("p95<500ms")
	if !th.Holds(0.2) || th.Holds(0.5) {
		t.Errorf("p95<500ms: Holds wrong")
	}
	th, _ = ParseThreshold("rps>=100")
	if !th.Holds(100) || th.Holds(99) {
		t.Errorf("rps>=100: Holds wrong")
	}
}

func TestParseTargets(t *testing.T) {
	in := `# staging targets
http://127.0.0.1:8080/

POST http://127.0.0.1:8080/api/items
head https://[::1]:8443/health
`
	ts, err := ParseTargets(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[0].Method != "GET" || ts[1].Method != "POST" || ts[2].Method != "HEAD" || ts[2].URL.Hostname() != "::1" {
		t.Fatalf("got %+v", ts)
	}
	for _, bad := range []string{"", "# nothing\n", "ftp://x/\n", "GET\n", "GET http://x/ extra\n", "G3T http://x/\n", "http:///path\n"} {
		if _, err := ParseTargets(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseTargets(%q) accepted", bad)
		}
	}
	if _, err := ParseTargets(strings.NewReader("http://ok/\nnot a url at all\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error does not name the line: %v", err)
	}
}

func TestParseHeader(t *testing.T) {
	k, v, err := ParseHeader("Authorization: Bearer a:b")
	if err != nil || k != "Authorization" || v != "Bearer a:b" {
		t.Errorf("got %q %q %v", k, v, err)
	}
	for _, bad := range []string{"novalue", ": x", "Bad Name: x"} {
		if _, _, err := ParseHeader(bad); err == nil {
			t.Errorf("ParseHeader(%q) accepted", bad)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"500/s", "30000/m", "1/1.5s", "x", "5/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && (r <= 0 || math.IsNaN(r) || math.IsInf(r, 0)) {
			t.Fatalf("ParseRate(%q) = %g without error", s, r)
		}
	})
}

func FuzzParseStages(f *testing.F) {
	f.Add("30s:100,60s:1000")
	f.Add("1m:5/s")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStages(s)
		if err != nil {
			return
		}
		for _, x := range st {
			if x.Duration <= 0 || x.Target <= 0 {
				t.Fatalf("ParseStages(%q) = %v", s, st)
			}
		}
	})
}

func FuzzParseByteRate(f *testing.F) {
	for _, s := range []string{"100Mbit", "10MB/s", "5KiB", "1Gbps", "12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseByteRate(s)
		if err == nil && (r <= 0 || math.IsNaN(r)) {
			t.Fatalf("ParseByteRate(%q) = %g", s, r)
		}
	})
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"p95<500ms", "errors<1%", "rps>=100", "dropped<=0.5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err != nil {
			return
		}
		if _, ok := thresholdMetrics[th.Metric]; !ok || th.Value < 0 {
			t.Fatalf("ParseThreshold(%q) = %+v", s, th)
		}
	})
}

func FuzzParseTargets(f *testing.F) {
	f.Add("http://127.0.0.1/\nPOST http://127.0.0.1/x\n# c\n")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTargets(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, x := range ts {
			if x.URL == nil || x.URL.Host == "" || (x.URL.Scheme != "http" && x.URL.Scheme != "https") {
				t.Fatalf("bad target %+v from %q", x, s)
			}
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add("X-Api-Key: abc")
	f.Add("Authorization: Bearer a:b")
	f.Fuzz(func(t *testing.T, s string) {
		k, v, err := ParseHeader(s)
		if err != nil {
			return
		}
		if k == "" || strings.ContainsAny(k, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
			t.Fatalf("ParseHeader(%q) = %q, %q", s, k, v)
		}
	})
}
