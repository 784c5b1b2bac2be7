package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/queue/storeq"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func openStore(t *testing.T, b storetest.Backend) *store.SQL {
	t.Helper()
	s, err := store.Open(context.Background(), b.StoreURL, b.DataDir, store.Options{MaxConns: 4,
		Migrations: append(Migrations(), storeq.Migrations()...)})
	if err != nil {
		t.Fatalf("opening the %s store: %v", b.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLogOnBothBackends(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			ctx := context.Background()
			l := NewLog(s, nil)
			at := time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)
			d := routing.Delivery{ID: "d1", Route: "r1", Destination: "court-ep", ResourceType: "Observation", ResourceID: "o1", Version: 2, Patient: "Patient/a", CreatedAt: at}
			err := s.Update(ctx, func(tx store.Tx) error {
				return RecordPending(ctx, tx, at, d, routing.Delivery{ID: "d2", Destination: "gp-ep", Patient: "Patient/b"})
			})
			if err != nil {
				t.Fatal(err)
			}
			e, err := l.Get(ctx, "d1")
			if err != nil {
				t.Fatal(err)
			}
			if e.State != routing.Pending || e.Resource != "Observation/o1/_history/2" || e.Patient != "Patient/a" || !e.CreatedAt.Equal(at) {
				t.Errorf("pending entry %+v", e)
			}
			e.QueueID, e.State, e.Attempts, e.LastError, e.UpdatedAt = "q1", routing.Retrying, 1, "HTTP 503", at.Add(time.Second)
			if err := l.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
			e.QueueID, e.State, e.Attempts, e.UpdatedAt = "", routing.Dead, 2, at.Add(2*time.Second)
			if err := l.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
			// A later pending record (a relay running again) does not undo the state.
			if err := s.Update(ctx, func(tx store.Tx) error { return RecordPending(ctx, tx, at, d) }); err != nil {
				t.Fatal(err)
			}
			got, _ := l.Get(ctx, "d1")
			if got.State != routing.Dead || got.Attempts != 2 || got.QueueID != "q1" || got.LastError != "HTTP 503" {
				t.Errorf("entry %+v, want dead after 2 attempts, queue id kept", got)
			}
			tests := []struct {
				f    Filter
				want []string
			}{
				{Filter{}, []string{"d1", "d2"}},
				{Filter{State: routing.Dead}, []string{"d1"}},
				{Filter{Destination: "gp-ep"}, []string{"d2"}},
				{Filter{Patient: "Patient/a", State: routing.Pending}, nil},
				{Filter{Limit: 1}, []string{"d1"}},
			}
			for _, tt := range tests {
				es, err := l.List(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, e := range es {
					ids = append(ids, e.ID)
				}
				if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
					t.Errorf("List(%+v) = %v, want %v", tt.f, ids, tt.want)
				}
			}
			if _, err := l.Get(ctx, "nope"); err != ErrNoDelivery {
				t.Errorf("Get(unknown) err = %v", err)
			}
			counts, err := l.Counts(ctx, "court-ep")
			if err != nil || counts[routing.Dead] != 1 || len(counts) != 1 {
				t.Errorf("counts %v, %v", counts, err)
			}
		})
	}
}

// With the embedded queue and the delivery log on a real store: a destination that refuses
// everything dead-letters; replay of one and of the endpoint's dead letters through the
// admin API delivers them once it accepts again.
// deadDeliveries sets up a worker on the embedded queue whose endpoint answers 503 until up is
// set, and three deliveries (one patient each) that died after maxAttempts attempts.
func deadDeliveries(t *testing.T, b storetest.Backend, maxAttempts int) (queue.Queue, *Log, *harness, *atomic.Bool, routing.Delivery, routing.Delivery, routing.Delivery) {
	t.Helper()
	s := openStore(t, b)
	q := storeq.New(s)
	l := NewLog(s, nil)
	h := newHarness(t, harnessOpts{q: q, log: l, extra: []string{fmt.Sprintf("maxAttempts: %d", maxAttempts)}})
	up := new(atomic.Bool)
	h.rc.setStatus(func(received) (int, http.Header) {
		if up.Load() {
			return http.StatusOK, nil
		}
		return http.StatusServiceUnavailable, nil
	})
	d1 := h.add(t, "o1", "Patient/a", 1)
	d2 := h.add(t, "o2", "Patient/b", 1)
	d3 := h.add(t, "o3", "Patient/c", 1)
	h.drain(t, 0)
	return q, l, h, up, d1, d2, d3
}

