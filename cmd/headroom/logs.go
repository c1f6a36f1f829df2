package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newLogsCmd is a placeholder until its issue lands.
func newLogsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logs",
		Short: "(not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("logs: not built yet")
		},
	}
}
