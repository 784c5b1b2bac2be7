package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/app/demo"
)

func newDemoCmd() *cobra.Command {
	var asJSON, verbose bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "demo [--json] [--verbose]",
		Short: "Run the custody-to-court pathway end to end on an in-process broker and print its timeline",
		Long: `Start a broker on a temporary embedded store with the built-in demo agency configuration,
its endpoints pointed at small in-process receivers (one per agency: L&D, court, probation,
GP) and a Spine simulator, and run one person's pathway through the FHIR API as each agency's
client: arrival in custody with a PDS lookup, the Summary Care Record, clinical entries, L&D
screening and assessment, the referral to probation and its Task, the court report (not sent
until the person consents), release and the GP hand-back. See docs/demo.md.

The timeline shows each step, who made it, what was stored, what was delivered to whom and
why (route and purpose of use), and what consent or the sharing rules withheld. Nothing is
kept afterwards and no servers are needed. The exit status is 1 when a step did not go as
the pathway expects (a delivery that did not arrive within --wait, a refused request).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wait <= 0 {
				return fmt.Errorf("--wait must be a positive duration such as 20s, not %s", wait)
			}
			tl, err := demo.Run(cmd.Context(), demo.Options{Wait: wait})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				err = tl.WriteJSON(out)
			} else {
				err = tl.WriteText(out, verbose)
			}
			if err != nil {
				return fmt.Errorf("writing the timeline: %w", err)
			}
			if !tl.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the timeline as JSON")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show every request, delivery ids and attempts")
	cmd.Flags().DurationVar(&wait, "wait", 20*time.Second, "how long to wait for each step's deliveries")
	return cmd
}
