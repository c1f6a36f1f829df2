package accesslog

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// File is an access log being written: lines are appended to a buffer and
// written out by the caller's flusher (Flush, every access_log.flush
// interval in the proxy), when the buffer fills, and at Close, so a
// request never waits on a disk write. Reopen closes and reopens the file for
// logrotate (SIGHUP, SIGUSR1).
//
// Two locks keep requests off the disk: mu guards only the buffer lines are
// appended to, and is held for a copy; wmu serializes writing a full buffer
// out, which happens after the buffer was swapped for a spare and mu
// released, so other requests keep appending meanwhile. wmu is always taken
// while mu is held, in the order buffers were swapped out, so lines reach
// the file in the order they were appended. While a write is in progress
// the buffer may grow past logBufferSize, up to logBufferMax; past that,
// appenders wait for the write as they would on a plain buffered writer.
type File struct {
	mu  sync.Mutex
	buf []byte // lines not yet handed to out

	wmu    sync.Mutex // guards everything below
	spare  []byte     // the buffer that replaces buf at the next swap
	path   string     // "" when writing to a caller's io.Writer
	f      *os.File
	out    io.Writer
	broken error // a failed write: further lines are dropped until reopen, as bufio.Writer does
	err    error // last write error, reported once
}

const (
	logBufferSize = 64 << 10 // a full buffer is written out
	logBufferMax  = 4 * logBufferSize
)

// OpenFile opens (creating, appending to) the access log file at path.
func OpenFile(path string) (*File, error) {
	l := &File{path: path, buf: make([]byte, 0, logBufferSize)}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// NewFile is a File writing to w (Reopen does nothing).
func NewFile(w io.Writer) *File {
	return &File{out: w, buf: make([]byte, 0, logBufferSize)}
}

func (l *File) open() error {
	l.broken = nil
	if l.path == "-" {
		l.out = os.Stdout
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open access log: %w", err)
	}
	l.f, l.out = f, f
	return nil
}

// Write appends one line (its newline included) to the buffer; it waits
// for the disk only when the buffer is at its bound.
func (l *File) Write(line []byte) error {
	l.mu.Lock()
	l.buf = append(l.buf, line...)
	if len(l.buf) < logBufferSize {
		l.mu.Unlock()
		return nil
	}
	if !l.wmu.TryLock() {
		if len(l.buf) < logBufferMax { // the buffer before this one is being written
			l.mu.Unlock()
			return nil
		}
		l.wmu.Lock()
	}
	err := l.noteErr(l.writeOut(l.swapLocked()))
	l.wmu.Unlock()
	return err
}

// swapLocked takes the buffered lines, leaving the spare buffer in their
// place, and releases mu. Called with mu and wmu held; wmu stays held.
func (l *File) swapLocked() []byte {
	if l.spare == nil {
		l.spare = make([]byte, 0, logBufferSize)
	}
	full := l.buf
	l.buf, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	return full
}

// writeOut writes b and keeps it as the next spare buffer. Called with wmu
// held. After a failed write, lines are dropped and the error returned
// until the file is reopened, as a bufio.Writer does.
func (l *File) writeOut(b []byte) error {
	err := l.broken
	if err == nil && len(b) > 0 {
		var n int
		n, err = l.out.Write(b)
		if err == nil && n < len(b) {
			err = io.ErrShortWrite
		}
		l.broken = err
	}
	l.spare = b[:0]
	return err
}

// Flush writes out the buffered lines.
func (l *File) Flush() error {
	l.mu.Lock()
	l.wmu.Lock()
	err := l.noteErr(l.writeOut(l.swapLocked()))
	l.wmu.Unlock()
	return err
}

// noteErr returns err only the first time in a row it happens, so a full
// disk is logged once, not once per request. Called with wmu held.
func (l *File) noteErr(err error) error {
	if err == nil {
		l.err = nil
		return nil
	}
	if l.err != nil {
		return nil
	}
	l.err = err
	return err
}

// Reopen flushes and reopens the file at the same path (after logrotate
// moved it away). A no-op for standard output and caller writers. Lines
// appended meanwhile wait in the buffer for the new file.
func (l *File) Reopen() error {
	l.mu.Lock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	ferr := l.writeOut(l.swapLocked())
	if l.f == nil {
		return ferr
	}
	cerr := l.f.Close()
	if err := l.open(); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("flush access log before reopen: %w", ferr)
	}
	if cerr != nil {
		return fmt.Errorf("close access log before reopen: %w", cerr)
	}
	return nil
}

// Close flushes the buffer and closes the file (not a caller's writer).
func (l *File) Close() error {
	l.mu.Lock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err := l.writeOut(l.swapLocked())
	if l.f != nil {
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.f = nil
	}
	return err
}

