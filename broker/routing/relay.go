package routing

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/queue"
)

// DB is what the relay needs of the store: *store.SQL provides it.
type DB interface {
	DB() *sql.DB
	Rebind(q string) string
	Dialect() string
}

// RelayOptions tune a Relay; zero values take the defaults.
type RelayOptions struct {
	// Batch is the most rows one pass hands over (default 256).
	Batch int
	// Interval is how often the relay looks for rows when not notified (default 250ms); on
	// PostgreSQL it is also how soon rows written by other nodes are picked up at the latest.
	Interval time.Duration
	// Retention is how long relayed rows are kept for inspection before they are deleted
	// (default 24h; negative keeps them).
	Retention time.Duration
	// PurgeEvery is how often Run deletes rows older than Retention (default 1m).
	PurgeEvery time.Duration
	Now        func() time.Time
	Log        *zap.Logger
	// OnRelayed, when set, runs after a pass handed n > 0 rows to the queue, so that local
	// delivery workers start at once instead of at their next poll.
	OnRelayed func(n int)
}

// Relay moves outbox rows to the queue.
//
// The hand-over is at-least-once: a row is enqueued and then marked relayed, so a crash (or
// a failed mark) between the two enqueues it again on the next pass. The copy carries the
// same IdempotencyKey (the Delivery.ID, sent as X-Request-ID), so receivers drop it.
//
// On PostgreSQL several nodes may each run a relay: a pass claims rows with FOR UPDATE SKIP
// LOCKED, so two relays do not both relay a row, and holds back a row while an earlier row
// for the same destination and patient is claimed by another relay, so the queue receives
// each patient's deliveries in outbox order. On SQLite (one node, one writer) run one relay
// per store.
type Relay struct {
	db   DB
	q    queue.Queue
	o    RelayOptions
	wake chan struct{}

	passes, relayed, deferred, failures, purged atomic.Uint64
}

// RelayStats are cumulative counts since the relay started, for metrics.
type RelayStats struct {
	Passes   uint64 // passes run
	Relayed  uint64 // rows handed to the queue and marked relayed
	Deferred uint64 // rows held back behind an earlier row of the same key held by another relay
	Failures uint64 // passes that failed (nothing marked; their rows are retried)
	Purged   uint64 // relayed rows deleted after the retention period
}

// NewRelay returns a relay from db's outbox to q.
func NewRelay(db DB, q queue.Queue, o RelayOptions) *Relay {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	if o.PurgeEvery <= 0 {
		o.PurgeEvery = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Relay{db: db, q: q, o: o, wake: make(chan struct{}, 1)}
}

// Notify wakes Run now, typically after a transaction that wrote outbox rows commits, so
// deliveries do not wait for the polling interval.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Stats returns the relay's counts.
func (r *Relay) Stats() RelayStats {
	return RelayStats{
		Passes: r.passes.Load(), Relayed: r.relayed.Load(), Deferred: r.deferred.Load(),
		Failures: r.failures.Load(), Purged: r.purged.Load(),
	}
}

// Run relays until ctx ends, then returns nil. Failures are logged once when they start
// and once when relaying recovers; the rows stay in the outbox meanwhile.
func (r *Relay) Run(ctx context.Context) error {
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	var failing bool
	nextPurge := r.o.Now()
	for {
		n, err := r.RelayOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && !failing:
			failing = true
			r.o.Log.Error("routing relay failing; deliveries wait in the outbox", zap.Error(err))
		case err == nil && failing:
			failing = false
			r.o.Log.Info("routing relay recovered")
		}
		if r.o.Retention > 0 && !r.o.Now().Before(nextPurge) {
			nextPurge = r.o.Now().Add(r.o.PurgeEvery)
			if _, err := r.Purge(ctx); err != nil && ctx.Err() == nil {
				r.o.Log.Warn("purging relayed outbox rows", zap.Error(err))
			}
		}
		if err == nil && n == r.o.Batch {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-tick.C:
		}
	}
}

type outboxRow struct {
	id               int64
	destination, key string
	deliveryID       string
	body             []byte
}

// RelayOnce hands up to Batch unrelayed rows, oldest first, to the queue and marks them
// relayed. It returns how many it marked.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	r.passes.Add(1)
	var n int
	var err error
	if r.db.Dialect() == "postgres" {
		n, err = r.relayLocked(ctx)
	} else {
		n, err = r.relaySingle(ctx)
	}
	if err != nil {
		r.failures.Add(1)
		return 0, err
	}
	r.relayed.Add(uint64(n))
	if n > 0 && r.o.OnRelayed != nil {
		r.o.OnRelayed(n)
	}
	return n, nil
}

const selectPending = `SELECT id, destination, key, delivery_id, body FROM routing_outbox
	WHERE relayed_at IS NULL ORDER BY id LIMIT ?`

// relaySingle serves SQLite. It holds no transaction while enqueueing: the store's single
// writer connection must stay free for resource writes and for a queue kept in the same
// database.
func (r *Relay) relaySingle(ctx context.Context) (int, error) {
	rows, err := r.db.DB().QueryContext(ctx, r.db.Rebind(selectPending), r.o.Batch)
	if err != nil {
		return 0, fmt.Errorf("reading the routing outbox: %w", err)
	}
	pending, err := scanRows(rows)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	if err := r.enqueue(ctx, pending); err != nil {
		return 0, err
	}
	if err := r.mark(ctx, r.db.DB(), pending); err != nil {
		return 0, err
	}
	return len(pending), nil
}

