package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newHostCmd is a placeholder until its issue lands.
func newHostCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "host",
		Short: "(not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("host: not built yet")
		},
	}
}
