package redisaddr

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
	}{
		{"redis://127.0.0.1:6390/2", Target{Addrs: []string{"127.0.0.1:6390"}, DB: 2}},
		{"redis://localhost", Target{Addrs: []string{"localhost:6379"}}},
		{"rediss://u:p%40ss@cache.example:6380/0", Target{Addrs: []string{"cache.example:6380"}, Username: "u", Password: "p@ss", TLS: true}},
		{"redis://:secret@[::1]:7000/1", Target{Addrs: []string{"[::1]:7000"}, DB: 1, Password: "secret"}},
		{"redis-sentinel://10.0.0.1,10.0.0.2:26380/mymaster/3", Target{Kind: Sentinel, Addrs: []string{"10.0.0.1:26379", "10.0.0.2:26380"}, MasterName: "mymaster", DB: 3}},
		{"rediss-sentinel://:pw@s1:1/m?sentinel_password=sp", Target{Kind: Sentinel, Addrs: []string{"s1:1"}, MasterName: "m", Password: "pw", SentinelPassword: "sp", TLS: true}},
		{"redis-cluster://n1:7000,n2:7001,n3", Target{Kind: Cluster, Addrs: []string{"n1:7000", "n2:7001", "n3:6379"}}},
		{"rediss-cluster://user:pw@n1:7000/0", Target{Kind: Cluster, Addrs: []string{"n1:7000"}, Username: "user", Password: "pw", TLS: true}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v\nwant %+v", tc.in, got, tc.want)
		}
		// The redacted form parses back to the same place.
		back, err := Parse(got.Redacted())
		if err != nil || !reflect.DeepEqual(back.Addrs, got.Addrs) || back.Kind != got.Kind || back.DB != got.DB || back.MasterName != got.MasterName {
			t.Errorf("Parse(%q.Redacted() = %q) = %+v, %v", tc.in, got.Redacted(), back, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:6379", "is not a URL"},
		{"http://127.0.0.1:6379/0", `scheme "http"`},
		{"redis:///0", "has no host"},
		{"redis://127.0.0.1:6379/zero", `database "zero"`},
		{"redis://a:1,b:2/0", "a list is for redis-sentinel:// or redis-cluster://"},
		{"redis-sentinel://s1:26379", "names no master"},
		{"redis-cluster://n1:7000/1", "only database 0"},
		{"redis://h:99999/0", "not a number 1-65535"},
		{"redis://h:1,/0", "empty address"},
		{"redis-cluster://h:1,,h:2", "empty address"},
		{"redis://h:1/0?foo=1", `unknown parameter "foo"`},
		{"redis://user:hunter2@h:1/x", "REDACTED@h:1"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q): the error shows the password: %v", tc.in, err)
		}
	}
}

func TestFromAddrs(t *testing.T) {
	got, err := FromAddrs([]string{"s1", "s2:5000"}, "m", nil)
	if err != nil || !reflect.DeepEqual(got, Target{Kind: Sentinel, Addrs: []string{"s1:26379", "s2:5000"}, MasterName: "m"}) {
		t.Errorf("sentinels: %+v, %v", got, err)
	}
	got, err = FromAddrs(nil, "", []string{"n1:7000", "n2"})
	if err != nil || !reflect.DeepEqual(got, Target{Kind: Cluster, Addrs: []string{"n1:7000", "n2:6379"}}) {
		t.Errorf("cluster: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		s    []string
		m    string
		c    []string
		want string
	}{
		{[]string{"s"}, "", nil, "need master_name"},
		{nil, "m", nil, "needs sentinel_addrs"},
		{[]string{"s"}, "m", []string{"n"}, "not both"},
		{nil, "", []string{"n:x"}, "port"},
	} {
		if _, err := FromAddrs(tc.s, tc.m, tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromAddrs(%v, %q, %v) = %v, want %q", tc.s, tc.m, tc.c, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"redis://127.0.0.1:6379/0", "rediss://u:p@h/1", "redis-sentinel://a,b:1/m/0?sentinel_password=x",
		"redis-cluster://a:1,b:2,c:3", "redis://[::1]:1/0", "redis://@/", "redis-cluster://,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			return
		}
		if len(tg.Addrs) == 0 || (tg.Kind == Sentinel && tg.MasterName == "") || (tg.Kind == Single && len(tg.Addrs) != 1) {
			t.Fatalf("Parse(%q) = %+v: accepted an incomplete target", s, tg)
		}
		if tg.Password != "" && strings.Contains(tg.Redacted(), tg.Password) && !strings.Contains(strings.Join(tg.Addrs, ",")+tg.MasterName, tg.Password) {
			t.Fatalf("Redacted() of %q shows the password", s)
		}
	})
}