// relayLocked serves PostgreSQL, where relays on several nodes share the outbox.
func (r *Relay) relayLocked(ctx context.Context) (int, error) {
	tx, err := r.db.DB().BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reading the routing outbox: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, r.db.Rebind(selectPending+" FOR UPDATE SKIP LOCKED"), r.o.Batch)
	if err != nil {
		return 0, fmt.Errorf("claiming routing outbox rows: %w", err)
	}
	claimed, err := scanRows(rows)
	if err != nil || len(claimed) == 0 {
		return 0, err
	}
	ready, err := r.inOrder(ctx, tx, claimed)
	if err != nil {
		return 0, err
	}
	r.deferred.Add(uint64(len(claimed) - len(ready)))
	if len(ready) == 0 {
		return 0, nil
	}
	if err := r.enqueue(ctx, ready); err != nil {
		return 0, err
	}
	if err := r.mark(ctx, tx, ready); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("marking routing outbox rows relayed: %w", err)
	}
	return len(ready), nil
}

// inOrder drops claimed rows that have an earlier unrelayed row of the same destination and
// key that this pass did not claim (another relay holds it). Such earlier rows are the ones
// SKIP LOCKED passed over, so there are at most a few batches of them. Relaying later rows
// first would put a patient's later version ahead of an earlier one in the queue.
func (r *Relay) inOrder(ctx context.Context, tx *sql.Tx, claimed []outboxRow) ([]outboxRow, error) {
	mine := make(map[int64]bool, len(claimed))
	for _, c := range claimed {
		mine[c.id] = true
	}
	last := claimed[len(claimed)-1].id
	rows, err := tx.QueryContext(ctx, r.db.Rebind(`SELECT id, destination, key FROM routing_outbox
		WHERE relayed_at IS NULL AND id < ? AND key <> ''`), last)
	if err != nil {
		return nil, fmt.Errorf("checking routing outbox order: %w", err)
	}
	defer rows.Close()
	held := map[[2]string]int64{} // destination, key -> earliest row held elsewhere
	for rows.Next() {
		var id int64
		var dk [2]string
		if err := rows.Scan(&id, &dk[0], &dk[1]); err != nil {
			return nil, fmt.Errorf("checking routing outbox order: %w", err)
		}
		if mine[id] {
			continue
		}
		if e, ok := held[dk]; !ok || id < e {
			held[dk] = id
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checking routing outbox order: %w", err)
	}
	if len(held) == 0 {
		return claimed, nil
	}
	ready := claimed[:0:0]
	for _, c := range claimed {
		if e, ok := held[[2]string{c.destination, c.key}]; ok && e < c.id {
			continue
		}
		ready = append(ready, c)
	}
	return ready, nil
}

func (r *Relay) enqueue(ctx context.Context, rows []outboxRow) error {
	msgs := make([]queue.Message, len(rows))
	for i, c := range rows {
		msgs[i] = queue.Message{Destination: c.destination, Key: c.key, IdempotencyKey: c.deliveryID, Body: c.body}
	}
	if _, err := r.q.Enqueue(ctx, msgs...); err != nil {
		return fmt.Errorf("enqueueing deliveries: %w", err)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (r *Relay) mark(ctx context.Context, db execer, rows []outboxRow) error {
	now := r.o.Now().UnixMicro()
	args := make([]any, 0, len(rows)+1)
	args = append(args, now)
	var q strings.Builder
	q.WriteString("UPDATE routing_outbox SET relayed_at = ? WHERE id IN (")
	for i, c := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteByte('?')
		args = append(args, c.id)
	}
	q.WriteByte(')')
	if _, err := db.ExecContext(ctx, r.db.Rebind(q.String()), args...); err != nil {
		return fmt.Errorf("marking routing outbox rows relayed: %w", err)
	}
	return nil
}

func scanRows(rows *sql.Rows) ([]outboxRow, error) {
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var c outboxRow
		if err := rows.Scan(&c.id, &c.destination, &c.key, &c.deliveryID, &c.body); err != nil {
			return nil, fmt.Errorf("reading the routing outbox: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the routing outbox: %w", err)
	}
	return out, nil
}

// Purge deletes rows relayed longer ago than the retention period and returns how many.
func (r *Relay) Purge(ctx context.Context) (int, error) {
	if r.o.Retention < 0 {
		return 0, nil
	}
	cutoff := r.o.Now().Add(-r.o.Retention).UnixMicro()
	res, err := r.db.DB().ExecContext(ctx, r.db.Rebind(
		`DELETE FROM routing_outbox WHERE relayed_at IS NOT NULL AND relayed_at < ?`), cutoff)
	if err != nil {
		return 0, fmt.Errorf("purging the routing outbox: %w", err)
	}
	n, _ := res.RowsAffected()
	r.purged.Add(uint64(n))
	return int(n), nil
}

// Backlog reports the rows not yet relayed and the creation time of the oldest (zero when
// none), for the outbox depth and age metrics.
func (r *Relay) Backlog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest sql.NullInt64
	err := r.db.DB().QueryRowContext(ctx,
		`SELECT COUNT(*), MIN(created_at) FROM routing_outbox WHERE relayed_at IS NULL`).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reading the routing outbox backlog: %w", err)
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, time.UnixMicro(oldest.Int64), nil
}
