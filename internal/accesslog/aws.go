package accesslog

import (
	"net/netip"
	"strings"
	"time"
)

// nextField reads one space-separated field starting at pos: a bare word, a
// "quoted string" (backslash escapes the next byte) or a [bracketed time].
// It returns the value without its delimiters and the position after the
// separator that follows.
func nextField(line []byte, pos int, brackets bool) (string, int, error) {
	for pos < len(line) && line[pos] == ' ' {
		pos++
	}
	if pos >= len(line) {
		return "", pos, errFields
	}
	switch line[pos] {
	case '"':
		end := scanQuoted(line, pos+1)
		if end < 0 {
			return "", pos, errQuote
		}
		return s2(line[pos+1 : end]), end + 1, nil
	case '[':
		if !brackets {
			break
		}
		for i := pos + 1; i < len(line); i++ {
			if line[i] == ']' {
				return s2(line[pos+1 : i]), i + 1, nil
			}
		}
		return "", pos, errBracket
	}
	end := pos
	for end < len(line) && line[end] != ' ' {
		end++
	}
	return s2(line[pos:end]), end, nil
}

// S3 server access log fields, in the order AWS writes them. AWS appends new
// fields at the end from time to time, so anything after the last one known
// here is ignored rather than an error, and lines from before a field was
// added (fewer fields) still parse.
var s3Fields = [...]string{
	"bucket_owner", "bucket", "time", "remote_ip", "requester", "request_id",
	"operation", "object_key", "request_uri", "http_status", "error_code",
	"bytes_sent", "object_size", "total_time", "turnaround_time", "referer",
	"user_agent", "version_id", "host_id", "signature_version",
	"cipher_suite", "authentication_type", "host_header", "tls_version",
	"access_point_arn", "acl_required",
}

// s3MinFields is where the oldest logs stop (after the user agent).
const s3MinFields = 17

type s3Parser struct {
	tc    timeCache
	extra []Field
}

func newS3Parser() Parser { return &s3Parser{extra: make([]Field, 0, 16)} }

// Parse maps an S3 access log line onto a Record: the requester (an IAM
// identity) is the key, total time is the request time, and turnaround time
// (what S3 itself spent) is the worker time.
func (p *s3Parser) Parse(line []byte, r *Record) error {
	*r = Record{Extra: p.extra[:0]}
	if len(line) == 0 {
		return errEmpty
	}
	pos := 0
	for i := 0; i < len(s3Fields); i++ {
		v, next, err := nextField(line, pos, true)
		if err != nil {
			if err == errFields && i >= s3MinFields {
				break
			}
			return err
		}
		pos = next
		switch i {
		case 2:
			t, ok := p.tc.parseTimeLocal(v)
			if !ok {
				return errTime
			}
			r.Time = t
		case 3:
			r.Client = v
		case 4:
			r.Key = dashEmpty(v)
			r.Extra = append(r.Extra, Field{Name: "requester", Value: v})
		case 8:
			if v != "-" {
				splitRequest(v, r)
			}
		case 9:
			n, ok := atoiDash(v)
			if !ok || n > 999 {
				return errStatus
			}
			r.Status = int(n)
		case 11:
			n, ok := atoiDash(v)
			if !ok {
				return errNumber
			}
			r.BytesSent = n
		case 13, 14:
			n, ok := atoiDash(v)
			if !ok {
				return errNumber
			}
			if v != "-" {
				d := msDuration(n)
				if i == 13 {
					r.RequestTime = d
				} else {
					r.UpstreamTime, r.HasUpstreamTime = d, true
				}
			}
		case 15:
			r.Referer = dashEmpty(v)
		case 16:
			r.UserAgent = dashEmpty(v)
		case 22:
			r.Host = dashEmpty(v)
		case 0, 18:
			// the owner's canonical ID and the host ID are long opaque
			// strings nobody groups by
		default:
			r.Extra = append(r.Extra, Field{Name: s3Fields[i], Value: v})
		}
	}
	if r.Method == "" {
		// Lines without a request URI (BATCH.DELETE.OBJECT…) still name
		// the HTTP method in the operation: REST.GET.OBJECT.
		if op, ok := r.Get("operation"); ok && strings.HasPrefix(op, "REST.") {
			op = op[5:]
			if i := strings.IndexByte(op, '.'); i > 0 {
				r.Method = op[:i]
			}
		}
	}
	return nil
}

type albParser struct {
	tc    timeCache
	extra []Field
}

