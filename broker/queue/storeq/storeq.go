// Package storeq is the embedded queue backend: delivery work kept in a table of the broker's
// own store (SQLite or PostgreSQL), so a single node needs no other service and messages can
// be enqueued in the same transaction as the resource they are about.
package storeq

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Migrations are the queue's tables; pass them in store.Options.Migrations.
func Migrations() []store.Migration {
	return []store.Migration{{Version: 400, Name: "queue messages", Statements: schema}}
}

func schema(dialect string) []string {
	serial, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	if dialect == "postgres" {
		serial, blob = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA"
	}
	// seq orders messages (a replayed message gets a new one, keeping its id); times are unix
	// microseconds; msg_key avoids KEY, a keyword in SQLite.
	return []string{
		`CREATE TABLE queue_messages (
			seq ` + serial + `,
			id TEXT NOT NULL UNIQUE,
			destination TEXT NOT NULL,
			msg_key TEXT NOT NULL,
			idempotency_key TEXT NOT NULL,
			body ` + blob + ` NOT NULL,
			attempt INTEGER NOT NULL DEFAULT 0,
			enqueued_at BIGINT NOT NULL,
			not_before BIGINT NOT NULL DEFAULT 0,
			lease_owner TEXT NOT NULL DEFAULT '',
			lease_until BIGINT NOT NULL DEFAULT 0,
			state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
			last_error TEXT NOT NULL DEFAULT '',
			dead_at BIGINT NOT NULL DEFAULT 0)`,
		`CREATE INDEX queue_messages_ready ON queue_messages (destination, state, seq)`,
		`CREATE INDEX queue_messages_key ON queue_messages (destination, msg_key, seq)`,
		`CREATE TABLE queue_destinations (destination TEXT PRIMARY KEY)`,
	}
}

// Queue is a queue.Queue on the store.
type Queue struct {
	s  *store.SQL
	db *sql.DB
	pg bool
}

var _ queue.Queue = (*Queue)(nil)

// New returns the queue on s, whose schema must include Migrations. The store stays the
// caller's: Close does not close it.
func New(s *store.SQL) *Queue {
	return &Queue{s: s, db: s.DB(), pg: s.Dialect() == "postgres"}
}

// Enqueue appends messages in one transaction.
func (q *Queue) Enqueue(ctx context.Context, msgs ...queue.Message) ([]string, error) {
	var ids []string
	err := q.s.Update(ctx, func(tx store.Tx) error {
		var err error
		ids, err = q.EnqueueTx(ctx, tx, msgs...)
		return err
	})
	return ids, err
}

// EnqueueTx appends messages inside a store transaction, so they commit or roll back with it
// (for example with the resource write that caused them).
func (q *Queue) EnqueueTx(ctx context.Context, tx store.Tx, msgs ...queue.Message) ([]string, error) {
	now := time.Now().UnixMicro()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if m.Destination == "" {
			return nil, errors.New("queue: message without destination")
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		ids[i] = id.String()
	}
	if err := lockKeys(ctx, tx, msgs); err != nil {
		return nil, err
	}
	dests := map[string]bool{}
	for i, m := range msgs {
		if !dests[m.Destination] {
			dests[m.Destination] = true
			if _, err := tx.Exec(ctx, `INSERT INTO queue_destinations (destination) VALUES (?)
				ON CONFLICT (destination) DO NOTHING`, m.Destination); err != nil {
				return nil, fmt.Errorf("queue: enqueue: %w", err)
			}
		}
		idem := m.IdempotencyKey
		if idem == "" {
			idem = ids[i]
		}
		if _, err := tx.Exec(ctx, `INSERT INTO queue_messages
			(id, destination, msg_key, idempotency_key, body, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)`,
			ids[i], m.Destination, m.Key, idem, nonNil(m.Body), now); err != nil {
			return nil, fmt.Errorf("queue: enqueue: %w", err)
		}
	}
	return ids, nil
}

