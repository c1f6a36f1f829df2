package accesslog

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// IngressFormat is ingress-nginx's default log_format (its upstream fields
// hold one value per upstream tried: "10.0.0.1:80, 10.0.0.2:80").
const IngressFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id`

// CommonFormat is the Common Log Format (combined without referer and agent).
const CommonFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent`

// Format is a log format: a name, and a factory of parsers (one per
// goroutine, since parsers keep per-line state).
type Format struct {
	Name        string
	Description string
	NewParser   func() Parser
	// newStrict, when set, returns a parser that rejects lines with text
	// the format does not describe; Sniff scores with it.
	newStrict func() Parser
}

// FormatOptions configures formats that take parameters.
type FormatOptions struct {
	// JSONFields maps record fields to JSON keys for the json format
	// ("time=ts,status=code"); empty means the defaults.
	JSONFields string
}

// FormatNames lists the names LookupFormat knows, "auto" first.
func FormatNames() []string {
	return []string{"auto", "combined", "common", "headroom", "ingress", "s3", "alb", "json"}
}

// LookupFormat returns the format called name, or compiles spec as an nginx
// log_format when it contains a `$` ("$remote_addr [$time_local] …" or a
// whole `log_format main '…';` directive). "auto" is not a format: callers
// sniff with Sniff.
func LookupFormat(spec string, opts FormatOptions) (*Format, error) {
	nginx := func(name, desc, text string) (*Format, error) {
		f, err := CompileNginx(text)
		if err != nil {
			return nil, err
		}
		strict := *f
		strict.Strict = true
		return &Format{Name: name, Description: desc, NewParser: f.NewParser, newStrict: strict.NewParser}, nil
	}
	switch strings.ToLower(strings.TrimSpace(spec)) {
	case "combined", "nginx", "apache":
		return nginx("combined", "nginx/Apache combined", CombinedFormat)
	case "common", "clf":
		return nginx("common", "Common Log Format", CommonFormat)
	case "headroom":
		return nginx("headroom", "headroom proxy access log", HeadroomFormat)
	case "ingress", "ingress-nginx":
		return nginx("ingress", "ingress-nginx", IngressFormat)
	case "s3":
		return &Format{Name: "s3", Description: "AWS S3 server access log", NewParser: newS3Parser}, nil
	case "alb", "elb":
		return &Format{Name: "alb", Description: "AWS Application Load Balancer", NewParser: newALBParser}, nil
	case "json", "jsonl", "ndjson":
		jf, err := NewJSONFormat(opts.JSONFields)
		if err != nil {
			return nil, err
		}
		return &Format{Name: "json", Description: "JSON lines", NewParser: jf.NewParser}, nil
	case "auto", "":
		return nil, fmt.Errorf("format auto must be resolved with Sniff on the first lines")
	}
	if strings.Contains(spec, "$") {
		return nginx("nginx", "nginx log_format "+spec, spec)
	}
	return nil, fmt.Errorf("unknown log format %q: use one of %s, or give an nginx log_format such as '%s'",
		spec, strings.Join(FormatNames(), ", "), CombinedFormat)
}

// SniffResult says how well each candidate format read the sample.
type SniffResult struct {
	Format *Format
	Parsed int // sample lines the chosen format parsed
	Lines  int // non-empty sample lines
	Scores map[string]int
}

// sniffOrder puts the most specific formats first: a headroom or ingress
// line is also a valid combined line followed by extra text, so combined
// must only win when nothing more specific reads the lines as well.
var sniffOrder = []string{"headroom", "ingress", "alb", "s3", "json", "combined", "common"}

// Sniff picks the format that parses most of the sample lines (ties go to
// the more specific format). It fails when none parses at least half of
// them: the input is then not a log headroom can read, and saying so beats
// an empty report.
func Sniff(sample [][]byte, opts FormatOptions) (SniffResult, error) {
	res := SniffResult{Scores: map[string]int{}}
	for _, l := range sample {
		if len(bytes.TrimSpace(l)) > 0 {
			res.Lines++
		}
	}
	if res.Lines == 0 {
		return res, fmt.Errorf("no lines to detect the format from")
	}
	var r Record
	for _, name := range sniffOrder {
		f, err := LookupFormat(name, opts)
		if err != nil {
			return res, err
		}
		p := f.NewParser()
		if f.newStrict != nil {
			p = f.newStrict()
		}
		n := 0
		for _, l := range sample {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			if p.Parse(l, &r) == nil && plausible(name, &r) {
				n++
			}
		}
		res.Scores[name] = n
		if n > res.Parsed {
			res.Format, res.Parsed = f, n
		}
	}
	if res.Format == nil {
		return res, fmt.Errorf("not a log format headroom recognizes: none of the first %d lines parses as %s", res.Lines, strings.Join(sniffOrder, ", "))
	}
	if res.Parsed*2 < res.Lines {
		return res, fmt.Errorf("not a log format headroom recognizes (best: %s)", res.describeScores())
	}
	return res, nil
}

// plausible rejects parses that succeed by accident: the nginx formats end
// in a free-text field that swallows anything, so a headroom line read as
// "common" or a JSON line read as nothing must not count.
func plausible(name string, r *Record) bool {
	switch name {
	case "json":
		return !r.Time.IsZero() || r.Status != 0 || r.Path != ""
	}
	return true
}

func (s SniffResult) describeScores() string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range s.Scores {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].v != kvs[j].v {
			return kvs[i].v > kvs[j].v
		}
		return kvs[i].k < kvs[j].k
	})
	var parts []string
	for _, e := range kvs[:min(3, len(kvs))] {
		parts = append(parts, fmt.Sprintf("%s %d/%d lines", e.k, e.v, s.Lines))
	}
	return strings.Join(parts, ", ")
}
