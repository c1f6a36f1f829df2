package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// formatFor returns the format a golden input is read with: the spec in
// NAME.format when present, else the name's prefix before the first '-'.
func formatFor(t testing.TB, logPath string) *Format {
	t.Helper()
	spec := strings.SplitN(filepath.Base(logPath), "-", 2)[0]
	opts := FormatOptions{}
	if b, err := os.ReadFile(strings.TrimSuffix(logPath, ".log") + ".format"); err == nil {
		spec = strings.TrimSpace(string(b))
		if rest, ok := strings.CutPrefix(spec, "json "); ok {
			spec, opts.JSONFields = "json", rest
		}
	}
	f, err := LookupFormat(spec, opts)
	if err != nil {
		t.Fatalf("format for %s: %v", logPath, err)
	}
	return f
}

// recordJSON is a stable rendering of a Record for golden files.
func recordJSON(r *Record) string {
	m := map[string]any{}
	if !r.Time.IsZero() {
		m["time"] = r.Time.Format(time.RFC3339Nano)
	}
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	put("client", r.Client)
	put("key", r.Key)
	put("method", r.Method)
	if len(r.Path) > 120 {
		m["path"] = fmt.Sprintf("%s…(%d bytes)", r.Path[:60], len(r.Path))
	} else {
		put("path", r.Path)
	}
	put("proto", r.Proto)
	put("host", r.Host)
	if r.Status != 0 {
		m["status"] = r.Status
	}
	if r.BytesSent != 0 {
		m["bytes"] = r.BytesSent
	}
	if r.RequestTime != 0 {
		m["request_time"] = r.RequestTime.String()
	}
	if r.UpstreamStatus != 0 {
		m["upstream_status"] = r.UpstreamStatus
	}
	if r.HasUpstreamTime {
		m["upstream_time"] = r.UpstreamTime.String()
	}
	put("referer", r.Referer)
	put("user_agent", r.UserAgent)
	put("pool", r.Pool)
	if len(r.Extra) > 0 {
		var ex []string
		for _, f := range r.Extra {
			ex = append(ex, f.Name+"="+f.Value)
		}
		m["extra"] = ex
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestGolden(t *testing.T) {
	logs, _ := filepath.Glob("testdata/golden/*.log")
	if len(logs) < 10 {
		t.Fatalf("expected golden inputs, found %d", len(logs))
	}
	for _, path := range logs {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f := formatFor(t, path)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			p := f.NewParser()
			var out bytes.Buffer
			var r Record
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 1<<20)
			for n := 1; sc.Scan(); n++ {
				if err := p.Parse(sc.Bytes(), &r); err != nil {
					fmt.Fprintf(&out, "%d: error: %v\n", n, err)
					continue
				}
				fmt.Fprintf(&out, "%d: %s\n", n, recordJSON(&r))
			}
			golden := strings.TrimSuffix(path, ".log") + ".golden"
			testenv.Golden(t, golden, out.Bytes())
		})
	}
}

