// Package storetest gives tests real store backends: a fresh SQLite directory and a fresh
// PostgreSQL database, each removed when the test ends.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Backend names a store to open: StoreURL "" means the embedded store in DataDir.
type Backend struct {
	Name     string
	StoreURL string
	DataDir  string
}

// DefaultPostgresAdminURL is used when HJB_TEST_POSTGRES_URL is not set.
const DefaultPostgresAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Backends returns both backends for a contract test. PostgreSQL is left out (with a log line)
// when unreachable unless HJB_REQUIRE_SERVICES=1 (set by scripts/test and CI), where the test
// fails instead.
func Backends(t testing.TB) []Backend {
	t.Helper()
	out := []Backend{{Name: "sqlite", DataDir: t.TempDir()}}
	// Only the PostgreSQL run is dropped when it is unreachable: skipping the test would
	// skip the SQLite run too.
	if u, ok := postgres(t, t.Logf); ok {
		out = append(out, Backend{Name: "postgres", StoreURL: u, DataDir: t.TempDir()})
	}
	return out
}

// Postgres creates a new empty database and returns its URL; it is dropped at cleanup. The
// test is skipped when PostgreSQL is unreachable (failed under HJB_REQUIRE_SERVICES=1).
func Postgres(t testing.TB) (string, bool) {
	t.Helper()
	return postgres(t, t.Skipf)
}

func postgres(t testing.TB, unreachable func(format string, args ...any)) (string, bool) {
	t.Helper()
	admin := os.Getenv("HJB_TEST_POSTGRES_URL")
	if admin == "" {
		admin = DefaultPostgresAdminURL
	}
	db, err := sql.Open("pgx", admin)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		if os.Getenv("HJB_REQUIRE_SERVICES") == "1" {
			t.Fatalf("PostgreSQL is required but unreachable at %s: %v", redact(admin), err)
		}
		unreachable("PostgreSQL unreachable at %s (%v); run scripts/test to start it", redact(admin), err)
		return "", false
	}
	name := fmt.Sprintf("hjb_test_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	// A linguistic collation, as clusters initialised with an English locale have, makes
	// collation-dependent SQL (ordering, MIN/MAX of text) show up in tests. Servers without
	// ICU (or older than PostgreSQL 15) get their default.
	if _, err := db.Exec("CREATE DATABASE " + name + " TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-GB' LOCALE 'C.UTF-8'"); err != nil {
		if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
			db.Close()
			t.Fatalf("creating test database: %v", err)
		}
	}
	t.Cleanup(func() {
		db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") //nolint:errcheck
		db.Close()
	})
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	return u.String(), true
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(bad URL)"
	}
	return p.Redacted()
}
