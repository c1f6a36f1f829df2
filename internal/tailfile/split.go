package tailfile

import "bytes"

// skipMode says what the splitter does with the bytes up to the next newline.
type skipMode uint8

const (
	keep     skipMode = iota // split them into lines
	overlong                 // drop them: a line longer than maxLine, counted when its newline comes
	fragment                 // drop them: the rest of a line begun before the start (not counted)
)

// splitter cuts what is read into lines in one reused buffer: reading and
// splitting apart from the file, so that the fuzz target can feed it
// arbitrary pieces. buf[r:w] is the unfinished line (no '\n' in it); new
// bytes are read into space() and announced with advance.
type splitter struct {
	buf     []byte
	r, w    int
	skip    skipMode
	maxLine int
	// Counted since the caller last took them (Follower adds them to its
	// atomics once a read, not once a line).
	lines, overlong uint64
}

// newSplitter's buffer holds at least a longest line with its "\r\n", so
// that an unfinished line filling the buffer is known to be overlong.
func newSplitter(bufSize, maxLine int) *splitter {
	return &splitter{buf: make([]byte, max(bufSize, maxLine+2)), maxLine: maxLine}
}

// space returns where the next read goes, never empty: the unfinished line
// is moved to the front first (a copy of at most one line per read).
func (s *splitter) space() []byte {
	if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	return s.buf[s.w:]
}

// pending is how many bytes of an unfinished line the splitter holds.
func (s *splitter) pending() int { return s.w - s.r }

// advance takes the n bytes just read into space() and calls fn for each
// line they complete.
func (s *splitter) advance(n int, fn func([]byte)) {
	from := s.w // buf[r:from] holds no '\n': search only the new bytes
	s.w += n
	if s.skip != keep {
		i := bytes.IndexByte(s.buf[from:s.w], '\n')
		if i < 0 {
			s.r, s.w = 0, 0
			return
		}
		if s.skip == overlong {
			s.overlong++
		}
		s.skip = keep
		s.r = from + i + 1
		from = s.r
	}
	for {
		i := bytes.IndexByte(s.buf[from:s.w], '\n')
		if i < 0 {
			break
		}
		s.deliver(s.buf[s.r:from+i], fn)
		s.r = from + i + 1
		from = s.r
	}
	// maxLine bytes and a '\r' may still be a line that fits; more may not.
	if s.pending() > s.maxLine+1 {
		s.skip = overlong
		s.r, s.w = 0, 0
	}
}

// finish ends the file the bytes came from: its unfinished last line is a
// line (a writer that died mid-line, or a last line without its newline),
// and the splitter is ready for another file.
func (s *splitter) finish(fn func([]byte)) {
	switch s.skip {
	case overlong:
		s.overlong++
	case keep:
		if s.pending() > 0 {
			s.deliver(s.buf[s.r:s.w], fn)
		}
	}
	s.r, s.w, s.skip = 0, 0, keep
}

// deliver hands one line without its '\n' to fn, without a trailing '\r',
// unless it is empty (skipped) or too long (counted).
func (s *splitter) deliver(line []byte, fn func([]byte)) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	switch {
	case len(line) == 0:
	case len(line) > s.maxLine:
		s.overlong++
	default:
		s.lines++
		fn(line)
	}
}
