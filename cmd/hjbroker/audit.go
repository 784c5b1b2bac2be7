package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/store"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Inspect the tamper-evident audit trail",
	}
	cmd.AddCommand(newAuditVerifyCmd())
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	var dataDir, storeURL string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Walk the audit hash chain and name the first broken link (exit 1 on a break)",
		Long: `Walks the audit trail from the first event to the chain head, recomputing every
SHA-256 link, and reports either OK with the event count and head hash, or the first broken
link: the seq and what is wrong (content changed, row deleted, hash mismatch, ...).
Record the head hash elsewhere: a later head that does not extend it means the chain was
rewritten wholesale.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if storeURL == "" {
				storeURL = os.Getenv("HJB_STORE_URL")
			}
			if storeURL == "" {
				// Opening would create an empty store; a mistyped directory must not verify OK.
				if _, err := os.Stat(filepath.Join(dataDir, "hjbroker.db")); err != nil {
					return fmt.Errorf("no store in %s: %w", dataDir, err)
				}
			}
			s, err := store.Open(cmd.Context(), storeURL, dataDir, store.Options{MaxConns: 2, Migrations: app.Migrations()})
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := audit.NewTrail(s).Verify(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if rep.Break != nil {
				fmt.Fprintf(out, "audit trail BROKEN at seq %d: %s\n  %s\n  (%d events verified before it; chain head seq %d)\n",
					rep.Break.Seq, rep.Break.Kind, rep.Break.Detail, rep.Count, rep.HeadSeq)
				return exitError{code: 1}
			}
			fmt.Fprintf(out, "audit trail OK: %d events, head seq %d, head hash %s\n", rep.Count, rep.HeadSeq, rep.Head)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./data", "directory of the embedded store")
	cmd.Flags().StringVar(&storeURL, "store-url", "", "postgres://... URL of a PostgreSQL store (default HJB_STORE_URL)")
	return cmd
}
