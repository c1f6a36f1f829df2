package accesslog

import (
	"bytes"
	"fmt"
	"strings"
)

// fieldKind says which Record field an nginx variable fills.
type fieldKind uint8

const (
	kExtra fieldKind = iota
	kIgnore
	kClient
	kTimeLocal
	kTimeISO
	kMsec
	kRequest
	kMethod
	kPath  // $request_uri
	kURI   // $uri: the path when the format has no $request/$request_uri
	kProto // $server_protocol
	kStatus
	kBytes
	kRequestTime
	kUpstreamTime
	kUpstreamStatus
	kReferer
	kUserAgent
	kHost
	kKey
	kPool
)

// nginxField is one variable of a compiled log_format and the literal text
// that follows it, which is where its value ends.
type nginxField struct {
	name   string
	kind   fieldKind
	until  string // literal after the variable; "" when it ends the line
	quoted bool   // between double quotes: a backslash escapes the next byte
	list   bool   // $upstream_*: "a, b : c" values contain spaces
	errEnd error  // prebuilt so a malformed line does not allocate
	errVal error
}

// NginxFormat is an nginx log_format compiled into a parser: the format text
// is split once into literals and variables, and each line is then read left
// to right, each variable ending where the literal that follows it begins.
type NginxFormat struct {
	Text string
	// Strict rejects lines with text after the format's last literal.
	// Explicit formats tolerate it (many "combined" logs have fields
	// appended); sniffing is strict so that a headroom or ingress line,
	// which starts like a combined line, is not taken for one.
	Strict bool
	// lastQuoteLenient: the format ends with a quoted variable; a line
	// cut short inside it (seen in real logs: a user agent without its
	// closing quote) keeps the rest of the line as the value.
	lastQuoteLenient bool
	prefix           string
	fields           []nginxField
	nExtra           int
}

