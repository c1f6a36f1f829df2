package analyze

import (
	"fmt"
	"slices"
	"testing"
)

func TestPathTemplate(t *testing.T) {
	cases := map[string]string{
		"/v2/applications/33591900/metrics.json":           "/v2/applications/:id/metrics.json",
		"/v2/applications/33591900/metrics.json?names[]=x": "/v2/applications/:id/metrics.json",
		"/media/img/642564.jpg":                            "/media/img/:id.jpg",
		"/u/5f0c6a1e9b3d4c2a8e7f6d5c4b3a2918/avatar":       "/u/:hash/avatar",
		"/orders/123e4567-e89b-12d3-a456-426614174000":     "/orders/:hash",
		"/s/AbCdEfGhIjKlMnOpQrStUv12345/x":                 "/s/:hash/x",
		"/blog/tags/puppet":                                "/blog/tags/puppet",
		"/static/app.2019.js":                              "/static/app.2019.js",
		"/":                                                "/",
		"":                                                 "(none)",
		"*":                                                "*",
		"/api/v1/items/":                                   "/api/v1/items/",
		"/2019/04/04/hello-world":                          "/:id/:id/:id/hello-world",
		"/deadbeefdeadbeef":                                "/deadbeefdeadbeef", // no digit: could be a word
		"/media/thumb/642564_3.png":                        "/media/thumb/:id.png",
		"/archive/2019-04-04":                              "/archive/:id",
		"/presentations/logstash-monitorama-2013/":         "/presentations/logstash-monitorama-2013/",
		"/t/a1b2c3d4-e5f6-a7b8-c9d0-e1f2a3b4c5d6":          "/t/:hash",
		"/s/x9_k2-p8_Q7_z1-m3_n4-r5":                       "/s/:hash",
		"/version-2":                                       "/version-2",
	}
	for in, want := range cases {
		if got := string(appendPathTemplate(nil, in)); got != want {
			t.Errorf("template(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientPrefix(t *testing.T) {
	cases := map[string]string{
		"83.149.9.216":     "83.149.9.0/24",
		"2a02:cf40::4e36":  "2a02:cf40::/48",
		"2001:db8:1:2::3":  "2001:db8:1::/48",
		"::ffff:192.0.2.1": "192.0.2.0/24",
		"unix:":            "unix:",
		"":                 "",
	}
	for in, want := range cases {
		if got := string(appendClientPrefix(nil, in)); got != want {
			t.Errorf("prefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRefererDomainAndUAFamily(t *testing.T) {
	refs := map[string]string{
		"https://forum.example.com/t/42":  "forum.example.com",
		"http://user@host.example:8080/x": "host.example",
		"http://[2001:db8::2]:8080/x":     "2001:db8::2",
		"android-app://com.google.app/":   "com.google.app",
		"":                                "",
	}
	for in, want := range refs {
		if got := refererDomain(in); got != want {
			t.Errorf("refererDomain(%q) = %q, want %q", in, got, want)
		}
	}
	uas := map[string]string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)":                                                  "Googlebot",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36":        "Chrome",
		"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edg/18.17763":      "Edge",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/604.1": "Safari",
		"Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0":                                                      "Firefox",
		"python-requests/2.21.0":  "python-requests",
		"curl/7.64.0":             "curl",
		"SomeCrawler/1.0 (+http)": "other bot",
		"":                        "(none)",
	}
	for in, want := range uas {
		if got := uaFamily(in); got != want {
			t.Errorf("uaFamily(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTopTableBounded streams a million distinct rare values around a few
// heavy ones: memory stays at capacity, and the heavy hitters by requests,
// by bytes and by worker time all survive with exact counts.
func TestTopTableBounded(t *testing.T) {
	const capacity = 256
	tab := newTopTable(capacity)
	one := counters{Requests: 1, Bytes: 10}
	for i := 0; i < 1_000_000; i++ {
		tab.observe(fmt.Sprintf("rare-%d", i), &one)
		if i%100 == 0 {
			tab.observe("frequent", &counters{Requests: 1, Bytes: 1})
		}
		if i%5000 == 0 {
			tab.observe("big-downloads", &counters{Requests: 1, Bytes: 50_000_000})
			tab.observe("slow-reports", &counters{Requests: 1, WorkerNs: 30e9})
		}
		if len(tab.m) > capacity {
			t.Fatalf("table grew to %d entries (capacity %d)", len(tab.m), capacity)
		}
	}
	check := func(measure func(*topEntry) int64, key string, want counters) {
		t.Helper()
		top := tab.top(1, measure)
		if len(top) == 0 || top[0].key != key || top[0].counters != want {
			t.Errorf("top = %+v, want %s with %+v", top, key, want)
		}
	}
	check(byRequests, "frequent", counters{Requests: 10_000, Bytes: 10_000})
	check(byBytes, "big-downloads", counters{Requests: 200, Bytes: 200 * 50_000_000})
	check(byWorker, "slow-reports", counters{Requests: 200, WorkerNs: 200 * 30e9})
	if !tab.pruned || tab.lost.Requests < 1 {
		t.Errorf("pruned=%v lost=%+v: the report must say counts are approximate", tab.pruned, tab.lost)
	}
}

func TestSeriesCoarsens(t *testing.T) {
	s := newSeries()
	c := counters{Requests: 1}
	// Three years, one record every 10 minutes: minutes would be 157,680
	// buckets; the series must coarsen to stay bounded.
	for sec := int64(1_500_000_000); sec < 1_500_000_000+3*365*86400; sec += 600 {
		s.at(sec).add(&c)
		if len(s.buckets) > maxBuckets {
			t.Fatalf("%d buckets at width %d", len(s.buckets), s.width)
		}
	}
	var total int64
	for _, p := range s.dense(maxSeriesPoints) {
		total += p.Requests
	}
	if want := int64(3 * 365 * 144); total != want {
		t.Errorf("dense series sums to %d, want %d", total, want)
	}
	if s.width < 86400 {
		t.Errorf("width %d after three years, want days or coarser", s.width)
	}
}

func TestKthLargest(t *testing.T) {
	for n := 1; n < 60; n++ {
		for k := 1; k <= n+1; k++ {
			vals := make([]int64, n)
			for i := range vals {
				vals[i] = int64((i * 7919) % 13) // many ties
			}
			sorted := slices.Clone(vals)
			slices.Sort(sorted)
			want := sorted[max(n-k, 0)]
			if got := kthLargest(vals, k); got != want {
				t.Fatalf("n=%d k=%d: got %d want %d", n, k, got, want)
			}
		}
	}
}
