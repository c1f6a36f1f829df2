package analyze

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/findings"
	"github.com/headroom-dev/headroom/internal/testenv"

	"github.com/klauspost/compress/gzip"
)

func mustRun(t *testing.T, opts Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func mustReport(t *testing.T, res *Result) *Report {
	t.Helper()
	rep, err := res.Report()
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	return rep
}

// stableJSON renders a report without the parts that depend on the machine.
func stableJSON(t *testing.T, res *Result) string {
	t.Helper()
	rep := mustReport(t, res)
	rep.ElapsedSeconds, rep.LinesPerSecond = 0, 0
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRealCombined checks the engine against an independent count of the
// real Apache sample done here with plain string splitting.
func TestRealCombined(t *testing.T) {
	realCombined := testenv.RealSample(t, "elastic-apache-combined-2015.log")
	data, err := os.ReadFile(realCombined)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]int64{}
	clients := map[string]int64{}
	var bytesOut int64
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		clients[strings.Fields(l)[0]]++
		after := strings.SplitN(l, `" `, 2)[1] // after the request
		f := strings.Fields(after)
		status[f[0]]++
		var n int64
		fmt.Sscan(f[1], &n)
		bytesOut += n
	}
	topClient, topN := "", int64(0)
	for c, n := range clients {
		if n > topN {
			topClient, topN = c, n
		}
	}

	res := mustRun(t, Options{Inputs: []string{realCombined}, Workers: 2, ChunkSize: 64 << 10})
	rep := mustReport(t, res)
	if rep.Records != 10000 || rep.Malformed != 0 {
		t.Fatalf("records=%d malformed=%d, want 10000 and 0", rep.Records, rep.Malformed)
	}
	if rep.Totals.Bytes != bytesOut {
		t.Errorf("bytes = %d, independent sum %d", rep.Totals.Bytes, bytesOut)
	}
	for _, s := range rep.Status {
		if want := status[fmt.Sprint(s.Status)]; s.Requests != want {
			t.Errorf("status %d: %d, independent count %d", s.Status, s.Requests, want)
		}
	}
	top := rep.Top["client"].ByRequests[0]
	if top.Value != topClient || top.Requests != topN {
		t.Errorf("top client %s %d, independent %s %d", top.Value, top.Requests, topClient, topN)
	}
	// HyperLogLog estimates within 2% at this size.
	if d := float64(rep.DistinctClients) - float64(len(clients)); d*d > 0.0004*float64(len(clients)*len(clients)) {
		t.Errorf("distinct clients ≈%d, exact %d", rep.DistinctClients, len(clients))
	}
	var sum int64
	for _, p := range rep.Series.Points {
		sum += p.Requests
	}
	if sum != 10000 {
		t.Errorf("series sums to %d, want 10000", sum)
	}
}

// TestParallelMatchesSequential: chunking and shard merging must not change
// the answer.
func TestParallelMatchesSequential(t *testing.T) {
	realCombined := testenv.RealSample(t, "elastic-apache-combined-2015.log")
	one := stableJSON(t, mustRun(t, Options{Inputs: []string{realCombined}, Workers: 1}))
	many := stableJSON(t, mustRun(t, Options{Inputs: []string{realCombined}, Workers: 4, ChunkSize: 8 << 10}))
	if one != many {
		t.Errorf("4 workers over 8 KiB chunks differ from 1 worker:\n%s", firstDiff(one, many))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(al), len(bl))
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeGzip(t *testing.T, dir, name, content string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(content))
	zw.Close()
	return writeFile(t, dir, name, b.String())
}

func combinedLine(ts time.Time, client, path string, status, size int, ua string) string {
	return fmt.Sprintf("%s - - [%s] \"GET %s HTTP/1.1\" %d %d \"-\" \"%s\"\n",
		client, ts.Format("02/Jan/2006:15:04:05 -0700"), path, status, size, ua)
}