func TestAdminReplayWithStoreQueue(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			q, l, h, up, d1, d2, d3 := deadDeliveries(t, b, 2)
			admin := NewAdmin(AdminOptions{Queue: q, Log: l, Config: h.cfg, Worker: h.w})
			srv := httptest.NewServer(http.StripPrefix("/admin", admin))
			defer srv.Close()

			var list struct{ Deliveries []Entry }
			call(t, srv, "GET", "/admin/deliveries?state=dead&destination=court-ep", http.StatusOK, &list)
			if len(list.Deliveries) != 3 {
				t.Fatalf("%d dead deliveries, want 3", len(list.Deliveries))
			}
			var one Entry
			call(t, srv, "GET", "/admin/deliveries/"+d1.ID, http.StatusOK, &one)
			if one.State != routing.Dead || one.Attempts != 2 || !strings.Contains(one.LastError, "HTTP 503") {
				t.Errorf("delivery %+v, want dead after 2 attempts with the last error", one)
			}
			call(t, srv, "GET", "/admin/deliveries/nope", http.StatusNotFound, nil)
			call(t, srv, "GET", "/admin/deliveries?state=lost", http.StatusBadRequest, nil)

			up.Store(true)
			call(t, srv, "POST", "/admin/deliveries/"+d1.ID+"/replay", http.StatusOK, nil)
			call(t, srv, "GET", "/admin/deliveries/"+d1.ID, http.StatusOK, &one)
			if one.State != routing.Pending {
				t.Errorf("replayed delivery is %s, want pending", one.State)
			}
			h.drain(t, 0)
			call(t, srv, "GET", "/admin/deliveries/"+d1.ID, http.StatusOK, &one)
			if one.State != routing.Delivered || one.Attempts != 1 {
				t.Errorf("after replay %+v, want delivered at the first attempt", one)
			}
			call(t, srv, "POST", "/admin/deliveries/"+d1.ID+"/replay", http.StatusConflict, nil)

			var eps struct{ Endpoints []EndpointStatus }
			call(t, srv, "GET", "/admin/endpoints", http.StatusOK, &eps)
			if len(eps.Endpoints) != 1 || eps.Endpoints[0].ID != "court-ep" || eps.Endpoints[0].DeadLetters != 2 ||
				eps.Endpoints[0].States[routing.Dead] != 2 || eps.Endpoints[0].States[routing.Delivered] != 1 {
				t.Errorf("endpoints %+v", eps.Endpoints)
			}
			var replayed struct{ Replayed int }
			call(t, srv, "POST", "/admin/endpoints/court-ep/replay", http.StatusOK, &replayed)
			if replayed.Replayed != 2 {
				t.Errorf("replayed %d, want 2", replayed.Replayed)
			}
			call(t, srv, "POST", "/admin/endpoints/nowhere/replay", http.StatusNotFound, nil)
			h.drain(t, 0)
			for _, d := range []routing.Delivery{d2, d3} {
				e, _ := l.Get(context.Background(), d.ID)
				if e.State != routing.Delivered {
					t.Errorf("%s is %s after the endpoint replay, want delivered", d.ID, e.State)
				}
			}
			if dl, _ := q.DeadLetters(context.Background(), "court-ep", 10); len(dl) != 0 {
				t.Errorf("%d dead letters left", len(dl))
			}
		})
	}
}

// A destination down for a while gets everything after it recovers, in order per patient,
// with the embedded queue on a real store.
func TestRecoveryWithStoreQueue(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openStore(t, b)
			q := storeq.New(s)
			h := newHarness(t, harnessOpts{q: q, log: NewLog(s, nil)})
			var down atomic.Bool
			down.Store(true)
			h.rc.setStatus(func(received) (int, http.Header) {
				if down.Load() {
					return http.StatusServiceUnavailable, nil
				}
				return http.StatusOK, nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- h.w.Run(ctx) }()
			const versions = 4
			for v := int64(1); v <= versions; v++ {
				for _, p := range []string{"a", "b", "c"} {
					h.add(t, "obs-"+p, "Patient/"+p, v)
				}
			}
			waitFor(t, "attempts while down", func() bool { return len(h.rc.received()) >= 6 })
			down.Store(false)
			waitFor(t, "every delivery", func() bool {
				st, _ := q.Stats(ctx, "court-ep")
				return st.Depth == 0
			})
			cancel()
			<-done
			last := map[string]int{}
			n := 0
			for _, r := range h.rc.received() {
				if r.Status != http.StatusOK {
					continue
				}
				res := bundleResource(r.JSON)
				id := res["id"].(string)
				v := int(res["valueQuantity"].(map[string]any)["value"].(float64))
				if v != last[id]+1 {
					t.Errorf("%s: version %d delivered after version %d", id, v, last[id])
				}
				last[id] = v
				n++
			}
			if n != 3*versions {
				t.Errorf("%d delivered, want %d", n, 3*versions)
			}
		})
	}
}

func call(t *testing.T, srv *httptest.Server, method, path string, want int, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body) //nolint:errcheck
		t.Fatalf("%s %s: %d %v, want %d", method, path, resp.StatusCode, body, want)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

var _ queue.Queue = (*memQueue)(nil)

// racingQueue delivers replayed messages before Replay returns, as a worker on another node
// may: the log must end up delivered, not back at pending.
type racingQueue struct {
	queue.Queue
	deliver func()
}

func (q racingQueue) Replay(ctx context.Context, destination string, ids ...string) (int, error) {
	n, err := q.Queue.Replay(ctx, destination, ids...)
	if err == nil {
		q.deliver()
	}
	return n, err
}

func TestReplayDeliveredAtOnceStaysDelivered(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			q, l, h, up, d1, d2, d3 := deadDeliveries(t, b, 1)
			up.Store(true)
			admin := NewAdmin(AdminOptions{Queue: racingQueue{Queue: q, deliver: func() { h.drain(t, 0) }}, Log: l, Config: h.cfg, Worker: h.w})
			ctx := context.Background()
			if err := admin.ReplayDelivery(ctx, d1.ID); err != nil {
				t.Fatal(err)
			}
			if n, err := admin.ReplayEndpoint(ctx, "court-ep"); err != nil || n != 2 {
				t.Fatalf("replayed %d, %v; want 2", n, err)
			}
			for _, d := range []routing.Delivery{d1, d2, d3} {
				if e, _ := l.Get(ctx, d.ID); e.State != routing.Delivered {
					t.Errorf("%s is %s after a replay delivered at once, want delivered", d.ID, e.State)
				}
			}
		})
	}
}
