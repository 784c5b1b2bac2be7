package storeq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/queue/queuetest"
	"github.com/hjbroker/hjbroker/broker/queue/storeq"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func openStore(t testing.TB, b storetest.Backend) *store.SQL {
	t.Helper()
	s, err := store.Open(context.Background(), b.StoreURL, b.DataDir, store.Options{Migrations: storeq.Migrations()})
	if err != nil {
		t.Fatalf("opening %s store: %v", b.Name, err)
	}
	return s
}

// fresh returns a new, empty backend of the same kind as b.
func fresh(t testing.TB, b storetest.Backend) storetest.Backend {
	t.Helper()
	if b.StoreURL == "" {
		return storetest.Backend{Name: b.Name, DataDir: t.TempDir()}
	}
	u, _ := storetest.Postgres(t)
	return storetest.Backend{Name: b.Name, StoreURL: u, DataDir: t.TempDir()}
}

func TestContract(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			queuetest.Run(t, func(t testing.TB) queue.Queue {
				s := openStore(t, fresh(t, b))
				t.Cleanup(func() { s.Close() })
				return storeq.New(s)
			})
		})
	}
}

func TestReopen(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			queuetest.RunReopen(t, func(t testing.TB) (queue.Queue, func() queue.Queue) {
				s := openStore(t, b)
				t.Cleanup(func() { s.Close() })
				return storeq.New(s), func() queue.Queue {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openStore(t, b)
					return storeq.New(s)
				}
			})
		})
	}
}

func BenchmarkQueue(b *testing.B) {
	for _, be := range storetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			queuetest.Bench(b, func(t testing.TB) queue.Queue {
				s := openStore(t, fresh(t, be))
				t.Cleanup(func() { s.Close() })
				return storeq.New(s)
			})
		})
	}
}

// TestEnqueueTx: messages enqueued in a store transaction commit and roll back with it.
func TestEnqueueTx(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			defer s.Close()
			q := storeq.New(s)
			ctx := context.Background()
			boom := errors.New("resource write failed")
			err := s.Update(ctx, func(tx store.Tx) error {
				if _, err := q.EnqueueTx(ctx, tx, queue.Message{Destination: "d", Body: []byte("lost")}); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Update: %v", err)
			}
			var ids []string
			if err := s.Update(ctx, func(tx store.Tx) error {
				var err error
				ids, err = q.EnqueueTx(ctx, tx, queue.Message{Destination: "d", Key: "Patient/1", Body: []byte("kept")})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			got, err := q.Claim(ctx, "d", "c", 10, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].ID != ids[0] || string(got[0].Body) != "kept" {
				t.Fatalf("claimed %+v, want only the committed message", got)
			}
		})
	}
}
