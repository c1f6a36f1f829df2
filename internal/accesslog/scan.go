package accesslog

import (
	"bytes"
	"errors"
	"strings"
	"time"
	"unsafe"
)

// Parser turns one log line into a Record. A Parser keeps per-line state (a
// time cache, the backing array of Record.Extra) and is not safe for
// concurrent use: each goroutine takes its own from Format.NewParser.
//
// The strings of the Record alias line (no copy: reading a gigabyte of log
// must not allocate per line), so they are valid only until line's bytes are
// reused; keep anything longer-lived with strings.Clone.
type Parser interface {
	Parse(line []byte, r *Record) error
}

// Errors parsers return for a malformed line. They are static values so that
// a log full of bad lines does not allocate either; the message is what the
// malformed-line report shows as the reason.
var (
	errEmpty       = errors.New("empty line")
	errTime        = errors.New("bad timestamp")
	errStatus      = errors.New("status is not a number")
	errNumber      = errors.New("expected a number")
	errDuration    = errors.New("expected seconds such as 0.042 or -")
	errQuote       = errors.New("unterminated quoted field")
	errBracket     = errors.New("unterminated [bracketed] field")
	errFields      = errors.New("too few fields")
	errJSON        = errors.New("not a JSON object")
	errTrailing    = errors.New("text after the last field")
	errJSONNoField = errors.New("JSON object has none of the mapped fields")
)

// s2 returns b as a string without copying; see Parser for the lifetime rule.
func s2(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// atoi parses a non-negative decimal integer.
func atoi(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + int64(c)
	}
	return n, true
}

// atoiDash parses an integer where nginx writes "-" for "none" (0).
func atoiDash(s string) (int64, bool) {
	if s == "-" {
		return 0, true
	}
	return atoi(s)
}

// parseSeconds reads nginx's "0.042" (seconds, millisecond resolution, but
// any number of decimals is accepted) into a Duration without floats.
// ok is false for text that is not a number; "-" is reported as absent.
func parseSeconds(s string) (d time.Duration, present, ok bool) {
	if s == "-" || s == "" {
		return 0, false, true
	}
	neg := false
	if s[0] == '-' { // ALB writes -1 when the target never answered
		neg = true
		s = s[1:]
		if s == "" {
			return 0, false, false
		}
	}
	var whole int64
	i := 0
	for ; i < len(s) && s[i] != '.'; i++ {
		c := s[i] - '0'
		if c > 9 || i > 12 {
			return 0, false, false
		}
		whole = whole*10 + int64(c)
	}
	var frac int64
	scale := int64(1e9)
	if i < len(s) {
		i++ // '.'
		if i == len(s) {
			return 0, false, false
		}
		for ; i < len(s); i++ {
			c := s[i] - '0'
			if c > 9 {
				return 0, false, false
			}
			if scale > 1 {
				scale /= 10
				frac += int64(c) * scale
			}
		}
	}
	d = time.Duration(whole)*time.Second + time.Duration(frac)
	if neg {
		return -d, false, true
	}
	return d, true, true
}

// sumSecondsList reads nginx's $upstream_response_time, which lists one time
// per upstream tried ("0.100, 0.004"), with " : " between upstream groups
// after an internal redirect and "-" for an upstream that never answered.
// The worker time of a request is the sum over everything that answered.
func sumSecondsList(s string) (total time.Duration, present, ok bool) {
	for len(s) > 0 {
		item, rest := nextListItem(s)
		s = rest
		d, p, good := parseSeconds(item)
		if !good {
			return 0, false, false
		}
		if p {
			total += d
			present = true
		}
	}
	return total, present, true
}

// lastStatusInList returns the last numeric status of a list such as
// "502, 200" or "200 : -" (the upstream that finally answered).
func lastStatusInList(s string) (int, bool) {
	st := 0
	for len(s) > 0 {
		item, rest := nextListItem(s)
		s = rest
		if item == "-" || item == "" {
			continue
		}
		n, ok := atoi(item)
		if !ok || n > 999 {
			return 0, false
		}
		st = int(n)
	}
	return st, true
}

