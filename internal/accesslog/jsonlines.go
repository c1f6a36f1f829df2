package accesslog

import (
	"fmt"
	"sort"
	"strings"
)

// jsonTarget is the Record field a JSON key fills.
type jsonTarget uint8

const (
	jExtra jsonTarget = iota
	jTime
	jClient
	jKey
	jMethod
	jPath
	jRequest
	jProto
	jHost
	jStatus
	jBytes
	jRequestTime
	jUpstreamStatus
	jUpstreamTime
	jReferer
	jUserAgent
	jPool
)

// jsonDefaults lists, for each record field, the JSON keys that fill it when
// --json-fields does not say otherwise: nginx's own variable names (what an
// `escape=json` log_format usually uses) and the common aliases.
var jsonDefaults = []struct {
	field  string
	target jsonTarget
	keys   []string
}{
	{"time", jTime, []string{"time", "timestamp", "ts", "@timestamp", "time_iso8601", "time_local", "msec", "datetime"}},
	{"client", jClient, []string{"remote_addr", "client", "client_ip", "clientip", "ip", "remote_ip"}},
	{"key", jKey, []string{"key", "api_key", "headroom_key"}},
	{"method", jMethod, []string{"method", "request_method", "verb"}},
	{"path", jPath, []string{"path", "request_uri", "uri", "url"}},
	{"request", jRequest, []string{"request"}},
	{"proto", jProto, []string{"protocol", "server_protocol", "proto"}},
	{"host", jHost, []string{"host", "http_host", "server_name"}},
	{"status", jStatus, []string{"status", "status_code", "code"}},
	{"bytes", jBytes, []string{"body_bytes_sent", "bytes_sent", "bytes", "size", "response_size"}},
	{"request_time", jRequestTime, []string{"request_time", "duration", "latency", "elapsed"}},
	{"upstream_status", jUpstreamStatus, []string{"upstream_status"}},
	{"upstream_time", jUpstreamTime, []string{"upstream_response_time", "upstream_time"}},
	{"referer", jReferer, []string{"http_referer", "referer", "referrer"}},
	{"user_agent", jUserAgent, []string{"http_user_agent", "user_agent", "ua", "agent"}},
	{"pool", jPool, []string{"pool", "headroom_pool"}},
}

// JSONFormat reads JSON lines (one flat object per line) with a mapping from
// JSON keys to record fields. Keys that map to nothing are kept as extra
// fields; nested objects and arrays are kept as their raw JSON text.
type JSONFormat struct {
	keys map[string]jsonTarget
}

// NewJSONFormat builds the mapping from the defaults and spec, a comma
// separated list of record_field=json_key (e.g. "time=ts,status=code");
// a field named in spec is read only from the key given.
func NewJSONFormat(spec string) (*JSONFormat, error) {
	f := &JSONFormat{keys: map[string]jsonTarget{}}
	override := map[jsonTarget]string{}
	if strings.TrimSpace(spec) != "" {
		for _, kv := range strings.Split(spec, ",") {
			field, key, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || field == "" || key == "" {
				return nil, fmt.Errorf("--json-fields %q: want record_field=json_key pairs separated by commas, e.g. time=ts,status=code", kv)
			}
			t, ok := jsonFieldTarget(field)
			if !ok {
				return nil, fmt.Errorf("--json-fields: unknown record field %q (known: %s)", field, strings.Join(JSONFieldNames(), ", "))
			}
			override[t] = key
		}
	}
	for _, d := range jsonDefaults {
		if k, ok := override[d.target]; ok {
			f.keys[k] = d.target
			continue
		}
		for _, k := range d.keys {
			if _, taken := f.keys[k]; !taken {
				f.keys[k] = d.target
			}
		}
	}
	// A key overridden to another field must not keep its default meaning.
	for t, k := range override {
		f.keys[k] = t
	}
	return f, nil
}

// JSONFieldNames lists the record fields --json-fields can map.
func JSONFieldNames() []string {
	var out []string
	for _, d := range jsonDefaults {
		out = append(out, d.field)
	}
	sort.Strings(out)
	return out
}

func jsonFieldTarget(name string) (jsonTarget, bool) {
	for _, d := range jsonDefaults {
		if d.field == name {
			return d.target, true
		}
	}
	return 0, false
}

// NewParser returns a parser for this mapping (one per goroutine).
func (f *JSONFormat) NewParser() Parser {
	return &jsonParser{f: f, extra: make([]Field, 0, 16)}
}

type jsonParser struct {
	f       *JSONFormat
	tc      timeCache
	extra   []Field
	scratch []byte // unescaped strings; sized to the line before use
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

func (p *jsonParser) Parse(line []byte, r *Record) error {
	*r = Record{Extra: p.extra[:0]}
	i := skipWS(line, 0)
	if i >= len(line) {
		return errEmpty
	}
	if line[i] != '{' {
		return errJSON
	}
	// Unescaped strings are written into scratch and aliased by the record,
	// so scratch must never move while a line is parsed: make it as large as
	// the line (unescaping only shrinks) before starting.
	if cap(p.scratch) < len(line) {
		p.scratch = make([]byte, 0, 2*len(line))
	}
	p.scratch = p.scratch[:0]
	mapped := 0
	i = skipWS(line, i+1)
	if i < len(line) && line[i] == '}' {
		return errJSONNoField
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return errJSON
		}
		key, next, ok := p.str(line, i)
		if !ok {
			return errJSON
		}
		i = skipWS(line, next)
		if i >= len(line) || line[i] != ':' {
			return errJSON
		}
		i = skipWS(line, i+1)
		var val string
		isStr := false
		if i < len(line) && line[i] == '"' {
			val, next, ok = p.str(line, i)
			isStr = true
		} else {
			var end int
			if end, ok = skipValue(line, i); ok {
				val, next = s2(line[i:end]), end
			}
		}
		if !ok {
			return errJSON
		}
		if !isStr && val == "null" {
			val = ""
		}
		i = skipWS(line, next)
		t := p.f.keys[key]
		if t != jExtra {
			mapped++
		}
		if err := p.assign(t, key, val, r); err != nil {
			return err
		}
		if i >= len(line) {
			return errJSON
		}
		if line[i] == '}' {
			break
		}
		if line[i] != ',' {
			return errJSON
		}
		i = skipWS(line, i+1)
	}
	if mapped == 0 {
		return errJSONNoField
	}
	return nil
}

