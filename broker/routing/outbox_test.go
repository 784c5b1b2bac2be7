package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// fakeQueue records enqueued messages; the relay uses nothing else of a queue.
type fakeQueue struct {
	mu   sync.Mutex
	msgs []queue.Message
	// fail, when set, is called after each Enqueue has stored its messages; an error it
	// returns is what the relay sees, as if it had crashed before marking the rows.
	fail func() error
}

func (q *fakeQueue) Enqueue(_ context.Context, msgs ...queue.Message) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		m.ID = fmt.Sprint(len(q.msgs) + 1)
		q.msgs = append(q.msgs, m)
		ids[i] = m.ID
	}
	if q.fail != nil {
		if err := q.fail(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func (q *fakeQueue) all() []queue.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queue.Message(nil), q.msgs...)
}

var errUnused = errors.New("not used by the relay")

func (q *fakeQueue) Claim(context.Context, string, string, int, time.Duration) ([]queue.Message, error) {
	return nil, errUnused
}
func (q *fakeQueue) Ack(context.Context, string, string) error { return errUnused }
func (q *fakeQueue) Retry(context.Context, string, string, time.Time, string) error {
	return errUnused
}
func (q *fakeQueue) DeadLetter(context.Context, string, string, string) error { return errUnused }
func (q *fakeQueue) DeadLetters(context.Context, string, int) ([]queue.Message, error) {
	return nil, errUnused
}
func (q *fakeQueue) Replay(context.Context, string, ...string) (int, error) { return 0, errUnused }
func (q *fakeQueue) Stats(context.Context, string) (queue.Stats, error) {
	return queue.Stats{}, errUnused
}
func (q *fakeQueue) Destinations(context.Context) ([]string, error) { return nil, errUnused }
func (q *fakeQueue) Close() error                                   { return nil }

func openStore(t *testing.T, b storetest.Backend) *store.SQL {
	t.Helper()
	s, err := store.Open(context.Background(), b.StoreURL, b.DataDir, store.Options{Migrations: Migrations()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func deliveries(n int, patients ...string) []Delivery {
	out := make([]Delivery, n)
	for i := range out {
		p := ""
		if len(patients) > 0 {
			p = patients[i%len(patients)]
		}
		out[i] = Delivery{ID: fmt.Sprintf("id-%03d", i), Route: "r", Destination: []string{"ep-a", "ep-b"}[i%2], Agency: "a",
			Purpose: "TREAT", Event: "create", ResourceType: "Observation", ResourceID: fmt.Sprint(i), Version: 1,
			Patient: p, CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
	return out
}

// write stores a resource and its deliveries in one transaction; fail makes it roll back.
func write(ctx context.Context, s *store.SQL, ob *Outbox, id string, ds []Delivery, fail error) error {
	return s.Update(ctx, func(tx store.Tx) error {
		body := []byte(`{"resourceType":"Observation","id":"` + id + `"}`)
		if err := tx.Put(ctx, &store.Write{Type: "Observation", ID: id, Version: 1, LastUpdated: time.Now(), Method: "POST", Body: body}); err != nil {
			return err
		}
		if err := ob.AddTx(ctx, tx, ds); err != nil {
			return err
		}
		return fail
	})
}

func countRows(t *testing.T, s *store.SQL, where string) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow("SELECT COUNT(*) FROM routing_outbox WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOutboxCommitsWithTheResource(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			ob := NewOutbox(nil)
			ds := deliveries(3, "Patient/p1")
			if err := write(ctx, s, ob, "o1", ds, nil); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			if err := write(ctx, s, ob, "o2", deliveries(2, "Patient/p2"), boom); !errors.Is(err, boom) {
				t.Fatalf("rolled-back write: %v", err)
			}
			if _, err := s.Current(ctx, "Observation", "o2"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("rolled-back resource: %v", err)
			}
			rows, err := s.DB().Query("SELECT delivery_id, destination, key, body FROM routing_outbox ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []Delivery
			for rows.Next() {
				var id, dest, key string
				var body []byte
				if err := rows.Scan(&id, &dest, &key, &body); err != nil {
					t.Fatal(err)
				}
				var d Delivery
				if err := json.Unmarshal(body, &d); err != nil {
					t.Fatal(err)
				}
				if id != d.ID || dest != d.Destination || key != d.Patient {
					t.Errorf("row columns %s %s %s differ from its body %+v", id, dest, key, d)
				}
				got = append(got, d)
			}
			if !reflect.DeepEqual(got, ds) {
				t.Fatalf("outbox holds\n%+v\nwant\n%+v", got, ds)
			}
		})
	}
}

func TestOutboxLargeBatch(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			if err := write(ctx, s, NewOutbox(nil), "o1", deliveries(outboxBatch*2+7, "Patient/p1"), nil); err != nil {
				t.Fatal(err)
			}
			if n := countRows(t, s, "relayed_at IS NULL"); n != outboxBatch*2+7 {
				t.Fatalf("%d rows", n)
			}
		})
	}
}

