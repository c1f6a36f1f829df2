package httpwire

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// maxChunkLine bounds a chunk-size line (size and extensions), and
// maxTrailer the trailer section of a chunked body.
const (
	maxChunkLine = 4096
	maxTrailer   = 16 << 10
)

// ChunkedReader decodes a chunked body (RFC 9112 §7.1) from a
// bufio.Reader, strictly: a chunk size is 1 to 16 hex digits, extensions
// are ;name or ;name=token or ;name="quoted" with no whitespace, every
// line ends in CRLF, and trailer fields are checked as header fields are,
// then dropped (§7.1.2 lets a recipient that removes the coding discard
// them). Reset makes it read a new body; the zero value is not usable.
type ChunkedReader struct {
	br      *bufio.Reader
	left    int64 // bytes left in the current chunk
	done    bool
	err     error
	trailer fields
	scratch []byte // parseTrailerLine's copy of a trailer line
}

// NewChunkedReader returns a reader of the chunked body at br.
func NewChunkedReader(br *bufio.Reader) *ChunkedReader {
	c := &ChunkedReader{}
	c.Reset(br)
	return c
}

// Reset starts decoding a new body from br.
func (c *ChunkedReader) Reset(br *bufio.Reader) {
	c.br, c.left, c.done, c.err = br, 0, false, nil
}

// Read returns decoded body bytes; io.EOF after the last chunk and its
// trailer section were read.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		if err := c.nextChunk(); err != nil {
			c.err = err
			return 0, err
		}
		if c.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if err != nil {
		c.err = unexpected(err)
		return n, c.err
	}
	if c.left == 0 {
		if err := c.crlf(); err != nil {
			c.err = err
			return n, err
		}
	}
	return n, nil
}

func (c *ChunkedReader) crlf() error {
	b, err := c.br.Peek(2)
	if err != nil {
		return unexpected(err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return bad("chunk data not followed by CRLF")
	}
	c.br.Discard(2)
	return nil
}

func (c *ChunkedReader) nextChunk() error {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxChunkLine {
		return bad("chunk line too long")
	}
	if err != nil {
		return unexpected(err)
	}
	n, err := chunkSizeLine(line)
	if err != nil {
		return err
	}
	if n > 0 {
		c.left = n
		return nil
	}
	// The last chunk: trailer fields, then the empty line.
	total := 0
	for {
		t, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return bad("trailer line too long")
		}
		if err != nil {
			return unexpected(err)
		}
		var end bool
		if total, end, err = c.trailer.trailerLine(t, total, &c.scratch); err != nil || end {
			c.done = end
			return err
		}
	}
}

// chunkSizeLine checks a chunk-size line (LF included) and returns the
// chunk's size.
func chunkSizeLine(line []byte) (int64, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, bad("bare LF in a chunked body")
	}
	line = line[:len(line)-2]
	size, ext := line, []byte(nil)
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		size, ext = line[:i], line[i:]
	}
	n, ok := parseChunkSize(size)
	if !ok {
		return 0, bad("invalid chunk size")
	}
	if !validChunkExt(ext) {
		return 0, bad("invalid chunk extension")
	}
	return n, nil
}

// trailerLine checks the line t (LF included) of a trailer section after
// total bytes of it; it returns the section's new length and whether t
// is the empty line that ends it.
func (f *fields) trailerLine(t []byte, total int, scratch *[]byte) (int, bool, error) {
	total += len(t)
	if total > maxTrailer {
		return total, false, bad("trailer section too long")
	}
	if len(t) < 2 || t[len(t)-2] != '\r' {
		return total, false, bad("bare LF in the trailer section")
	}
	if len(t) == 2 {
		return total, true, nil
	}
	// One line at a time, through the field checks.
	return total, false, f.parseTrailerLine(t, scratch)
}

// parseTrailerLine checks one trailer field line (with its CRLF) as
// parseFields checks a head's field lines, and refuses a framing field.
// It copies the line and a final CRLF into *scratch (grown once, kept for
// the next line) for parseFields, which wants the head's end; f's fields
// then alias *scratch.
func (f *fields) parseTrailerLine(line []byte, scratch *[]byte) error {
	f.reset()
	buf := append(append((*scratch)[:0], line...), '\r', '\n')
	*scratch = buf
	if err := f.parseFields(buf, false); err != nil {
		return err
	}
	if f.ContentLength >= 0 || f.Chunked {
		return bad("framing field in a trailer")
	}
	return nil
}

func parseChunkSize(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		// 15 hex digits stay below 2^63.
		return 0, false
	}
	var n int64
	for _, ch := range b {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}

// validChunkExt accepts *( ";" token [ "=" ( token / quoted-string ) ] )
// without whitespace.
func validChunkExt(b []byte) bool {
	for len(b) > 0 {
		if b[0] != ';' {
			return false
		}
		b = b[1:]
		i := 0
		for i < len(b) && tchar[b[i]] {
			i++
		}
		if i == 0 {
			return false
		}
		b = b[i:]
		if len(b) == 0 || b[0] == ';' {
			continue
		}
		if b[0] != '=' {
			return false
		}
		b = b[1:]
		if len(b) > 0 && b[0] == '"' {
			j, ok := quotedEnd(b)
			if !ok {
				return false
			}
			b = b[j:]
			continue
		}
		i = 0
		for i < len(b) && tchar[b[i]] {
			i++
		}
		if i == 0 {
			return false
		}
		b = b[i:]
	}
	return true
}

// quotedEnd returns the length of the quoted-string at the start of b.
func quotedEnd(b []byte) (int, bool) {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i >= len(b) || !fieldByte[b[i]] {
				return 0, false
			}
		case !fieldByte[c]:
			return 0, false
		}
	}
	return 0, false
}

// AppendChunkHeader appends the size line of an n-byte chunk.
func AppendChunkHeader(b []byte, n int) []byte {
	b = strconv.AppendUint(b, uint64(n), 16)
	return append(b, '\r', '\n')
}

var crlf = []byte("\r\n")

// LastChunk ends a chunked body with an empty trailer section.
var LastChunk = []byte("0\r\n\r\n")

// ChunkedWriter encodes a chunked body onto w: each Write is one chunk;
// Close writes the last chunk (it does not close w).
type ChunkedWriter struct {
	W   io.Writer
	buf [20]byte
}

func (c *ChunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // an empty chunk would end the body
	}
	if _, err := c.W.Write(AppendChunkHeader(c.buf[:0], len(p))); err != nil {
		return 0, err
	}
	n, err := c.W.Write(p)
	if err != nil {
		return n, err
	}
	if _, err = c.W.Write(crlf); err != nil {
		return n, err
	}
	return n, nil
}

// Close writes the last chunk.
func (c *ChunkedWriter) Close() error {
	_, err := c.W.Write(LastChunk)
	return err
}

// LengthReader reads exactly N bytes of a body from R; a stream that ends
// earlier is io.ErrUnexpectedEOF.
type LengthReader struct {
	R *bufio.Reader
	N int64
}

func (l *LengthReader) Read(p []byte) (int, error) {
	if l.N <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.N {
		p = p[:l.N]
	}
	n, err := l.R.Read(p)
	l.N -= int64(n)
	if err != nil {
		if err == io.EOF && l.N > 0 {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	return n, nil
}
