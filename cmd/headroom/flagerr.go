package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError is every command's FlagErrorFunc. pflag says only "unknown flag:
// --rat"; issue 17 asked that it name the closest flag and where the list
// is. Hidden flags (old spellings kept as aliases) are never suggested.
func flagError(cmd *cobra.Command, err error) error {
	help := fmt.Sprintf("%s --help lists every flag", cmd.CommandPath())
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) {
		return fmt.Errorf("%w (%s)", err, help)
	}
	if short := ne.GetSpecifiedShortnames(); short != "" {
		if short != ne.GetSpecifiedName() {
			return fmt.Errorf("unknown flag -%s in -%s (%s)", ne.GetSpecifiedName(), short, help)
		}
		return fmt.Errorf("unknown flag -%s (%s)", short, help)
	}
	name := ne.GetSpecifiedName()
	if best := closestFlag(cmd.Flags(), name); best != "" {
		return fmt.Errorf("unknown flag --%s: did you mean --%s? (%s)", name, best, help)
	}
	return fmt.Errorf("unknown flag --%s (%s)", name, help)
}

// closestFlag returns the visible flag nearest to name: one it is a prefix
// of, else the one within a few edits, or "".
func closestFlag(fs *pflag.FlagSet, name string) string {
	best, bestD := "", 0
	limit := max(2, len(name)/3)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		d := editDistance(strings.ToLower(name), f.Name)
		if strings.HasPrefix(f.Name, name) && len(name) >= 3 {
			d = min(d, 1)
		}
		if d <= limit && (best == "" || d < bestD || d == bestD && f.Name < best) {
			best, bestD = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
