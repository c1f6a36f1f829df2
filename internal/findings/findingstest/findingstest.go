// Package findingstest generates synthetic access logs, seeded and
// reproducible, with known causes injected (a client fetching every image
// twice from a given moment, an exporter with a 5 s client timeout, a
// crawler, a hotlinking site, an error burst), for the tests of the findings,
// the HTML report and the log engine.
package findingstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// Options describe a synthetic forum's traffic and the causes injected
// into it. Every test log is generated from a seed, so a failure reproduces.
type Options struct {
	Seed  uint64
	Start time.Time
	Days  int
	// Hours, when set, is the log's length instead of Days.
	Hours int
	// PageViewsPerHour is the mean hourly rate; the daily profile swings
	// from 25% of it at night to 175% in the afternoon.
	PageViewsPerHour float64
	// Weekly lowers weekends by this fraction (0.1 = 10%).
	Weekly float64
	// DayNoise varies each day's traffic by a random factor (log-normal,
	// this standard deviation): real days differ more than counting noise.
	DayNoise float64

	// DoubleUA starts fetching every image twice from DoubleFrom on (seed 01).
	DoubleUA   string
	DoubleFrom time.Time
	// DoubleUntil, when set, ends the double fetching (a fixed client).
	DoubleUntil time.Time
	// DoubleShare is the fraction of DoubleUA's images fetched twice (0:
	// all of them); a small share is a modest lasting rise (issue 16:
	// +15% of bytes from one browser).
	DoubleShare float64

	// Exporter adds an API client with a 5 s timeout on long requests
	// (seed 03), logged the way nginx did: 404 with upstream '-'.
	Exporter bool
	// ExporterGuarded logs the exporter's aborts the way headroom proxy
	// does: 499 at the client's time, the upstream's real status and time.
	ExporterGuarded bool

	// Crawler adds a crawler fetching pages and images.
	Crawler bool
	// Hotlink adds a foreign site embedding the forum's images.
	Hotlink bool
	// ErrorBurst makes the upstream fail on /t/:id for 30 minutes at this time.
	ErrorBurst time.Time
	// SlowBurst makes /t/:id take 3-9 s for 30 minutes at this time.
	SlowBurst time.Time
	// SlowFrom is a slow deploy: from then on, each topic page also calls
	// SlowPath (the search behind its sidebar), which takes SlowFactor
	// times as long as before (default 4); requests stay the same.
	SlowFrom   time.Time
	SlowFactor float64
	// TailFrom is a tail regression: from then on, TailShare of the topic
	// pages (/t/:id) take 0.7-0.9 s, which moves their p99 several times
	// and their mean by under 10%.
	TailFrom  time.Time
	TailShare float64
}

// SlowPath is the endpoint a slow deploy (Options.SlowFrom) slows down, as
// the tables name it.
const SlowPath = "/api/related/:id"

// The injected causes' names, for tests to look for.
const (
	SiteHost    = "forum.example.com"
	ExporterUA  = "NewRelic Exporter"
	ExporterKey = "fp-4f2a9c0d1e2b5a67" // a fingerprint, as headroom's log writes keys
	CrawlerUA   = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"
	HotlinkSite = "pics-mirror.example.net"
	PicViewerUA = "PicViewer/2.3 (Android 9; SM-G960F)"

	clientTimeout = 5 * time.Second
)

var browserUAs = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.86 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1",
	PicViewerUA,
	PicViewerUA,
}

type user struct {
	ip string
	ua string
}

