package main

import "github.com/spf13/pflag"

// aliasFlags keeps the old spelling of renamed flags working, hidden from
// --help (issue 17 item 15: one name and one meaning per concept across
// commands). old2new maps each old name to the current one. Aliases are
// resolved by the flag set's normalization, so an alias sets the very same
// flag and Changed reports it under the current name.
func aliasFlags(fs *pflag.FlagSet, old2new map[string]string) {
	prev := fs.GetNormalizeFunc()
	fs.SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if n, ok := old2new[name]; ok {
			name = n
		}
		return prev(f, name)
	})
}
