package dims

import (
	"bytes"
	"strings"
)

// AgentFamily names the software behind a user agent: the crawler or tool
// when it says so, else the browser. The order matters: most browsers claim
// to be "Mozilla" and Chrome-based ones also claim "Safari". No agent is
// None.
func AgentFamily(ua string) string {
	if ua == "" || ua == "-" {
		return None
	}
	for _, f := range agentRules {
		if containsFold(ua, f.needle) {
			return f.family
		}
	}
	// Tools name themselves first: "curl/7.64.0", "python-requests/2.22".
	name := ua
	if i := strings.IndexAny(name, "/ ;("); i > 0 {
		name = name[:i]
	}
	if len(name) > 40 {
		name = name[:40]
	}
	return name
}

var agentRules = []struct{ needle, family string }{
	{"googlebot", "Googlebot"},
	{"bingbot", "Bingbot"},
	{"yandex", "YandexBot"},
	{"baiduspider", "Baiduspider"},
	{"duckduckbot", "DuckDuckBot"},
	{"applebot", "Applebot"},
	{"ahrefsbot", "AhrefsBot"},
	{"semrushbot", "SemrushBot"},
	{"mj12bot", "MJ12bot"},
	{"dotbot", "DotBot"},
	{"petalbot", "PetalBot"},
	{"facebookexternalhit", "facebookexternalhit"},
	{"twitterbot", "Twitterbot"},
	{"slackbot", "Slackbot"},
	{"gptbot", "GPTBot"},
	{"claudebot", "ClaudeBot"},
	{"bytespider", "Bytespider"},
	{"amazonbot", "Amazonbot"},
	{"uptimerobot", "UptimeRobot"},
	{"pingdom", "Pingdom"},
	{"headlesschrome", "HeadlessChrome"},
	{"phantomjs", "PhantomJS"},
	{"edg/", "Edge"},
	{"opr/", "Opera"},
	{"samsungbrowser", "Samsung Internet"},
	{"firefox/", "Firefox"},
	{"chromium/", "Chromium"},
	{"crios/", "Chrome"},
	{"chrome/", "Chrome"},
	{"fxios/", "Firefox"},
	{"safari/", "Safari"},
	{"msie ", "Internet Explorer"},
	{"trident/", "Internet Explorer"},
	{"bot", "other bot"},
	{"crawler", "other bot"},
	{"spider", "other bot"},
}

// containsFold reports whether s contains the lower-case ASCII needle,
// ignoring case, without allocating.
func containsFold(s, needle string) bool {
	n := len(needle)
	c0 := needle[0]
	for i := 0; i+n <= len(s); i++ {
		c := s[i]
		if c|0x20 != c0 && c != c0 {
			continue
		}
		j := 1
		for ; j < n; j++ {
			d := s[i+j]
			if d >= 'A' && d <= 'Z' {
				d |= 0x20
			}
			if d != needle[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

// automatedPatterns mark automated user agents: crawlers announce
// themselves, and scripts keep their library's default agent.
var automatedPatterns = [][]byte{
	[]byte("bot"), []byte("crawl"), []byte("spider"), []byte("slurp"),
	[]byte("curl/"), []byte("wget/"), []byte("python-requests"), []byte("python-urllib"),
	[]byte("aiohttp"), []byte("go-http-client"), []byte("java/"), []byte("libwww-perl"),
	[]byte("apache-httpclient"), []byte("okhttp/"), []byte("scrapy"), []byte("headlesschrome"),
	[]byte("phantomjs"), []byte("facebookexternalhit"), []byte("httpclient"), []byte("node-fetch"),
	[]byte("axios/"), []byte("feedfetcher"), []byte("archiver"), []byte("scan"),
}

// Automated reports whether ua looks automated (a crawler, a script, a
// headless browser); scratch is a reusable buffer, returned grown.
func Automated(ua string, scratch []byte) (bool, []byte) {
	if ua == "" || ua == "-" {
		return false, scratch
	}
	b := append(scratch[:0], Truncate(ua)...)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	for _, p := range automatedPatterns {
		if bytes.Contains(b, p) {
			return true, b
		}
	}
	return false, b
}

// OSFamily names the operating system a user agent reports: "Windows",
// "macOS", "iOS", "Android", "Linux", "Chrome OS", …; a crawler that names
// none is "crawler", and an agent with no known system (a script, a tool)
// is "other". No agent is None. The order matters: Android agents also say
// "Linux", iPhones say "like Mac OS X".
func OSFamily(ua string) string {
	if ua == "" || ua == "-" {
		return None
	}
	for _, f := range osRules {
		if containsFold(ua, f.needle) {
			return f.family
		}
	}
	if AgentFamily(ua) == "other bot" || containsFold(ua, "bot") {
		return "crawler"
	}
	return "other"
}

var osRules = []struct{ needle, family string }{
	{"windows phone", "Windows Phone"},
	{"android", "Android"},
	{"iphone", "iOS"},
	{"ipad", "iOS"},
	{"ipod", "iOS"},
	{"cros ", "Chrome OS"},
	{"windows", "Windows"},
	{"win64", "Windows"},
	{"win32", "Windows"},
	{"mac os x", "macOS"},
	{"macintosh", "macOS"},
	{"darwin", "macOS"},
	{"freebsd", "FreeBSD"},
	{"openbsd", "OpenBSD"},
	{"netbsd", "NetBSD"},
	{"linux", "Linux"},
	{"x11", "Unix"},
}