func TestRelayHandsOverOnce(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			ds := deliveries(7, "Patient/p1", "Patient/p2", "")
			if err := write(ctx, s, NewOutbox(nil), "o1", ds, nil); err != nil {
				t.Fatal(err)
			}
			q := &fakeQueue{}
			r := NewRelay(s, q, RelayOptions{Batch: 5})
			if n, ts, err := r.Backlog(ctx); err != nil || n != 7 || ts.IsZero() {
				t.Fatalf("backlog %d %v %v", n, ts, err)
			}
			for _, want := range []int{5, 2, 0} {
				if n, err := r.RelayOnce(ctx); err != nil || n != want {
					t.Fatalf("RelayOnce = %d, %v; want %d", n, err, want)
				}
			}
			msgs := q.all()
			if len(msgs) != len(ds) {
				t.Fatalf("%d messages for %d deliveries", len(msgs), len(ds))
			}
			for i, m := range msgs {
				var d Delivery
				if err := json.Unmarshal(m.Body, &d); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(d, ds[i]) || m.IdempotencyKey != ds[i].ID || m.Destination != ds[i].Destination || m.Key != ds[i].Patient {
					t.Errorf("message %d: %+v (%+v), want %+v", i, m, d, ds[i])
				}
			}
			if n, _, _ := r.Backlog(ctx); n != 0 {
				t.Errorf("backlog after relaying: %d", n)
			}
			if st := r.Stats(); st.Relayed != 7 || st.Passes != 3 || st.Failures != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestRelayCrashBetweenEnqueueAndMark(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			ds := deliveries(6, "Patient/p1")
			if err := write(ctx, s, NewOutbox(nil), "o1", ds, nil); err != nil {
				t.Fatal(err)
			}
			crashes := 1
			q := &fakeQueue{fail: func() error {
				if crashes > 0 {
					crashes--
					return errors.New("node died before marking")
				}
				return nil
			}}
			r := NewRelay(s, q, RelayOptions{Batch: 4})
			if _, err := r.RelayOnce(ctx); err == nil {
				t.Fatal("the failed pass reported success")
			}
			if n := countRows(t, s, "relayed_at IS NULL"); n != 6 {
				t.Fatalf("a failed pass marked rows: %d left", n)
			}
			for {
				n, err := r.RelayOnce(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			seen := map[string]int{}
			for _, m := range q.all() {
				seen[m.IdempotencyKey]++
			}
			for i, d := range ds {
				want := 1
				if i < 4 { // the crashed pass's rows are handed over again, with the same key
					want = 2
				}
				if seen[d.ID] != want {
					t.Errorf("%s enqueued %d times, want %d", d.ID, seen[d.ID], want)
				}
			}
			if st := r.Stats(); st.Failures != 1 || st.Relayed != 6 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestRelayPurgesAfterRetention(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			now := time.Now()
			clock := func() time.Time { return now }
			if err := write(ctx, s, NewOutbox(clock), "o1", deliveries(3), nil); err != nil {
				t.Fatal(err)
			}
			r := NewRelay(s, &fakeQueue{}, RelayOptions{Retention: time.Hour, Now: func() time.Time { return now }})
			if _, err := r.RelayOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if err := write(ctx, s, NewOutbox(clock), "o2", deliveries(2), nil); err != nil {
				t.Fatal(err)
			}
			if n, err := r.Purge(ctx); err != nil || n != 0 {
				t.Fatalf("purged %d (%v) within the retention period", n, err)
			}
			now = now.Add(time.Hour + time.Second)
			if n, err := r.Purge(ctx); err != nil || n != 3 {
				t.Fatalf("purged %d (%v), want the 3 relayed rows", n, err)
			}
			if n := countRows(t, s, "relayed_at IS NULL"); n != 2 {
				t.Fatalf("unrelayed rows were purged: %d left", n)
			}
			keep := NewRelay(s, &fakeQueue{}, RelayOptions{Retention: -1, Now: func() time.Time { return now.Add(1000 * time.Hour) }})
			if _, err := keep.RelayOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if n, _ := keep.Purge(ctx); n != 0 {
				t.Fatalf("negative retention purged %d", n)
			}
		})
	}
}

func TestRelayRunWakesOnNotify(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := storetest.Backends(t)[0]
	s := openStore(t, b)
	q := &fakeQueue{}
	// A long interval: only Notify can make the relay pick the rows up in time.
	r := NewRelay(s, q, RelayOptions{Interval: time.Hour})
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	// Run's first pass may or may not see this write; Notify covers the other case.
	if err := write(ctx, s, NewOutbox(nil), "o1", deliveries(3), nil); err != nil {
		t.Fatal(err)
	}
	r.Notify()
	deadline := time.Now().Add(5 * time.Second)
	for len(q.all()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(q.all()); got != 3 {
		t.Fatalf("relayed %d of 3 after Notify", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestTwoRelaysOnePostgres runs two nodes' relays on one database: each row is handed over
// once, and each patient's deliveries to a destination reach the queue in outbox order.
func TestTwoRelaysOnePostgres(t *testing.T) {
	u, _ := storetest.Postgres(t)
	ctx := context.Background()
	s1 := openStore(t, storetest.Backend{Name: "postgres", StoreURL: u, DataDir: t.TempDir()})
	s2 := openStore(t, storetest.Backend{Name: "postgres", StoreURL: u, DataDir: t.TempDir()})
	var all []Delivery
	ob := NewOutbox(nil)
	for i := 0; i < 20; i++ {
		ds := deliveries(30, "Patient/p1", "Patient/p2", "Patient/p3", "")
		for j := range ds {
			ds[j].ID = fmt.Sprintf("w%02d-%02d", i, j)
		}
		if err := write(ctx, s1, ob, fmt.Sprint("o", i), ds, nil); err != nil {
			t.Fatal(err)
		}
		all = append(all, ds...)
	}
	// A slow queue widens the window in which both relays hold rows.
	q := &fakeQueue{fail: func() error { time.Sleep(time.Millisecond); return nil }}
	relays := []*Relay{NewRelay(s1, q, RelayOptions{Batch: 7}), NewRelay(s2, q, RelayOptions{Batch: 7})}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, r := range relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idle := 0; idle < 3; {
				n, err := r.RelayOnce(ctx)
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					idle++
					time.Sleep(2 * time.Millisecond)
				} else {
					idle = 0
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := countRows(t, s1, "relayed_at IS NULL"); n != 0 {
		t.Fatalf("%d rows left unrelayed", n)
	}
	pos := map[string]int{}
	for i, d := range all {
		pos[d.ID] = i
	}
	seen := map[string]bool{}
	last := map[[2]string]int{}
	for _, m := range q.all() {
		if seen[m.IdempotencyKey] {
			t.Errorf("%s relayed twice", m.IdempotencyKey)
		}
		seen[m.IdempotencyKey] = true
		if m.Key == "" {
			continue
		}
		k := [2]string{m.Destination, m.Key}
		if p, ok := last[k]; ok && pos[m.IdempotencyKey] < p {
			t.Errorf("%s reached the queue after a later delivery for %v", m.IdempotencyKey, k)
		}
		last[k] = pos[m.IdempotencyKey]
	}
	if len(seen) != len(all) {
		t.Errorf("relayed %d of %d", len(seen), len(all))
	}
	s1Stats, s2Stats := relays[0].Stats(), relays[1].Stats()
	if s1Stats.Relayed == 0 || s2Stats.Relayed == 0 {
		t.Logf("one relay did all the work: %+v %+v", s1Stats, s2Stats)
	}
	t.Logf("relay stats: %+v %+v", s1Stats, s2Stats)
}