// TestRealCombinedAllLines reads the whole real Apache sample: every one of
// its 10,000 lines must parse.
func TestRealCombinedAllLines(t *testing.T) {
	data, err := os.ReadFile(testenv.RealSample(t, "elastic-apache-combined-2015.log"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := LookupFormat("combined", FormatOptions{})
	p := f.NewParser()
	var r Record
	n := 0
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if err := p.Parse(line, &r); err != nil {
			t.Errorf("line %d: %v: %s", i+1, err, line)
		}
		n++
	}
	if n != 10000 {
		t.Errorf("lines = %d, want 10000", n)
	}
}

func TestSniff(t *testing.T) {
	cases := map[string]string{
		"testdata/golden/combined-elastic-apache-2015.log": "combined",
		"testdata/golden/ingress-beats.log":                "ingress",
		"testdata/golden/s3-beats.log":                     "s3",
		"testdata/golden/s3-oddities.log":                  "s3",
		"testdata/golden/alb-beats.log":                    "alb",
		"testdata/golden/alb-oddities.log":                 "alb",
		"testdata/golden/headroom-crafted.log":             "headroom",
		"testdata/golden/json-crafted.log":                 "json",
		"testdata/golden/json-guard.log":                   "json",
	}
	for path, want := range cases {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(data, []byte("\n"))
		if want == "json" {
			lines = lines[:3] // the rest are deliberately broken
		}
		res, err := Sniff(lines, FormatOptions{})
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if res.Format.Name != want {
			t.Errorf("%s: sniffed %s, want %s (scores %v)", path, res.Format.Name, want, res.Scores)
		}
	}
	_, err := Sniff([][]byte{[]byte("hello world"), []byte("#!/bin/sh"), []byte("exit 0")}, FormatOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a log format") {
		t.Errorf("sniff of a shell script: err = %v, want 'not a log format'", err)
	}
}

func TestCompileNginxErrors(t *testing.T) {
	for _, text := range []string{
		"no variables here",
		"$remote_addr$status",
		"log_format main '$remote_addr",
		"${remote_addr",
	} {
		if _, err := CompileNginx(text); err == nil {
			t.Errorf("CompileNginx(%q) succeeded, want an error", text)
		}
	}
}

func TestLookupFormatErrors(t *testing.T) {
	if _, err := LookupFormat("apache2-fancy", FormatOptions{}); err == nil || !strings.Contains(err.Error(), "combined") {
		t.Errorf("unknown format: err = %v, want a list of known formats", err)
	}
	if _, err := LookupFormat("json", FormatOptions{JSONFields: "when=ts"}); err == nil || !strings.Contains(err.Error(), "unknown record field") {
		t.Errorf("bad json mapping: err = %v", err)
	}
	if _, err := LookupFormat("json", FormatOptions{JSONFields: "time"}); err == nil {
		t.Error("json mapping without '=' accepted")
	}
}

func TestTimeParsing(t *testing.T) {
	var c timeCache
	cases := []struct {
		in   string
		want string
	}{
		{"17/May/2015:10:05:03 +0000", "2015-05-17T10:05:03Z"},
		{"17/May/2015:10:05:59 +0000", "2015-05-17T10:05:59Z"}, // cached minute
		{"17/May/2015:10:05:59 +0200", "2015-05-17T08:05:59Z"}, // same minute, other zone
		{"01/Jan/2000:00:00:00 -0130", "2000-01-01T01:30:00Z"},
		{"29/Feb/2024:23:59:59 +0000", "2024-02-29T23:59:59Z"},
	}
	for _, tc := range cases {
		got, ok := c.parseTimeLocal(tc.in)
		if !ok || got.Format(time.RFC3339) != tc.want {
			t.Errorf("parseTimeLocal(%q) = %v, %v; want %s", tc.in, got, ok, tc.want)
		}
		ref, _ := time.Parse("02/Jan/2006:15:04:05 -0700", tc.in)
		if !ref.Equal(got) {
			t.Errorf("parseTimeLocal(%q) = %v, time.Parse says %v", tc.in, got, ref)
		}
	}
	for _, bad := range []string{"17/Foo/2015:10:05:03 +0000", "17/May/2015:25:05:03 +0000", "17/May/2015:10:05:03 0000", "17/May/2015 10:05:03 +0000"} {
		if _, ok := c.parseTimeLocal(bad); ok {
			t.Errorf("parseTimeLocal(%q) accepted", bad)
		}
	}
	iso := []string{"2019-10-11T15:01:12.376735Z", "2019-10-11T15:01:12+02:00", "2019-10-11T15:01:13.5-0700", "2019-10-11 15:01:12Z"}
	for _, in := range iso {
		got, ok := c.parseISO8601(in)
		ref, err := time.Parse(time.RFC3339Nano, strings.Replace(strings.Replace(in, " ", "T", 1), "-0700", "-07:00", 1))
		if !ok || err != nil || !ref.Equal(got) {
			t.Errorf("parseISO8601(%q) = %v, %v; want %v (%v)", in, got, ok, ref, err)
		}
	}
	if got, ok := parseEpoch("1554358800123"); !ok || got.UnixMilli() != 1554358800123 {
		t.Errorf("epoch ms = %v %v", got, ok)
	}
}

func TestSeconds(t *testing.T) {
	cases := []struct {
		in      string
		d       time.Duration
		present bool
		ok      bool
	}{
		{"0.042", 42 * time.Millisecond, true, true},
		{"12", 12 * time.Second, true, true},
		{"-", 0, false, true},
		{"-1", -time.Second, false, true},
		{"1.", 0, false, false},
		{"abc", 0, false, false},
		{"0.0000000019", 1, true, true},
	}
	for _, tc := range cases {
		d, p, ok := parseSeconds(tc.in)
		if d != tc.d || p != tc.present || ok != tc.ok {
			t.Errorf("parseSeconds(%q) = %v %v %v, want %v %v %v", tc.in, d, p, ok, tc.d, tc.present, tc.ok)
		}
	}
	if d, p, ok := sumSecondsList("0.100, 0.004 : -, 0.5"); d != 604*time.Millisecond || !p || !ok {
		t.Errorf("sumSecondsList = %v %v %v", d, p, ok)
	}
	if st, ok := lastStatusInList("502, 504 : 200"); st != 200 || !ok {
		t.Errorf("lastStatusInList = %v %v", st, ok)
	}
}

// TestZeroAllocs holds the parsers to their promise: no allocation per line.
func TestZeroAllocs(t *testing.T) {
	for _, path := range []string{
		"testdata/golden/combined-elastic-apache-2015.log",
		"testdata/golden/ingress-beats.log",
		"testdata/golden/s3-beats.log",
		"testdata/golden/alb-beats.log",
		"testdata/golden/headroom-crafted.log",
		"testdata/golden/json-crafted.log",
		"testdata/golden/pipe-crafted.log",
	} {
		f := formatFor(t, path)
		data, _ := os.ReadFile(path)
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		p := f.NewParser()
		var r Record
		for _, l := range lines { // warm up: Extra grows to its size once
			_ = p.Parse(l, &r)
		}
		allocs := testing.AllocsPerRun(20, func() {
			for _, l := range lines {
				_ = p.Parse(l, &r)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per pass, want 0", path, allocs)
		}
	}
}

func TestExpandAndOrderRotated(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"access.log", "access.log.1", "access.log.2.gz", "access.log.10.gz", "error.log", "other.log-20190403.gz", "other.log-20190402", "other.log"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ExpandPaths([]string{filepath.Join(dir, "access.log*"), filepath.Join(dir, "other.log*")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, filepath.Base(p))
	}
	want := "access.log.10.gz access.log.2.gz access.log.1 access.log other.log-20190402 other.log-20190403.gz other.log"
	if strings.Join(names, " ") != want {
		t.Errorf("order = %v\nwant    %s", names, want)
	}
	if _, err := ExpandPaths([]string{filepath.Join(dir, "nope*")}); err == nil {
		t.Error("glob matching nothing accepted")
	}
	if _, err := ExpandPaths([]string{dir}); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: err = %v", err)
	}
}

// TestOpenCompressed reads the same lines plain, gzip, zstd and bzip2
// (bzip2 made by the system's bzip2 when present).
func TestOpenCompressed(t *testing.T) {
	dir := t.TempDir()
	text := "line one\nline two\n"
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write([]byte(text))
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write([]byte(text))
	zw.Close()
	paths := []string{write("plain.log", []byte(text)), write("a.log.1.gz", gz.Bytes()), write("no-suffix", zs.Bytes())}
	if bz, err := exec.Command("bzip2", "-c", paths[0]).Output(); err == nil {
		paths = append(paths, write("a.log.2.bz2", bz))
	}
	for _, p := range paths {
		in, err := Open(p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		got, err := io.ReadAll(in)
		in.Close()
		if err != nil || string(got) != text {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	xz := write("x.log.xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2})
	if _, err := Open(xz, nil); err == nil || !strings.Contains(err.Error(), "xzcat") {
		t.Errorf("xz: err = %v", err)
	}
}
