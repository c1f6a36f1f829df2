package accesslog

import (
	"bytes"
	"os"
	"testing"
	"unicode/utf8"
)

// seedLines adds every line of the golden inputs of a format as fuzz seeds.
func seedLines(f *testing.F, glob string) {
	f.Helper()
	paths, _ := globGolden(glob)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range bytes.Split(data, []byte("\n")) {
			f.Add(l)
		}
	}
}

func globGolden(glob string) ([]string, error) {
	return filepathGlob("testdata/golden/" + glob)
}

// checkRecord holds invariants every successful parse must keep.
func checkRecord(t *testing.T, line []byte, r *Record) {
	if r.Status < 0 || r.Status > 999 || r.UpstreamStatus < 0 || r.UpstreamStatus > 999 {
		t.Fatalf("status out of range: %d/%d for %q", r.Status, r.UpstreamStatus, line)
	}
	if r.BytesSent < 0 {
		t.Fatalf("negative bytes %d for %q", r.BytesSent, line)
	}
	// Strings alias the line (or, for JSON escapes, scratch): they can never
	// be longer than it.
	for _, s := range []string{r.Client, r.Method, r.Path, r.Proto, r.UserAgent, r.Referer, r.Host, r.Key, r.Pool} {
		if len(s) > len(line) {
			t.Fatalf("field longer than the line: %q from %q", s, line)
		}
	}
}

func fuzzFormat(f *testing.F, name, glob string) {
	seedLines(f, glob)
	format, err := LookupFormat(name, FormatOptions{})
	if err != nil {
		f.Fatal(err)
	}
	p := format.NewParser()
	f.Fuzz(func(t *testing.T, line []byte) {
		var r Record
		if p.Parse(line, &r) == nil {
			checkRecord(t, line, &r)
		}
	})
}

func FuzzCombined(f *testing.F) { fuzzFormat(f, "combined", "combined-*.log") }
func FuzzHeadroom(f *testing.F) { fuzzFormat(f, "headroom", "headroom-*.log") }
func FuzzIngress(f *testing.F)  { fuzzFormat(f, "ingress", "ingress-*.log") }
func FuzzS3(f *testing.F)       { fuzzFormat(f, "s3", "s3-*.log") }
func FuzzALB(f *testing.F)      { fuzzFormat(f, "alb", "alb-*.log") }
func FuzzJSON(f *testing.F)     { fuzzFormat(f, "json", "json*.log") }

// FuzzNginxFormat compiles arbitrary log_format text and parses a line with
// it: neither may panic, and a compiled format must read a line it wrote.
func FuzzNginxFormat(f *testing.F) {
	f.Add(CombinedFormat, []byte(`1.2.3.4 - - [04/Apr/2019:00:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"`))
	f.Add(IngressFormat, []byte(`1.2.3.4 - - [04/Apr/2019:00:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" 1 0.1 [a] [] 1.1.1.1:80, 2.2.2.2:80 1, 2 0.1, 0.2 502, 200 id`))
	f.Add(`$time_iso8601|$status|$upstream_response_time|$x`, []byte(`2019-04-04T00:00:00Z|200|0.1 : 0.2|v`))
	f.Add(`log_format m '$remote_addr [$msec] ${status}';`, []byte(`::1 [1554358800.5] 204`))
	f.Fuzz(func(t *testing.T, format string, line []byte) {
		nf, err := CompileNginx(format)
		if err != nil {
			return
		}
		var r Record
		if nf.NewParser().Parse(line, &r) == nil {
			checkRecord(t, line, &r)
		}
	})
}

// FuzzSniff feeds arbitrary text to format detection.
func FuzzSniff(f *testing.F) {
	seedLines(f, "*.log")
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) && len(data) > 4096 {
			return
		}
		res, err := Sniff(bytes.Split(data, []byte("\n")), FormatOptions{})
		if err == nil && res.Format == nil {
			t.Fatal("Sniff succeeded without a format")
		}
	})
}