// Entry is one access log record: the shared Record plus the
// guard's decision, for the JSON format.
type Entry struct {
	Record
	Outcome string // the guard's outcome label (JSON format only)
	// RequestID is the request's X-Request-Id (JSON format only, and only
	// when set: HeadroomFormat has a fixed list of fields and no place
	// for it). A JSON reader keeps it as the extra field "request_id".
	RequestID string

	// addr, when valid, is the client address, written in place of
	// Record.Client (empty then) without making a string of it first.
	addr netip.Addr
}

// SetClient sets the client address, as netip.Addr.String would write it.
func (e *Entry) SetClient(a netip.Addr) {
	if a.IsValid() && a.Zone() == "" {
		e.addr = a
		return
	}
	e.Client = a.String() // a zone may need escaping; "invalid IP"
}

func appendClient(b []byte, r *Record, addr netip.Addr) []byte {
	if addr.IsValid() {
		return addr.AppendTo(b)
	}
	return appendDash(b, r.Client)
}

func appendJSONClient(b []byte, r *Record, addr netip.Addr) []byte {
	if addr.IsValid() {
		b = append(b, '"')
		b = addr.AppendTo(b)
		return append(b, '"')
	}
	return appendJSONString(b, r.Client)
}

// withClient returns r and the address to write in place of r.Client, as
// Entry.SetClient(client) would have them: r itself unless the address
// has a zone or is invalid (then a copy naming it, which allocates).
func withClient(r *Record, client netip.Addr) (*Record, netip.Addr) {
	if client.IsValid() && client.Zone() == "" {
		return r, client
	}
	rc := *r
	rc.Client = client.String()
	return &rc, netip.Addr{}
}

// timeLocal is one second's $time_local, formatted once: every line
// logged within that second reuses it.
type timeLocal struct {
	sec  int64
	loc  *time.Location
	text []byte
}

var lastTimeLocal atomic.Pointer[timeLocal]

func appendTimeLocal(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	c := lastTimeLocal.Load()
	if c == nil || c.sec != sec || c.loc != loc {
		c = &timeLocal{sec: sec, loc: loc, text: t.AppendFormat(make([]byte, 0, len(TimeLocalLayout)), TimeLocalLayout)}
		lastTimeLocal.Store(c)
	}
	return append(b, c.text...)
}

// rfc3339Second is one second's RFC 3339 date and time and its zone,
// formatted once: the JSON lines of that second add their fraction.
type rfc3339Second struct {
	sec        int64
	loc        *time.Location
	head, zone []byte
}

var lastRFC3339 atomic.Pointer[rfc3339Second]

// appendRFC3339Nano appends t.AppendFormat(time.RFC3339Nano) for t.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	c := lastRFC3339.Load()
	if c == nil || c.sec != sec || c.loc != loc {
		c = &rfc3339Second{sec: sec, loc: loc,
			head: t.AppendFormat(nil, "2006-01-02T15:04:05"), zone: t.AppendFormat(nil, "Z07:00")}
		lastRFC3339.Store(c)
	}
	b = append(b, c.head...)
	if ns := t.Nanosecond(); ns != 0 {
		var d [10]byte
		d[0] = '.'
		for i := 9; i > 0; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, c.zone...)
}

// TimeLocalLayout is nginx's $time_local.
const TimeLocalLayout = "02/Jan/2006:15:04:05 -0700"

// AppendHeadroom appends e as one line of HeadroomFormat:
//
//	$remote_addr - $remote_user [$time_local] "$request" $status
//	$body_bytes_sent "$http_referer" "$http_user_agent" $request_time
//	$upstream_status $upstream_response_time $headroom_key $headroom_pool
//
// Strings are escaped as nginx's default escape does (`"`, `\`, control and
// non-ASCII bytes as \xHH), times are seconds with millisecond resolution,
// and absent values are `-`.
func AppendHeadroom(b []byte, e *Entry) []byte { return appendHeadroom(b, &e.Record, e.addr) }

// AppendHeadroomRecord is AppendHeadroom of an Entry holding r with
// SetClient(client), without copying r into one: client is written in
// place of r.Client.
func AppendHeadroomRecord(b []byte, r *Record, client netip.Addr) []byte {
	r, addr := withClient(r, client)
	return appendHeadroom(b, r, addr)
}

