package findings

import (
	"fmt"
	"math"
	"strings"

	"github.com/headroom-dev/headroom/internal/dims"
)

// hotlinks finds other sites embedding the site's static files: the
// referer domains of images, media and downloads, and the Host values and
// referers that tell the site's own domain.
type hotlinks struct {
	staticReq, staticBytes int64
	staticRef              *topK // referer domain of static objects, by bytes
	staticRefPath          *topK // "domain\x00path template", by bytes
	hosts                  *topK
	referers               *topK // charted requests, by requests
	pageRefs               *topK // referer domains of page views (not static files), by requests
}

func newHotlinks() *hotlinks {
	return &hotlinks{staticRef: newTopK(64), staticRefPath: newTopK(64), hosts: newTopK(16), referers: newTopK(64), pageRefs: newTopK(32)}
}

func (d *hotlinks) observe(rec *record) {
	r, v := rec.Record, rec.v
	if r.Host != "" {
		add(d.hosts, r.Host, 1, 0, 0)
	}
	if rec.b != nil {
		v.count(d.referers, DimReferer, 1, r.BytesSent, 0)
	}
	switch dims.StaticPath(r.Path) {
	case "image", "media", "download":
	case "":
		v.count(d.pageRefs, DimReferer, 1, 0, 0)
		return
	default:
		return
	}
	d.staticReq++
	d.staticBytes += r.BytesSent
	ref, _ := v.value(DimReferer)
	path, _ := v.value(DimPath)
	v.count(d.staticRef, DimReferer, r.BytesSent, 1, 0)
	v.buf = append(append(append(v.buf[:0], ref...), 0), path...)
	addBytes(d.staticRefPath, v.buf, r.BytesSent, 1, 0)
}

func (d *hotlinks) merge(other detector) {
	o := other.(*hotlinks)
	d.staticReq += o.staticReq
	d.staticBytes += o.staticBytes
	d.staticRef.Merge(o.staticRef, mergeAB)
	d.staticRefPath.Merge(o.staticRefPath, mergeAB)
	d.hosts.Merge(o.hosts, mergeAB)
	d.referers.Merge(o.referers, mergeAB)
	d.pageRefs.Merge(o.pageRefs, mergeAB)
}

// ownDomains is the set of the site's own registrable domains: the ones
// given, else the Host values carrying at least 10% of requests, else the
// most common referer domain (most referers are the site's own pages).
func (d *hotlinks) ownDomains(c *Collector, given []string) ([]string, string) {
	set := map[string]bool{}
	var out []string
	addDomain := func(h string) {
		if d := dims.SiteDomain(h); d != "" && !set[d] {
			set[d] = true
			out = append(out, d)
		}
	}
	for _, h := range given {
		addDomain(h)
	}
	if len(out) > 0 {
		return out, "given with --site"
	}
	for _, e := range d.hosts.Sorted() {
		if float64(e.W) >= 0.1*float64(c.records) && e.Key != "-" && e.Key != "_" && !cloudEndpoint(e.Key) {
			addDomain(e.Key)
		}
	}
	if len(out) > 0 {
		return out, "inferred from the Host field; set --site to change"
	}
	// S3 and ALB logs name the bucket's or balancer's endpoint, not the
	// site (issue 16: a shop's own pages were reported as hotlinking its
	// bucket): the site is where most page views come from.
	for _, e := range d.pageRefs.Sorted() {
		if e.Key != dims.None {
			addDomain(e.Key)
			return out, "inferred as the referer domain of most page views; set --site to change"
		}
	}
	for _, e := range d.referers.Sorted() {
		if e.Key != "(none)" {
			addDomain(e.Key)
			break
		}
	}
	return out, "inferred as the most common referer domain; set --site to change"
}

// hotlink reports other sites embedding the site's images, media and
// downloads: bytes out the site pays for with no visit in return.
func (d *hotlinks) find(a *analysis) ([]Finding, error) {
	return one(d.hotlink(a.c, a.opt.SiteHosts)), nil
}

func (d *hotlinks) hotlink(c *Collector, siteHosts []string) *Finding {
	if d.staticReq < 20 || c.bytes == 0 {
		return nil
	}
	own, how := d.ownDomains(c, siteHosts)
	isOwn := map[string]bool{}
	for _, d := range own {
		isOwn[d] = true
	}
	type dom struct {
		name        string
		bytes, reqs int64
	}
	var foreign []dom
	var fBytes, fReq int64
	for _, e := range d.staticRef.Sorted() {
		if e.Key == dims.None || isOwn[dims.SiteDomain(e.Key)] {
			continue
		}
		foreign = append(foreign, dom{e.Key, e.W - e.Err, e.V.A})
		fBytes += e.W - e.Err
		fReq += e.V.A
	}
	byteShare := float64(fBytes) / float64(c.bytes)
	staticShare := float64(fBytes) / math.Max(float64(d.staticBytes), 1)
	if fReq < 20 || (byteShare < 0.05 && staticShare < 0.2) {
		return nil
	}
	var contributors []Contributor
	ev := []string{
		fmt.Sprintf("%s requests for images, media or downloads with a foreign referer sent %s: %s of bytes out, %s of static bytes",
			human(float64(fReq)), humanBytes(float64(fBytes)), pct(byteShare), pct(staticShare)),
		fmt.Sprintf("the site's own domain: %s (%s)", strings.Join(own, ", "), how),
	}
	paths := d.staticRefPath.Sorted()
	for i, d := range foreign {
		share := float64(d.bytes) / float64(c.bytes)
		if i == 5 || share < 0.01 {
			break
		}
		contributors = append(contributors, Contributor{Dimension: DimReferer.String(), Value: d.name, Share: round3(share)})
		line := fmt.Sprintf("referer %s: %s requests, %s (%s of bytes out)", d.name, human(float64(d.reqs)), humanBytes(float64(d.bytes)), pct(share))
		for _, p := range paths {
			if dn, path, ok := strings.Cut(p.Key, "\x00"); ok && dn == d.name {
				line += ", mostly " + path
				break
			}
		}
		ev = append(ev, line)
	}
	title := fmt.Sprintf("Hotlinking: other sites embed your static files, %s of bytes out", pct(byteShare))
	if len(foreign) > 0 {
		title += fmt.Sprintf(", led by %s", foreign[0].name)
	}
	return &Finding{
		Kind:         KindHotlink,
		Title:        title,
		Window:       c.logWindow(),
		Contributors: contributors,
		Evidence:     ev,
		Action:       "Allow the referers you want (search engines, partners) and refuse or redirect the rest on the static locations with nginx's valid_referers (ngx_http_referer_module), or serve those files through signed URLs.",
		Impact:       round3(byteShare),
	}
}

// cloudEndpoints are the registrable domains of storage and load-balancer
// endpoints: a Host there (an S3 bucket, an ALB) is not the site's own.
var cloudEndpoints = map[string]bool{
	"amazonaws.com": true, "cloudfront.net": true, "googleapis.com": true,
	"windows.net": true, "digitaloceanspaces.com": true, "r2.dev": true, "backblazeb2.com": true,
}

func cloudEndpoint(host string) bool { return cloudEndpoints[dims.SiteDomain(host)] }
