package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRefusesBadConfigNamingTheField(t *testing.T) {
	const up = "upstream: http://127.0.0.1:8000\n"
	const sec = "keys: {secret: 0123456789abcdef0123}\n"
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"no upstream", "listen: :8080\n", "upstream: required"},
		{"upstream not http", "upstream: ftp://x\n", "upstream: \"ftp://x\": the scheme must be http:// or https://, not ftp://"},
		// Issue 17 item 16: Go's "first path segment in URL cannot contain colon".
		{"upstream without a scheme", "upstream: 127.0.0.1:8000\n", `upstream: "127.0.0.1:8000" has no scheme: write http://127.0.0.1:8000 (or https:// for TLS)`},
		{"upstream host:port", "upstream: localhost:8000\n", `upstream: "localhost:8000" has no scheme: write http://localhost:8000`},
		{"bad listen", up + "listen: 8080\n", `listen: "8080" is not host:port`},
		{"pool max", up + "pools:\n  - {name: api, path_prefixes: [/api/], max_concurrent: 4}\n  - {name: ui, max_concurrent: 0}\n", "pools[1].max_concurrent: must be > 0"},
		{"pool name", up + "pools: [{name: 'API Pool', max_concurrent: 1}]\n", "pools[0].name: \"API Pool\" must be"},
		{"duplicate pool", up + "pools: [{name: a, hosts: [x], max_concurrent: 1}, {name: a, max_concurrent: 1}]\n", `pools[1].name: duplicate pool "a"`},
		{"two catch-alls", up + "pools: [{name: a, max_concurrent: 1}, {name: b, max_concurrent: 1}]\n", "pools[1]: pools[0] is already the catch-all"},
		{"prefix without slash", up + "pools: [{name: a, path_prefixes: [api], max_concurrent: 1}]\n", `pools[0].path_prefixes[0]: "api" must start with /`},
		{"negative queue", up + "pools: [{name: a, max_concurrent: 1, queue: -1}]\n", "pools[0].queue: must be >= 0"},
		{"unknown field", up + "pools:\n  - name: a\n    max_concurent: 1\n", "pools[0].max_concurent: unknown field (line 4)"},
		{"unknown top field", up + "budgets: {}\n", "budgets: unknown field (line 2)"},
		{"unknown nested in tier", up + "tiers: [{name: t, worker_tim: 1s}]\n", "tiers[0].worker_tim: unknown field"},
		{"duration without unit", up + "budget: {worker_time: 60}\n", `"60" is not a duration`},
		// Issue 17 item 8: yaml's own error named config.Limits, not the field.
		{"budget as a duration", up + "budget: -5s\n", `budget: expected a mapping of max_in_flight, restrict_for, shadow, window, worker_time (line 2), not "-5s"; e.g. budget: {worker_time: 60s}`},
		{"budget as a list", up + "budget: [5s]\n", "budget: expected a mapping of max_in_flight, restrict_for, shadow, window, worker_time (line 2), not a list"},
		{"pools as text", up + "pools: api\n", `pools: expected a list (line 2), not "api"`},
		{"sources as a mapping", up + "keys: {sources: {header: X-Key}}\n", "keys.sources: expected a list (line 2), not a mapping"},
		{"in flight as text", up + "tiers: [{name: t, max_in_flight: ten}]\n", `tiers[0].max_in_flight: expected a whole number (line 2), not "ten"`},
		{"shadow as text", up + "shadow: maybe\n", `shadow: expected true or false (line 2), not "maybe"`},
		{"listen as a list", up + "listen: [a, b]\n", "listen: expected a single value (text) (line 2), not a list"},
		{"duration as a mapping", up + "timeouts: {upstream: {s: 1}}\n", "timeouts.upstream: line 2: expected a duration"},
		{"negative budget", up + "budget: {worker_time: -1s}\n", "budget.worker_time: must be >= 0"},
		{"negative connection cap", up + "connections: {max: -1}\n", "connections.max: must be >= 0"},
		{"per-client cap over the total", up + "connections: {max: 10, per_client: 20}\n", "connections.per_client: 20 is more than connections.max (10)"},
		{"window too short", up + "budget: {window: 10ms}\n", "budget.window: must be at least 1s"},
		{"no restriction period", up + "budget: {restrict_for: 0s}\n", "budget.restrict_for: must be > 0 when worker_time is set"},
		{"negative in flight", up + "tiers: [{name: t, max_in_flight: -2}]\n", "tiers[0].max_in_flight: must be >= 0"},
		{"tier without name", up + "tiers: [{worker_time: 1s}]\n", "tiers[0].name: required"},
		{"unknown tier", up + "overrides: [{key: k, tier: gold}]\n", `overrides[0].tier: unknown tier "gold"`},
		{"override with two ids", up + "overrides: [{key: k, client: 10.0.0.1}]\n", "overrides[0]: set exactly one of key, fingerprint, client"},
		{"bad fingerprint", up + "overrides: [{fingerprint: abc}]\n", `overrides[0].fingerprint: "abc" is not a fingerprint`},
		{"bad client", up + "overrides: [{client: 10.0.0.0/8}]\n", `overrides[0].client: "10.0.0.0/8" is not an IP address`},
		{"source with two kinds", up + "keys: {sources: [{header: X-Key, query: key}]}\n", "keys.sources[0]: set exactly one of header, bearer, query"},
		{"authorization header", up + "keys: {sources: [{header: authorization}]}\n", "keys.sources[0].header: use bearer: true"},
		{"bad trusted proxy", up + "keys: {trusted_proxies: [10.0.0.0/33]}\n", `keys.trusted_proxies[0]: "10.0.0.0/33" is not an address or CIDR`},
		{"short secret", up + "keys: {secret: abc}\n", "keys.secret: too short"},
		{"open admin", up + "admin: {listen: 0.0.0.0:9091}\n", "admin.listen: 0.0.0.0:9091 is not a loopback address"},
		{"log format", up + "access_log: {format: xml}\n", `access_log.format: "xml" is not a format`},
		{"redis url as type", up + "store: {type: redis://127.0.0.1:6379/0}\n", "store.type: write type: redis and url: redis://127.0.0.1:6379/0"},
		{"redis without url", up + sec + "store: {type: redis}\n", "store.url: required with type: redis"},
		{"redis url scheme", up + sec + "store: {type: redis, url: http://127.0.0.1:6379/0}\n", `store.url: scheme "http": want redis://`},
		{"redis url db", up + sec + "store: {type: redis, url: redis://127.0.0.1:6379/zero}\n", `store.url: database "zero"`},
		{"redis without host", up + sec + "store: {type: redis, url: 'redis:///0'}\n", "store.url: \"redis:///0\" has no host"},
		{"sentinel without master", up + sec + "store: {type: redis, url: 'redis-sentinel://10.0.0.1:26379'}\n", "names no master"},
		{"sentinel list without master", up + sec + "store: {type: redis, sentinel_addrs: [10.0.0.1]}\n", "store: sentinel_addrs need master_name"},
		{"url and a list", up + sec + "store: {type: redis, url: 'redis://h:1/0', cluster_addrs: [a:1]}\n", "store.url: give url or sentinel_addrs/master_name or cluster_addrs, not both"},
		{"cluster db", up + sec + "store: {type: redis, url: 'redis-cluster://a:1,b:2/3'}\n", "only database 0"},
		{"prefix with a hash tag", up + sec + "store: {type: redis, url: 'redis://h:1/0', prefix: 'x{y}'}\n", "store.prefix: \"x{y}\" must be a non-empty key prefix without spaces or braces"},
		{"redis without secret", up + "store: {type: redis, url: redis://127.0.0.1:6379/0}\n", "keys.secret: a redis store needs the same fingerprint secret on every proxy"},
		{"redis with snapshot", up + sec + "store: {type: redis, url: redis://127.0.0.1:6379/0, snapshot: /tmp/x}\n", "store.snapshot: only for type: memory"},
		{"redis sync interval", up + sec + "store: {type: redis, url: redis://127.0.0.1:6379/0, sync_interval: -1s}\n", "store.sync_interval: must be > 0"},
		{"redis max keys", up + sec + "store: {type: redis, url: redis://127.0.0.1:6379/0, max_keys: -1}\n", "store.max_keys: must be > 0"},
		{"url on memory", up + "store: {url: redis://127.0.0.1:6379/0}\n", "store.url: only for type: redis"},
		{"unknown store", up + "store: {type: etcd}\n", `store.type: "etcd" is not a store: use memory or redis`},
		{"timeout", up + "timeouts: {upstream: -1s}\n", "timeouts.upstream: must be > 0"},
		{"not yaml", "upstream: [\n", "not valid YAML"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.yaml)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestParseAcceptsAndDefaults(t *testing.T) {
	c, err := Parse([]byte(`
upstream: http://127.0.0.1:8000
admin: {listen: 0.0.0.0:9091, token: abc}
pools:
  - {name: api, path_prefixes: [/api/], max_concurrent: 8, queue: 16}
  - {name: ui, max_concurrent: 24}
tiers:
  - {name: partner, worker_time: 5m}
overrides:
  - {fingerprint: fp-0123456789abcdef, tier: partner, max_in_flight: 4}
  - {client: "::1", worker_time: 0s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Budget.WorkerTime.D() != DefaultWorkerTime || c.Budget.Window.D() != time.Minute ||
		c.Budget.RestrictFor.D() != 5*time.Minute || c.AccessLog.Format != "headroom" || c.Store.Type != "memory" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.Pools[0].QueueTimeout.D() != time.Second {
		t.Errorf("queue_timeout default = %s", c.Pools[0].QueueTimeout)
	}
	if len(c.Keys.Sources) != 2 || c.Keys.Sources[0].Header != "X-Api-Key" || !c.Keys.Sources[1].Bearer {
		t.Errorf("default key sources = %+v", c.Keys.Sources)
	}
	if c.Tiers[0].WorkerTime.D() != 5*time.Minute || c.Tiers[0].Window != nil {
		t.Errorf("tier fields must stay unset to inherit: %+v", c.Tiers[0])
	}
}

// The example config in deploy/ must stay valid.
func TestDeployExampleIsValid(t *testing.T) {
	c, err := Load("../../../deploy/headroom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pools) == 0 || len(c.Tiers) == 0 {
		t.Errorf("the example should show pools and tiers")
	}
}

// The commented redis store block in deploy/headroom.yaml, uncommented,
// must be a valid fleet configuration too.
func TestDeployExampleRedisBlockIsValid(t *testing.T) {
	data, err := os.ReadFile("../../../deploy/headroom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(data), "\n# store:\n")
	if !ok {
		t.Fatal("no commented '# store:' block in deploy/headroom.yaml")
	}
	yml := "upstream: http://127.0.0.1:8000\nstore:\n"
	for line := range strings.SplitSeq(block, "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		yml += strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ") + "\n"
	}
	c, err := Parse([]byte(yml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yml)
	}
	if c.Store.Type != "redis" || c.Store.URL == "" || c.Keys.SecretFile == "" {
		t.Errorf("the block should configure a redis store with a shared secret file: %+v %+v", c.Store, c.Keys)
	}
}

func TestParsePool(t *testing.T) {
	p, err := ParsePool("name=api,prefix=/api/,prefix=/v2/,host=api.example.com,max=8,queue=16,timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "api" || len(p.PathPrefixes) != 2 || p.Hosts[0] != "api.example.com" || p.MaxConcurrent != 8 || p.Queue != 16 || p.QueueTimeout.D() != 2*time.Second {
		t.Errorf("%+v", p)
	}
	for _, bad := range []string{"", "api", "name=api,max=x", "name=api,timeout=2", "max=3", "name=a,colour=red"} {
		if _, err := ParsePool(bad); err == nil {
			t.Errorf("ParsePool(%q) accepted", bad)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9091": true, "[::1]:9091": true, "localhost:1": true,
		":9091": false, "0.0.0.0:9091": false, "10.0.0.1:9091": false, "garbage": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("upstream: http://127.0.0.1:8000\npools: [{name: a, max_concurrent: 1}]\n"))
	f.Add([]byte("upstream: http://x\ntiers: [{name: t, worker_time: 1s}]\noverrides: [{key: k, tier: t}]\n"))
	f.Add([]byte("keys: {sources: [{header: X}], trusted_proxies: [10.0.0.0/8]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever Parse accepts must stay valid.
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate refuses: %v", err)
		}
	})
}

func FuzzParsePool(f *testing.F) {
	f.Add("name=api,prefix=/api/,max=8,queue=16,timeout=2s")
	f.Add("name=ui,max=1")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePool(s)
		if err == nil && p.Name == "" {
			t.Fatalf("accepted a pool without a name: %q", s)
		}
	})
}

func TestParseRedisStoreDefaults(t *testing.T) {
	c, err := Parse([]byte(`
upstream: http://127.0.0.1:8000
keys: {secret_file: /etc/headroom/secret}
store: {type: redis, url: "redis://10.0.0.5:6379/2"}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Store{Type: "redis", URL: "redis://10.0.0.5:6379/2", Prefix: "headroom:", SnapshotInterval: Duration(10 * time.Second),
		SyncInterval: Duration(time.Second), SyncTimeout: Duration(time.Second), MaxKeys: 10000}
	if !reflect.DeepEqual(c.Store, want) {
		t.Errorf("store = %+v\nwant    %+v", c.Store, want)
	}
}