// CompileNginx compiles the text of an nginx log_format (the part between
// quotes in nginx.conf, e.g. CombinedFormat), or a whole
// `log_format name '...' '...';` directive as written in nginx.conf.
func CompileNginx(text string) (*NginxFormat, error) {
	if t, ok, err := unwrapLogFormatDirective(text); err != nil {
		return nil, err
	} else if ok {
		text = t
	}
	f := &NginxFormat{Text: text}
	type tok struct {
		lit  string
		name string
	}
	var toks []tok
	i := 0
	lit := strings.Builder{}
	for i < len(text) {
		c := text[i]
		if c != '$' {
			lit.WriteByte(c)
			i++
			continue
		}
		var name string
		if i+1 < len(text) && text[i+1] == '{' {
			end := strings.IndexByte(text[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("log_format %q: unterminated ${ at offset %d", text, i)
			}
			name = text[i+2 : i+end]
			i += end + 1
		} else {
			j := i + 1
			for j < len(text) && (text[j] == '_' || text[j] >= 'a' && text[j] <= 'z' || text[j] >= 'A' && text[j] <= 'Z' || text[j] >= '0' && text[j] <= '9') {
				j++
			}
			name = text[i+1 : j]
			i = j
		}
		if name == "" {
			lit.WriteByte('$')
			continue
		}
		toks = append(toks, tok{lit: lit.String(), name: strings.ToLower(name)})
		lit.Reset()
	}
	trailing := lit.String()
	if len(toks) == 0 {
		return nil, fmt.Errorf("log_format %q has no $variables: give an nginx log_format such as %q", text, CombinedFormat)
	}
	f.prefix = toks[0].lit
	f.lastQuoteLenient = trailing == `"`
	has := map[string]bool{}
	for _, t := range toks {
		has[t.name] = true
	}
	for k, t := range toks {
		until := trailing
		if k+1 < len(toks) {
			until = toks[k+1].lit
			if until == "" {
				return nil, fmt.Errorf("log_format %q: $%s and $%s are not separated by any text, so a line cannot be split between them", text, t.name, toks[k+1].name)
			}
		}
		fd := nginxField{
			name:  t.name,
			kind:  kindOf(t.name, has),
			until: until,
			list:  strings.HasPrefix(t.name, "upstream_"),
		}
		fd.quoted = strings.HasSuffix(t.lit, `"`) && strings.HasPrefix(until, `"`)
		if until == "" {
			fd.errEnd = fmt.Errorf("line ends before $%s", t.name)
		} else {
			fd.errEnd = fmt.Errorf("no %q after $%s", until, t.name)
		}
		fd.errVal = fmt.Errorf("bad value for $%s", t.name)
		if fd.kind == kExtra {
			f.nExtra++
		}
		f.fields = append(f.fields, fd)
	}
	return f, nil
}

// unwrapLogFormatDirective turns `log_format main escape=json '...' '...';`
// into the concatenated format text. ok is false when text is not a
// directive.
func unwrapLogFormatDirective(text string) (string, bool, error) {
	t := strings.TrimSpace(text)
	if !strings.HasPrefix(t, "log_format") || len(t) < 11 || (t[10] != ' ' && t[10] != '\t' && t[10] != '\n') {
		return "", false, nil
	}
	t = strings.TrimSpace(t[len("log_format"):])
	t = strings.TrimSuffix(strings.TrimSpace(t), ";")
	var out strings.Builder
	parts := 0
	for len(t) > 0 {
		t = strings.TrimLeft(t, " \t\r\n")
		if t == "" {
			break
		}
		switch q := t[0]; q {
		case '\'', '"':
			end := 1
			for end < len(t) && t[end] != q {
				if t[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(t) {
				return "", false, fmt.Errorf("log_format directive: unterminated %c string", q)
			}
			out.WriteString(strings.ReplaceAll(t[1:end], `\`+string(q), string(q)))
			t = t[end+1:]
			parts++
		default: // the format's name or escape=…
			sp := strings.IndexAny(t, " \t\r\n")
			if sp < 0 {
				sp = len(t)
			}
			if parts > 0 {
				return "", false, fmt.Errorf("log_format directive: unexpected %q after the format strings", t[:sp])
			}
			t = t[sp:]
		}
	}
	if parts == 0 {
		return "", false, fmt.Errorf("log_format directive has no quoted format string")
	}
	return out.String(), true, nil
}

func kindOf(name string, has map[string]bool) fieldKind {
	switch name {
	case "remote_addr":
		return kClient
	case "time_local":
		return kTimeLocal
	case "time_iso8601":
		return kTimeISO
	case "msec":
		if has["time_local"] || has["time_iso8601"] {
			return kExtra
		}
		return kMsec
	case "request":
		return kRequest
	case "request_method":
		if has["request"] {
			return kExtra
		}
		return kMethod
	case "request_uri":
		if has["request"] {
			return kExtra
		}
		return kPath
	case "uri":
		if has["request"] || has["request_uri"] {
			return kExtra
		}
		return kURI
	case "server_protocol":
		if has["request"] {
			return kExtra
		}
		return kProto
	case "status":
		return kStatus
	case "body_bytes_sent":
		return kBytes
	case "bytes_sent":
		if has["body_bytes_sent"] {
			return kExtra
		}
		return kBytes
	case "request_time":
		return kRequestTime
	case "upstream_response_time":
		return kUpstreamTime
	case "upstream_status":
		return kUpstreamStatus
	case "http_referer":
		return kReferer
	case "http_user_agent":
		return kUserAgent
	case "host":
		return kHost
	case "http_host":
		if has["host"] {
			return kExtra
		}
		return kHost
	case "server_name":
		if has["host"] || has["http_host"] {
			return kExtra
		}
		return kHost
	case "headroom_key":
		return kKey
	case "headroom_pool":
		return kPool
	case "proxy_upstream_name":
		// ingress-nginx names the backend service a request went to: the
		// closest thing such a log has to headroom's pools.
		if has["headroom_pool"] {
			return kExtra
		}
		return kPool
	}
	return kExtra
}

// NewParser returns a parser for this format (one per goroutine).
func (f *NginxFormat) NewParser() Parser {
	return &nginxParser{f: f, extra: make([]Field, 0, f.nExtra)}
}

type nginxParser struct {
	f     *NginxFormat
	tc    timeCache
	extra []Field
}

func (p *nginxParser) Parse(line []byte, r *Record) error {
	*r = Record{Extra: p.extra[:0]}
	if len(line) == 0 {
		return errEmpty
	}
	f := p.f
	if !bytes.HasPrefix(line, []byte(f.prefix)) {
		return errPrefix(f.prefix)
	}
	pos := len(f.prefix)
	for k := range f.fields {
		fd := &f.fields[k]
		var end int
		switch {
		case fd.until == "":
			end = len(line)
		case fd.quoted && k == len(f.fields)-1 && fd.until == `"` && line[len(line)-1] == '"' && len(line)-1 >= pos:
			// The last quoted field of a line that ends with the quote
			// (combined's user agent): the value runs to that quote, bare
			// quotes inside included.
			end = len(line) - 1
		case fd.quoted:
			end = -1
			for i := pos; ; {
				q := scanQuoted(line, i)
				if q < 0 {
					break
				}
				if bytes.HasPrefix(line[q:], []byte(fd.until)) {
					end = q
					break
				}
				i = q + 1 // a bare quote inside the value
			}
		default:
			end = findUntil(line, pos, fd.until, fd.list)
		}
		if end < 0 {
			if k == len(f.fields)-1 && f.lastQuoteLenient && fd.quoted {
				end = len(line)
			} else {
				return fd.errEnd
			}
		}
		if err := p.assign(fd, s2(line[pos:end]), r); err != nil {
			return err
		}
		pos = min(end+len(fd.until), len(line))
	}
	if f.Strict && pos < len(line) {
		return errTrailing
	}
	return nil
}

// findUntil returns where until starts at or after pos. For list values
// ("172.17.0.6:8080, 172.17.0.7:8080" or "0.1 : 0.2") a space that belongs
// to a ", " or " : " separator does not end the value.
func findUntil(line []byte, pos int, until string, list bool) int {
	c0 := until[0]
	for i := pos; i < len(line); i++ {
		j := bytes.IndexByte(line[i:], c0)
		if j < 0 {
			return -1
		}
		i += j
		if len(line)-i < len(until) || s2(line[i:i+len(until)]) != until {
			continue
		}
		if list && c0 == ' ' && i > pos {
			if line[i-1] == ',' || (line[i-1] == ':' && i >= 2 && line[i-2] == ' ') {
				continue
			}
			if i+2 < len(line) && line[i+1] == ':' && line[i+2] == ' ' {
				continue
			}
		}
		return i
	}
	return -1
}

func (p *nginxParser) assign(fd *nginxField, v string, r *Record) error {
	switch fd.kind {
	case kExtra:
		r.Extra = append(r.Extra, Field{Name: fd.name, Value: v})
	case kClient:
		r.Client = v
	case kTimeLocal:
		t, ok := p.tc.parseTimeLocal(v)
		if !ok {
			return errTime
		}
		r.Time = t
	case kTimeISO:
		t, ok := p.tc.parseISO8601(v)
		if !ok {
			return errTime
		}
		r.Time = t
	case kMsec:
		t, ok := parseEpoch(v)
		if !ok {
			return errTime
		}
		r.Time = t
	case kRequest:
		splitRequest(v, r)
	case kMethod:
		r.Method = dashEmpty(v)
	case kPath, kURI:
		r.Path = v
	case kProto:
		r.Proto = dashEmpty(v)
	case kStatus:
		n, ok := atoi(v)
		if !ok || n > 999 {
			return errStatus
		}
		r.Status = int(n)
	case kBytes:
		n, ok := atoiDash(v)
		if !ok {
			return fd.errVal
		}
		r.BytesSent = n
	case kRequestTime:
		d, _, ok := parseSeconds(v)
		if !ok {
			return fd.errVal
		}
		r.RequestTime = d
	case kUpstreamTime:
		d, present, ok := sumSecondsList(v)
		if !ok {
			return fd.errVal
		}
		r.UpstreamTime, r.HasUpstreamTime = d, present
	case kUpstreamStatus:
		st, ok := lastStatusInList(v)
		if !ok {
			return fd.errVal
		}
		r.UpstreamStatus = st
	case kReferer:
		r.Referer = dashEmpty(v)
	case kUserAgent:
		r.UserAgent = dashEmpty(v)
	case kHost:
		r.Host = dashEmpty(v)
	case kKey:
		r.Key = dashEmpty(v)
	case kPool:
		r.Pool = dashEmpty(v)
	}
	return nil
}

// errPrefix is rare enough (the format starts with a literal, and the line
// does not) that building the error is fine.
func errPrefix(prefix string) error {
	return fmt.Errorf("line does not start with %q", prefix)
}
