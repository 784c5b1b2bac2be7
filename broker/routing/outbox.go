package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/store"
)

// Migrations are the routing tables, for store.Options.Migrations (versions 300-399).
//
// routing_outbox holds deliveries written in the same transaction as the resource version
// they deliver; the relay hands them to the queue and stamps relayed_at. Times are unix
// microseconds. The partial indexes keep the relay's scan and the retention purge small
// whatever the size of the relayed history.
func Migrations() []store.Migration {
	return []store.Migration{{
		Version: 300,
		Name:    "routing outbox",
		Statements: func(dialect string) []string {
			id, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
			if dialect == "postgres" {
				id, blob = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA"
			}
			return []string{
				`CREATE TABLE routing_outbox (
					id ` + id + `,
					delivery_id TEXT NOT NULL,
					destination TEXT NOT NULL,
					key TEXT NOT NULL,
					body ` + blob + ` NOT NULL,
					created_at BIGINT NOT NULL,
					relayed_at BIGINT)`,
				`CREATE INDEX routing_outbox_pending ON routing_outbox (id) WHERE relayed_at IS NULL`,
				`CREATE INDEX routing_outbox_relayed ON routing_outbox (relayed_at) WHERE relayed_at IS NOT NULL`,
			}
		},
	}}
}

// Outbox writes deliveries inside resource write transactions.
type Outbox struct {
	now func() time.Time
}

// NewOutbox returns an outbox; now may be nil for time.Now.
func NewOutbox(now func() time.Time) *Outbox {
	if now == nil {
		now = time.Now
	}
	return &Outbox{now: now}
}

// outboxBatch bounds the rows of one INSERT: 6 parameters a row stays far below SQLite's
// and PostgreSQL's parameter limits.
const outboxBatch = 500

// AddTx records deliveries in tx, so they commit or roll back with the resource version
// written in the same transaction: no committed resource lacks its routing work.
func (o *Outbox) AddTx(ctx context.Context, tx store.Tx, ds []Delivery) error {
	now := o.now().UnixMicro()
	for len(ds) > 0 {
		n := min(len(ds), outboxBatch)
		var q strings.Builder
		q.WriteString("INSERT INTO routing_outbox (delivery_id, destination, key, body, created_at) VALUES ")
		args := make([]any, 0, n*5)
		for i, d := range ds[:n] {
			body, err := json.Marshal(d)
			if err != nil {
				return fmt.Errorf("encoding delivery %s: %w", d.ID, err)
			}
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, d.ID, d.Destination, d.Patient, body, now)
		}
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("writing the routing outbox: %w", err)
		}
		ds = ds[n:]
	}
	return nil
}
