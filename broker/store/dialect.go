package store

import (
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect holds what differs between SQLite and PostgreSQL. Queries are written with "?"
// placeholders and rebound for PostgreSQL.
type dialect struct {
	name      string
	dollar    bool   // $1 placeholders
	serial    string // auto-increment primary key column type
	blob      string
	forUpdate string // row lock suffix for SELECT inside a write transaction
	// likeOp is the case-sensitive LIKE operator; both backends are made case-sensitive so the
	// index on normalised strings is usable and :contains/:exact behave the same.
	likeOp string
	// binary follows a text expression in ORDER BY, MIN and MAX so that text sorts by code
	// point whatever the database's collation, as SQLite's BINARY collation does.
	binary string
	// noIndex prefixed to a column keeps the planner from driving a query from its index
	// (SQLite's unary plus); empty where the planner has statistics to choose well.
	noIndex string
}

var (
	sqliteDialect = dialect{
		name:    "sqlite",
		serial:  "INTEGER PRIMARY KEY AUTOINCREMENT",
		blob:    "BLOB",
		likeOp:  "GLOB",
		noIndex: "+",
	}
	postgresDialect = dialect{
		name:      "postgres",
		dollar:    true,
		serial:    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
		blob:      "BYTEA",
		forUpdate: " FOR UPDATE",
		likeOp:    "LIKE",
		binary:    ` COLLATE "C"`,
	}
)

// rebind turns "?" placeholders into "$n" for PostgreSQL. Queries never contain a literal "?".
func (d dialect) rebind(q string) string {
	if !d.dollar {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// isConflict reports whether err is a unique-key violation, a serialization failure or a
// deadlock: a concurrent writer won and the transaction may be retried.
func (d dialect) isConflict(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505", "40001", "40P01":
			return true
		}
	}
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) {
		switch sqlErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_BUSY:
			return true
		}
	}
	return false
}

// prefixPattern returns the pattern matching strings that start with s, using the dialect's
// case-sensitive LIKE operator.
func (d dialect) prefixPattern(s string) string {
	return d.escapePattern(s) + d.anyChars()
}

// containsPattern returns the pattern matching strings that contain s.
func (d dialect) containsPattern(s string) string {
	return d.anyChars() + d.escapePattern(s) + d.anyChars()
}

func (d dialect) anyChars() string {
	if d.likeOp == "GLOB" {
		return "*"
	}
	return "%"
}

func (d dialect) escapePattern(s string) string {
	if d.likeOp == "GLOB" {
		var b strings.Builder
		for _, r := range s {
			switch r {
			case '*', '?', '[':
				b.WriteByte('[')
				b.WriteRune(r)
				b.WriteByte(']')
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}
