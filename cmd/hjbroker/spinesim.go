package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/adapters/spine"
	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
)

func newSpineSimCmd() *cobra.Command {
	var (
		addr, generate, genClient, genKID string
		clients                           []string
		opts                              spinesim.Options
	)
	cmd := &cobra.Command{
		Use:   "spine-sim",
		Short: "Simulate the Spine's PDS and SCR FHIR APIs and token endpoint, with test patients (docs/spine.md)",
		Long: `spine-sim serves simulated PDS (/personal-demographics/FHIR/R4), SCR (/summary-care-record/FHIR/R4)
and the platform token endpoint (/oauth2/token) on one address. The token endpoint verifies signed JWT
client assertions (RS512) against the public keys given at start:

  --client ID,KID,PUBLIC_KEY.pem   register a client (repeatable)
  --generate-key FILE              write a new RSA private key to FILE and register its public key
                                   for --generate-client (default hjbroker) and --generate-kid

Point the broker at it with HJB_SPINE_URL=http://ADDR, HJB_SPINE_CLIENT_ID, HJB_SPINE_KEY_ID and
HJB_SPINE_KEY_FILE (the private key).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, c := range clients {
				parts := strings.Split(c, ",")
				if len(parts) != 3 {
					return fmt.Errorf("--client %q: want ID,KID,PUBLIC_KEY_FILE", c)
				}
				raw, err := os.ReadFile(parts[2])
				if err != nil {
					return fmt.Errorf("--client %s: %w", parts[0], err)
				}
				pub, err := spine.ParsePublicKeyPEM(raw)
				if err != nil {
					return fmt.Errorf("--client %s: %s: %w", parts[0], parts[2], err)
				}
				opts.Clients = append(opts.Clients, spinesim.Client{ID: parts[0], KeyID: parts[1], Key: pub})
			}
			if generate != "" {
				pub, err := writeKey(generate)
				if err != nil {
					return err
				}
				opts.Clients = append(opts.Clients, spinesim.Client{ID: genClient, KeyID: genKID, Key: pub})
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote a private key for client %s (kid %s) to %s\n", genClient, genKID, generate)
			}
			if len(opts.Clients) == 0 {
				return fmt.Errorf("no client registered: give --client ID,KID,PUBLIC_KEY_FILE or --generate-key FILE")
			}
			sim, err := spinesim.Start(addr, opts)
			if err != nil {
				return err
			}
			defer sim.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "spine simulator serving at %s (PDS %s, SCR %s, token %s)\n",
				sim.URL, sim.URL+spine.PDSPath, sim.URL+spine.SCRPath, sim.URL+spine.TokenPath)
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9100", "listen address HOST:PORT")
	cmd.Flags().StringArrayVar(&clients, "client", nil, "a registered client: ID,KID,PUBLIC_KEY_FILE (PEM); repeatable")
	cmd.Flags().StringVar(&generate, "generate-key", "", "write a new RSA private key (PEM) here and register its public key")
	cmd.Flags().StringVar(&genClient, "generate-client", "hjbroker", "client id of the --generate-key client")
	cmd.Flags().StringVar(&genKID, "generate-kid", "hjbroker-1", "key id of the --generate-key client")
	cmd.Flags().DurationVar(&opts.TokenTTL, "token-ttl", 10*time.Minute, "access token lifetime")
	cmd.Flags().DurationVar(&opts.SlowDelay, "slow-delay", 30*time.Second, "how long the slow test patients keep a request waiting")
	return cmd
}

// writeKey writes a new 2048-bit RSA private key (PKCS#8 PEM, mode 0600) and returns its
// public key.
func writeKey(path string) (*rsa.PublicKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("writing the key: %w", err)
	}
	return &k.PublicKey, nil
}