// Generate returns the records of the synthetic log in time order.
func Generate(o Options) []accesslog.Record {
	rng := rand.New(rand.NewPCG(o.Seed, 7))
	if o.Start.IsZero() {
		o.Start = time.Date(2019, 3, 28, 0, 0, 0, 0, time.UTC)
	}
	if o.PageViewsPerHour == 0 {
		o.PageViewsPerHour = 120
	}
	users := make([]user, 400)
	for i := range users {
		users[i] = user{
			ip: fmt.Sprintf("%d.%d.%d.%d", 20+rng.IntN(180), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)),
			ua: browserUAs[rng.IntN(len(browserUAs))],
		}
	}
	var out []accesslog.Record
	add := func(r accesslog.Record) { out = append(out, r) }
	image := func() (string, int64) {
		return fmt.Sprintf("/images/%08x.jpg", rng.Uint32()%50000), int64(40000 + rng.IntN(120000))
	}
	hours := o.Days * 24
	if o.Hours > 0 {
		hours = o.Hours
	}
	dayFactor := make([]float64, hours/24+1)
	for d := range dayFactor {
		dayFactor[d] = math.Exp(rng.NormFloat64() * o.DayNoise)
	}
	for h := range hours {
		hourStart := o.Start.Add(time.Duration(h) * time.Hour)
		// Users follow a smooth daily curve; an hourly step function would
		// put a small level shift at every hour.
		profile := func(t time.Time) float64 {
			hod := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
			return 1 + 0.75*math.Sin(2*math.Pi*(hod-9)/24)
		}
		rate := o.PageViewsPerHour * profile(hourStart.Add(30*time.Minute)) * dayFactor[h/24]
		if wd := hourStart.Weekday(); o.Weekly > 0 && (wd == time.Saturday || wd == time.Sunday) {
			rate *= 1 - o.Weekly
		}
		views := poisson(rng, rate)
		for range views {
			u := users[rng.IntN(len(users))]
			t := hourStart.Add(time.Duration(rng.Float64() * float64(time.Hour)))
			for rng.Float64()*1.75 > profile(t) { // rejection: density ∝ profile
				t = hourStart.Add(time.Duration(rng.Float64() * float64(time.Hour)))
			}
			topic := 1000 + rng.IntN(5000)
			ut := time.Duration((0.04 + rng.ExpFloat64()*0.08) * float64(time.Second))
			if !o.SlowBurst.IsZero() && !t.Before(o.SlowBurst) && t.Before(o.SlowBurst.Add(30*time.Minute)) {
				ut = time.Duration((3 + 6*rng.Float64()) * float64(time.Second))
			}
			if !o.TailFrom.IsZero() && !t.Before(o.TailFrom) && rng.Float64() < o.TailShare {
				ut = time.Duration((0.7 + 0.2*rng.Float64()) * float64(time.Second))
			}
			status, ust := 200, 200
			if !o.ErrorBurst.IsZero() && !t.Before(o.ErrorBurst) && t.Before(o.ErrorBurst.Add(30*time.Minute)) && rng.Float64() < 0.6 {
				status, ust = 502, 502
			} else if rng.Float64() < 0.002 {
				status, ust = 500, 500
			}
			add(accesslog.Record{
				Time: t, Client: u.ip, Method: "GET", Path: fmt.Sprintf("/t/%d?page=1", topic), Proto: "HTTP/1.1", Host: SiteHost,
				Status: status, BytesSent: int64(15000 + rng.IntN(10000)), RequestTime: ut + time.Millisecond,
				UpstreamStatus: ust, UpstreamTime: ut, HasUpstreamTime: true,
				Referer: "https://" + SiteHost + "/", UserAgent: u.ua,
			})
			if !o.SlowFrom.IsZero() {
				// The sidebar's related-topics call, ~40 ms until a deploy
				// makes it SlowFactor times slower.
				rt := time.Duration((0.02 + rng.ExpFloat64()*0.02) * float64(time.Second))
				if !t.Before(o.SlowFrom) {
					f := o.SlowFactor
					if f == 0 {
						f = 4
					}
					rt = time.Duration(float64(rt) * f)
				}
				add(accesslog.Record{
					Time: t.Add(150 * time.Millisecond), Client: u.ip, Method: "GET", Path: fmt.Sprintf("/api/related/%d", topic), Proto: "HTTP/1.1", Host: SiteHost,
					Status: 200, BytesSent: int64(800 + rng.IntN(400)), RequestTime: rt + time.Millisecond,
					UpstreamStatus: 200, UpstreamTime: rt, HasUpstreamTime: true,
					Referer: fmt.Sprintf("https://%s/t/%d?page=1", SiteHost, topic), UserAgent: u.ua,
				})
			}
			ref := fmt.Sprintf("https://%s/t/%d?page=1", SiteHost, topic)
			for i := range 3 {
				p, size := image()
				it := t.Add(time.Duration(200+100*i+rng.IntN(300)) * time.Millisecond)
				img := accesslog.Record{
					Time: it, Client: u.ip, Method: "GET", Path: p, Proto: "HTTP/1.1", Host: SiteHost,
					Status: 200, BytesSent: size, RequestTime: time.Duration(2+rng.IntN(40)) * time.Millisecond,
					Referer: ref, UserAgent: u.ua,
				}
				add(img)
				if o.DoubleUA != "" && u.ua == o.DoubleUA && !it.Before(o.DoubleFrom) && (o.DoubleUntil.IsZero() || it.Before(o.DoubleUntil)) &&
					(o.DoubleShare == 0 || rng.Float64() < o.DoubleShare) {
					img.Time = it.Add(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
					add(img)
				}
			}
		}
		if o.Exporter {
			// A steady API client polling metrics around the clock; a third
			// of its requests run longer than its 5 s timeout.
			for range poisson(rng, 60) {
				t := hourStart.Add(time.Duration(rng.Float64() * float64(time.Hour)))
				work := time.Duration(math.Exp(rng.NormFloat64()*1.0+1.0) * float64(time.Second))
				r := accesslog.Record{
					Time: t, Client: "198.51.100.23", Key: ExporterKey, Method: "GET",
					Path:  fmt.Sprintf("/v2/applications/%d/metrics.json", 30000000+rng.IntN(9000000)),
					Proto: "HTTP/1.1", Host: "api." + SiteHost, Referer: "-", UserAgent: ExporterUA,
					Status: 200, BytesSent: int64(2000 + rng.IntN(30000)), RequestTime: work + time.Millisecond,
					UpstreamStatus: 200, UpstreamTime: work, HasUpstreamTime: true,
				}
				if work > clientTimeout {
					// The client gives up after 5 s of its own clock; nginx
					// sees a little less (connection setup, TLS).
					rt := 4668*time.Millisecond + time.Duration(rng.NormFloat64()*8)*time.Millisecond
					r.RequestTime = rt
					r.BytesSent = 0
					if o.ExporterGuarded {
						r.Status = 499 // upstream status and time stay as they were
					} else {
						r.Status, r.UpstreamStatus, r.UpstreamTime, r.HasUpstreamTime = 404, 0, 0, false
					}
				}
				add(r)
			}
		}
		if o.Crawler {
			for range poisson(rng, 3*o.PageViewsPerHour) {
				t := hourStart.Add(time.Duration(rng.Float64() * float64(time.Hour)))
				ut := time.Duration((0.05 + rng.ExpFloat64()*0.1) * float64(time.Second))
				p := fmt.Sprintf("/t/%d?page=%d", 1000+rng.IntN(5000), 1+rng.IntN(20))
				size := int64(15000 + rng.IntN(10000))
				if rng.Float64() < 0.5 {
					p, size = image()
				}
				add(accesslog.Record{
					Time: t, Client: fmt.Sprintf("54.36.148.%d", 1+rng.IntN(250)), Method: "GET", Path: p, Proto: "HTTP/1.1", Host: SiteHost,
					Status: 200, BytesSent: size, RequestTime: ut + time.Millisecond, UpstreamStatus: 200, UpstreamTime: ut, HasUpstreamTime: true,
					Referer: "-", UserAgent: CrawlerUA,
				})
			}
		}
		if o.Hotlink {
			for range poisson(rng, 2*o.PageViewsPerHour) {
				t := hourStart.Add(time.Duration(rng.Float64() * float64(time.Hour)))
				p, size := image()
				add(accesslog.Record{
					Time: t, Client: fmt.Sprintf("%d.%d.%d.%d", 20+rng.IntN(180), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)),
					Method: "GET", Path: p, Proto: "HTTP/1.1", Host: SiteHost,
					Status: 200, BytesSent: size, RequestTime: time.Duration(2+rng.IntN(40)) * time.Millisecond,
					Referer: fmt.Sprintf("https://%s/gallery/%d", HotlinkSite, rng.IntN(300)), UserAgent: browserUAs[rng.IntN(4)],
				})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

func poisson(rng *rand.Rand, lambda float64) int {
	if lambda > 50 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// FormatHeadroom writes r as a line of accesslog.HeadroomFormat, for driving
// the real engine.
func FormatHeadroom(r *accesslog.Record) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	ust, utm := "-", "-"
	if r.UpstreamStatus != 0 {
		ust = fmt.Sprint(r.UpstreamStatus)
	}
	if r.HasUpstreamTime {
		utm = fmt.Sprintf("%.3f", r.UpstreamTime.Seconds())
	}
	return fmt.Sprintf(`%s - - [%s] "%s %s %s" %d %d "%s" "%s" %.3f %s %s %s %s`,
		r.Client, r.Time.Format("02/Jan/2006:15:04:05 -0700"), r.Method, r.Path, r.Proto, r.Status, r.BytesSent,
		dash(r.Referer), strings.ReplaceAll(dash(r.UserAgent), `"`, `\"`), r.RequestTime.Seconds(), ust, utm, dash(r.Key), "-")
}

// S3 hotlinking (issue 16): a shop's images served from an S3 bucket, whose
// access logs name the bucket's endpoint as the Host, never the shop.
const (
	ShopSite   = "shop.example.com"
	BucketHost = "shop-assets.s3.eu-west-1.amazonaws.com"
)

// GenerateS3Shop returns the bucket's records in time order: the shop's
// pages embed its product images around the clock, and, when hotlink is
// set, HotlinkSite embeds them too (a third as many requests).
func GenerateS3Shop(seed uint64, hours int, hotlink bool) []accesslog.Record {
	rng := rand.New(rand.NewPCG(seed, 11))
	start := time.Date(2019, 3, 28, 0, 0, 0, 0, time.UTC)
	var out []accesslog.Record
	for h := range hours {
		n := poisson(rng, 200)
		for range n {
			ref := "https://" + ShopSite + fmt.Sprintf("/products/%d", rng.IntN(500))
			if hotlink && rng.Float64() < 0.25 {
				ref = fmt.Sprintf("https://%s/gallery/%d", HotlinkSite, rng.IntN(300))
			}
			total := time.Duration(5+rng.IntN(60)) * time.Millisecond
			out = append(out, accesslog.Record{
				Time:   start.Add(time.Duration(h)*time.Hour + time.Duration(rng.Float64()*float64(time.Hour))).Truncate(time.Second),
				Client: fmt.Sprintf("%d.%d.%d.%d", 20+rng.IntN(180), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)),
				Method: "GET", Path: fmt.Sprintf("/shop-assets/products/%d.jpg", rng.IntN(2000)), Proto: "HTTP/1.1",
				Status: 200, BytesSent: int64(30000 + rng.IntN(200000)), RequestTime: total,
				UpstreamTime: total / 3, HasUpstreamTime: true, Host: BucketHost,
				Referer: ref, UserAgent: browserUAs[rng.IntN(4)],
			})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// FormatS3 writes r as an S3 server access log line (the fields
// accesslog's s3 format reads).
func FormatS3(r *accesslog.Record) string {
	key := strings.TrimPrefix(r.Path, "/shop-assets/")
	return fmt.Sprintf(`79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be shop-assets [%s] %s - 3E57427F3EXAMPLE REST.GET.OBJECT %s "%s %s %s" %d - %d %d %d %d "%s" "%s" - Yi0cgVEXAMPLE= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader %s TLSv1.2`,
		r.Time.Format("02/Jan/2006:15:04:05 -0700"), r.Client, key, r.Method, r.Path, r.Proto, r.Status, r.BytesSent, r.BytesSent,
		r.RequestTime.Milliseconds(), r.UpstreamTime.Milliseconds(), r.Referer, r.UserAgent, r.Host)
}
