package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// migration is one versioned schema step. Steps are applied in order at start, each in its own
// transaction, and recorded in schema_migrations; a database newer than the binary is refused.
type migration struct {
	version int
	name    string
	stmts   func(d dialect) []string
}

func migrations() []migration {
	return []migration{
		{1, "resources and versions", func(d dialect) []string {
			return []string{
				`CREATE TABLE resource_versions (
					seq ` + d.serial + `,
					res_type TEXT NOT NULL,
					res_id TEXT NOT NULL,
					version BIGINT NOT NULL,
					last_updated BIGINT NOT NULL,
					deleted BOOLEAN NOT NULL,
					method TEXT NOT NULL,
					body ` + d.blob + `,
					UNIQUE (res_type, res_id, version))`,
				`CREATE INDEX resource_versions_type_seq ON resource_versions (res_type, seq)`,
				`CREATE INDEX resource_versions_updated ON resource_versions (last_updated)`,
				// rid keys the index tables: an integer keeps them small.
				`CREATE TABLE resources (
					rid ` + d.serial + `,
					res_type TEXT NOT NULL,
					res_id TEXT NOT NULL,
					version BIGINT NOT NULL,
					seq BIGINT NOT NULL,
					last_updated BIGINT NOT NULL,
					deleted BOOLEAN NOT NULL,
					UNIQUE (res_type, res_id))`,
				`CREATE INDEX resources_type_updated ON resources (res_type, last_updated)`,
			}
		}},
		{2, "search index", func(d dialect) []string {
			return []string{
				`CREATE TABLE idx_token (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
					system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL)`,
				`CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system)`,
				`CREATE INDEX idx_token_rid ON idx_token (rid)`,
				`CREATE TABLE idx_string (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
					norm TEXT NOT NULL, exact TEXT NOT NULL)`,
				`CREATE INDEX idx_string_lookup ON idx_string (res_type, param, norm)`,
				`CREATE INDEX idx_string_rid ON idx_string (rid)`,
				`CREATE TABLE idx_date (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
					lo BIGINT NOT NULL, hi BIGINT NOT NULL)`,
				`CREATE INDEX idx_date_lookup ON idx_date (res_type, param, lo)`,
				`CREATE INDEX idx_date_rid ON idx_date (rid)`,
				`CREATE TABLE idx_ref (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
					target_type TEXT NOT NULL, target_id TEXT NOT NULL, url TEXT NOT NULL)`,
				`CREATE INDEX idx_ref_lookup ON idx_ref (res_type, param, target_id, target_type)`,
				`CREATE INDEX idx_ref_target ON idx_ref (target_type, target_id)`,
				`CREATE INDEX idx_ref_rid ON idx_ref (rid)`,
				`CREATE TABLE idx_number (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
					value DOUBLE PRECISION NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL)`,
				`CREATE INDEX idx_number_lookup ON idx_number (res_type, param, value)`,
				`CREATE INDEX idx_number_rid ON idx_number (rid)`,
				`CREATE TABLE idx_uri (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
					uri TEXT NOT NULL)`,
				`CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, uri)`,
				`CREATE INDEX idx_uri_rid ON idx_uri (rid)`,
			}
		}},
		// SQLite keeps saved searches in a file of its own (see SQL.pages); the table is
		// created here too so that every database has the same schema.
		{3, "saved searches for paging", savedSearchSchema},
	}
}

// savedSearchSchema is idempotent: SQLite runs it on its saved-search file at every start.
func savedSearchSchema(d dialect) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS saved_searches (id TEXT PRIMARY KEY, total BIGINT NOT NULL,
			expires BIGINT NOT NULL, keys ` + d.blob + ` NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS saved_searches_expires ON saved_searches (expires)`,
	}
}

// migrate brings the schema up to date.
func migrate(ctx context.Context, db *sql.DB, d dialect, extra []Migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	if d.dollar {
		// Serialise migrations across broker nodes that start together.
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7411001)`); err != nil {
			return fmt.Errorf("locking migrations: %w", err)
		}
		defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(7411001)`) //nolint:errcheck
		return applyMigrations(ctx, conn, d, extra)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return applyMigrations(ctx, conn, d, extra)
}

func applyMigrations(ctx context.Context, conn *sql.Conn, d dialect, extra []Migration) error {
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("reading schema version: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	all, err := withExtra(migrations(), extra)
	if err != nil {
		return err
	}
	// Each step is recorded by version, so a package's steps added later still apply to a
	// database that already has higher versions from other packages.
	coreLatest := migrations()[len(migrations())-1].version
	for v := range applied {
		if v > coreLatest && v < 100 {
			return fmt.Errorf("database schema version %d is newer than this broker supports (%d)", v, coreLatest)
		}
	}
	for _, m := range all {
		if applied[m.version] {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, s := range m.stmts(d) {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				tx.Rollback() //nolint:errcheck
				return fmt.Errorf("migration %d (%s): %w\n%s", m.version, m.name, err, strings.TrimSpace(s))
			}
		}
		if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
			m.version, m.name, time.Now().UnixMicro()); err != nil {
			tx.Rollback() //nolint:errcheck
			return fmt.Errorf("recording migration %d: %w", m.version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("committing migration %d: %w", m.version, err)
		}
	}
	return nil
}
