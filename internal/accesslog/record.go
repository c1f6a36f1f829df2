// Package accesslog defines the request record, the vocabulary every part of
// headroom shares (who, what, when, client-facing status and time, upstream
// status and time, bytes), and the parsers that turn access logs written by
// nginx, headroom itself, S3, ALB and JSON-lines emitters into records; and
// the writer of headroom's own access log (write.go), next to the parser
// that reads it back, so the two are tested as a round trip.
package accesslog

import "time"

// HeadroomFormat is the nginx log_format of the access log `headroom proxy`
// writes: nginx's combined format extended with the client-facing request
// time, the upstream status and time (`-` when the upstream never answered),
// the key's fingerprint and the pool. Keeping it an nginx log_format means any
// tool that reads nginx logs (and `headroom logs analyze --format headroom`)
// reads headroom's log too.
const HeadroomFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time $upstream_status $upstream_response_time $headroom_key $headroom_pool`

// CombinedFormat is nginx's predefined `combined` log_format.
const CombinedFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`

// StatusClientClosed is nginx's non-standard status for a client that
// closed the connection before the response was sent; headroom's access
// log uses it too, so `headroom logs analyze` and other nginx tooling
// understand it.
const StatusClientClosed = 499

// Record is one request as an access log saw it.
//
// Zero values mean "not in this log": a Status of 0 means the log had no
// client status, an UpstreamStatus of 0 means no upstream answered (nginx
// writes `-`), and HasUpstreamTime tells whether UpstreamTime was logged.
type Record struct {
	Time   time.Time
	Client string // client address, as logged (after any forwarded-for handling)
	Key    string // API key fingerprint or other caller identity; "" when absent

	Method string
	Path   string // request target as logged, query included
	Proto  string
	Host   string

	Status      int           // client-facing status (499 when the client gave up)
	BytesSent   int64         // body bytes sent to the client
	RequestTime time.Duration // client-facing time

	UpstreamStatus  int           // last upstream's status; 0 when none answered
	UpstreamTime    time.Duration // sum over the upstreams tried
	HasUpstreamTime bool

	Referer   string
	UserAgent string
	Pool      string // headroom pool; "" when the log does not say

	// Extra holds the fields a format has beyond the ones above, by name
	// (nginx variables without the `$`: "upstream_addr", "request_length",
	// "http_x_forwarded_for"; S3's "operation"; ALB's "target_group"…), in
	// the order the format writes them. `--where` and `--by` reach them by
	// name. Parsers reuse the slice's backing array from line to line.
	Extra []Field
}

// Field is one named value of a record that has no dedicated Record field.
type Field struct {
	Name  string
	Value string
}

// Get returns the value of the extra field name and whether the line had it.
func (r *Record) Get(name string) (string, bool) {
	for i := range r.Extra {
		if r.Extra[i].Name == name {
			return r.Extra[i].Value, true
		}
	}
	return "", false
}
