package delivery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/store"
)

// ErrNoDelivery: the delivery log has no delivery with that id.
var ErrNoDelivery = errors.New("delivery: no such delivery")

// Migrations returns the schema of the delivery log (store migration versions 350-399).
func Migrations() []store.Migration {
	return []store.Migration{{
		Version: 350,
		Name:    "delivery log",
		Statements: func(string) []string {
			// The same DDL serves both dialects: times are unix microseconds.
			return []string{
				`CREATE TABLE delivery_log (
					id TEXT PRIMARY KEY,
					queue_id TEXT NOT NULL DEFAULT '',
					destination TEXT NOT NULL,
					route TEXT NOT NULL DEFAULT '',
					resource TEXT NOT NULL DEFAULT '',
					patient TEXT NOT NULL DEFAULT '',
					state TEXT NOT NULL,
					attempts INTEGER NOT NULL DEFAULT 0,
					last_error TEXT NOT NULL DEFAULT '',
					reason TEXT NOT NULL DEFAULT '',
					created_at BIGINT NOT NULL,
					updated_at BIGINT NOT NULL)`,
				`CREATE INDEX delivery_log_dest_state ON delivery_log (destination, state, updated_at)`,
				`CREATE INDEX delivery_log_state ON delivery_log (state, updated_at)`,
				`CREATE INDEX delivery_log_patient ON delivery_log (patient, updated_at)`,
			}
		},
	}}
}

// Entry is one delivery's state as the admin API shows it.
type Entry struct {
	ID          string        `json:"id"`
	QueueID     string        `json:"queueId,omitempty"`
	Destination string        `json:"destination"`
	Route       string        `json:"route,omitempty"`
	Resource    string        `json:"resource,omitempty"` // Type/id/_history/version
	Patient     string        `json:"patient,omitempty"`
	State       routing.State `json:"state"`
	Attempts    int           `json:"attempts"`
	LastError   string        `json:"lastError,omitempty"`
	Reason      string        `json:"reason,omitempty"`
	CreatedAt   time.Time     `json:"createdAt"`
	UpdatedAt   time.Time     `json:"updatedAt"`
}

// DB is the store's database, as *store.SQL provides it.
type DB interface {
	DB() *sql.DB
	Rebind(q string) string
}

// Log keeps delivery states in the delivery_log table.
type Log struct {
	db  DB
	now func() time.Time
}

// NewLog returns a log over db (a store opened with Migrations()).
func NewLog(db DB, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{db: db, now: now}
}

func entryOf(d routing.Delivery, queueID string) Entry {
	e := Entry{ID: d.ID, QueueID: queueID, Destination: d.Destination, Route: d.Route, Patient: d.Patient, CreatedAt: d.CreatedAt}
	if d.ResourceType != "" {
		e.Resource = fmt.Sprintf("%s/%s/_history/%d", d.ResourceType, d.ResourceID, d.Version)
	}
	return e
}

const upsertEntry = `INSERT INTO delivery_log
	(id, queue_id, destination, route, resource, patient, state, attempts, last_error, reason, created_at, updated_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func entryArgs(e Entry) []any {
	return []any{e.ID, e.QueueID, e.Destination, e.Route, e.Resource, e.Patient, string(e.State), e.Attempts,
		e.LastError, e.Reason, e.CreatedAt.UnixMicro(), e.UpdatedAt.UnixMicro()}
}

// Record writes a delivery's state, replacing what was recorded before.
func (l *Log) Record(ctx context.Context, e Entry) error {
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = l.now()
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = e.UpdatedAt
	}
	_, err := l.db.DB().ExecContext(ctx, l.db.Rebind(upsertEntry+` ON CONFLICT (id) DO UPDATE SET
		queue_id = CASE WHEN excluded.queue_id = '' THEN delivery_log.queue_id ELSE excluded.queue_id END,
		state = excluded.state, attempts = excluded.attempts, last_error = excluded.last_error,
		reason = excluded.reason, updated_at = excluded.updated_at`), entryArgs(e)...)
	if err != nil {
		return fmt.Errorf("recording delivery %s: %w", e.ID, err)
	}
	return nil
}

// RecordPending records new deliveries as pending inside a store write transaction (the
// outbox's), leaving any state already recorded for them alone.
func RecordPending(ctx context.Context, tx store.Tx, at time.Time, ds ...routing.Delivery) error {
	for _, d := range ds {
		e := entryOf(d, "")
		e.State, e.UpdatedAt = routing.Pending, at
		if e.CreatedAt.IsZero() {
			e.CreatedAt = at
		}
		if _, err := tx.Exec(ctx, upsertEntry+` ON CONFLICT (id) DO NOTHING`, entryArgs(e)...); err != nil {
			return fmt.Errorf("recording delivery %s: %w", d.ID, err)
		}
	}
	return nil
}

const entryColumns = `id, queue_id, destination, route, resource, patient, state, attempts, last_error, reason, created_at, updated_at`

func scanEntry(row interface{ Scan(...any) error }) (Entry, error) {
	var e Entry
	var state string
	var created, updated int64
	err := row.Scan(&e.ID, &e.QueueID, &e.Destination, &e.Route, &e.Resource, &e.Patient, &state, &e.Attempts,
		&e.LastError, &e.Reason, &created, &updated)
	e.State = routing.State(state)
	e.CreatedAt, e.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	return e, err
}

// Get returns one delivery.
func (l *Log) Get(ctx context.Context, id string) (Entry, error) {
	row := l.db.DB().QueryRowContext(ctx, l.db.Rebind(`SELECT `+entryColumns+` FROM delivery_log WHERE id = ?`), id)
	e, err := scanEntry(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, ErrNoDelivery
	}
	if err != nil {
		return Entry{}, fmt.Errorf("reading delivery %s: %w", id, err)
	}
	return e, nil
}

// Filter selects deliveries; empty fields match anything.
type Filter struct {
	State       routing.State
	Destination string
	Patient     string
	// Limit bounds the result (100 when zero); newest first.
	Limit int
}

// List returns deliveries, most recently updated first.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"state", string(f.State)}, {"destination", f.Destination}, {"patient", f.Patient}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	q := `SELECT ` + entryColumns + ` FROM delivery_log`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += fmt.Sprintf(` ORDER BY updated_at DESC, id LIMIT %d`, limit)
	rows, err := l.db.DB().QueryContext(ctx, l.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("listing deliveries: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Counts returns how many deliveries of a destination are in each state.
func (l *Log) Counts(ctx context.Context, destination string) (map[routing.State]int, error) {
	rows, err := l.db.DB().QueryContext(ctx, l.db.Rebind(`SELECT state, COUNT(*) FROM delivery_log WHERE destination = ? GROUP BY state`), destination)
	if err != nil {
		return nil, fmt.Errorf("counting deliveries: %w", err)
	}
	defer rows.Close()
	out := map[routing.State]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[routing.State(s)] = n
	}
	return out, rows.Err()
}

// setState moves deliveries to state (replay: dead to pending).
// transition moves deliveries from one state to another, leaving any that are no longer in
// the first (a worker already moved them on).
func (l *Log) transition(ctx context.Context, from, to routing.State, reason string, ids ...string) error {
	now := l.now().UnixMicro()
	for _, id := range ids {
		if _, err := l.db.DB().ExecContext(ctx, l.db.Rebind(`UPDATE delivery_log SET state = ?, reason = ?, updated_at = ? WHERE id = ? AND state = ?`),
			string(to), reason, now, id, string(from)); err != nil {
			return fmt.Errorf("updating delivery %s: %w", id, err)
		}
	}
	return nil
}
