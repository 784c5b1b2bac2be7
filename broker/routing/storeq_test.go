package routing

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/queue/storeq"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// TestRelayToEmbeddedQueue relays into the embedded queue kept in the same database, where
// (on SQLite) the relay must not hold the single writer while the queue writes.
func TestRelayToEmbeddedQueue(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s, err := store.Open(ctx, b.StoreURL, b.DataDir, store.Options{Migrations: append(Migrations(), storeq.Migrations()...)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ds := deliveries(4, "Patient/p1")
			if err := write(ctx, s, NewOutbox(nil), "o1", ds, nil); err != nil {
				t.Fatal(err)
			}
			q := storeq.New(s)
			r := NewRelay(s, q, RelayOptions{})
			if n, err := r.RelayOnce(ctx); err != nil || n != 4 {
				t.Fatalf("RelayOnce = %d, %v", n, err)
			}
			// Per destination, the patient's deliveries come out one at a time in order.
			for _, dest := range []string{"ep-a", "ep-b"} {
				for _, want := range ds {
					if want.Destination != dest {
						continue
					}
					msgs, err := q.Claim(ctx, dest, "test", 10, time.Minute)
					if err != nil || len(msgs) != 1 {
						t.Fatalf("claim %s: %d messages, %v", dest, len(msgs), err)
					}
					var d Delivery
					if err := json.Unmarshal(msgs[0].Body, &d); err != nil {
						t.Fatal(err)
					}
					if d.ID != want.ID || msgs[0].IdempotencyKey != want.ID || msgs[0].Key != "Patient/p1" {
						t.Fatalf("claimed %+v (%s), want %s", msgs[0], d.ID, want.ID)
					}
					if err := q.Ack(ctx, dest, msgs[0].ID); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}
