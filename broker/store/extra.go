package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
)

// Migration is a schema step owned by another package that keeps tables in the store's
// database (so its rows commit in the same transactions). Version ranges: 100-199 auth,
// 200-299 audit, 300-399 routing.
type Migration struct {
	Version int
	Name    string
	// Statements returns the DDL for a dialect ("sqlite" or "postgres").
	Statements func(dialect string) []string
}

func withExtra(core []migration, extra []Migration) ([]migration, error) {
	all := append([]migration(nil), core...)
	seen := map[int]bool{}
	for _, m := range core {
		seen[m.version] = true
	}
	for _, m := range extra {
		if m.Version < 100 || seen[m.Version] {
			return nil, fmt.Errorf("migration %d (%s): versions below 100 are the store's own, and each version is used once", m.Version, m.Name)
		}
		seen[m.Version] = true
		stmts := m.Statements
		all = append(all, migration{version: m.Version, name: m.Name, stmts: func(d dialect) []string { return stmts(d.name) }})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].version < all[j].version })
	return all, nil
}

// Rebind rewrites "?" placeholders for the store's dialect, for packages with their own tables.
func (s *SQL) Rebind(q string) string { return s.d.rebind(q) }

// Exec runs a statement inside the write transaction.
func (t *sqlTx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.ExecContext(ctx, t.s.d.rebind(query), args...)
}

// SQLTx exposes the underlying transaction, with every index row written so far in it.
func (t *sqlTx) SQLTx() *sql.Tx {
	t.flush(context.Background()) //nolint:errcheck // kept in t.err: the transaction fails
	return t.tx
}

// Dialect names the SQL dialect.
func (t *sqlTx) Dialect() string { return t.s.d.name }

// ByRIDs loads current versions by internal key, in order, without deleted ones; it returns
// the keys of what it loaded alongside.
func (s *SQL) ByRIDs(ctx context.Context, rids []int64) ([]*Resource, []int64, error) {
	if len(rids) == 0 {
		return nil, nil, nil
	}
	args := make([]any, len(rids))
	for i, r := range rids {
		args[i] = r
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind(currentSelect+` WHERE r.rid IN (`+placeholders(len(rids))+`)`), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("loading resources: %w", err)
	}
	defer rows.Close()
	found := make(map[int64]*Resource, len(rids))
	for rows.Next() {
		res, rid, err := scanResource(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("loading resources: %w", err)
		}
		found[rid] = res
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	out := make([]*Resource, 0, len(rids))
	kept := make([]int64, 0, len(rids))
	for _, r := range rids {
		if res, ok := found[r]; ok && !res.Deleted {
			out = append(out, res)
			kept = append(kept, r)
		}
	}
	return out, kept, nil
}
