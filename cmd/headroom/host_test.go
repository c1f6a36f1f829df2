package main

import (
	"bytes"
	"encoding/json"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/hostwatch"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// runHost runs the real command tree in process, as main would.
func runHost(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

const seedDir = "../../internal/hostwatch/testdata/seed"

func TestHostExplainSeed(t *testing.T) {
	out, err := runHost(t, "host", "explain", "--data", filepath.Join(seedDir, "recording"),
		"--journal", filepath.Join(seedDir, "journal.json"), "--at", "2025-08-28T06:25:00Z", "--utc",
		"--proc", filepath.Join(t.TempDir(), "no-proc"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"cause: apt-daily-upgrade.service (by apt-daily-upgrade.timer)", "06:20 apt-daily-upgrade.service started", "no swap", "no live /proc to read"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runHost(t, "host", "explain", "--json", "--data", filepath.Join(seedDir, "recording"),
		"--journal", filepath.Join(seedDir, "journal.json"), "--since", "2025-08-28 06:00", "--until", "2025-08-28T06:50:00Z")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rep struct {
		Episodes []struct {
			Cause struct{ Unit string }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Episodes) != 1 || rep.Episodes[0].Cause.Unit != "apt-daily-upgrade.service" {
		t.Fatalf("json: %v %+v\n%s", err, rep, out)
	}
}

func TestHostBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"host", "explain", "--at", "10m", "--since", "1h"}, "either --at"},
		{[]string{"host", "explain", "--since", "yesterday-ish"}, "--since: time"},
		{[]string{"host", "watch", "--retention", "forever"}, "retention"},
		{[]string{"host", "watch", "--max-size", "huge"}, "size"},
		{[]string{"host", "watch", "--interval", "1ms"}, "too short"},
		{[]string{"host", "snapshot", "--proc", "/nonexistent/proc"}, "--proc"},
	} {
		_, err := runHost(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestHostServiceUnitFlags checks that the systemd unit's ExecStart names
// flags the watch command knows, with values it accepts.
func TestHostServiceUnitFlags(t *testing.T) {
	b, err := os.ReadFile("../../deploy/headroom-host.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			exec = v
		}
	}
	f := strings.Fields(exec)
	if len(f) < 3 || f[1] != "host" || f[2] != "watch" {
		t.Fatalf("ExecStart %q does not run 'headroom host watch'", exec)
	}
	watch := newHostWatchCmd()
	if err := watch.ParseFlags(f[3:]); err != nil {
		t.Fatalf("ExecStart flags: %v", err)
	}
	for _, name := range []string{"retention", "max-size"} {
		v := watch.Flag(name).Value.String()
		var err error
		if name == "retention" {
			_, err = hostwatch.ParseSpan(v)
		} else {
			_, err = hostwatch.ParseSize(v)
		}
		if err != nil {
			t.Errorf("--%s %s: %v", name, v, err)
		}
	}
}

// TestHostServiceUnitVerifies runs systemd-analyze verify on the unit, with
// ExecStart pointed at an executable that exists here. systemd-analyze
// comes with Debian's systemd package (scripts/deps.sh installs it), so in
// CI a missing one fails the test instead of skipping it (issue 11).
func TestHostServiceUnitVerifies(t *testing.T) {
	bin := testenv.RequireBinary(t, "systemd-analyze")
	b, err := os.ReadFile("../../deploy/headroom-host.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "headroom-host.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/headroom"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := osexec.Command(bin, "verify", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

const diskDir = "../../internal/hostwatch/testdata/disk"

// TestHostShow runs show on the disk scenario's recording: the moment
// (--at, read in UTC with --utc), the timeline, and the export, which
// reads back.
func TestHostShow(t *testing.T) {
	rec := filepath.Join(diskDir, "recording")
	out, err := runHost(t, "host", "show", "--data", rec, "--at", "2026-03-14 02:35", "--utc", "--journal", filepath.Join(diskDir, "journal.json"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"headroom host snapshot  2026-03-14 02:35:00 UTC", "from the recording " + rec, "nvme0n1           880.0", "3300 tar              read   110 MiB/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("show --at lacks %q:\n%s", want, out)
		}
	}
	out, err = runHost(t, "host", "show", "--data", rec, "--from", "2026-03-14T02:00:00Z", "--to", "2026-03-14T03:00:00Z", "--utc")
	if err != nil || !strings.Contains(out, "02:30:00   45%") || !strings.Contains(out, "nvme0n1 99%") {
		t.Fatalf("timeline: %v\n%s", err, out)
	}
	out, err = runHost(t, "host", "show", "--data", rec, "--from", "2026-03-14T02:00:00Z", "--to", "2026-03-14T03:00:00Z", "--csv", "--metric", "disk.*.util", "--metric", "fs./.avail")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ex, err := hostwatch.ReadCSV(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ex.Metrics, ",") != "disk.nvme0n1.util,disk.nvme1n1.util,disk.nvme2n1.util,fs./.avail" || len(ex.Rows) != 121 || ex.Rows[70].Values["disk.nvme0n1.util"] != 99 {
		t.Errorf("export: %v, %d rows", ex.Metrics, len(ex.Rows))
	}
	out, err = runHost(t, "host", "show", "--data", rec, "--from", "2026-03-14T02:30:00Z", "--to", "2026-03-14T02:31:00Z", "--json", "--metric", "psi.io.full")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var js hostwatch.Export
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Rows) != 3 || js.Rows[1].Values["psi.io.full"] != 35 {
		t.Errorf("json export: %v %+v\n%s", err, js, out)
	}
}

func TestHostShowBadFlags(t *testing.T) {
	rec := filepath.Join(diskDir, "recording")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"host", "show", "--data", rec, "--at", "1h", "--from", "2h"}, "either --at"},
		{[]string{"host", "show", "--data", rec, "--from", "soon"}, "--from: time"},
		{[]string{"host", "show", "--data", rec, "--from", "1h", "--to", "2h"}, "empty range"},
		{[]string{"host", "show", "--data", rec, "--from", "2026-03-14T02:00:00Z", "--csv", "--json"}, "not both"},
		{[]string{"host", "show", "--data", rec, "--from", "2026-03-14T02:00:00Z", "--metric", "cpu.busy"}, "add --csv"},
		{[]string{"host", "show", "--data", rec, "--from", "2026-03-14T02:00:00Z", "--csv", "--metric", "cpu.bsy"}, "matches none"},
		{[]string{"host", "show", "--data", rec, "--at", "2020-01-01T00:00:00Z"}, "the recording starts at 2026-03-14T01:50:00Z"},
		{[]string{"host", "show", "--data", filepath.Join(t.TempDir(), "none"), "--at", "1h"}, "is `headroom host watch"},
	} {
		_, err := runHost(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}