// TestMalformedLinesReportedWithPosition puts bad lines at known places in
// several chunks and files, gzip included.
func TestMalformedLinesReportedWithPosition(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	var a, b strings.Builder
	for i := 1; i <= 400; i++ {
		if i == 17 || i == 301 {
			a.WriteString("garbage line " + fmt.Sprint(i) + "\n")
			continue
		}
		a.WriteString(combinedLine(t0.Add(time.Duration(i)*time.Second), "192.0.2.1", "/a", 200, 10, "curl/8"))
	}
	for i := 1; i <= 50; i++ {
		if i == 42 {
			b.WriteString("10.0.0.1 - - [04/Apr/2019:00:00:00 +0000] \"GET / HTTP/1.1\" abc 1 \"-\" \"x\"\n")
			continue
		}
		b.WriteString(combinedLine(t0.Add(-time.Hour), "192.0.2.2", "/b", 500, 1, "curl/8"))
	}
	pa := writeFile(t, dir, "access.log", a.String())
	pb := writeGzip(t, dir, "access.log.1.gz", b.String())
	res := mustRun(t, Options{Inputs: []string{filepath.Join(dir, "access.log*")}, Workers: 3, ChunkSize: 1024})
	if res.Malformed != 3 || res.Records() != 447 {
		t.Fatalf("malformed=%d records=%d, want 3 and 447", res.Malformed, res.Records())
	}
	got := []string{}
	for _, m := range res.MalformedExamples {
		got = append(got, fmt.Sprintf("%s:%d", filepath.Base(m.File), m.Line))
	}
	want := "access.log:17 access.log:301 access.log.1.gz:42"
	if strings.Join(got, " ") != want {
		t.Errorf("examples at %v, want %s", got, want)
	}
	// The rotated (older) file is read first.
	if res.Inputs[0].Name != pb || res.Inputs[1].Name != pa {
		t.Errorf("input order %s, %s; want the .1.gz first", res.Inputs[0].Name, res.Inputs[1].Name)
	}
}

func TestNotALog(t *testing.T) {
	dir := t.TempDir()
	script := writeFile(t, dir, "deploy.sh", "#!/bin/sh\nset -e\napt-get update\nsystemctl restart nginx\n")
	_, err := Run(context.Background(), Options{Inputs: []string{script}})
	if !errors.Is(err, ErrNoUsableInput) || !strings.Contains(err.Error(), "not a log format") {
		t.Errorf("err = %v, want ErrNoUsableInput naming the reason", err)
	}
	realCombined := testenv.RealSample(t, "elastic-apache-combined-2015.log")
	// A wrong --format is caught on the first lines, with a hint.
	_, err = Run(context.Background(), Options{Inputs: []string{realCombined}, Format: "s3"})
	if err == nil || !strings.Contains(err.Error(), "not a s3 log") || !strings.Contains(err.Error(), "--format combined") {
		t.Errorf("wrong format: err = %v", err)
	}
	// One bad input among good ones is skipped and reported, not fatal.
	var log bytes.Buffer
	res := mustRun(t, Options{Inputs: []string{script, realCombined}, Log: &log})
	if res.Records() != 10000 || res.Inputs[0].Error == "" || !strings.Contains(log.String(), "skipping") {
		t.Errorf("records=%d input error=%q log=%q", res.Records(), res.Inputs[0].Error, log.String())
	}
}

