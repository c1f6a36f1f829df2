// Package httpwire reads and writes HTTP/1.1 messages on the wire, strictly
// per RFC 9112, for headroom's own data paths: the proxy's fast front-end
// (internal/fastproxy) and the load generator's client (internal/loadgen/h1).
//
// A head is parsed once into a reused structure whose fields are slices of
// the head's own bytes: no header map, no string per field. Parsing is
// strict where leniency has let a front-end and a back-end frame the same
// bytes differently (request smuggling): a message with both
// Content-Length and Transfer-Encoding, a repeated or malformed
// Content-Length, a Transfer-Encoding that is not exactly chunked, obs-fold,
// a bare CR or LF, whitespace before a field's colon, a control byte in a
// field, or a head over the configured size is an error, never a guess.
// Where RFC 9112 lets a recipient be lenient (a bare LF as a line end, §2.2;
// several identical Content-Length values, §6.3), this package is not: a
// proxy that accepts what some upstream would frame differently is how
// smuggling happens.
package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Error is a malformed or unacceptable message. Status is the response a
// server should give for a malformed request (400, 431, 501, 505); for a
// response it is informational (the proxy answers 502).
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("httpwire: %s (%d)", e.Reason, e.Status) }

// ErrMalformed matches every *Error with errors.Is.
var ErrMalformed = errors.New("httpwire: malformed message")

// Is lets errors.Is(err, ErrMalformed) match any *Error.
func (e *Error) Is(target error) bool { return target == ErrMalformed }

func bad(reason string) error         { return &Error{Status: 400, Reason: reason} }
func tooLarge(reason string) error    { return &Error{Status: 431, Reason: reason} }
func unsupported(reason string) error { return &Error{Status: 501, Reason: reason} }

// Field is one header field: name as received (case kept), value with
// leading and trailing whitespace removed. Both alias the head's bytes.
type Field struct {
	Name, Value []byte
}

// DefaultMaxHeadBytes bounds a head (start line and fields) when a caller
// gives no limit: nginx's default large_client_header_buffers allow 4 x 8
// KiB; a head past this is refused with 431 rather than buffered.
const DefaultMaxHeadBytes = 32 << 10

// MaxFields bounds the number of fields in one head.
const MaxFields = 200

// ReadHead returns the next head in br (start line through the empty line
// that ends it, CRLFs included) without consuming it: the slice aliases
// br's buffer and stays valid until the next read from br. The caller
// calls br.Discard(len(head)) once done with it. max bounds the head; it
// is capped at br.Size(). Empty lines before the start line (RFC 9112
// §2.2) are consumed. A stream that ends before any byte of a head
// returns io.EOF; one that ends inside a head, io.ErrUnexpectedEOF.
func ReadHead(br *bufio.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxHeadBytes
	}
	if max > br.Size() {
		max = br.Size()
	}
	// Skip empty lines before the start line: a client may send a CRLF
	// after a POST body.
	for {
		b, err := br.Peek(2)
		if len(b) >= 1 && b[0] != '\r' {
			break
		}
		if len(b) == 2 && b[1] == '\n' {
			br.Discard(2)
			continue
		}
		if len(b) == 2 {
			return nil, bad("bare CR")
		}
		if err != nil {
			if len(b) == 0 {
				return nil, err
			}
			return nil, unexpected(err)
		}
	}
	scanned := 0
	for {
		b, _ := br.Peek(br.Buffered())
		from := max0(scanned - 3)
		if i := bytes.Index(b[from:], crlfcrlf); i >= 0 {
			end := from + i + 4
			if end > max {
				return nil, tooLarge("head longer than the limit")
			}
			return b[:end], nil
		}
		if len(b) >= max {
			return nil, tooLarge("head longer than the limit")
		}
		// A bare LF can never end the head (CRLF CRLF): refuse it now
		// rather than wait for more bytes or the limit.
		for i := from; i < len(b); {
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				break
			}
			if i+j == 0 || b[i+j-1] != '\r' {
				return nil, bad("bare LF")
			}
			i += j + 1
		}
		scanned = len(b)
		// Wait for at least one more byte.
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, unexpected(err)
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

var crlfcrlf = []byte("\r\n\r\n")

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}

// tchar per RFC 9110 §5.6.2; vchar: visible ASCII and obs-text, the bytes
// a field value may hold besides SP and HTAB.
var tchar, fieldByte [256]bool

