package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/store"
)

func newTokenCmd() *cobra.Command {
	var dataDir, configFile, clientID string
	cmd := &cobra.Command{
		Use:   "token --client ID [--data-dir DIR] [--config FILE]",
		Short: "Print an access token for a configured client (for operators and tests)",
		Long: `Issue an access token for a client of the configuration (the built-in demo one unless
--config is given) without a client assertion, signed with the store's current key so that the
broker serving from the same store accepts it. The store is the embedded one in --data-dir, or
PostgreSQL when HJB_STORE_URL is set. HJB_PUBLIC_BASE and HJB_TOKEN_TTL must match the server's.

The token is the last line of standard output; its client, scopes and expiry go to standard
error. Every use of the token is audited like any other request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if clientID == "" {
				return fmt.Errorf("--client is required")
			}
			cfg, err := tokenConfig(configFile)
			if err != nil {
				return err
			}
			opts := auth.Options{Config: cfg}
			if err := opts.FromEnv(); err != nil {
				return err
			}
			if _, _, ok := cfg.Client(clientID); !ok {
				return fmt.Errorf("no client %q in %s", clientID, cfg.Source)
			}
			st, err := store.Open(cmd.Context(), os.Getenv("HJB_STORE_URL"), dataDir, store.Options{MaxConns: 2, Migrations: app.Migrations()})
			if err != nil {
				return err
			}
			defer st.Close()
			opts.DB = st
			a, err := auth.New(opts)
			if err != nil {
				return err
			}
			tok, err := a.MintFor(cmd.Context(), clientID)
			if err != nil {
				return err
			}
			c, _ := a.Registry().Client(clientID)
			fmt.Fprintf(cmd.ErrOrStderr(), "client %s (agency %s), scope %q, expires in %ds\n", c.ID, c.AgencyID, tok.Scope, tok.ExpiresIn)
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok.AccessToken)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./data", "directory of the embedded store")
	cmd.Flags().StringVar(&configFile, "config", "", "configuration file (default: the built-in demo configuration)")
	cmd.Flags().StringVar(&clientID, "client", "", "client id from the configuration")
	return cmd
}

func tokenConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Demo()
	}
	return config.Load(path)
}
