package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// proxyCmdWithArgs parses args as `headroom proxy` would.
func proxyCmdWithArgs(t *testing.T, args ...string) (*cobra.Command, *proxyFlags) {
	t.Helper()
	f := &proxyFlags{}
	cmd := newProxyCmdWith(f)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return cmd, f
}

func TestProxyFlagsOverrideConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "headroom.yaml")
	if err := os.WriteFile(path, []byte(`
upstream: http://127.0.0.1:8000
budget: {worker_time: 30s, window: 2m}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 4}]
access_log: {path: /var/log/from-file.log}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, f := proxyCmdWithArgs(t, "--config", path, "--budget", "90s", "--pool", "name=ui,max=3", "--store", filepath.Join(dir, "snap"))
	cfg, err := loadProxyConfig(cmd, f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Budget.WorkerTime.D() != 90*time.Second {
		t.Errorf("--budget did not override the file: %s", cfg.Budget.WorkerTime)
	}
	if cfg.Budget.Window.D() != 2*time.Minute {
		t.Errorf("the file's window was overridden by a flag default: %s", cfg.Budget.Window)
	}
	if len(cfg.Pools) != 1 || cfg.Pools[0].Name != "ui" {
		t.Errorf("--pool did not replace the file's pools: %+v", cfg.Pools)
	}
	if cfg.AccessLog.Path != "/var/log/from-file.log" {
		t.Errorf("access_log.path from the file lost: %q", cfg.AccessLog.Path)
	}
	if cfg.Store.Type != "memory" || cfg.Store.Snapshot != filepath.Join(dir, "snap") {
		t.Errorf("--store PATH: %+v", cfg.Store)
	}
}

func TestProxyFlagsAlone(t *testing.T) {
	cmd, f := proxyCmdWithArgs(t, "--upstream", "http://127.0.0.1:8000", "--key-query", "api_key", "--trusted-proxy", "10.0.0.0/8", "--max-in-flight", "5",
		"--max-connections", "1000", "--max-connections-per-client", "50")
	cfg, err := loadProxyConfig(cmd, f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Connections.Max != 1000 || cfg.Connections.PerClient != 50 {
		t.Errorf("--max-connections: %+v", cfg.Connections)
	}
	if cfg.Listen != ":8080" || cfg.Admin.Listen != "127.0.0.1:9091" || cfg.Budget.WorkerTime.D() != time.Minute || *cfg.Budget.MaxInFlight != 5 {
		t.Errorf("defaults: %+v", cfg)
	}
	if len(cfg.Keys.Sources) != 1 || cfg.Keys.Sources[0].Query != "api_key" || cfg.Keys.TrustedProxies[0] != "10.0.0.0/8" {
		t.Errorf("key flags: %+v", cfg.Keys)
	}
}

func TestProxyFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "upstream: required"},
		// Issue 17 item 16: an upstream without a scheme says what to write.
		{[]string{"--upstream", "127.0.0.1:8000"}, `upstream: "127.0.0.1:8000" has no scheme: write http://127.0.0.1:8000`},
		{[]string{"--upstream", "http://x", "--store", "redis://127.0.0.1:6379/0"}, "keys.secret: a redis store needs the same fingerprint secret"},
		{[]string{"--upstream", "http://x", "--store", "redis://127.0.0.1:6379/x", "--secret-file", "/etc/headroom/secret"}, `store.url: database "x"`},
		{[]string{"--upstream", "http://x", "--admin", "0.0.0.0:9091"}, "admin.listen: 0.0.0.0:9091 is not a loopback address"},
		{[]string{"--upstream", "http://x", "--pool", "name=api,max=zero"}, `--pool: pool "name=api,max=zero": max="zero" is not a whole number`},
		{[]string{"--config", "/nonexistent/headroom.yaml"}, "read --config"},
	} {
		cmd, f := proxyCmdWithArgs(t, c.args...)
		_, err := loadProxyConfig(cmd, f)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}

func TestProxyStoreRedisFlag(t *testing.T) {
	cmd, f := proxyCmdWithArgs(t, "--upstream", "http://127.0.0.1:8000", "--store", "redis://127.0.0.1:6379/3", "--secret-file", "/etc/headroom/secret")
	cfg, err := loadProxyConfig(cmd, f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Type != "redis" || cfg.Store.URL != "redis://127.0.0.1:6379/3" || cfg.Store.SyncInterval.D() != time.Second || cfg.Store.Prefix != "headroom:" {
		t.Errorf("store = %+v, want type redis with its URL and the sync defaults", cfg.Store)
	}
}
