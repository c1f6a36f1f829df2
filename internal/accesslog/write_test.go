package accesslog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"
)

func sampleEntries() []Entry {
	at := time.Date(2017, 2, 5, 6, 49, 2, 0, time.FixedZone("", -8*3600))
	return []Entry{
		{Record: Record{ // seeds/03: the client gave up at 4.668 s, the upstream worked 29.9 s
			Time: at, Client: "203.0.113.7", Key: "fp-3fa94c0d1e2b5a67", Method: "GET",
			Path: "/v2/applications/33591900/metrics.json?api_key=REDACTED", Proto: "HTTP/1.1", Host: "api.example.com",
			Status: 499, BytesSent: 0, RequestTime: 4668 * time.Millisecond,
			UpstreamStatus: 200, UpstreamTime: 29904 * time.Millisecond, HasUpstreamTime: true,
			UserAgent: "NewRelic Exporter", Pool: "api",
		}, Outcome: "client_abort"},
		{Record: Record{ // refused: never reached the upstream
			Time: at, Client: "203.0.113.7", Key: "fp-3fa94c0d1e2b5a67", Method: "GET", Path: "/v2/x", Proto: "HTTP/1.1",
			Status: 429, BytesSent: 312, RequestTime: 0, Pool: "api",
		}, Outcome: "restricted"},
		{Record: Record{ // odd bytes are escaped as nginx does
			Time: at, Client: "::1", Key: "addr:::1", Method: "POST", Path: "/ui/\"quoted\"\\path\x01", Proto: "HTTP/2.0",
			Status: 200, BytesSent: 1234, RequestTime: 12 * time.Millisecond, UpstreamStatus: 200,
			UpstreamTime: 11 * time.Millisecond, HasUpstreamTime: true, Referer: "https://example.com/é", UserAgent: "Mozilla/5.0", Pool: "ui",
		}, Outcome: "ok"},
	}
}

func TestAccessLogFormats(t *testing.T) {
	var h, j []byte
	for _, e := range sampleEntries() {
		h = AppendHeadroom(h, &e)
		j = AppendJSON(j, &e)
	}
	testenv.Golden(t, "testdata/writer/access.headroom.log", h)
	testenv.Golden(t, "testdata/writer/access.jsonl", j)
	for line := range strings.SplitSeq(strings.TrimSpace(string(j)), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("not JSON: %v: %s", err, line)
		}
	}
	// Every headroom line has the fields of HeadroomFormat.
	p := mustFormat(t, "headroom").NewParser()
	for line := range strings.SplitSeq(strings.TrimSpace(string(h)), "\n") {
		var r Record
		if err := p.Parse([]byte(line), &r); err != nil {
			t.Errorf("the headroom format does not read %q: %v", line, err)
		}
	}
}

func TestAppendSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.000", 4668 * time.Millisecond: "4.668", 5 * time.Millisecond: "0.005",
		50 * time.Millisecond: "0.050", 90 * time.Second: "90.000", -time.Second: "0.000",
	} {
		if got := string(appendSeconds(nil, d)); got != want {
			t.Errorf("appendSeconds(%s) = %s, want %s", d, got, want)
		}
	}
}

// TestLogFileConcurrentWrites writes from many goroutines while a flusher
// runs, through many buffer swaps: every line arrives whole, once, and each
// goroutine's lines in the order it wrote them.
func TestLogFileConcurrentWrites(t *testing.T) {
	var out bytes.Buffer
	l := NewFile(&out)
	const writers, lines = 8, 20000
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				if err := l.Flush(); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				if err := l.Write(fmt.Appendf(nil, "%d %d\n", w, i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flushed
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	n := 0
	for line := range strings.Lines(out.String()) {
		var w, i int
		if _, err := fmt.Sscanf(line, "%d %d\n", &w, &i); err != nil || w < 0 || w >= writers {
			t.Fatalf("line %d: %q", n, line)
		}
		if i != next[w] {
			t.Fatalf("line %d: writer %d's line %d, want its line %d", n, w, i, next[w])
		}
		next[w]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("%d lines, want %d", n, writers*lines)
	}
}

// TestAccessLogClientAndTimeShortcuts: a client written from its
// netip.Addr and a $time_local reused within its second give the same bytes
// as the strings they stand for.
func TestAccessLogClientAndTimeShortcuts(t *testing.T) {
	base := sampleEntries()[0]
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", -8*3600), time.FixedZone("X", 5*3600+1800)}
	times := []time.Time{base.Time, base.Time.Add(300 * time.Millisecond), base.Time.Add(time.Second), time.Unix(-1, 5), time.Now()}
	addrs := []netip.Addr{{}, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1%eth\"0")}
	for _, at := range times {
		for _, loc := range zones {
			for range 2 { // formatted, then from the cache
				if g, w := appendTimeLocal(nil, at.In(loc)), at.In(loc).AppendFormat(nil, TimeLocalLayout); !bytes.Equal(g, w) {
					t.Errorf("$time_local of %v: got %s, want %s", at.In(loc), g, w)
				}
			}
			for _, a := range addrs {
				want, got := base, base
				want.Time, got.Time = at.In(loc), at.In(loc)
				want.Client, got.Client = a.String(), ""
				got.SetClient(a)
				w := AppendHeadroom(nil, &want)
				if g := AppendHeadroom(nil, &got); !bytes.Equal(g, w) {
					t.Errorf("headroom line:\n got %s\nwant %s", g, w)
				}
				w = AppendJSON(nil, &want)
				if g := AppendJSON(nil, &got); !bytes.Equal(g, w) {
					t.Errorf("JSON line:\n got %s\nwant %s", g, w)
				}
			}
		}
	}
}
