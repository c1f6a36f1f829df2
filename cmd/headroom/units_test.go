package main

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// TestGuardServiceUnits checks the proxy's and the sidecar's systemd units:
// ExecStart runs the right subcommand with flags it accepts, both carry the
// same hardening, and systemd-analyze verify accepts them (with ExecStart
// pointed at an executable that exists here).
func TestGuardServiceUnits(t *testing.T) {
	hardening := []string{
		"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
		"ProtectControlGroups=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces=yes",
		"LockPersonality=yes", "MemoryDenyWriteExecute=yes", "SystemCallArchitectures=native",
	}
	for _, tc := range []struct {
		unit string
		sub  string
		cmd  func() *cobra.Command
	}{
		{"headroom-proxy.service", "proxy", newProxyCmd},
		{"headroom-sidecar.service", "sidecar", newSidecarCmd},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("../../deploy", tc.unit))
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			for _, h := range hardening {
				if !strings.Contains(text, "\n"+h+"\n") {
					t.Errorf("lacks %s", h)
				}
			}
			// ExecStart continues over lines ending in a backslash.
			exec, ok := "", false
			for _, l := range strings.Split(text, "\n") {
				if v, found := strings.CutPrefix(l, "ExecStart="); found {
					exec, ok = v, true
				} else if ok && strings.HasSuffix(strings.TrimSpace(exec), `\`) {
					exec = strings.TrimSuffix(strings.TrimSpace(exec), `\`) + " " + l
				} else {
					ok = false
				}
			}
			f := strings.Fields(exec)
			if len(f) < 2 || f[0] != "/usr/local/bin/headroom" || f[1] != tc.sub {
				t.Fatalf("ExecStart %q does not run 'headroom %s'", exec, tc.sub)
			}
			if err := tc.cmd().ParseFlags(f[2:]); err != nil {
				t.Errorf("ExecStart flags %q: %v", f[2:], err)
			}
			bin := testenv.RequireBinary(t, "systemd-analyze")
			self, _ := os.Executable()
			unit := filepath.Join(t.TempDir(), tc.unit)
			if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/headroom"), []byte(self)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := osexec.Command(bin, "verify", unit).CombinedOutput(); err != nil {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
	}
}
