// Command hjbroker is the Health & Justice FHIR R4 integration broker.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "hjbroker:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code for commands whose failure is already reported.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hjbroker",
		Short:         "FHIR R4 integration broker for Health & Justice and Liaison & Diversion services",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newFHIRPathCmd(), newValidateCmd(), newTokenCmd(), newAuditCmd(),
		newConfigCmd(), newReplayCmd(), newSpineSimCmd(), newConformanceCmd())
	return root
}
