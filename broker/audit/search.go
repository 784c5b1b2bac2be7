package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Filter selects audit events; zero fields do not filter.
type Filter struct {
	// Patient is "Patient/id" or a bare id.
	Patient string
	// Agency is the configured agency id.
	Agency string
	Client string
	// Since is inclusive, Until exclusive.
	Since, Until time.Time
	Action       Action
	// Limit defaults to DefaultLimit and is capped at MaxLimit.
	Limit, Offset int
}

// Page limits.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Result is one page of a search.
type Result struct {
	// Total counts every matching event, not just this page.
	Total int64
	// Events are the AuditEvent resources, newest first, rendered from the hashed records.
	Events []json.RawMessage
}

// Get returns the AuditEvent with the given id; found is false when the trail has none.
func (t *Trail) Get(ctx context.Context, id string) (ae json.RawMessage, found bool, err error) {
	var body string
	err = t.db.QueryRowContext(ctx, t.rebind(`SELECT body FROM audit_events WHERE event_id = ? ORDER BY seq LIMIT 1`), id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit: reading event %s: %w", id, err)
	}
	out, err := renderBody([]byte(body))
	if err != nil {
		return nil, false, fmt.Errorf("audit: reading event %s: %w", id, err)
	}
	return out, true, nil
}

// Search returns the events matching f, newest first.
func (t *Trail) Search(ctx context.Context, f Filter) (Result, error) {
	var where []string
	var args []any
	if f.Patient != "" {
		ref := patientRef(f.Patient)
		if ref == "" {
			return Result{}, fmt.Errorf("audit search: patient %q is not Patient/id", f.Patient)
		}
		// One seek per bucket (patientBucketSize): the buckets are counted out by a
		// recursive query, which both backends run as a loop of index lookups.
		var head int64
		if err := t.db.QueryRowContext(ctx, `SELECT seq FROM audit_chain_head WHERE id = 1`).Scan(&head); err != nil {
			return Result{}, fmt.Errorf("audit search: reading chain head: %w", err)
		}
		where = append(where, `seq IN (WITH RECURSIVE b(n) AS (SELECT CAST(? AS BIGINT) UNION ALL SELECT n + 1 FROM b WHERE n < ?)
			SELECT i.seq FROM b JOIN audit_patient_index i ON i.bucket = b.n AND i.patient = ?)`)
		args = append(args, 0, patientBucket(head), ref)
	}
	for _, c := range []struct{ col, v string }{{"agency", f.Agency}, {"client", f.Client}, {"action", string(f.Action)}} {
		if c.v != "" {
			where = append(where, c.col+` = ?`)
			args = append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, `recorded >= ?`)
		args = append(args, f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		where = append(where, `recorded < ?`)
		args = append(args, f.Until.UnixMicro())
	}
	cond := ""
	if len(where) > 0 {
		cond = ` WHERE ` + strings.Join(where, ` AND `)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	offset := max(f.Offset, 0)

	var res Result
	if err := t.db.QueryRowContext(ctx, t.rebind(`SELECT COUNT(*) FROM audit_events`+cond), args...).Scan(&res.Total); err != nil {
		return Result{}, fmt.Errorf("audit search: counting: %w", err)
	}
	rows, err := t.db.QueryContext(ctx, t.rebind(`SELECT body FROM audit_events`+cond+
		` ORDER BY recorded DESC, seq DESC LIMIT ? OFFSET ?`), append(args, limit, offset)...)
	if err != nil {
		return Result{}, fmt.Errorf("audit search: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return Result{}, fmt.Errorf("audit search: %w", err)
		}
		ae, err := renderBody([]byte(body))
		if err != nil {
			return Result{}, fmt.Errorf("audit search: %w", err)
		}
		res.Events = append(res.Events, json.RawMessage(ae))
	}
	if err := rows.Err(); err != nil {
		return Result{}, fmt.Errorf("audit search: %w", err)
	}
	return res, nil
}
