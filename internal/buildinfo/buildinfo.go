// Package buildinfo says which headroom this is: the release version set at
// link time, else the module version the go command stamped, and the VCS
// revision and Go version from the binary's own build information. The
// `headroom version` command prints it and the guard exports it as
// headroom_build_info, so a dashboard can tell which build each guard runs.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is the release, set by the Makefile:
// go build -ldflags "-X github.com/headroom-dev/headroom/internal/buildinfo.version=v1.2.3".
var version string

// Info is one build's identity.
type Info struct {
	Version   string // release (or module) version; "dev" when neither is known
	Revision  string // VCS revision the binary was built from; "unknown" outside a checkout
	Modified  bool   // the work tree had uncommitted changes
	Time      string // commit time (RFC 3339), "" when unknown
	GoVersion string // the Go toolchain that built it
}

// Read returns this binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(version, bi, ok)
}

// fromBuildInfo is Read apart from the process: linked is the link-time
// version ("" if none).
func fromBuildInfo(linked string, bi *debug.BuildInfo, ok bool) Info {
	in := Info{Version: linked, Revision: "unknown", GoVersion: runtime.Version()}
	if !ok || bi == nil {
		if in.Version == "" {
			in.Version = "dev"
		}
		return in
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	if in.Version == "" {
		// go build in a checkout stamps a pseudo-version from VCS (Go
		// 1.24+); go run and test binaries say "(devel)".
		in.Version = bi.Main.Version
		if in.Version == "" || in.Version == "(devel)" {
			in.Version = "dev"
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.Time = s.Value
		}
	}
	return in
}

// ShortRevision is the revision's first 12 characters, with "-dirty" when
// the tree was modified.
func (in Info) ShortRevision() string {
	r := in.Revision
	if len(r) > 12 {
		r = r[:12]
	}
	if in.Modified {
		r += "-dirty"
	}
	return r
}

// String is the one line `headroom version` prints.
func (in Info) String() string {
	s := "headroom " + in.Version + " (revision " + in.ShortRevision()
	if in.Time != "" {
		s += ", " + in.Time
	}
	return s + ", " + in.GoVersion + ")"
}

// Collector returns headroom_build_info{version,revision,goversion} 1, the
// Prometheus convention for joining a build's identity onto other series.
func Collector() prometheus.Collector {
	in := Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "headroom_build_info",
		Help: "Always 1; its labels say which build runs (version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{
			"version":   in.Version,
			"revision":  in.ShortRevision(),
			"goversion": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}