func newALBParser() Parser { return &albParser{extra: make([]Field, 0, 16)} }

// ALB access log fields, in AWS's order; trailing fields AWS adds later are
// ignored.
var albFields = [...]string{
	"type", "time", "elb", "client", "target", "request_processing_time",
	"target_processing_time", "response_processing_time", "elb_status_code",
	"target_status_code", "received_bytes", "sent_bytes", "request",
	"user_agent", "ssl_cipher", "ssl_protocol", "target_group", "trace_id",
	"domain_name", "chosen_cert_arn", "matched_rule_priority",
	"request_creation_time", "actions_executed", "redirect_url",
	"error_reason",
}

const albMinFields = 14

// Parse maps an ALB line onto a Record. ALB writes -1 for the processing
// times when the target never answered (460, 502, 504): the request then has
// no worker time, not a negative one.
func (p *albParser) Parse(line []byte, r *Record) error {
	*r = Record{Extra: p.extra[:0]}
	if len(line) == 0 {
		return errEmpty
	}
	pos := 0
	for i := 0; i < len(albFields); i++ {
		// ALB writes IPv6 clients as [2001:db8::1]:port: no [time] here.
		v, next, err := nextField(line, pos, false)
		if err != nil {
			if err == errFields && i >= albMinFields {
				break
			}
			return err
		}
		pos = next
		switch i {
		case 0:
			switch v {
			case "http", "https", "h2", "grpcs", "ws", "wss":
			default:
				return errALBType
			}
			r.Extra = append(r.Extra, Field{Name: "type", Value: v})
		case 1:
			t, ok := p.tc.parseISO8601(v)
			if !ok {
				return errTime
			}
			r.Time = t
		case 3:
			r.Client = stripPort(v)
		case 5, 6, 7:
			d, present, ok := parseSeconds(v)
			if !ok {
				return errDuration
			}
			if present && d >= 0 {
				r.RequestTime += d
				if i == 6 {
					r.UpstreamTime, r.HasUpstreamTime = d, true
				}
			}
		case 8:
			n, ok := atoi(v)
			if !ok || n > 999 {
				return errStatus
			}
			r.Status = int(n)
		case 9:
			n, ok := atoiDash(v)
			if !ok || n > 999 {
				return errStatus
			}
			r.UpstreamStatus = int(n)
		case 11:
			n, ok := atoiDash(v)
			if !ok {
				return errNumber
			}
			r.BytesSent = n
		case 12:
			splitRequest(v, r)
			r.Host, r.Path = splitAbsoluteURL(r.Path)
		case 13:
			r.UserAgent = dashEmpty(v)
		case 16:
			r.Pool = targetGroupName(v)
			r.Extra = append(r.Extra, Field{Name: albFields[i], Value: v})
		case 19, 20, 21, 23:
			// certificate ARN, rule priority, creation time, redirect URL:
			// rarely grouped by, left out to keep Extra short
		default:
			r.Extra = append(r.Extra, Field{Name: albFields[i], Value: v})
		}
	}
	return nil
}

var errALBType = errFieldsValue("first field is not an ALB request type (http, https, h2, grpcs, ws, wss)")

type errFieldsValue string

func (e errFieldsValue) Error() string { return string(e) }

// stripPort turns "1.2.3.4:5678" or "[2001:db8::1]:5678" into the address.
func stripPort(s string) string {
	if len(s) > 0 && s[0] == '[' {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return s[1:i]
		}
		return s
	}
	if strings.Count(s, ":") > 1 {
		if _, err := netip.ParseAddr(s); err == nil {
			return s // a bare IPv6 address: its last group is not a port
		}
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || !isPort(s[i+1:]) {
		return s
	}
	return s[:i]
}

func isPort(s string) bool {
	_, ok := atoi(s)
	return ok && len(s) <= 5
}

// splitAbsoluteURL splits ALB's "http://host:80/path" request target.
func splitAbsoluteURL(u string) (host, path string) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", u
	}
	rest := u[i+3:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return stripPort(rest), "/"
	}
	return stripPort(rest[:j]), rest[j:]
}

// targetGroupName returns NAME of "arn:…:targetgroup/NAME/ID".
func targetGroupName(arn string) string {
	i := strings.Index(arn, "targetgroup/")
	if i < 0 {
		return dashEmpty(arn)
	}
	name := arn[i+len("targetgroup/"):]
	if j := strings.IndexByte(name, '/'); j >= 0 {
		name = name[:j]
	}
	return name
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
