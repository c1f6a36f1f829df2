package httpwire

import (
	"bufio"
	"bytes"
)

// Response is a parsed response head. Its slices alias the bytes it was
// parsed from (Raw): reuse one Response per connection.
type Response struct {
	fields
	// Minor is the protocol's minor version: 1 for HTTP/1.1, 0 for 1.0.
	Minor  int
	Status int
	Reason []byte

	// Raw holds the head's bytes (a copy owned by the Response when read
	// with ReadResponse).
	Raw []byte
}

// ReadResponse reads the next response head from br into r, copying the
// head into r.Raw. max bounds the head (capped at br.Size()).
func ReadResponse(br *bufio.Reader, r *Response, max int) error {
	head, err := ReadHead(br, max)
	if err != nil {
		return err
	}
	r.Raw = append(r.Raw[:0], head...)
	br.Discard(len(head))
	return r.Parse(r.Raw)
}

// BodyKind says how a response's body is framed (RFC 9112 §6.3).
type BodyKind int

const (
	// NoBody: HEAD, 1xx, 204, 304.
	NoBody BodyKind = iota
	// LengthBody: exactly ContentLength bytes.
	LengthBody
	// ChunkedBody: the chunked coding.
	ChunkedBody
	// CloseBody: everything until the server closes the connection.
	CloseBody
)

// Body says how the body of this response to a request with method
// (HEAD or not) is framed.
func (r *Response) Body(head bool) BodyKind {
	switch {
	case head, r.Status < 200, r.Status == 204, r.Status == 304:
		return NoBody
	case r.Chunked:
		return ChunkedBody
	case r.ContentLength >= 0:
		return LengthBody
	}
	return CloseBody
}

// Parse parses head (a complete response head, ending in CRLF CRLF) into
// r. r's slices alias head.
func (r *Response) Parse(head []byte) error {
	r.reset()
	r.Minor, r.Status, r.Reason = 0, 0, nil
	eol := bytes.IndexByte(head, '\n')
	if eol < 0 {
		return bad("status line not terminated")
	}
	if eol == 0 || head[eol-1] != '\r' {
		return bad("bare LF after the status line")
	}
	line := head[:eol-1]
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]; a
	// missing SP after the code is tolerated (RFC 9112 §4: recipients
	// SHOULD accept it), it does not change framing.
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return bad("malformed status line")
	}
	r.Minor = int(line[7] - '0')
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return bad("malformed status code")
		}
		status = status*10 + int(c-'0')
	}
	r.Status = status
	if r.Status < 100 {
		return bad("status code below 100")
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return bad("malformed status line")
		}
		r.Reason = line[13:]
		for _, c := range r.Reason {
			if !fieldByte[c] {
				return bad("invalid byte in the reason phrase")
			}
		}
	}
	if err := r.parseFields(head[eol+1:], r.Minor == 0); err != nil {
		return err
	}
	if (r.Status < 200 || r.Status == 204) && (r.Chunked || r.ContentLength > 0) {
		// RFC 9110 §8.6: MUST NOT send a length with a 1xx or 204; a body
		// claimed there would be framed differently by different peers.
		return bad("framing fields on a response that has no body")
	}
	return nil
}
