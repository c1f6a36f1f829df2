package sidecar

import (
	"bytes"
	"errors"
)

// Errors ParseSyslog returns; static so a flood of junk does not allocate.
var (
	errSyslogPRI    = errors.New("syslog: no <PRI> at the start")
	errSyslogHeader = errors.New("syslog: no RFC 3164 TIMESTAMP [HOSTNAME] TAG: header")
	errSyslogTag    = errors.New("syslog: another tag")
	errSyslogEmpty  = errors.New("syslog: empty message")
)

// ParseSyslog returns the message of one syslog datagram as nginx sends it
// (RFC 3164 framing, ngx_syslog_add_header):
//
//	<190>Nov 30 11:00:04 web-1 headroom: MSG      (the default)
//	<190>Nov  3 11:00:04 headroom: MSG            (nohostname)
//
// PRI is 1-3 digits; the timestamp is the fixed-width "Mmm dd hh:mm:ss"
// (not checked beyond its shape: the sidecar dates lines by its own clock);
// the hostname is optional; the tag ends with ": ". When tag is not "", a
// datagram with another tag is refused, so one syslog port can be shared
// with other senders without their lines counting as requests. A trailing
// newline is dropped. The result aliases b.
func ParseSyslog(b []byte, tag string) ([]byte, error) {
	if len(b) < 3 || b[0] != '<' {
		return nil, errSyslogPRI
	}
	i := 1
	for i < len(b) && i <= 4 && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 1 || i > 4 || i >= len(b) || b[i] != '>' {
		return nil, errSyslogPRI
	}
	rest := b[i+1:]
	// "Mmm dd hh:mm:ss " is 16 bytes.
	if len(rest) < 16 || rest[3] != ' ' || rest[6] != ' ' || rest[9] != ':' || rest[12] != ':' || rest[15] != ' ' {
		return nil, errSyslogHeader
	}
	rest = rest[16:]
	// HOSTNAME and TAG contain neither spaces nor ": ", so the first ": "
	// ends the header, and the tag is the word just before it.
	end := bytes.Index(rest, []byte(": "))
	if end <= 0 {
		return nil, errSyslogHeader
	}
	hdr := rest[:end]
	got := hdr
	if sp := bytes.LastIndexByte(hdr, ' '); sp >= 0 {
		got = hdr[sp+1:]
		if bytes.IndexByte(hdr[:sp], ' ') >= 0 {
			return nil, errSyslogHeader // more than HOSTNAME TAG
		}
	}
	if len(got) == 0 {
		return nil, errSyslogHeader
	}
	if tag != "" && string(got) != tag {
		return nil, errSyslogTag
	}
	msg := rest[end+2:]
	msg = bytes.TrimRight(msg, "\r\n")
	if len(msg) == 0 {
		return nil, errSyslogEmpty
	}
	return msg, nil
}
