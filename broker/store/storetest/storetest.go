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

// Backends returns both backends for a contract test. PostgreSQL is skipped when unreachable
// unless HJB_REQUIRE_SERVICES=1 (set by scripts/test and CI), where it fails instead.
func Backends(t testing.TB) []Backend {
	t.Helper()
	out := []Backend{{Name: "sqlite", DataDir: t.TempDir()}}
	if u, ok := Postgres(t); ok {
		out = append(out, Backend{Name: "postgres", StoreURL: u, DataDir: t.TempDir()})
	}
	return out
}

// Postgres creates a new empty database and returns its URL; it is dropped at cleanup.
func Postgres(t testing.TB) (string, bool) {
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
		t.Skipf("PostgreSQL unreachable at %s (%v); run scripts/test to start it", redact(admin), err)
		return "", false
	}
	name := fmt.Sprintf("hjb_test_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		t.Fatalf("creating test database: %v", err)
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