func TestWhereByAndTimeFilters(t *testing.T) {
	dir := t.TempDir()
	format := `$time_iso8601|$remote_addr|$request|$status|$body_bytes_sent|$request_time|$tenant`
	var b strings.Builder
	t0 := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	tenants := []string{"acme", "globex", "initech"}
	for i := 0; i < 300; i++ {
		status := 200
		if i%10 == 0 {
			status = 503
		}
		path := fmt.Sprintf("/api/items/%d", i)
		if i%3 == 2 {
			path = "/static/app.css"
		}
		fmt.Fprintf(&b, "%s|10.0.%d.%d|GET %s HTTP/1.1|%d|%d|0.%03d|%s\n",
			t0.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), i%4, i%7, path, status, 100, i, tenants[i%3])
	}
	p := writeFile(t, dir, "app.log", b.String())
	count := func(where string, since, until time.Time) int64 {
		t.Helper()
		opts := Options{Inputs: []string{p}, Format: format, Since: since, Until: until}
		if where != "" {
			f, err := CompileFilter(where, t0.Add(10*time.Hour), time.UTC)
			if err != nil {
				t.Fatalf("CompileFilter(%q): %v", where, err)
			}
			opts.Where = f
		}
		return mustRun(t, opts).Records()
	}
	cases := []struct {
		where string
		want  int64
	}{
		{"status>=500", 30},
		{"status=5xx", 30},
		{"status!=5xx", 270},
		{"path~^/api/", 200},
		{"path!~^/api/ and status=200", 90},
		{"tenant=acme", 100},
		{"tenant=acme or tenant=globex", 200},
		{"not (tenant=acme or tenant=globex)", 100},
		{"request_time>=0.250", 50},
		{"request_time>=250ms", 50},
		{"time>=2019-04-04T04:00:00Z", 60},
		{"time<1h", 0 + 300}, // relative: before now-1h = 09:00, all records
		{"template=/api/items/:id", 200},
		{"ua_family='(none)'", 300},
		{"client~^10\\.0\\.1\\.", 75},
		{"prefix=10.0.2.0/24", 75},
	}
	for _, tc := range cases {
		if got := count(tc.where, time.Time{}, time.Time{}); got != tc.want {
			t.Errorf("--where %q: %d records, want %d", tc.where, got, tc.want)
		}
	}
	if got := count("", t0.Add(time.Hour), t0.Add(2*time.Hour)); got != 60 {
		t.Errorf("since/until one hour: %d records, want 60", got)
	}
	res := mustRun(t, Options{Inputs: []string{p}, Format: format, By: []string{"tenant", "status"}})
	g := mustReport(t, res).Groups
	if g == nil || len(g.Rows) != 6 {
		t.Fatalf("--by tenant,status: %+v", g)
	}
	var total int64
	for _, r := range g.Rows {
		total += r.Requests
		if len(r.Values) != 2 {
			t.Errorf("group values %v", r.Values)
		}
	}
	if total != 300 {
		t.Errorf("groups sum to %d", total)
	}
}

func TestCompileFilterErrors(t *testing.T) {
	for _, expr := range []string{"", "status>=", "status>=abc", "path>3x", "path~(", "(status=200", "status=200 and", "status=2xx4", "bogus field=1", "status=5xx or path>a"} {
		if _, err := CompileFilter(expr, time.Now(), time.UTC); err == nil {
			t.Errorf("CompileFilter(%q) accepted", expr)
		}
	}
}

// TestDetectorsSeeFilteredRecordsOnce: the findings collectors, one per
// worker and merged, observe exactly the records the tables count.
func TestDetectorsSeeFilteredRecordsOnce(t *testing.T) {
	realCombined := testenv.RealSample(t, "elastic-apache-combined-2015.log")
	f, _ := CompileFilter("status=200", time.Now(), time.UTC)
	res := mustRun(t, Options{Inputs: []string{realCombined}, Where: f, Workers: 3, ChunkSize: 32 << 10,
		Findings: &findings.AnalyzeOptions{}})
	if n := res.collector.Records(); n != res.Records() || n == 0 {
		t.Errorf("detectors saw %d, engine kept %d", n, res.Records())
	}
	rep, err := res.Report()
	if err != nil || rep.Detail == nil || rep.Detail.Records != res.Records() {
		t.Fatalf("Report() = %+v, %v: want the findings of the same %d records", rep, err, res.Records())
	}
}

func TestStdin(t *testing.T) {
	line := combinedLine(time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC), "::1", "/x", 200, 5, "curl/8")
	res := mustRun(t, Options{Inputs: []string{"-"}, Stdin: strings.NewReader(strings.Repeat(line, 5))})
	if res.Records() != 5 || res.Inputs[0].Name != "stdin" || res.Inputs[0].Format != "combined" {
		t.Errorf("records %d inputs %+v", res.Records(), res.Inputs)
	}
}