// lockKeys serialises transactions that add messages of the same key on PostgreSQL, so that
// seq order is commit order within a key: a transaction that drew a lower seq but committed
// later would otherwise let two messages of the key be claimed at once. Keys are locked in
// sorted order so that two transactions cannot deadlock on them. (SQLite has one writer.)
func lockKeys(ctx context.Context, tx store.Tx, msgs []queue.Message) error {
	var keys []string
	for _, m := range msgs {
		if m.Key != "" {
			keys = append(keys, "queue\x00"+m.Destination+"\x00"+m.Key)
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if err := tx.Lock(ctx, k); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const columns = `seq, id, msg_key, idempotency_key, body, attempt, enqueued_at, last_error`

func scan(rows *sql.Rows, destination string) ([]queue.Message, []int64, error) {
	defer rows.Close()
	var out []queue.Message
	var seqs []int64
	for rows.Next() {
		var m queue.Message
		var seq, enq int64
		if err := rows.Scan(&seq, &m.ID, &m.Key, &m.IdempotencyKey, &m.Body, &m.Attempt, &enq, &m.LastError); err != nil {
			return nil, nil, err
		}
		m.Destination = destination
		m.EnqueuedAt = time.UnixMicro(enq)
		out = append(out, m)
		seqs = append(seqs, seq)
	}
	return out, seqs, rows.Err()
}

// Claim leases up to n ready messages: pending, due, not leased (or the lease ended) and, for
// a keyed message, with no earlier unfinished message of its key. On PostgreSQL, SKIP LOCKED
// keeps concurrent claimers off each other's rows; SQLite runs one writer at a time.
func (q *Queue) Claim(ctx context.Context, destination, consumer string, n int, lease time.Duration) ([]queue.Message, error) {
	if n <= 0 {
		return nil, nil
	}
	if lease <= 0 {
		return nil, errors.New("queue: lease must be positive")
	}
	now := time.Now()
	lock := ""
	if q.pg {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	rows, err := q.db.QueryContext(ctx, q.s.Rebind(`UPDATE queue_messages SET lease_owner = ?, lease_until = ?
		WHERE seq IN (SELECT m.seq FROM queue_messages m
			WHERE m.destination = ? AND m.state = 'pending' AND m.not_before <= ? AND m.lease_until <= ?
				AND (m.msg_key = '' OR NOT EXISTS (SELECT 1 FROM queue_messages e
					WHERE e.destination = m.destination AND e.msg_key = m.msg_key
						AND e.state = 'pending' AND e.seq < m.seq))
			ORDER BY m.seq LIMIT ?`+lock+`)
		RETURNING `+columns),
		consumer, now.Add(lease).UnixMicro(), destination, now.UnixMicro(), now.UnixMicro(), n)
	if err != nil {
		return nil, fmt.Errorf("queue: claim from %s: %w", destination, err)
	}
	ms, seqs, err := scan(rows, destination)
	if err != nil {
		return nil, fmt.Errorf("queue: claim from %s: %w", destination, err)
	}
	// RETURNING has no defined order.
	idx := make([]int, len(ms))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(seqs[a], seqs[b]) })
	out := make([]queue.Message, len(ms))
	for i, j := range idx {
		out[i] = ms[j]
	}
	return out, nil
}

// Ack finishes a message; acknowledging one that is already finished does nothing.
func (q *Queue) Ack(ctx context.Context, destination, id string) error {
	if _, err := q.db.ExecContext(ctx, q.s.Rebind(`DELETE FROM queue_messages
		WHERE destination = ? AND id = ? AND state = 'pending'`), destination, id); err != nil {
		return fmt.Errorf("queue: ack %s: %w", id, err)
	}
	return nil
}

// Retry reschedules a message no earlier than notBefore; it keeps its place in its key.
func (q *Queue) Retry(ctx context.Context, destination, id string, notBefore time.Time, lastErr string) error {
	return q.update(ctx, `UPDATE queue_messages SET attempt = attempt + 1, not_before = ?, last_error = ?,
		lease_owner = '', lease_until = 0 WHERE destination = ? AND id = ? AND state = 'pending'`,
		notBefore.UnixMicro(), lastErr, destination, id)
}

// DeadLetter moves a message to the dead letters, which releases its key.
func (q *Queue) DeadLetter(ctx context.Context, destination, id, lastErr string) error {
	return q.update(ctx, `UPDATE queue_messages SET state = 'dead', last_error = ?, dead_at = ?,
		lease_owner = '', lease_until = 0 WHERE destination = ? AND id = ? AND state = 'pending'`,
		lastErr, time.Now().UnixMicro(), destination, id)
}

func (q *Queue) update(ctx context.Context, query string, args ...any) error {
	res, err := q.db.ExecContext(ctx, q.s.Rebind(query), args...)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("queue: %w", err)
	} else if n == 0 {
		return queue.ErrNotFound
	}
	return nil
}

// DeadLetters lists dead letters in the order they died; limit <= 0 lists all.
func (q *Queue) DeadLetters(ctx context.Context, destination string, limit int) ([]queue.Message, error) {
	query := `SELECT ` + columns + ` FROM queue_messages WHERE destination = ? AND state = 'dead'
		ORDER BY dead_at, seq`
	args := []any{destination}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := q.db.QueryContext(ctx, q.s.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %s: %w", destination, err)
	}
	ms, _, err := scan(rows, destination)
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %s: %w", destination, err)
	}
	return ms, nil
}

