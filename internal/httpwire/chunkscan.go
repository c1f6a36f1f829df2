package httpwire

import "bytes"

// ChunkScanner decodes a chunked body incrementally from bytes as they
// arrive, with exactly ChunkedReader's rules, copying nothing: for a
// reader that fills buffers of its own (an event loop) rather than
// reading through a bufio.Reader. "Exactly" is ChunkedReader over a
// bufio.Reader of the default 4096 bytes: a size line or a trailer line
// (CRLF included) is at most 4096 bytes, the trailer section at most
// 16 KiB. (Over a larger buffer ChunkedReader also takes a trailer line
// up to the section's limit; the scanner never accepts more than it.)
//
// The zero value is ready to decode a body; Reset makes it decode the
// next one. It needs at most 4096 unconsumed bytes to make progress.
type ChunkScanner struct {
	state   uint8
	left    int64 // bytes left in the current chunk (scanData)
	total   int   // bytes of the trailer section so far (scanTrailer)
	err     error
	trailer fields
	scratch []byte // parseTrailerLine's copy of a trailer line
}

// The scanner's states: what the front of the next bytes must be.
const (
	scanSize    = iota // a chunk-size line
	scanData           // chunk data, left bytes of it
	scanCRLF           // the CRLF after a chunk's data
	scanTrailer        // a trailer field line or the empty line that ends the body
	scanDone
)

// Reset starts decoding a new body.
func (s *ChunkScanner) Reset() {
	s.state, s.left, s.total, s.err = scanSize, 0, 0, nil
}

// Next decodes from the front of p. consumed is how many bytes of p it used;
// payload is the chunk data among them (a subslice of p, possibly empty; at
// most one span per call); done reports that the last chunk and the trailer
// section ended (consumed then stops just past the body, so what follows is
// the next response). consumed == 0 with no payload, no done and no error
// means p holds only part of a size line, CRLF or trailer line: call again
// with more bytes (the scanner keeps no copy; the caller keeps the
// unconsumed bytes). A line longer than ChunkedReader allows is an error at
// once, not a wait.
//
// An error is the *Error ChunkedReader gives for the same bytes; it comes
// with consumed == 0 and no payload (bytes decoded before it in the same
// call are returned first, without it, and the next call reports it), and
// every later call returns it again. A stream that ends while Next waits
// for more is ChunkedReader's io.ErrUnexpectedEOF: the caller's to report.
// After done, Next returns 0, nil, true, nil until Reset.
func (s *ChunkScanner) Next(p []byte) (consumed int, payload []byte, done bool, err error) {
	if s.err != nil {
		return 0, nil, false, s.err
	}
	for {
		rest := p[consumed:]
		switch s.state {
		case scanDone:
			return consumed, payload, true, nil
		case scanData:
			if payload != nil || len(rest) == 0 {
				return consumed, payload, false, nil
			}
			n := len(rest)
			if int64(n) > s.left {
				n = int(s.left)
			}
			payload = rest[:n:n]
			consumed += n
			s.left -= int64(n)
			if s.left > 0 {
				return consumed, payload, false, nil
			}
			s.state = scanCRLF
			continue
		case scanCRLF:
			if len(rest) < 2 {
				return consumed, payload, false, nil
			}
			if rest[0] != '\r' || rest[1] != '\n' {
				return s.fail(consumed, payload, bad("chunk data not followed by CRLF"))
			}
			consumed += 2
			s.state = scanSize
			continue
		}
		// A line: a chunk-size line or a trailer line.
		line, ok := scanLine(rest)
		if !ok {
			if len(rest) < maxChunkLine {
				return consumed, payload, false, nil // wait for the rest of it
			}
			if s.state == scanSize {
				return s.fail(consumed, payload, bad("chunk line too long"))
			}
			return s.fail(consumed, payload, bad("trailer line too long"))
		}
		if s.state == scanSize {
			n, err := chunkSizeLine(line)
			if err != nil {
				return s.fail(consumed, payload, err)
			}
			consumed += len(line)
			if n > 0 {
				s.state, s.left = scanData, n
			} else {
				s.state = scanTrailer
			}
			continue
		}
		// scanTrailer.
		total, end, err := s.trailer.trailerLine(line, s.total, &s.scratch)
		if err != nil {
			return s.fail(consumed, payload, err)
		}
		s.total = total
		consumed += len(line)
		if end {
			s.state = scanDone
		}
	}
}

// fail reports err now if this call has decoded nothing, else returns
// what it decoded: the next call finds err again in the same bytes.
func (s *ChunkScanner) fail(consumed int, payload []byte, err error) (int, []byte, bool, error) {
	if consumed > 0 {
		return consumed, payload, false, nil
	}
	s.err = err
	return 0, nil, false, err
}

// scanLine returns the line at the front of b, its LF included, as
// bufio.Reader.ReadSlice('\n') over a 4096-byte buffer finds it: false if
// the first maxChunkLine bytes hold no LF.
func scanLine(b []byte) ([]byte, bool) {
	if len(b) > maxChunkLine {
		b = b[:maxChunkLine]
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, false
	}
	return b[:i+1], true
}