func appendHeadroom(b []byte, e *Record, addr netip.Addr) []byte {
	b = appendClient(b, e, addr)
	b = append(b, " - - ["...)
	b = appendTimeLocal(b, e.Time)
	b = append(b, "] \""...)
	b = appendEscaped(b, e.Method)
	b = append(b, ' ')
	b = appendEscaped(b, e.Path)
	b = append(b, ' ')
	b = appendEscaped(b, e.Proto)
	b = append(b, "\" "...)
	b = appendStatus(b, e.Status)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.BytesSent, 10)
	b = append(b, " \""...)
	b = appendEscapedDash(b, e.Referer)
	b = append(b, "\" \""...)
	b = appendEscapedDash(b, e.UserAgent)
	b = append(b, "\" "...)
	b = appendSeconds(b, e.RequestTime)
	b = append(b, ' ')
	if e.UpstreamStatus > 0 {
		b = appendStatus(b, e.UpstreamStatus)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	if e.HasUpstreamTime {
		b = appendSeconds(b, e.UpstreamTime)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = appendDash(b, e.Key)
	b = append(b, ' ')
	b = appendDash(b, e.Pool)
	return append(b, '\n')
}

// AppendJSON appends e as one JSON line. Field names follow
// Record; times are RFC 3339 and seconds, absent upstream values
// are null; "request_id" comes last, when the entry has one.
func AppendJSON(b []byte, e *Entry) []byte {
	return appendJSON(b, &e.Record, e.addr, e.Outcome, e.RequestID)
}

// AppendJSONRecord is AppendJSON of an Entry holding r, outcome and
// requestID with SetClient(client), without copying r into one.
func AppendJSONRecord(b []byte, r *Record, client netip.Addr, outcome, requestID string) []byte {
	r, addr := withClient(r, client)
	return appendJSON(b, r, addr, outcome, requestID)
}

func appendJSON(b []byte, e *Record, addr netip.Addr, outcome, requestID string) []byte {
	b = append(b, `{"time":"`...)
	b = appendRFC3339Nano(b, e.Time)
	b = append(b, `","client":`...)
	b = appendJSONClient(b, e, addr)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, e.Key)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, e.Proto)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.Host)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, e.BytesSent, 10)
	b = append(b, `,"request_time":`...)
	b = appendSeconds(b, e.RequestTime)
	b = append(b, `,"upstream_status":`...)
	if e.UpstreamStatus > 0 {
		b = strconv.AppendInt(b, int64(e.UpstreamStatus), 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"upstream_time":`...)
	if e.HasUpstreamTime {
		b = appendSeconds(b, e.UpstreamTime)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"referer":`...)
	b = appendJSONString(b, e.Referer)
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, e.UserAgent)
	b = append(b, `,"pool":`...)
	b = appendJSONString(b, e.Pool)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, outcome)
	if requestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, requestID)
	}
	return append(b, "}\n"...)
}

func appendSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	ms := d.Milliseconds()
	if s := ms / 1000; s < 10 {
		b = append(b, byte('0'+s))
	} else {
		b = strconv.AppendInt(b, s, 10)
	}
	frac := ms % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// appendStatus appends an HTTP status code: three digits without
// strconv's general path, others as strconv writes them.
func appendStatus(b []byte, status int) []byte {
	if status >= 100 && status <= 999 {
		return append(b, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10))
	}
	return strconv.AppendInt(b, int64(status), 10)
}

func appendDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

func appendEscapedDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

const hexDigits = "0123456789ABCDEF"

// escapedByte marks the bytes nginx's log_format escape=default writes as
// \xHH: '"', '\\', control bytes and bytes from 0x7f.
var escapedByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x7f
	}
	return t
}()

// appendEscaped escapes like nginx's log_format escape=default. The runs
// between escaped bytes (all of a usual value) are appended whole, found
// eight bytes at a time.
func appendEscaped(b []byte, s string) []byte {
	i := 0
	for i+8 <= len(s) && !escapes8(load8(s[i:])) {
		i += 8
	}
	if i == len(s) {
		return append(b, s...)
	}
	start := 0
	for ; i < len(s); i++ {
		if c := s[i]; escapedByte[c] {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			start = i + 1
		}
	}
	return append(b, s[start:]...)
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// load8 is s's first 8 bytes as a little-endian word.
func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hasZero reports whether a byte of x is 0.
func hasZero(x uint64) bool { return (x-lsb)&^x&msb != 0 }

// escapes8 reports whether one of the 8 bytes of x is one appendEscaped
// escapes (escapedByte): below 0x20, from 0x7f, '"' or '\\'.
func escapes8(x uint64) bool {
	// (x - 0x20 each) &^ x has a byte's top bit set for a byte below 0x20
	// (bytes from 0x80 are caught by x&msb); the borrows this leaks into
	// higher bytes only follow a byte that matched.
	return (x-lsb*0x20)&^x&msb != 0 || x&msb != 0 ||
		hasZero(x^(lsb*'"')) || hasZero(x^(lsb*'\\')) || hasZero(x^(lsb*0x7f))
}

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	i := 0
	for i+8 <= len(s) && !escapes8(load8(s[i:])) { // ASCII JSON keeps as it is
		i += 8
	}
	start := 0 // s[start:i] is still to append, as it is
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
				b = append(b, `\u00`...)
				b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