func (p *jsonParser) assign(t jsonTarget, key, v string, r *Record) error {
	switch t {
	case jExtra:
		r.Extra = append(r.Extra, Field{Name: key, Value: v})
	case jTime:
		tm, ok := p.tc.parseAnyTime(v)
		if !ok {
			return errTime
		}
		r.Time = tm
	case jClient:
		r.Client = v
	case jKey:
		r.Key = dashEmpty(v)
	case jMethod:
		r.Method = v
	case jPath:
		r.Path = v
	case jRequest:
		splitRequest(v, r)
	case jProto:
		r.Proto = v
	case jHost:
		r.Host = dashEmpty(v)
	case jStatus:
		n, ok := atoi(v)
		if !ok || n > 999 {
			return errStatus
		}
		r.Status = int(n)
	case jBytes:
		n, ok := atoiDash(v)
		if !ok && v != "" {
			return errNumber
		}
		r.BytesSent = n
	case jRequestTime:
		d, _, ok := parseSeconds(v)
		if !ok {
			return errDuration
		}
		r.RequestTime = d
	case jUpstreamStatus:
		st, ok := lastStatusInList(v)
		if !ok {
			return errStatus
		}
		r.UpstreamStatus = st
	case jUpstreamTime:
		d, present, ok := sumSecondsList(v)
		if !ok {
			return errDuration
		}
		r.UpstreamTime, r.HasUpstreamTime = d, present
	case jReferer:
		r.Referer = dashEmpty(v)
	case jUserAgent:
		r.UserAgent = dashEmpty(v)
	case jPool:
		r.Pool = dashEmpty(v)
	}
	return nil
}

// str reads the JSON string starting at line[i] == '"'. Strings without
// escapes alias the line; others are unescaped into scratch.
func (p *jsonParser) str(line []byte, i int) (string, int, bool) {
	start := i + 1
	for j := start; j < len(line); j++ {
		switch line[j] {
		case '"':
			return s2(line[start:j]), j + 1, true
		case '\\':
			return p.unescape(line, start)
		}
	}
	return "", 0, false
}

func (p *jsonParser) unescape(line []byte, start int) (string, int, bool) {
	out := len(p.scratch)
	for j := start; j < len(line); j++ {
		c := line[j]
		switch c {
		case '"':
			return s2(p.scratch[out:]), j + 1, true
		case '\\':
			j++
			if j >= len(line) {
				return "", 0, false
			}
			switch line[j] {
			case 'n':
				c = '\n'
			case 't':
				c = '\t'
			case 'r':
				c = '\r'
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'u':
				if j+4 >= len(line) {
					return "", 0, false
				}
				var v rune
				for k := 1; k <= 4; k++ {
					h := line[j+k]
					switch {
					case h >= '0' && h <= '9':
						v = v<<4 | rune(h-'0')
					case h >= 'a' && h <= 'f':
						v = v<<4 | rune(h-'a'+10)
					case h >= 'A' && h <= 'F':
						v = v<<4 | rune(h-'A'+10)
					default:
						return "", 0, false
					}
				}
				j += 4
				// \uXXXX is at least 6 bytes of input and at most 3 of
				// UTF-8 output (surrogates become U+FFFD), so scratch
				// never outgrows the line.
				p.scratch = appendRune(p.scratch, v)
				continue
			default: // \" \\ \/
				c = line[j]
			}
		}
		p.scratch = append(p.scratch, c)
	}
	return "", 0, false
}

func appendRune(b []byte, r rune) []byte {
	switch {
	case r < 0x80:
		return append(b, byte(r))
	case r < 0x800:
		return append(b, 0xC0|byte(r>>6), 0x80|byte(r)&0x3F)
	case r >= 0xD800 && r <= 0xDFFF:
		r = 0xFFFD
	}
	return append(b, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
}

// skipValue returns the end of a non-string JSON value (number, literal,
// object, array) starting at i.
func skipValue(line []byte, i int) (int, bool) {
	if i >= len(line) {
		return 0, false
	}
	switch line[i] {
	case '{', '[':
		depth := 0
		for j := i; j < len(line); j++ {
			switch line[j] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			case '"':
				end := scanQuoted(line, j+1)
				if end < 0 {
					return 0, false
				}
				j = end
			}
		}
		return 0, false
	}
	j := i
	for j < len(line) && line[j] != ',' && line[j] != '}' && line[j] != ' ' && line[j] != '\t' {
		j++
	}
	if j == i {
		return 0, false
	}
	return j, true
}
