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
GP), and run one person's pathway through the FHIR API as each agency's client: arrival in
custody, Summary Care Record lookup, clinical entries, L&D screening, referral to probation
and the probation Task, the court report (withheld until the person consents), release and
the GP hand-back.

The timeline shows each step, who made it, what was stored, what was delivered to whom and
why (route and purpose of use), and what consent or the sharing rules withheld. Nothing is
kept afterwards and no servers are needed. The exit status is 1 when a step did not go as
the pathway expects (a delivery that did not arrive within --wait, a refused request).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
