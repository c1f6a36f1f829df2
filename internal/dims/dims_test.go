package dims

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPathTemplate(t *testing.T) {
	for in, want := range map[string]string{
		"/v2/applications/33591900/metrics.json":           "/v2/applications/:id/metrics.json",
		"/v2/applications/33591900/metrics.json?names[]=x": "/v2/applications/:id/metrics.json",
		"/media/img/642564.jpg":                            "/media/img/:id.jpg",
		"/img/1.jpg":                                       "/img/:id.jpg", // issue 11: findings said /img/*.jpg
		"/images/kibana-search.PNG":                        "/images/kibana-search.PNG",
		"/u/5f0c6a1e9b3d4c2a8e7f6d5c4b3a2918/avatar":       "/u/:hash/avatar",
		"/orders/123e4567-e89b-12d3-a456-426614174000":     "/orders/:hash",
		"/s/AbCdEfGhIjKlMnOpQrStUv12345/x":                 "/s/:hash/x",
		"/blog/tags/puppet":                                "/blog/tags/puppet",
		"/static/app.2019.js":                              "/static/app.2019.js",
		"/":                                                "/",
		"":                                                 None,
		"-":                                                None,
		"*":                                                "*",
		"/api/v1/items/":                                   "/api/v1/items/",
		"/api/v1/search#frag":                              "/api/v1/search",
		"/2019/04/04/hello-world":                          "/:id/:id/:id/hello-world",
		"/deadbeefdeadbeef":                                "/deadbeefdeadbeef", // no digit: could be a word
		"/media/thumb/642564_3.png":                        "/media/thumb/:id.png",
		"/archive/2019-04-04":                              "/archive/:id",
		"/presentations/logstash-monitorama-2013/": "/presentations/logstash-monitorama-2013/",
		"/t/a1b2c3d4-e5f6-a7b8-c9d0-e1f2a3b4c5d6":  "/t/:hash",
		"/s/x9_k2-p8_Q7_z1-m3_n4-r5":               "/s/:hash",
		"/version-2":                               "/version-2",
		"/a/b/c/d/e/f/g/h":                         "/a/b/c/d/e/f/g/h", // no cap at 6 segments
	} {
		if got := string(AppendPathTemplate(nil, in)); got != want {
			t.Errorf("AppendPathTemplate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStaticPath(t *testing.T) {
	for in, want := range map[string]string{
		"/images/a.JPG?x=1": "image", "/v/clip.mp4": "media", "/f/x.tar": "download",
		"/app.js": "asset", "/index.html": "", "/": "", "": "", "/a.toolongext": "",
	} {
		if got := StaticPath(in); got != want {
			t.Errorf("StaticPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"83.149.9.216":     "83.149.9.0/24",
		"203.0.113.77":     "203.0.113.0/24",
		"2a02:cf40::4e36":  "2a02:cf40::/48",
		"2001:db8:1:2::3":  "2001:db8:1::/48",
		"::ffff:192.0.2.1": "192.0.2.0/24",
		"unix:":            "unix:",
		"example.org":      "example.org",
		"1.2.3":            "1.2.3",
		"01.2.3.4":         "01.2.3.4", // not an address netip accepts
		"256.1.1.1":        "256.1.1.1",
		"":                 None,
		"-":                None,
	} {
		if got := string(AppendClientNetwork(nil, in)); got != want {
			t.Errorf("AppendClientNetwork(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRefererDomain(t *testing.T) {
	for in, want := range map[string]string{
		"https://forum.example.com/t/42":         "forum.example.com",
		"https://Forum.Example.com/t/1?x=1":      "forum.example.com", // issue 11: one of the two did not lower-case
		"http://user@host.example:8080/x":        "host.example",
		"http://user:pw@pics.example.net:8080/a": "pics.example.net",
		"http://[2001:db8::2]:8080/x":            "2001:db8::2",
		"android-app://com.google.app/":          "com.google.app",
		"":                                       None,
		"-":                                      None,
		"http:///x":                              None,
	} {
		if got := RefererDomain(in); got != want {
			t.Errorf("RefererDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSiteDomain(t *testing.T) {
	for in, want := range map[string]string{
		"forum.example.co.uk": "example.co.uk", "www.Example.com.": "example.com",
		"example.com:8080": "example.com", "203.0.113.5": "203.0.113.5", "localhost": "localhost",
	} {
		if got := SiteDomain(in); got != want {
			t.Errorf("SiteDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAgentFamily(t *testing.T) {
	for in, want := range map[string]string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)":                                                  "Googlebot",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36":        "Chrome",
		"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edg/18.17763":      "Edge",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/604.1": "Safari",
		"Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0":                                                      "Firefox",
		"python-requests/2.21.0":  "python-requests",
		"curl/7.64.0":             "curl",
		"SomeCrawler/1.0 (+http)": "other bot",
		"":                        None,
		"-":                       None,
	} {
		if got := AgentFamily(in); got != want {
			t.Errorf("AgentFamily(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOSFamily(t *testing.T) {
	for _, c := range []struct{ ua, want string }{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36", "Windows"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/604.1", "iOS"},
		{"Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", "iOS"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/605.1.15", "macOS"},
		{"Mozilla/5.0 (Linux; Android 9; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.136 Mobile Safari/537.36", "Android"},
		{"Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0", "Linux"},
		{"Mozilla/5.0 (X11; CrOS x86_64 11895.95.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.125 Safari/537.36", "Chrome OS"},
		{"Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063", "Windows Phone"},
		{"Mozilla/5.0 (X11; FreeBSD amd64; rv:60.0) Gecko/20100101 Firefox/60.0", "FreeBSD"},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "crawler"},
		{"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2272.96 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Android"},
		{"python-requests/2.21.0", "other"},
		{"curl/7.64.0", "other"},
		{"", None},
		{"-", None},
	} {
		if got := OSFamily(c.ua); got != c.want {
			t.Errorf("OSFamily(%q) = %q, want %q", c.ua, got, c.want)
		}
	}
}

func TestAutomated(t *testing.T) {
	for in, want := range map[string]bool{
		"curl/8.0": true, "Mozilla/5.0 (compatible; bingbot/2.0)": true, "Go-http-client/1.1": true,
		"Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0": false, "": false, "-": false,
	} {
		if got, _ := Automated(in, nil); got != want {
			t.Errorf("Automated(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzDimensions: whatever a log line holds, dimension values are bounded,
// valid UTF-8 where the input was, templating is idempotent, and the IPv4
// fast path agrees with netip.
func FuzzDimensions(f *testing.F) {
	for _, s := range []string{"/v2/applications/33591900/metrics.json?x=1", "https://a.b/c", "203.0.113.5", "2001:db8::1", "/images/x.jpg", "", "-", "///", "/é/ü/123", "1.2.3.04"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl := AppendPathTemplate(nil, s)
		if strings.HasPrefix(s, "/") && !strings.ContainsAny(s, "?#") && len(tpl) <= 512 {
			if again := AppendPathTemplate(nil, string(tpl)); string(again) != string(tpl) {
				t.Fatalf("template not idempotent: %q → %q → %q", s, tpl, again)
			}
		}
		net := AppendClientNetwork(nil, s)
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap().Is4() {
			p, _ := a.Unmap().Prefix(24)
			if string(net) != p.String() {
				t.Fatalf("AppendClientNetwork(%q) = %q, netip says %q", s, net, p)
			}
		}
		for name, v := range map[string][]byte{"path": tpl, "referer": AppendRefererDomain(nil, s), "client": net, "family": []byte(AgentFamily(s)), "os": []byte(OSFamily(s))} {
			if len(v) > 2*MaxValueLen+16 && name != "path" || len(v) > 1024 {
				t.Fatalf("%s value of %d bytes for input of %d", name, len(v), len(s))
			}
			if utf8.ValidString(s) && len(s) <= 64 && !utf8.Valid(v) {
				t.Fatalf("%s value %q is not valid UTF-8 although %q is", name, v, s)
			}
		}
		_ = SiteDomain(s)
		_, _ = Automated(s, nil)
		_ = StaticPath(s)
	})
}

func TestAutomatedAgents(t *testing.T) {
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
		if got, _ := Automated(tc.ua, nil); got != tc.want {
			t.Errorf("Automated(%q) = %v, want %v", tc.ua, got, tc.want)
		}
	}
}

func TestSiteDomainHosts(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"forum.example.com", "example.com"},
		{"www.example.co.uk", "example.co.uk"},
		{"example.com", "example.com"},
		{"Forum.Example.COM.", "example.com"},
		{"cdn.example.com:8443", "example.com"},
		{"203.0.113.5", "203.0.113.5"},
	} {
		if got := SiteDomain(tc.in); got != tc.want {
			t.Errorf("SiteDomain(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