// Replay moves dead letters back to the queue, behind the messages already waiting for their
// key. A replayed message starts again: Attempt 0 and EnqueuedAt now (so the maximum age
// counts from the replay); ID, IdempotencyKey and LastError stay.
func (q *Queue) Replay(ctx context.Context, destination string, ids ...string) (int, error) {
	var moved int
	err := q.s.Update(ctx, func(tx store.Tx) error {
		moved = 0
		query := `SELECT ` + columns + ` FROM queue_messages WHERE destination = ? AND state = 'dead'`
		args := []any{destination}
		if len(ids) > 0 {
			query += ` AND id IN (?` + strings.Repeat(", ?", len(ids)-1) + `)`
			for _, id := range ids {
				args = append(args, id)
			}
		}
		rows, err := tx.SQLTx().QueryContext(ctx, q.s.Rebind(query+` ORDER BY dead_at, seq`), args...)
		if err != nil {
			return err
		}
		ms, seqs, err := scan(rows, destination)
		if err != nil {
			return err
		}
		if err := lockKeys(ctx, tx, ms); err != nil {
			return err
		}
		now := time.Now().UnixMicro()
		for i, m := range ms {
			// Deleting and inserting gives the message a new seq: the end of its key's line.
			res, err := tx.Exec(ctx, `DELETE FROM queue_messages WHERE seq = ? AND state = 'dead'`, seqs[i])
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				continue // replayed concurrently
			}
			if _, err := tx.Exec(ctx, `INSERT INTO queue_messages
				(id, destination, msg_key, idempotency_key, body, enqueued_at, last_error)
				VALUES (?, ?, ?, ?, ?, ?, ?)`,
				m.ID, destination, m.Key, m.IdempotencyKey, nonNil(m.Body), now, m.LastError); err != nil {
				return err
			}
			moved++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: replay on %s: %w", destination, err)
	}
	return moved, nil
}

// Stats reports depth, the oldest enqueue time and the dead-letter count.
func (q *Queue) Stats(ctx context.Context, destination string) (queue.Stats, error) {
	var depth, dead int
	var oldest sql.NullInt64
	err := q.db.QueryRowContext(ctx, q.s.Rebind(`SELECT
			COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0),
			MIN(CASE WHEN state = 'pending' THEN enqueued_at END),
			COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0)
		FROM queue_messages WHERE destination = ?`), destination).Scan(&depth, &oldest, &dead)
	if err != nil {
		return queue.Stats{}, fmt.Errorf("queue: stats of %s: %w", destination, err)
	}
	st := queue.Stats{Depth: depth, DeadLetters: dead}
	if oldest.Valid {
		st.Oldest = time.UnixMicro(oldest.Int64)
	}
	return st, nil
}

// Destinations lists the destinations ever enqueued to, sorted.
func (q *Queue) Destinations(ctx context.Context) ([]string, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT destination FROM queue_destinations`)
	if err != nil {
		return nil, fmt.Errorf("queue: destinations: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	// Sorted here, not in SQL, so the order is by code point whatever the collation.
	slices.Sort(out)
	return out, rows.Err()
}

// Close does nothing: the store belongs to the caller.
func (q *Queue) Close() error { return nil }