// nextListItem splits "a, b : c" into its first item and the rest.
func nextListItem(s string) (item, rest string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', ':':
			if s[i] == ':' && !(i > 0 && s[i-1] == ' ') {
				continue // a colon inside an address (host:port)
			}
			item = trimSpace(s[:i])
			return item, trimLeftSpace(s[i+1:])
		}
	}
	return trimSpace(s), ""
}

func trimSpace(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

func trimLeftSpace(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	return s
}

// splitRequest splits "GET /path HTTP/1.1". A request line that is not
// three words (nginx logs a TLS handshake sent to a plain port as
// "\x16\x03\x01…", and "-" for an empty request) is kept whole as the path
// with no method: the line is well-formed, the request was not.
func splitRequest(s string, r *Record) {
	sp := -1
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			sp = i
			break
		}
	}
	if sp < 0 {
		r.Path = s
		return
	}
	last := -1
	for i := len(s) - 1; i > sp; i-- {
		if s[i] == ' ' {
			last = i
			break
		}
	}
	r.Method = s[:sp]
	if last < 0 { // HTTP/0.9 style "GET /path"
		r.Path = s[sp+1:]
		return
	}
	r.Path = s[sp+1 : last]
	r.Proto = s[last+1:]
}

// dashEmpty maps nginx's "-" (no value) to "".
func dashEmpty(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// timeCache turns timestamps into time.Time with a fast path: lines of one
// log arrive in roughly increasing time, so the date, hour, minute and zone
// of a line are almost always those of the previous one, and only the
// seconds (and fraction) need reading.
type timeCache struct {
	key    [40]byte
	keyLen int
	minute int64 // unix seconds at the start of the cached minute, UTC
}

var monthIndex = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// hit reports whether prefix+zone is the cached minute.
func (c *timeCache) hit(prefix, zone string) bool {
	if c.keyLen != len(prefix)+len(zone) {
		return false
	}
	return string(c.key[:len(prefix)]) == prefix && string(c.key[len(prefix):c.keyLen]) == zone
}

func (c *timeCache) store(prefix, zone string, minute int64) {
	if len(prefix)+len(zone) > len(c.key) {
		c.keyLen = -1
		return
	}
	n := copy(c.key[:], prefix)
	n += copy(c.key[n:], zone)
	c.keyLen = n
	c.minute = minute
}

func digits2(s string) (int, bool) {
	a, b := s[0]-'0', s[1]-'0'
	if a > 9 || b > 9 {
		return 0, false
	}
	return int(a)*10 + int(b), true
}

func digits4(s string) (int, bool) {
	h, ok1 := digits2(s[:2])
	l, ok2 := digits2(s[2:4])
	return h*100 + l, ok1 && ok2
}

// zoneOffset reads "+0000", "-0700", "+05:30" or "Z" into seconds east.
func zoneOffset(z string) (int64, bool) {
	if z == "Z" || z == "z" {
		return 0, true
	}
	if len(z) != 5 && len(z) != 6 {
		return 0, false
	}
	sign := int64(1)
	switch z[0] {
	case '+':
	case '-':
		sign = -1
	default:
		return 0, false
	}
	h, ok := digits2(z[1:3])
	if !ok {
		return 0, false
	}
	mm := z[3:]
	if mm[0] == ':' {
		mm = mm[1:]
	}
	if len(mm) != 2 {
		return 0, false
	}
	m, ok := digits2(mm)
	if !ok {
		return 0, false
	}
	return sign * int64(h*3600+m*60), true
}

// daysFromCivil is Howard Hinnant's days_from_civil: days since 1970-01-01.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

func validDate(y, m, d, hh, mm, ss int) bool {
	return y >= 1970 && y < 3000 && m >= 1 && m <= 12 && d >= 1 && d <= 31 && hh < 24 && mm < 60 && ss <= 60
}

// parseTimeLocal reads nginx's $time_local, "17/May/2015:10:05:03 +0000".
func (c *timeCache) parseTimeLocal(s string) (time.Time, bool) {
	if len(s) != 26 || s[2] != '/' || s[6] != '/' || s[11] != ':' || s[14] != ':' || s[17] != ':' || s[20] != ' ' {
		return time.Time{}, false
	}
	sec, ok := digits2(s[18:20])
	if !ok || sec > 60 {
		return time.Time{}, false
	}
	prefix, zone := s[:18], s[21:]
	if !c.hit(prefix, zone) {
		d, ok1 := digits2(s[0:2])
		y, ok2 := digits4(s[7:11])
		hh, ok3 := digits2(s[12:14])
		mi, ok4 := digits2(s[15:17])
		m := 0
		for i, name := range monthIndex {
			if s[3:6] == name {
				m = i + 1
				break
			}
		}
		off, ok5 := zoneOffset(zone)
		if !(ok1 && ok2 && ok3 && ok4 && ok5) || !validDate(y, m, d, hh, mi, 0) {
			return time.Time{}, false
		}
		c.store(prefix, zone, daysFromCivil(y, m, d)*86400+int64(hh*3600+mi*60)-off)
	}
	return time.Unix(c.minute+int64(sec), 0).UTC(), true
}

// parseISO8601 reads "2019-10-11T15:01:12.376735Z", "2019-10-11T15:01:12+02:00"
// (nginx's $time_iso8601, ALB, most JSON emitters).
func (c *timeCache) parseISO8601(s string) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	sec, ok := digits2(s[17:19])
	if !ok || sec > 60 {
		return time.Time{}, false
	}
	i := 19
	var nsec int64
	if s[i] == '.' || s[i] == ',' {
		i++
		scale := int64(1e9)
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if scale > 1 {
				scale /= 10
				nsec += int64(s[i]-'0') * scale
			}
			i++
		}
		if i == start {
			return time.Time{}, false
		}
	}
	prefix, zone := s[:17], s[i:]
	if !c.hit(prefix, zone) {
		y, ok1 := digits4(s[0:4])
		m, ok2 := digits2(s[5:7])
		d, ok3 := digits2(s[8:10])
		hh, ok4 := digits2(s[11:13])
		mi, ok5 := digits2(s[14:16])
		off, ok6 := zoneOffset(zone)
		if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || !validDate(y, m, d, hh, mi, 0) {
			return time.Time{}, false
		}
		c.store(prefix, zone, daysFromCivil(y, m, d)*86400+int64(hh*3600+mi*60)-off)
	}
	return time.Unix(c.minute+int64(sec), nsec).UTC(), true
}

