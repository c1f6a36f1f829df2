package analyze

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/dims"
)

type valueKind uint8

const (
	kindString valueKind = iota
	kindNumber
	kindTime
)

// field reads one named value of a record for --where and --by. Derived
// values (template, prefix, ua_family…) are written into the caller's
// scratch buffer, so reading a field does not allocate.
type field struct {
	name  string
	extra bool // not built in: a variable of the log's format
	kind  valueKind
	num   func(r *accesslog.Record) (float64, bool)
	str   func(r *accesslog.Record, scratch []byte) (string, []byte)
}

func secs(d time.Duration) float64 { return d.Seconds() }

func plain(get func(r *accesslog.Record) string) func(*accesslog.Record, []byte) (string, []byte) {
	return func(r *accesslog.Record, b []byte) (string, []byte) { return get(r), b }
}

func numeric(name string, get func(r *accesslog.Record) (float64, bool)) field {
	return field{name: name, kind: kindNumber, num: get, str: func(r *accesslog.Record, b []byte) (string, []byte) {
		v, ok := get(r)
		if !ok {
			return "-", b
		}
		start := len(b)
		b = strconv.AppendFloat(b, v, 'f', -1, 64)
		return unsafeString(b[start:]), b
	}}
}

// builtinFields are the fields every record has; any other name is looked
// up among the record's extra fields (a custom log_format's variables).
var builtinFields = map[string]field{}

func init() {
	add := func(f field, aliases ...string) {
		builtinFields[f.name] = f
		for _, a := range aliases {
			builtinFields[a] = f
		}
	}
	add(field{name: "time", kind: kindTime,
		num: func(r *accesslog.Record) (float64, bool) {
			return float64(r.Time.UnixNano()) / 1e9, !r.Time.IsZero()
		},
		str: func(r *accesslog.Record, b []byte) (string, []byte) {
			start := len(b)
			b = r.Time.AppendFormat(b, "2006-01-02T15:04Z07:00")
			return unsafeString(b[start:]), b
		}})
	add(numeric("status", func(r *accesslog.Record) (float64, bool) { return float64(r.Status), r.Status != 0 }))
	add(numeric("upstream_status", func(r *accesslog.Record) (float64, bool) {
		return float64(r.UpstreamStatus), r.UpstreamStatus != 0
	}))
	add(numeric("bytes", func(r *accesslog.Record) (float64, bool) { return float64(r.BytesSent), true }), "body_bytes_sent")
	add(numeric("request_time", func(r *accesslog.Record) (float64, bool) { return secs(r.RequestTime), true }))
	add(numeric("upstream_time", func(r *accesslog.Record) (float64, bool) {
		return secs(r.UpstreamTime), r.HasUpstreamTime
	}), "worker_time", "upstream_response_time")
	add(field{name: "method", str: plain(func(r *accesslog.Record) string { return r.Method })}, "request_method")
	add(field{name: "path", str: plain(func(r *accesslog.Record) string { return r.Path })}, "request_uri")
	add(field{name: "uri", str: plain(func(r *accesslog.Record) string {
		if i := strings.IndexByte(r.Path, '?'); i >= 0 {
			return r.Path[:i]
		}
		return r.Path
	})})
	add(field{name: "template", str: func(r *accesslog.Record, b []byte) (string, []byte) {
		start := len(b)
		b = dims.AppendPathTemplate(b, r.Path)
		return unsafeString(b[start:]), b
	}}, "endpoint")
	add(field{name: "proto", str: plain(func(r *accesslog.Record) string { return r.Proto })})
	add(field{name: "host", str: plain(func(r *accesslog.Record) string { return r.Host })})
	add(field{name: "client", str: plain(func(r *accesslog.Record) string { return r.Client })}, "remote_addr", "ip")
	add(field{name: "prefix", str: func(r *accesslog.Record, b []byte) (string, []byte) {
		start := len(b)
		b = dims.AppendClientNetwork(b, r.Client)
		return unsafeString(b[start:]), b
	}}, "network")
	add(field{name: "key", str: plain(keyOf)})
	add(field{name: "user_agent", str: plain(func(r *accesslog.Record) string { return r.UserAgent })}, "ua", "http_user_agent")
	add(field{name: "ua_family", str: plain(func(r *accesslog.Record) string { return dims.AgentFamily(r.UserAgent) })}, "agent")
	add(field{name: "referer", str: plain(func(r *accesslog.Record) string { return r.Referer })}, "http_referer", "referrer")
	add(field{name: "referer_domain", str: func(r *accesslog.Record, b []byte) (string, []byte) {
		start := len(b)
		b = dims.AppendRefererDomain(b, r.Referer)
		return unsafeString(b[start:]), b
	}})
	add(field{name: "pool", str: plain(func(r *accesslog.Record) string { return r.Pool })})
}

// FieldNames lists the built-in field names (aliases included) for help
// and error messages.
func FieldNames() []string {
	names := make([]string, 0, len(builtinFields))
	for n := range builtinFields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookupField returns the built-in field name, or an accessor for the
// extra field of that name (a custom log_format's $variable).
func lookupField(name string) (field, error) {
	name = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(name)), "$")
	if name == "" {
		return field{}, fmt.Errorf("empty field name")
	}
	if f, ok := builtinFields[name]; ok {
		return f, nil
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return field{}, fmt.Errorf("field %q: names are letters, digits and _ (built-in: %s; or a variable of your log_format)", name, strings.Join(FieldNames(), ", "))
		}
	}
	return field{name: name, extra: true, str: func(r *accesslog.Record, b []byte) (string, []byte) {
		v, _ := r.Get(name)
		return v, b
	}, num: func(r *accesslog.Record) (float64, bool) {
		v, ok := r.Get(name)
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}}, nil
}

// keyOf is who a request is charged to: its key, else its client address
// (DESIGN.md: "API key from a header or query parameter, else the client
// address").
func keyOf(r *accesslog.Record) string {
	if r.Key != "" {
		return r.Key
	}
	return r.Client
}
