package httpwire

import (
	"bufio"
	"bytes"
)

// Request is a parsed request head. Its slices alias the bytes it was
// parsed from (Raw): reuse one Request per connection.
type Request struct {
	fields
	Method []byte
	// Target is the request-target as sent (origin-form "/path?q",
	// asterisk-form "*", absolute-form or authority-form).
	Target []byte
	// Minor is the protocol's minor version: 1 for HTTP/1.1, 0 for 1.0.
	Minor int
	// Host is the Host field's value (nil when absent, which only an
	// HTTP/1.0 request may be).
	Host []byte
	// Expect is the Expect field's value, nil when absent.
	Expect []byte
	// Upgrade reports an Upgrade field (a protocol switch is asked for).
	Upgrade bool

	// Raw holds the head's bytes (a copy owned by the Request when read
	// with ReadRequest).
	Raw []byte
}

// OriginForm reports a request-target in origin form ("/..."), the only
// form a reverse proxy forwards as it is.
func (r *Request) OriginForm() bool { return len(r.Target) > 0 && r.Target[0] == '/' }

// Path is the target's path (before any '?').
func (r *Request) Path() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[:i]
	}
	return r.Target
}

// Query is the target's query (after the '?'), nil when there is none.
func (r *Request) Query() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[i+1:]
	}
	return nil
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// ReadRequest reads the next request head from br into r, copying the
// head into r.Raw so that r stays valid while the body is read. max bounds
// the head (431 past it; capped at br.Size()). It returns io.EOF when the
// connection ended cleanly between requests.
func ReadRequest(br *bufio.Reader, r *Request, max int) error {
	head, err := ReadHead(br, max)
	if err != nil {
		return err
	}
	r.Raw = append(r.Raw[:0], head...)
	br.Discard(len(head))
	return r.Parse(r.Raw)
}

// Parse parses head (a complete request head, ending in CRLF CRLF, as
// ReadHead returns it) into r. r's slices alias head.
func (r *Request) Parse(head []byte) error {
	r.reset()
	r.Method, r.Target, r.Host, r.Expect, r.Upgrade, r.Minor = nil, nil, nil, nil, false, 0
	eol := bytes.IndexByte(head, '\n')
	if eol < 0 {
		return bad("request line not terminated")
	}
	if eol == 0 || head[eol-1] != '\r' {
		return bad("bare LF after the request line")
	}
	line := head[:eol-1]
	// request-line = method SP request-target SP HTTP-version, single
	// spaces (RFC 9112 §3: other whitespace as separator is not accepted
	// here).
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return bad("malformed request line")
	}
	r.Method = line[:sp1]
	if !isToken(r.Method) {
		return bad("invalid method")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return bad("malformed request line")
	}
	r.Target = rest[:sp2]
	for _, c := range r.Target {
		// Visible ASCII and obs-text: no control byte, no whitespace.
		if c <= ' ' || c == 0x7f {
			return bad("invalid byte in the request target")
		}
	}
	version := rest[sp2+1:]
	switch {
	case string(version) == "HTTP/1.1":
		r.Minor = 1
	case string(version) == "HTTP/1.0":
		r.Minor = 0
	case len(version) == 8 && string(version[:5]) == "HTTP/" && version[6] == '.' &&
		version[5] >= '2' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9':
		return &Error{Status: 505, Reason: "HTTP version not supported"}
	default:
		return bad("malformed HTTP version")
	}
	if err := r.parseFields(head[eol+1:], r.Minor == 0); err != nil {
		return err
	}
	sawHost := false
	for i := range r.Fields {
		f := &r.Fields[i]
		switch {
		case equalFold(f.Name, "host"):
			if sawHost {
				return bad("repeated Host")
			}
			sawHost = true
			if !validHost(f.Value) {
				return bad("invalid Host")
			}
			r.Host = f.Value
		case equalFold(f.Name, "expect"):
			r.Expect = f.Value
		case equalFold(f.Name, "upgrade"):
			r.Upgrade = true
		}
	}
	if !sawHost && r.Minor == 1 {
		// RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request
		// without Host.
		return bad("HTTP/1.1 request without Host")
	}
	if r.Host == nil {
		r.Host = []byte{}
	}
	return nil
}

// validHost accepts uri-host [ ":" port ] loosely: the bytes of a reg-name,
// an IPv4 address or an IP literal in brackets, and a port. What matters
// for framing is that it holds no whitespace, '/', '@' or control byte.
func validHost(v []byte) bool {
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == '~', c == ':', c == '[', c == ']', c == '%', c == '!',
			c == '$', c == '&', c == '\'', c == '(', c == ')', c == '*', c == '+', c == ',', c == ';', c == '=':
		default:
			return false
		}
	}
	return true
}