func init() {
	for c := '0'; c <= '9'; c++ {
		tchar[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		tchar[c] = true
		tchar[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tchar[c] = true
	}
	for c := 0x21; c <= 0xff; c++ {
		fieldByte[c] = c != 0x7f
	}
	fieldByte[' '], fieldByte['\t'] = true, true
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// fields holds what every head (request or response) shares.
type fields struct {
	Fields []Field
	// ContentLength is the body's length, -1 when the head has none.
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked.
	Chunked bool
	// KeepAlive reports whether the connection may carry another message
	// after this one (HTTP/1.1 unless Connection: close; HTTP/1.0 only
	// with Connection: keep-alive).
	KeepAlive bool
	// ConnectionUpgrade reports "upgrade" among the Connection options.
	ConnectionUpgrade bool
	// connOpts are the other Connection options: names of fields that
	// are hop-by-hop for this message (RFC 9110 §7.6.1).
	connOpts [][]byte
}

func (f *fields) reset() {
	f.Fields = f.Fields[:0]
	f.ContentLength = -1
	f.Chunked = false
	f.KeepAlive = false
	f.ConnectionUpgrade = false
	f.connOpts = f.connOpts[:0]
}

// parseFields parses the field lines of head (after the start line, up to
// and including the final empty line) into f. http10 is the message's
// version. It checks each line's syntax and the framing fields' meaning.
func (f *fields) parseFields(b []byte, http10 bool) error {
	sawCL, sawTE := false, false
	keepAliveOpt, closeOpt := false, false
	for {
		eol := bytes.IndexByte(b, '\n')
		if eol < 0 {
			return bad("head not terminated")
		}
		if eol == 0 || b[eol-1] != '\r' {
			return bad("bare LF in a field line")
		}
		line := b[:eol-1]
		b = b[eol+1:]
		if len(line) == 0 {
			if len(b) != 0 {
				return bad("bytes after the head's end")
			}
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad("obs-fold (a field line starting with whitespace)")
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return bad("field line without a colon")
		}
		name := line[:colon]
		if !isToken(name) {
			// Covers whitespace before the colon (RFC 9112 §5.1: MUST
			// reject), control bytes, and an empty name.
			return bad("invalid field name")
		}
		v := line[colon+1:]
		for _, c := range v {
			if !fieldByte[c] {
				return bad("invalid byte in a field value (control byte or bare CR)")
			}
		}
		v = trimOWS(v)
		if len(f.Fields) >= MaxFields {
			return tooLarge("too many header fields")
		}
		f.Fields = append(f.Fields, Field{Name: name, Value: v})
		switch {
		case equalFold(name, "content-length"):
			if sawCL {
				return bad("repeated Content-Length")
			}
			sawCL = true
			n, ok := parseLength(v)
			if !ok {
				return bad("invalid Content-Length")
			}
			f.ContentLength = n
		case equalFold(name, "transfer-encoding"):
			if sawTE {
				return bad("repeated Transfer-Encoding")
			}
			sawTE = true
			if !equalFold(v, "chunked") {
				if hasFinalChunked(v) {
					return unsupported("a transfer coding other than chunked")
				}
				return bad("Transfer-Encoding without a final chunked")
			}
			f.Chunked = true
		case equalFold(name, "connection"):
			err := eachToken(v, func(t []byte) error {
				switch {
				case equalFold(t, "close"):
					closeOpt = true
				case equalFold(t, "keep-alive"):
					keepAliveOpt = true
				case equalFold(t, "upgrade"):
					f.ConnectionUpgrade = true
				default:
					f.connOpts = append(f.connOpts, t)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	if sawCL && sawTE {
		return bad("both Content-Length and Transfer-Encoding")
	}
	if sawTE && http10 {
		// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has
		// faulty framing.
		return bad("Transfer-Encoding in an HTTP/1.0 message")
	}
	f.KeepAlive = !closeOpt && (!http10 || keepAliveOpt)
	return nil
}

// Get returns the value of the first field named name (ASCII
// case-insensitive), or nil.
func (f *fields) Get(name string) []byte {
	for i := range f.Fields {
		if equalFold(f.Fields[i].Name, name) {
			return f.Fields[i].Value
		}
	}
	return nil
}

// Has reports whether a field named name is present.
func (f *fields) Has(name string) bool {
	for i := range f.Fields {
		if equalFold(f.Fields[i].Name, name) {
			return true
		}
	}
	return false
}

// IsHopByHop reports whether the field named name applies to this
// connection only and must not be forwarded: the fixed hop-by-hop fields
// of RFC 9110 §7.6.1 (and the framing fields, which the forwarder writes
// itself), plus the fields this message's Connection option names.
func (f *fields) IsHopByHop(name []byte) bool {
	if hopByHop(name) {
		return true
	}
	for _, o := range f.connOpts {
		if equalFoldASCII(name, o) {
			return true
		}
	}
	return false
}

var hopByHopNames = []string{
	"connection", "proxy-connection", "keep-alive", "te", "trailer",
	"transfer-encoding", "upgrade", "content-length", "proxy-authenticate", "proxy-authorization",
}

func hopByHop(name []byte) bool {
	if len(name) < 2 || len(name) > len("proxy-authorization") {
		return false
	}
	for _, h := range hopByHopNames {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// parseLength parses 1*DIGIT, refusing a sign, whitespace, a comma list
// and overflow.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func hasFinalChunked(v []byte) bool {
	i := bytes.LastIndexByte(v, ',')
	return i >= 0 && equalFold(trimOWS(v[i+1:]), "chunked")
}

// eachToken calls fn with each element of a comma-separated list of
// tokens (RFC 9110 §5.6.1), skipping empty elements; a non-token element
// is an error.
func eachToken(v []byte, fn func([]byte) error) error {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		part = trimOWS(part)
		if len(part) == 0 {
			continue
		}
		if !isToken(part) {
			return bad("invalid token in a list")
		}
		if err := fn(part); err != nil {
			return err
		}
	}
	return nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares ASCII case-insensitively; s must be lower case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// equalFoldASCII compares a and b with ASCII case ignored on both sides.
func equalFoldASCII[A, B string | []byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lower-case ASCII s, ignoring case.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// EqualFoldName reports whether the field name b equals name, ASCII case
// ignored on both sides: for names that come from callers in any case
// (admit.Header's Get("X-Api-Key")), where EqualFold wants lower case.
func EqualFoldName(b []byte, name string) bool { return equalFoldASCII(b, name) }