// TestTextReportGolden pins the text report of a crafted log.
func TestTextReportGolden(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	t0 := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 600; i++ {
		ua := "Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0"
		client := fmt.Sprintf("198.51.100.%d", i%9)
		if i%4 == 0 {
			ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
			client = "66.249.66.1"
		}
		status := 200
		if i%50 == 0 {
			status = 502
		}
		fmt.Fprintf(&b, "%s - - [%s] \"GET /v2/applications/%d/metrics.json HTTP/1.1\" %d %d \"https://forum.example.com/t/%d\" \"%s\" %d.%03d 200 0.%03d k_%d api\n",
			client, t0.Add(time.Duration(i)*17*time.Second).Format("02/Jan/2006:15:04:05 -0700"), 1000+i%13, status, 1000*(i%7), i, ua, i%3, i%1000, i%1000, i%3)
	}
	b.WriteString("this line is broken\n")
	p := writeFile(t, dir, "access.log", b.String())
	res := mustRun(t, Options{Inputs: []string{p}, By: []string{"key"}})
	rep := mustReport(t, res)
	rep.ElapsedSeconds, rep.LinesPerSecond = 0, 0
	rep.Inputs[0].Name = "access.log"
	for i := range rep.MalformedExamples {
		rep.MalformedExamples[i].File = "access.log"
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/report.txt", out.Bytes())
	// The JSON has the fields DESIGN.md promises, findings as a list, and
	// is pinned as a whole too.
	var js bytes.Buffer
	rep.WriteJSON(&js)
	testenv.Golden(t, "testdata/report.json", js.Bytes())
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"records", "malformed", "malformed_examples", "findings", "series", "top", "quantiles", "distinct_clients"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if string(m["findings"]) != "[]" {
		t.Errorf("findings = %s, want []", m["findings"])
	}
}

// TestFollowAcrossRotation writes a live log, rotates it the way logrotate
// does (rename, new file), writes more, and checks every line was read once.
func TestFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	t0 := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	write := func(f *os.File, from, n int) {
		t.Helper()
		w := bufio.NewWriter(f)
		for i := from; i < from+n; i++ {
			w.WriteString(combinedLine(t0.Add(time.Duration(i)*time.Second), "192.0.2.7", fmt.Sprintf("/p/%d", i), 200, 1, "curl/8"))
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	write(f, 0, 100)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := make(chan int64, 100)
	done := make(chan *Result, 1)
	var log bytes.Buffer
	go func() {
		res, err := Run(ctx, Options{Inputs: []string{path}, Follow: true, Poll: 5 * time.Millisecond,
			Refresh: time.Nanosecond, Log: &log,
			OnUpdate: func(r *Result) {
				select {
				case seen <- r.Records():
				default:
				}
			}})
		if err != nil {
			t.Errorf("follow: %v", err)
		}
		done <- res
	}()
	waitFor := func(n int64) {
		t.Helper()
		for {
			select {
			case got := <-seen:
				if got >= n {
					return
				}
			case <-ctx.Done():
				t.Fatalf("follow never reached %d records", n)
			}
		}
	}
	waitFor(100)
	write(f, 100, 50) // grows
	waitFor(150)
	write(f, 150, 10) // written just before rotation
	f.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	nf, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	write(nf, 160, 40)
	waitFor(200)
	// copytruncate: the same file emptied and written again.
	if err := nf.Truncate(0); err != nil {
		t.Fatal(err)
	}
	nf.Seek(0, 0)
	write(nf, 200, 5)
	waitFor(205)
	nf.Close()
	cancel()
	res := <-done
	if res == nil || res.Records() != 205 || res.Malformed != 0 {
		t.Fatalf("final result: %+v", res)
	}
	if !strings.Contains(log.String(), "rotated") {
		t.Errorf("no rotation notice in %q", log.String())
	}
}

func TestWarnsAboutUnknownField(t *testing.T) {
	realCombined := testenv.RealSample(t, "elastic-apache-combined-2015.log")
	f, err := CompileFilter("stauts>=500", time.Now(), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res := mustRun(t, Options{Inputs: []string{realCombined}, Where: f, By: []string{"remote_user"}, Log: &log})
	if res.Records() != 0 || !strings.Contains(log.String(), `has no field "stauts"`) {
		t.Errorf("records %d, log %q", res.Records(), log.String())
	}
	if strings.Contains(log.String(), `"remote_user"`) {
		t.Errorf("warned about remote_user, which combined has: %q", log.String())
	}
}

// TestNotFoundOSAndEndpointLatency: the report's 404 table counts the
// paths answered 404, the OS table the agents' systems, and the endpoints'
// latency quantiles tell a slow endpoint from a fast one — also when two
// workers each saw part of the log (ChunkSize forces several chunks).
func TestNotFoundOSAndEndpointLatency(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	t0 := time.Date(2019, 4, 4, 0, 0, 0, 0, time.UTC)
	uas := []string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/604.1",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36",
	}
	for i := 0; i < 900; i++ {
		path, status, up := "/api/fast/"+fmt.Sprint(i), 200, 10
		switch {
		case i%3 == 0:
			path, up = "/api/slow/"+fmt.Sprint(i), 800
		case i%10 == 1:
			path, status = "/missing/a.png", 404
		case i%30 == 2:
			path, status = "/missing/b.png", 404
		}
		fmt.Fprintf(&b, "198.51.100.%d - - [%s] \"GET %s HTTP/1.1\" %d 100 \"-\" \"%s\" 0.%03d %d 0.%03d k_1 api\n",
			i%7, t0.Add(time.Duration(i)*time.Second).Format("02/Jan/2006:15:04:05 -0700"), path, status, uas[i%3], up+1, status, up)
	}
	p := writeFile(t, dir, "access.log", b.String())
	rep := mustReport(t, mustRun(t, Options{Inputs: []string{p}, Workers: 2, ChunkSize: 4096}))

	nf := rep.Top["not_found"].ByRequests
	if len(nf) != 2 || nf[0].Value != "/missing/a.png" || nf[0].Requests != 60 || nf[1].Value != "/missing/b.png" || nf[1].Requests != 30 {
		t.Errorf("404 table = %+v, want /missing/a.png 60 then /missing/b.png 30", nf)
	}
	osRows := rep.Top["os"].ByRequests
	if len(osRows) != 2 || osRows[0].Value != "Windows" || osRows[0].Requests != 600 || osRows[1].Value != "iOS" || osRows[1].Requests != 300 {
		t.Errorf("OS table = %+v, want Windows 600, iOS 300", osRows)
	}
	lat := rep.LatencyByEndpoint
	if len(lat) < 2 || lat[0].Endpoint != "/api/slow/:id" {
		t.Fatalf("latency by endpoint = %+v, want /api/slow/:id first (most worker time)", lat)
	}
	near := func(got, want float64) bool { return got > want*0.97 && got < want*1.03 }
	slow := lat[0]
	if slow.Requests != 300 || slow.UpstreamTime == nil || !near(slow.UpstreamTime.P50, 0.8) || !near(slow.UpstreamTime.P99, 0.8) ||
		slow.RequestTime == nil || !near(slow.RequestTime.P90, 0.801) {
		t.Errorf("slow endpoint = %+v (upstream %+v, request %+v), want 300 requests at 0.8 s", slow, slow.UpstreamTime, slow.RequestTime)
	}
	for _, e := range lat[1:] {
		if e.Endpoint == "/api/fast/:id" && (e.UpstreamTime == nil || !near(e.UpstreamTime.P99, 0.01)) {
			t.Errorf("fast endpoint = %+v (upstream %+v), want p99 0.01 s", e, e.UpstreamTime)
		}
	}
}
