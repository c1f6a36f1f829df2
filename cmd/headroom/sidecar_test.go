package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/sidecar"
)

var updateDeploy = flag.Bool("update-deploy", false, "rewrite deploy/nginx-headroom.conf from `headroom nginx-config`")

// runRoot runs the headroom command line in process and returns stdout.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestNginxConfigMatchesDeployFile(t *testing.T) {
	got, err := runRoot(t, "nginx-config")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "deploy", "nginx-headroom.conf")
	if *updateDeploy {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("deploy/nginx-headroom.conf differs from `headroom nginx-config`; run go test ./cmd/headroom -run NginxConfigMatchesDeployFile -update-deploy")
	}
	// The sidecar parses what the snippet logs.
	if !strings.Contains(got, strings.ReplaceAll(sidecar.LogFormat, `"`, `\"`)) {
		t.Error("the snippet's log_format is not sidecar.LogFormat")
	}
}

func TestNginxConfigFlags(t *testing.T) {
	got, err := runRoot(t, "nginx-config", "--sidecar", "127.0.0.1:7001", "--syslog", "127.0.0.1:7002",
		"--upstream", "http://10.0.0.5:8000", "--listen", "80", "--syslog-tag", "edge1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"server 127.0.0.1:7001;", "syslog:server=127.0.0.1:7002,tag=edge1,nohostname", "server 10.0.0.5:8000;", "listen 80;",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	got, err = runRoot(t, "nginx-config", "--log-file", "/var/log/nginx/headroom.log", "--map-dir", "/run/headroom")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"access_log /var/log/nginx/headroom.log headroom_sidecar buffer=64k flush=1s;",
		"include /run/headroom/unchecked-keys.ma[p];", "include /run/headroom/unchecked-pools.ma[p];",
		"auth_request_set $headroom_key $headroom_unchecked_key$upstream_http_x_headroom_key;",
		"if ($headroom_unchecked_key) {",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("--log-file --map-dir output lacks %q", want)
		}
	}
	if strings.Contains(got, "syslog:server=") {
		t.Error("--log-file output still sends syslog")
	}
	for _, bad := range [][]string{
		{"--upstream", "https://x/app"}, {"--sidecar", "nohostport"}, {"--syslog-tag", "no-dashes"}, {"--listen", "80; evil"},
		{"--log-file", "relative.log"}, {"--log-file", "/var/log/a b.log"}, {"--map-dir", "run/headroom"}, {"--map-dir", "/run/h*"},
	} {
		if _, err := runRoot(t, append([]string{"nginx-config"}, bad...)...); err == nil {
			t.Errorf("nginx-config %v: no error", bad)
		}
	}
}

func TestSidecarFlagsOverrideConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "headroom.yaml")
	// The proxy's file: its listen, upstream and access log are not the
	// sidecar's.
	if err := os.WriteFile(path, []byte(`
listen: :8080
upstream: http://127.0.0.1:8000
budget: {worker_time: 30s, window: 2m}
access_log: {path: /var/log/from-file.log}
pools: [{name: api, path_prefixes: [/api/], max_concurrent: 4}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &sidecarFlags{}
	cmd := newSidecarCmdWith(f)
	if err := cmd.ParseFlags([]string{"--config", path, "--budget", "90s", "--ticket-ttl", "2m", "--snapshot", filepath.Join(dir, "snap")}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadSidecarConfig(cmd, f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != sidecar.DefaultListen || cfg.Upstream != "" || cfg.AccessLog.Path != "" {
		t.Errorf("listen %q upstream %q access log %q: the proxy's settings leaked in", cfg.Listen, cfg.Upstream, cfg.AccessLog.Path)
	}
	if cfg.Budget.WorkerTime.D() != 90*time.Second || cfg.Budget.Window.D() != 2*time.Minute {
		t.Errorf("budget %v window %v", cfg.Budget.WorkerTime, cfg.Budget.Window)
	}
	if cfg.Timeouts.Upstream.D() != 2*time.Minute || len(cfg.Pools) != 1 || cfg.Store.Snapshot == "" {
		t.Errorf("ticket ttl %v pools %d snapshot %q", cfg.Timeouts.Upstream, len(cfg.Pools), cfg.Store.Snapshot)
	}

	// No file: the flags' defaults are the configuration.
	f = &sidecarFlags{}
	cmd = newSidecarCmdWith(f)
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if cfg, err = loadSidecarConfig(cmd, f); err != nil {
		t.Fatal(err)
	}
	if cfg.Budget.WorkerTime.D() != time.Minute || cfg.Admin.Listen != "127.0.0.1:9091" {
		t.Errorf("defaults: budget %v admin %q", cfg.Budget.WorkerTime, cfg.Admin.Listen)
	}
}

func TestSidecarAndNginxConfigHelp(t *testing.T) {
	for _, c := range []struct{ cmd, want string }{
		{"sidecar", "headroom sidecar --budget 60s"},
		{"nginx-config", "headroom nginx-config --upstream http://127.0.0.1:8000"},
	} {
		out, err := runRoot(t, c.cmd, "--help")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, c.want) {
			t.Errorf("%s --help lacks its example:\n%s", c.cmd, out)
		}
	}
}
