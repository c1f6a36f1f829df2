package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/headroom-dev/headroom", Version: "v0.0.0-20261207011608-e484579abcde+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "e484579abcdef0123456789abcdef0123456789a"},
			{Key: "vcs.time", Value: "2026-12-07T01:16:08Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	devel := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	for _, tc := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		ok     bool
		want   string
	}{
		{"release from the Makefile", "v1.2.0", stamped, true, "headroom v1.2.0 (revision e484579abcde-dirty, 2026-12-07T01:16:08Z, go1.26.8)"},
		{"go build in a checkout", "", stamped, true, "headroom v0.0.0-20261207011608-e484579abcde+dirty (revision e484579abcde-dirty, 2026-12-07T01:16:08Z, go1.26.8)"},
		{"go run", "", devel, true, "headroom dev (revision unknown, go1.26.8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.linked, tc.bi, tc.ok).String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	if in := fromBuildInfo("", nil, false); in.Version != "dev" || in.Revision != "unknown" || !strings.HasPrefix(in.GoVersion, "go") {
		t.Errorf("without build info: %+v", in)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "headroom_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v", mfs)
	}
	m := mfs[0].GetMetric()[0]
	in := Read()
	want := map[string]string{"version": in.Version, "revision": in.ShortRevision(), "goversion": in.GoVersion}
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if len(got) != len(want) || got["version"] != want["version"] || got["revision"] != want["revision"] || got["goversion"] != want["goversion"] {
		t.Errorf("labels %v, want %v", got, want)
	}
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("value %v, want 1", v)
	}
}