// parseEpoch reads nginx's $msec ("1555555555.123") or a JSON epoch in
// seconds or milliseconds.
func parseEpoch(s string) (time.Time, bool) {
	whole, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		whole, frac = s[:i], s[i:]
	}
	n, ok := atoi(whole)
	if !ok {
		return time.Time{}, false
	}
	var nsec int64
	scale := int64(1e9)
	for i := 1; i < len(frac); i++ {
		c := frac[i] - '0'
		if c > 9 {
			return time.Time{}, false
		}
		if scale > 1 {
			scale /= 10
			nsec += int64(c) * scale
		}
	}
	if n > 1e11 { // milliseconds since the epoch
		return time.Unix(n/1000, (n%1000)*1e6+nsec/1000).UTC(), true
	}
	return time.Unix(n, nsec).UTC(), true
}

// parseAnyTime tries the layouts logs use, cheapest first.
func (c *timeCache) parseAnyTime(s string) (time.Time, bool) {
	if len(s) == 26 && s[2] == '/' {
		return c.parseTimeLocal(s)
	}
	if len(s) >= 20 && s[4] == '-' {
		return c.parseISO8601(s)
	}
	return parseEpoch(s)
}

// scanQuoted returns the index of the closing quote of a field that starts
// just after an opening quote at line[start-1]; a backslash escapes the next
// byte (Apache writes \" inside user agents; nginx writes \x22).
func scanQuoted(line []byte, start int) int {
	for i := start; i < len(line); {
		q := bytes.IndexByte(line[i:], '"')
		if q < 0 {
			return -1
		}
		q += i
		b := bytes.IndexByte(line[i:q], '\\')
		if b < 0 {
			return q
		}
		i += b + 2 // the backslash and the byte it escapes
	}
	return -1
}
