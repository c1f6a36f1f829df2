// Package archtest holds the test that keeps the package layout the README
// describes: each package sits in a domain and a layer, and imports only
// downwards, within its domain or from the shared packages. A new package
// needs a row here, which is the moment to decide where it belongs.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/headroom-dev/headroom/"

// room is where a package lives: its domain and its layer. A package may
// import a package of a lower layer that is in its own domain or shared.
type room struct {
	domain string
	layer  int
}

const (
	shared = "shared" // importable from every domain
	guard  = "guard"  // the proxy, the sidecar and what they share
	logs   = "logs"   // headroom logs analyze
	load   = "load"   // headroom load
	host   = "host"   // headroom host
	top    = "top"    // wiring: may import every domain
)

var rooms = map[string]room{
	"internal/accesslog":             {shared, 0},
	"internal/buildinfo":             {shared, 0},
	"internal/dims":                  {logs, 0},
	"internal/heavy":                 {logs, 0},
	"internal/httpwire":              {shared, 0},
	"internal/testenv":               {shared, 0},
	"internal/timearg":               {shared, 0},
	"internal/weburl":                {shared, 0},
	"internal/store/redisaddr":       {guard, 0},
	"internal/budget":                {guard, 0},
	"internal/connlimit":             {guard, 0},
	"internal/requestid":             {guard, 0},
	"internal/adminui":               {guard, 0},
	"internal/tailfile":              {guard, 0},
	"internal/guard/config":          {guard, 1},
	"internal/store":                 {guard, 1},
	"internal/admit":                 {guard, 2},
	"internal/lifecycle":             {guard, 2},
	"internal/admin":                 {guard, 3},
	"internal/fastproxy":             {guard, 3},
	"internal/proxytest":             {guard, 3},
	"internal/evproxy":               {guard, 4},
	"internal/guard":                 {guard, 5},
	"internal/sidecar":               {guard, 4},
	"internal/findings":              {logs, 1},
	"internal/findings/findingstest": {logs, 2},
	"internal/analyze":               {logs, 2},
	"internal/htmlreport":            {logs, 3},
	"internal/loadgen/selfmon":       {load, 0},
	"internal/loadgen/h1":            {load, 1},
	"internal/loadgen":               {load, 2},
	"internal/hostwatch/journal":     {host, 0},
	"internal/hostwatch/tsdb":        {host, 0},
	"internal/hostwatch":             {host, 1},
	"internal/demo":                  {top, 6},
	"internal/archtest":              {top, 9},
	"cmd/headroom":                   {top, 9},
	"bench/genlog":                   {top, 9},
	"bench/fleetbench":               {top, 9},
	"bench/epollproxy":               {top, 9},
	"bench/goproxy":                  {top, 9},
	"bench/loadserver":               {top, 9},
	"bench/overloadtool":             {top, 9},
	"bench/upstream":                 {top, 9},
}

// allowed says whether a package in from may import one in to.
func allowed(from, to room) bool {
	if to.layer >= from.layer {
		return false
	}
	return from.domain == top || to.domain == shared || to.domain == from.domain
}

func TestPackagesImportOnlyDownwards(t *testing.T) {
	root := repoRoot(t)
	imports := packageImports(t, root)
	var paths []string
	for p := range imports {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, pkg := range paths {
		from, ok := rooms[pkg]
		if !ok {
			t.Errorf("%s has no room: add it to rooms in internal/archtest (its domain and layer), and to the README's Layout", pkg)
			continue
		}
		for _, imp := range imports[pkg] {
			to, ok := rooms[imp]
			if !ok {
				continue // reported as its own package above
			}
			if !allowed(from, to) {
				t.Errorf("%s (%s, layer %d) imports %s (%s, layer %d): only lower layers of its own domain or shared packages",
					pkg, from.domain, from.layer, imp, to.domain, to.layer)
			}
		}
	}
	for pkg := range rooms {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("rooms lists %s, which is not a package any more: drop its row", pkg)
		}
	}
}

// TestAllowed pins the rule itself, so that loosening it is a visible change.
func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		from, to room
		want     bool
	}{
		{room{guard, 4}, room{guard, 2}, true},
		{room{guard, 2}, room{guard, 4}, false},
		{room{guard, 2}, room{guard, 2}, false},
		{room{logs, 2}, room{shared, 0}, true},
		{room{logs, 2}, room{guard, 0}, false},
		{room{top, 9}, room{host, 1}, true},
		{room{shared, 0}, room{shared, 0}, false},
	} {
		if got := allowed(c.from, c.to); got != c.want {
			t.Errorf("allowed(%v, %v) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// packageImports maps every package of the module (by path relative to the
// module) to the module's packages its non-test files import.
func packageImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "testdata" || strings.HasPrefix(name, ".") || name == "node_modules") {
				return filepath.SkipDir
			}
			if path != root {
				// A nested module (bench/fasthttpproxy, which keeps
				// fasthttp out of headroom's go.mod) is not this module's.
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		if _, seen := out[pkg]; !seen {
			out[pkg] = nil
		}
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return err
			}
			if imp, ok := strings.CutPrefix(imp, module); ok && !slices.Contains(out[pkg], imp) {
				out[pkg] = append(out[pkg], imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the module's packages: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("%s is not the module root: %v", root, err)
	}
	return out
}
