// Package redisaddr parses where the fleet store's Redis is: one server
// (redis://, rediss://), a master found through Sentinel
// (redis-sentinel://, rediss-sentinel://) or a Redis Cluster from a seed
// list (redis-cluster://, rediss-cluster://). It only parses: the store
// turns a Target into a go-redis client, and the config package checks a
// file's store section with it, so a bad address is refused at load with
// the reason.
package redisaddr

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Kind is the shape of the Redis deployment.
type Kind uint8

const (
	// Single is one redis-server (or a proxy in front of several).
	Single Kind = iota
	// Sentinel is a master and its replicas watched by Sentinel: Addrs are
	// the sentinels, MasterName the set they watch.
	Sentinel
	// Cluster is a Redis Cluster: Addrs are seed nodes.
	Cluster
)

// String names the kind for logs and /healthz.
func (k Kind) String() string {
	switch k {
	case Sentinel:
		return "sentinel"
	case Cluster:
		return "cluster"
	}
	return "single"
}

// Target is a parsed store address.
type Target struct {
	Kind       Kind
	Addrs      []string // host:port, at least one
	MasterName string   // Sentinel only
	DB         int      // 0 for a Cluster
	Username   string
	Password   string
	// SentinelPassword authenticates to the sentinels themselves
	// (?sentinel_password=), when they require it.
	SentinelPassword string
	TLS              bool
}

// Redacted is the target without its password, for logs and /healthz.
func (t Target) Redacted() string {
	scheme := "redis"
	if t.TLS {
		scheme = "rediss"
	}
	switch t.Kind {
	case Sentinel:
		return fmt.Sprintf("%s-sentinel://%s/%s/%d", scheme, strings.Join(t.Addrs, ","), t.MasterName, t.DB)
	case Cluster:
		return fmt.Sprintf("%s-cluster://%s", scheme, strings.Join(t.Addrs, ","))
	}
	return fmt.Sprintf("%s://%s/%d", scheme, strings.Join(t.Addrs, ","), t.DB)
}

// The forms Parse accepts, for error messages.
const Forms = "redis://[USER:PASS@]HOST:PORT/DB, rediss://… (TLS), " +
	"redis-sentinel://[USER:PASS@]SENTINEL:PORT[,SENTINEL:PORT…]/MASTER/DB or " +
	"redis-cluster://[USER:PASS@]NODE:PORT[,NODE:PORT…] (rediss-sentinel://, rediss-cluster:// for TLS)"

// Parse reads a store URL. Ports default to 6379 (26379 for sentinels).
func Parse(s string) (Target, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Target{}, fmt.Errorf("%q is not a URL: want %s", s, Forms)
	}
	var t Target
	defPort := "6379"
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		t.TLS = true
	case "redis-sentinel":
		t.Kind, defPort = Sentinel, "26379"
	case "rediss-sentinel":
		t.Kind, defPort, t.TLS = Sentinel, "26379", true
	case "redis-cluster":
		t.Kind = Cluster
	case "rediss-cluster":
		t.Kind, t.TLS = Cluster, true
	default:
		return Target{}, fmt.Errorf("scheme %q: want %s", scheme, Forms)
	}
	rest, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		u, err := url.Parse("x://" + authority[:at+1] + "h")
		if err != nil {
			return Target{}, fmt.Errorf("credentials in %q: %w", redact(s, authority[:at]), err)
		}
		t.Username = u.User.Username()
		t.Password, _ = u.User.Password()
		authority = authority[at+1:]
	}
	if authority == "" {
		return Target{}, fmt.Errorf("%q has no host", redact(s, ""))
	}
	for _, h := range strings.Split(authority, ",") {
		a, err := hostPort(h, defPort)
		if err != nil {
			return Target{}, fmt.Errorf("%q: %w", redact(s, ""), err)
		}
		t.Addrs = append(t.Addrs, a)
	}
	if t.Kind == Single && len(t.Addrs) > 1 {
		return Target{}, fmt.Errorf("%q names %d servers: a list is for redis-sentinel:// or redis-cluster://", redact(s, ""), len(t.Addrs))
	}
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	if t.Kind == Sentinel {
		if len(segs) == 0 {
			return Target{}, fmt.Errorf("%q names no master: redis-sentinel://SENTINEL:PORT/MASTER/DB", redact(s, ""))
		}
		t.MasterName, segs = segs[0], segs[1:]
	}
	switch {
	case len(segs) > 1:
		return Target{}, fmt.Errorf("path %q in %q: want at most a database number", path, redact(s, ""))
	case len(segs) == 1:
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 {
			return Target{}, fmt.Errorf("database %q in %q must be a number, e.g. /0", segs[0], redact(s, ""))
		}
		if t.Kind == Cluster && db != 0 {
			return Target{}, fmt.Errorf("database %d in %q: a Redis Cluster has only database 0", db, redact(s, ""))
		}
		t.DB = db
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return Target{}, fmt.Errorf("query of %q: %w", redact(s, ""), err)
		}
		for k, v := range q {
			switch {
			case k == "sentinel_password" && t.Kind == Sentinel:
				t.SentinelPassword = v[len(v)-1]
			default:
				return Target{}, fmt.Errorf("unknown parameter %q in %q", k, redact(s, ""))
			}
		}
	}
	return t, nil
}

// FromAddrs builds a Target from the config file's list forms: sentinels
// and a master name, or cluster seed nodes (exactly one of the two).
func FromAddrs(sentinels []string, master string, cluster []string) (Target, error) {
	switch {
	case len(sentinels) > 0 && len(cluster) > 0:
		return Target{}, errors.New("give sentinel_addrs or cluster_addrs, not both")
	case len(sentinels) > 0 && master == "":
		return Target{}, errors.New("sentinel_addrs need master_name: the name the sentinels monitor")
	case len(sentinels) == 0 && master != "":
		return Target{}, errors.New("master_name needs sentinel_addrs")
	case len(sentinels) == 0 && len(cluster) == 0:
		return Target{}, errors.New("no address")
	}
	t := Target{Kind: Sentinel, MasterName: master}
	addrs, def := sentinels, "26379"
	if len(cluster) > 0 {
		t.Kind, addrs, def = Cluster, cluster, "6379"
	}
	for _, h := range addrs {
		a, err := hostPort(h, def)
		if err != nil {
			return Target{}, err
		}
		t.Addrs = append(t.Addrs, a)
	}
	return t, nil
}

// hostPort checks one HOST[:PORT] and adds the default port.
func hostPort(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty address in the list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port (or a bare IPv6 address in brackets).
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defPort
		if strings.ContainsAny(host, "[]/ ") || (strings.Contains(host, ":") && !strings.HasPrefix(h, "[")) {
			return "", fmt.Errorf("address %q: want HOST:PORT", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("address %q has no host", h)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("address %q: port %q is not a number 1-65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// redact replaces the credentials in s for an error message: a password
// must not reach a log.
func redact(s, userinfo string) string {
	if userinfo == "" {
		if scheme, rest, ok := strings.Cut(s, "://"); ok {
			auth, tail, _ := strings.Cut(rest, "/")
			if at := strings.LastIndexByte(auth, '@'); at >= 0 {
				return scheme + "://REDACTED@" + auth[at+1:] + "/" + tail
			}
		}
		return s
	}
	return strings.Replace(s, userinfo+"@", "REDACTED@", 1)
}
