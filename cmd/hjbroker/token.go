package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
			tok, c, fresh, err := mintLocal(cmd.Context(), dataDir, configFile, clientID, false)
			if err != nil {
				return err
			}
			if fresh {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s held no broker store; a new one was made, and only a broker serving from %s accepts this token\n", dataDir, dataDir)
			}
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

// mintLocal issues an access token for a client from a local broker's store (the embedded one
// in dataDir, or PostgreSQL with HJB_STORE_URL), signed with the key the broker serving from
// that store verifies. An embedded store that does not exist yet is created (a broker started
// on it later accepts the token) and fresh is true; callers minting for a broker that is
// already running treat that as the wrong directory.
func mintLocal(ctx context.Context, dataDir, configFile, clientID string, mustExist bool) (tok *auth.Token, c *auth.Client, fresh bool, err error) {
	cfg, err := tokenConfig(configFile)
	if err != nil {
		return nil, nil, false, err
	}
	opts := auth.Options{Config: cfg}
	if err := opts.FromEnv(); err != nil {
		return nil, nil, false, err
	}
	if _, _, ok := cfg.Client(clientID); !ok {
		return nil, nil, false, fmt.Errorf("no client %q in %s", clientID, cfg.Source)
	}
	storeURL := os.Getenv("HJB_STORE_URL")
	if storeURL == "" {
		_, err := os.Stat(filepath.Join(dataDir, store.SQLiteFile))
		fresh = os.IsNotExist(err)
	}
	if fresh && mustExist {
		return nil, nil, true, fmt.Errorf("no broker store in %s (hjbroker serve keeps %s in its --data-dir; give that directory)", dataDir, store.SQLiteFile)
	}
	st, err := store.Open(ctx, storeURL, dataDir, store.Options{MaxConns: 2, Migrations: app.Migrations()})
	if err != nil {
		return nil, nil, fresh, err
	}
	defer st.Close()
	opts.DB = st
	a, err := auth.New(opts)
	if err != nil {
		return nil, nil, fresh, err
	}
	if tok, err = a.MintFor(ctx, clientID); err != nil {
		return nil, nil, fresh, err
	}
	c, _ = a.Registry().Client(clientID)
	return tok, c, fresh, nil
}

func tokenConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Demo()
	}
	return config.Load(path)
}
