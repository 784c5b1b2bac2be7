package auth

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/hjbroker/hjbroker/broker/store"
)

// Database is what the authenticator needs of the store; *store.SQL has it. Every broker node
// on one PostgreSQL shares the replay table and the signing keys.
type Database interface {
	DB() *sql.DB
	Rebind(q string) string
}

// Migrations are the authenticator's tables; pass them in store.Options.Migrations.
func Migrations() []store.Migration {
	return []store.Migration{
		{Version: 100, Name: "auth: client assertion ids (replay protection)", Statements: func(string) []string {
			return []string{
				// A row lives until the assertion expires; the key is per client because jti
				// values are only unique per issuer.
				`CREATE TABLE auth_assertion_ids (client_id TEXT NOT NULL, jti TEXT NOT NULL,
					expires BIGINT NOT NULL, PRIMARY KEY (client_id, jti))`,
				`CREATE INDEX auth_assertion_ids_expires ON auth_assertion_ids (expires)`,
			}
		}},
		{Version: 101, Name: "auth: access token signing keys", Statements: func(string) []string {
			return []string{
				// sign_until ends a key's use for new tokens; verify_until (later by the token
				// lifetime) ends its use for verification.
				`CREATE TABLE auth_signing_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL,
					private_key TEXT NOT NULL, created BIGINT NOT NULL,
					sign_until BIGINT NOT NULL, verify_until BIGINT NOT NULL)`,
				`CREATE INDEX auth_signing_keys_verify_until ON auth_signing_keys (verify_until)`,
			}
		}},
	}
}

// useAssertionID records a client assertion's jti and reports false when it is already
// recorded and unexpired. One statement does it so that two nodes racing on the same jti
// cannot both win; a row whose assertion has expired may be taken over.
func useAssertionID(ctx context.Context, db Database, clientID, jti string, expires, now int64) (bool, error) {
	res, err := db.DB().ExecContext(ctx, db.Rebind(`INSERT INTO auth_assertion_ids (client_id, jti, expires) VALUES (?, ?, ?)
		ON CONFLICT (client_id, jti) DO UPDATE SET expires = excluded.expires WHERE auth_assertion_ids.expires < ?`),
		clientID, jti, expires, now)
	if err != nil {
		return false, fmt.Errorf("recording assertion id: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("recording assertion id: %w", err)
	}
	return n == 1, nil
}

// purgeExpired drops replay rows and signing keys no longer needed.
func purgeExpired(ctx context.Context, db Database, now int64) error {
	if _, err := db.DB().ExecContext(ctx, db.Rebind(`DELETE FROM auth_assertion_ids WHERE expires < ?`), now); err != nil {
		return fmt.Errorf("purging assertion ids: %w", err)
	}
	if _, err := db.DB().ExecContext(ctx, db.Rebind(`DELETE FROM auth_signing_keys WHERE verify_until < ?`), now); err != nil {
		return fmt.Errorf("purging signing keys: %w", err)
	}
	return nil
}
