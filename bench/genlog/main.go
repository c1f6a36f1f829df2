// Command genlog writes a deterministic, realistic nginx "combined" access
// log for benchmarks: the same seed and size always give the same bytes.
// Clients, paths and agents follow skewed (Zipf) popularity like real
// traffic, with numeric ids in paths, crawlers, referers, 3xx/4xx/5xx and a
// few malformed lines, so parsers and aggregators do realistic work.
//
//	go run ./bench/genlog -size 1GiB -seed 1 > /tmp/access.log
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	size := flag.String("size", "1GiB", "approximate output size (KiB, MiB, GiB suffixes)")
	lines := flag.Int64("lines", 0, "write exactly this many lines instead of -size")
	seed := flag.Uint64("seed", 1, "random seed")
	start := flag.String("start", "2019-04-01T00:00:00Z", "time of the first line")
	rate := flag.Float64("rate", 400, "mean requests per second of log time")
	flag.Parse()
	limit, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genlog:", err)
		os.Exit(2)
	}
	t0, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genlog: -start:", err)
		os.Exit(2)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	g := newGen(*seed, t0, *rate)
	var written, n int64
	buf := make([]byte, 0, 4096)
	for {
		if *lines > 0 && n >= *lines || *lines == 0 && written >= limit {
			break
		}
		buf = g.line(buf[:0])
		if _, err := w.Write(buf); err != nil {
			fmt.Fprintln(os.Stderr, "genlog:", err)
			os.Exit(1)
		}
		written += int64(len(buf))
		n++
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "genlog:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "genlog: %d lines, %d bytes\n", n, written)
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suf, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(s, suf) {
			mult, s = m, strings.TrimSuffix(s, suf)
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: want e.g. 1GiB or 500MiB", s)
	}
	return int64(v * float64(mult)), nil
}

type gen struct {
	r       *rand.Rand
	clients *rand.Zipf
	paths   *rand.Zipf
	uas     *rand.Zipf
	now     float64 // seconds since t0
	t0      time.Time
	rate    float64
	lastSec int64
	stamp   []byte
	ips     [][]byte
}

var agents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0",
	"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	"Mozilla/5.0 (Linux; Android 9; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.90 Mobile Safari/537.36",
	"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.17763",
	"python-requests/2.21.0",
	"curl/7.64.0",
	"Mozilla/5.0 (compatible; AhrefsBot/6.1; +http://ahrefs.com/robot/)",
	"Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
	"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
	"Go-http-client/1.1",
	"-",
}

var pathShapes = []string{
	"/t/%d", "/t/%d/posts?page=%d", "/u/%d", "/media/img/%d.jpg", "/media/thumb/%d_%d.png",
	"/api/v1/topics/%d", "/api/v1/topics/%d/replies", "/static/app.%d.js", "/static/style.css", "/",
	"/search?q=term%d", "/favicon.ico", "/robots.txt", "/api/v1/notifications", "/login",
}

var referers = []string{"-", "https://forum.example.com/", "https://forum.example.com/t/%d", "https://www.google.com/", "https://t.co/abc%d", "-", "-"}

func newGen(seed uint64, t0 time.Time, rate float64) *gen {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &gen{
		r:       r,
		clients: rand.NewZipf(r, 1.2, 4, 199_999),
		paths:   rand.NewZipf(r, 1.1, 2, 999_999),
		uas:     rand.NewZipf(r, 1.5, 1, uint64(len(agents)-1)),
		t0:      t0,
		rate:    rate,
		lastSec: -1,
	}
	for i := 0; i < 200_000; i++ {
		var ip []byte
		if i%50 == 49 {
			ip = fmt.Appendf(nil, "2001:db8:%x:%x::%x", r.IntN(64), r.IntN(65536), r.IntN(65536))
		} else {
			ip = fmt.Appendf(nil, "%d.%d.%d.%d", 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254))
		}
		g.ips = append(g.ips, ip)
	}
	return g
}

func (g *gen) line(b []byte) []byte {
	g.now += g.r.ExpFloat64() / g.rate
	sec := int64(g.now)
	if sec != g.lastSec {
		g.lastSec = sec
		g.stamp = g.t0.Add(time.Duration(sec)*time.Second).AppendFormat(g.stamp[:0], "02/Jan/2006:15:04:05 -0700")
	}
	if g.r.IntN(200_000) == 0 { // the odd broken line real logs have
		return append(b, "\\x16\\x03\\x01\\x02\\x00\\x01 garbage\n"...)
	}
	b = append(b, g.ips[g.clients.Uint64()]...)
	b = append(b, " - - ["...)
	b = append(b, g.stamp...)
	b = append(b, "] \""...)
	method := "GET"
	switch g.r.IntN(40) {
	case 0, 1:
		method = "POST"
	case 2:
		method = "HEAD"
	}
	b = append(b, method...)
	b = append(b, ' ')
	p := g.paths.Uint64()
	shape := pathShapes[p%uint64(len(pathShapes))]
	b = appendShape(b, shape, p*7919%1_000_003, p%17)
	b = append(b, " HTTP/1.1\" "...)
	status, size := 200, 200+int(g.r.ExpFloat64()*8000)
	switch x := g.r.IntN(1000); {
	case x < 60:
		status, size = 304, 0
	case x < 75:
		status = 404
	case x < 80:
		status, size = 302, 0
	case x < 83:
		status = 502
	case x < 85:
		status = 499
	}
	if strings.HasPrefix(shape, "/media/img") && status == 200 {
		size = 50_000 + g.r.IntN(400_000)
	}
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, " \""...)
	ref := referers[g.r.IntN(len(referers))]
	b = appendShape(b, ref, uint64(g.r.IntN(100_000)), 0)
	b = append(b, "\" \""...)
	b = append(b, agents[g.uas.Uint64()]...)
	return append(b, "\"\n"...)
}

// appendShape writes shape with each %d replaced by the next of ids.
func appendShape(b []byte, shape string, ids ...uint64) []byte {
	for {
		i := strings.Index(shape, "%d")
		if i < 0 {
			return append(b, shape...)
		}
		b = append(b, shape[:i]...)
		if len(ids) > 0 {
			b = strconv.AppendUint(b, ids[0], 10)
			ids = ids[1:]
		}
		shape = shape[i+2:]
	}
}
