// Command headroom keeps a web application's capacity for the people it is
// meant for, and explains where that capacity went. Each subcommand lives in
// its own file here and only parses flags and wires packages from internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/headroom-dev/headroom/internal/buildinfo"
)

// version is the release or module version (buildinfo: the Makefile sets
// it at link time).
var version = buildinfo.Read().Version

// exitError carries a specific exit code (a failed load-test threshold, say)
// without printing anything more than what the command already said.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "headroom",
		Short: "Keep upstream capacity for the users it is meant for, and explain where it went",
		Long: `headroom keeps a web application's capacity for the people it is meant for,
and explains, with evidence, where that capacity went.

  guard             headroom proxy         budget upstream worker time per API key
                    headroom sidecar       the same guard beside nginx (headroom nginx-config)
  explain traffic   headroom logs analyze  name what changed in access logs, and who did it
  test capacity     headroom load          load test that says who was the bottleneck
  explain the host  headroom host          find a spike and what started at that moment

Start with 'headroom demo' to see the guard at work on this machine.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(buildinfo.Read().String() + "\n")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newVersionCmd(),
		newProxyCmd(),
		newSidecarCmd(),
		newNginxConfigCmd(),
		newDemoCmd(),
		newLogsCmd(),
		newLoadCmd(),
		newHostCmd(),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "headroom:", err)
		os.Exit(1)
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Read())
			return err
		},
	}
}
