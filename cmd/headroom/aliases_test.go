package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// find returns the subcommand at path ("logs analyze").
func find(t *testing.T, root *cobra.Command, path string) *cobra.Command {
	t.Helper()
	c, _, err := root.Find(strings.Fields(path))
	if err != nil || c.CommandPath() != "headroom "+path {
		t.Fatalf("no command %q: %v", path, err)
	}
	return c
}

// Issue 17 item 15: one name and one meaning per concept across commands.
// A flag name that means one thing (the key header, a per-key in-flight
// cap, upstream workers, rows of a table) is offered only by the commands
// where it means that.
func TestOneMeaningPerFlagName(t *testing.T) {
	meanings := map[string][]string{
		"max-in-flight": {"proxy", "sidecar", "demo"}, // concurrent upstream requests per key
		"workers":       {"demo"},                     // upstream workers
		"top":           {"logs analyze"},             // rows per table
		"key-header":    {"proxy", "sidecar", "load"}, // the header carrying the API key
		"api-key":       {"load"},                     // the key itself
		"format":        {"logs analyze"},             // the input log format
		"listen":        {"proxy", "sidecar", "nginx-config"},
	}
	root := newRootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), "headroom ")
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			if want, ok := meanings[f.Name]; ok && !slices.Contains(want, path) {
				t.Errorf("headroom %s offers --%s (%s), a name that means something else in %v", path, f.Name, f.Usage, want)
			}
			if f.Shorthand == "f" && f.ShorthandDeprecated == "" {
				t.Errorf("headroom %s offers -f for --%s: tail and GoAccess users read -f as follow or file", path, f.Name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	// The load generator's key header is spelled as the proxy reads it.
	lh := find(t, root, "load").Flags().Lookup("key-header")
	ph := find(t, root, "proxy").Flags().Lookup("key-header")
	if lh == nil || ph == nil || !strings.Contains(ph.Usage, lh.DefValue) {
		t.Errorf("load --key-header default %v, proxy's: %v", lh, ph)
	}
}

// The old spellings still work, set the renamed flag, and are not offered.
func TestRenamedFlagsKeepTheirOldSpelling(t *testing.T) {
	for _, tc := range []struct {
		cmd, old, value, flag string
	}{
		{"load", "--api-key-header", "X-Key", "key-header"},
		{"load", "--max-in-flight", "50", "max-outstanding"},
		{"logs analyze", "-f", "json", "format"},
		{"logs analyze", "--workers", "3", "parallel"},
		{"host watch", "--top", "4", "processes"},
	} {
		root := newRootCmd()
		c := find(t, root, tc.cmd)
		c.Flags().SetOutput(new(strings.Builder)) // -f's deprecation note
		if err := c.ParseFlags([]string{tc.old, tc.value}); err != nil {
			t.Errorf("%s %s %s: %v", tc.cmd, tc.old, tc.value, err)
			continue
		}
		f := c.Flags().Lookup(tc.flag)
		if f == nil || f.Value.String() != tc.value || !c.Flags().Changed(tc.flag) {
			t.Errorf("%s %s %s did not set --%s: %v", tc.cmd, tc.old, tc.value, tc.flag, f)
		}
		var help strings.Builder
		c.SetOut(&help)
		c.SetErr(&help)
		c.HelpFunc()(c, nil)
		if name := strings.TrimLeft(tc.old, "-"); strings.Contains(help.String(), tc.old+" ") ||
			len(name) == 1 && strings.Contains(help.String(), "-"+name+",") {
			t.Errorf("%s --help still offers %s:\n%s", tc.cmd, tc.old, help.String())
		}
		if !strings.Contains(help.String(), "--"+tc.flag) {
			t.Errorf("%s --help does not offer --%s", tc.cmd, tc.flag)
		}
	}
}
