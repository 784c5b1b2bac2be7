package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func openStore(t *testing.T, b storetest.Backend) *store.SQL {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, b.StoreURL, b.DataDir, store.Options{Migrations: audit.Migrations()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachBackend runs fn on a fresh SQLite and a fresh PostgreSQL database.
func eachBackend(t *testing.T, fn func(t *testing.T, b storetest.Backend, s *store.SQL)) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b, openStore(t, b))
		})
	}
}

func event(i int) audit.Event {
	return audit.Event{
		Time:     time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute),
		Action:   audit.ActionRead,
		Outcome:  audit.OutcomeSuccess,
		Status:   200,
		ClientID: "custody-hcp", AgencyID: "custody", AgencyODS: "RX1", Purpose: "TREAT",
		Patients:  []string{fmt.Sprintf("Patient/p%d", i%3)},
		Resources: []audit.Ref{{Type: "Observation", ID: fmt.Sprintf("o%d", i), Version: "1"}},
		RequestID: fmt.Sprintf("req-%d", i),
	}
}

func mustVerifyOK(t *testing.T, tr *audit.Trail, count int64) audit.Report {
	t.Helper()
	rep, err := tr.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Break != nil {
		t.Fatalf("verify: %+v", rep.Break)
	}
	if rep.Count != count || rep.HeadSeq != count {
		t.Fatalf("verify counted %d rows, head seq %d; want %d", rep.Count, rep.HeadSeq, count)
	}
	return rep
}

func TestChainGrowsAndVerifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		ctx := context.Background()
		tr := audit.NewTrail(s)
		empty := mustVerifyOK(t, tr, 0)
		if empty.Head != audit.GenesisHash {
			t.Fatalf("empty chain head %s", empty.Head)
		}
		if err := tr.Append(ctx, event(1)); err != nil {
			t.Fatal(err)
		}
		first := mustVerifyOK(t, tr, 1)
		if err := tr.Append(ctx, event(2), event(3), event(4)); err != nil {
			t.Fatal(err)
		}
		rep := mustVerifyOK(t, tr, 4)
		if rep.Head == first.Head || rep.Head == audit.GenesisHash {
			t.Fatal("head hash did not move")
		}
		var prev, body string
		if err := s.DB().QueryRow(s.Rebind(`SELECT prev_hash, body FROM audit_events WHERE seq = ?`), 2).Scan(&prev, &body); err != nil {
			t.Fatal(err)
		}
		if prev != first.Head {
			t.Fatalf("seq 2 links to %s, want seq 1's hash %s", prev, first.Head)
		}
		// The stored body is the event's compact record; the trail serves it as the valid UK
		// Core AuditEvent that ToAuditEvent renders from the same event, with the record's id.
		if !strings.HasPrefix(body, `{"f":"hjbroker-audit/1"`) || len(body) > 600 {
			t.Fatalf("stored body is not a compact record: %s", body)
		}
		res, err := tr.Search(ctx, audit.Filter{Client: "custody-hcp", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 4 {
			t.Fatalf("search found %d events, want 4", len(res.Events))
		}
		var ae map[string]any
		if err := json.Unmarshal(res.Events[len(res.Events)-1], &ae); err != nil { // oldest last: event(1)
			t.Fatal(err)
		}
		mustCheck(t, checker(t), ae)
		id, _ := ae["id"].(string)
		var first1 string
		if err := s.DB().QueryRow(`SELECT body FROM audit_events WHERE seq = 1`).Scan(&first1); err != nil {
			t.Fatal(err)
		}
		if id == "" || !strings.Contains(first1, `"id":"`+id+`"`) {
			t.Fatalf("served AuditEvent id %q is not the stored record's (%s)", id, first1)
		}
		want := audit.ToAuditEvent(event(1))
		want["id"] = id
		if got, exp := canonical(t, ae), canonical(t, want); got != exp {
			t.Fatalf("served AuditEvent differs from the event's rendering:\n got %s\nwant %s", got, exp)
		}
	})
}

// canonical re-encodes a decoded resource for comparison.
func canonical(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(v)
	return string(b)
}

// Trails written before events were stored as compact records hold AuditEvent JSON bodies:
// after the upgrade they still verify, search, read by id and detect edits.
func TestLegacyAuditEventBodiesStillVerify(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			// The trail as the first audit migration left it, with one event as then written:
			// the AuditEvent JSON itself hashed into the chain.
			old, err := store.Open(ctx, b.StoreURL, b.DataDir, store.Options{Migrations: audit.Migrations()[:1]})
			if err != nil {
				t.Fatal(err)
			}
			e := event(2)
			ae := audit.ToAuditEvent(e)
			ae["id"] = "legacy-1"
			body := string(resource.Encode(ae))
			pb, _ := hex.DecodeString(audit.GenesisHash)
			h := sha256.Sum256(append(pb, body...))
			hash := hex.EncodeToString(h[:])
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO audit_events (seq, recorded, action, outcome, client, agency, body, prev_hash, hash) VALUES (1, ?, 'read', '0', 'custody-hcp', 'custody', ?, ?, ?)`,
					[]any{e.Time.UnixMicro(), body, audit.GenesisHash, hash}},
				{`INSERT INTO audit_event_patients (seq, patient) VALUES (1, 'Patient/p2')`, nil},
				{`UPDATE audit_chain_head SET seq = 1, hash = ? WHERE id = 1`, []any{hash}},
			} {
				if _, err := old.DB().ExecContext(ctx, old.Rebind(q.sql), q.args...); err != nil {
					t.Fatal(err)
				}
			}
			old.Close()

			s := openStore(t, b) // every migration: the event ids are filled in
			tr := audit.NewTrail(s)
			if err := tr.Append(ctx, event(3)); err != nil {
				t.Fatal(err)
			}
			mustVerifyOK(t, tr, 2)
			res, err := tr.Search(ctx, audit.Filter{Patient: "Patient/p2"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) != 1 || string(res.Events[0]) != body {
				t.Fatalf("legacy event served as %s, want it unchanged", res.Events)
			}
			got, found, err := tr.Get(ctx, "legacy-1")
			if err != nil || !found || string(got) != body {
				t.Fatalf("Get(legacy-1) = %s, %v, %v", got, found, err)
			}
			if _, err := s.DB().ExecContext(ctx, `UPDATE audit_events SET body = REPLACE(body, '"custody-hcp"', '"someone-else"') WHERE seq = 1`); err != nil {
				t.Fatal(err)
			}
			rep, err := tr.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.Break == nil || rep.Break.Seq != 1 || rep.Break.Kind != audit.BreakContentChanged {
				t.Fatalf("edited legacy body: %+v", rep.Break)
			}
		})
	}
}

func TestGetByID(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		ctx := context.Background()
		tr := audit.NewTrail(s)
		for i := 1; i <= 3; i++ {
			if err := tr.Append(ctx, event(i)); err != nil {
				t.Fatal(err)
			}
		}
		res, err := tr.Search(ctx, audit.Filter{})
		if err != nil || len(res.Events) != 3 {
			t.Fatalf("search: %d events, %v", len(res.Events), err)
		}
		for _, ev := range res.Events {
			var m map[string]any
			if err := json.Unmarshal(ev, &m); err != nil {
				t.Fatal(err)
			}
			got, found, err := tr.Get(ctx, m["id"].(string))
			if err != nil || !found || string(got) != string(ev) {
				t.Fatalf("Get(%s) = %s, %v, %v; want %s", m["id"], got, found, err, ev)
			}
		}
		if _, found, err := tr.Get(ctx, "no-such-event"); found || err != nil {
			t.Fatalf("unknown id: found %v, %v", found, err)
		}
	})
}

func TestInvalidEventIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		tr := audit.NewTrail(s)
		for _, e := range []audit.Event{
			{Action: "peek", Outcome: audit.OutcomeSuccess},
			{Action: audit.ActionRead, Outcome: "fine"},
			{Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Patients: []string{"Observation/1"}},
			{Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Resources: []audit.Ref{{Type: "Patient"}}},
		} {
			if err := tr.Append(context.Background(), e); err == nil {
				t.Errorf("%+v accepted", e)
			}
		}
		mustVerifyOK(t, tr, 0)
	})
}

func TestTamperingIsDetected(t *testing.T) {
	const n = 10
	tests := []struct {
		name   string
		tamper string // SQL with one "?" for the seq
		seq    int64
		kind   audit.BreakKind
	}{
		{"content edited", `UPDATE audit_events SET body = REPLACE(body, '"custody-hcp"', '"someone-else"') WHERE seq = ?`, 5, audit.BreakContentChanged},
		{"content edited in last row", `UPDATE audit_events SET body = REPLACE(body, '"action":"read"', '"action":"vread"') WHERE seq = ?`, n, audit.BreakContentChanged},
		{"row deleted in the middle", `DELETE FROM audit_events WHERE seq = ?`, 5, audit.BreakRowMissing},
		{"first row deleted", `DELETE FROM audit_events WHERE seq = ?`, 1, audit.BreakRowMissing},
		{"last row deleted", `DELETE FROM audit_events WHERE seq = ?`, n, audit.BreakRowMissing},
		{"hash edited", `UPDATE audit_events SET hash = '` + audit.GenesisHash + `' WHERE seq = ?`, 5, audit.BreakHashMismatch},
		{"hash edited in last row", `UPDATE audit_events SET hash = '` + audit.GenesisHash + `' WHERE seq = ?`, n, audit.BreakHashMismatch},
		{"prev_hash edited", `UPDATE audit_events SET prev_hash = '` + audit.GenesisHash + `' WHERE seq = ?`, 6, audit.BreakLinkMismatch},
		{"agency column edited", `UPDATE audit_events SET agency = 'court' WHERE seq = ?`, 3, audit.BreakIndexMismatch},
		{"event id column edited", `UPDATE audit_events SET event_id = 'another' WHERE seq = ?`, 3, audit.BreakIndexMismatch},
		{"recorded column edited", `UPDATE audit_events SET recorded = recorded + 1 WHERE seq = ?`, 7, audit.BreakIndexMismatch},
		{"patient index row deleted", `DELETE FROM audit_patient_index WHERE seq = ?`, 4, audit.BreakIndexMismatch},
		{"row inserted beyond the head", `INSERT INTO audit_events (seq, recorded, action, outcome, client, agency, event_id, body, prev_hash, hash)
			SELECT ? + 1, recorded, action, outcome, client, agency, event_id, body, hash, hash FROM audit_events WHERE seq = ` + fmt.Sprint(n), n, audit.BreakOutsideChain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
				ctx := context.Background()
				tr := audit.NewTrail(s)
				for i := 1; i <= n; i++ {
					if err := tr.Append(ctx, event(i)); err != nil {
						t.Fatal(err)
					}
				}
				mustVerifyOK(t, tr, n)
				res, err := s.DB().ExecContext(ctx, s.Rebind(tc.tamper), tc.seq)
				if err != nil {
					t.Fatal(err)
				}
				if k, _ := res.RowsAffected(); k == 0 {
					t.Fatal("tampering changed nothing")
				}
				rep, err := tr.Verify(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK || rep.Break == nil {
					t.Fatal("tampering not detected")
				}
				want := tc.seq
				if tc.kind == audit.BreakOutsideChain {
					want = tc.seq + 1
				}
				if rep.Break.Seq != want || rep.Break.Kind != tc.kind {
					t.Fatalf("break %s; want seq %d: %s", rep.Break, want, tc.kind)
				}
			})
		})
	}
}

func TestSearch(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		ctx := context.Background()
		tr := audit.NewTrail(s)
		base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		evs := []audit.Event{
			{Time: base, Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, ClientID: "custody-hcp", AgencyID: "custody", Patients: []string{"Patient/a"}},
			{Time: base.Add(time.Hour), Action: audit.ActionSearch, Outcome: audit.OutcomeSuccess, ClientID: "ld-team", AgencyID: "ld", Patients: []string{"Patient/a", "Patient/b"}, Query: "patient=a"},
			{Time: base.Add(2 * time.Hour), Action: audit.ActionRead, Outcome: audit.OutcomeDenied, Status: 403, ClientID: "court", AgencyID: "court", Patients: []string{"Patient/b"}},
			{Time: base.Add(3 * time.Hour), Action: audit.ActionBreakGlass, Outcome: audit.OutcomeSuccess, ClientID: "custody-hcp", AgencyID: "custody", Purpose: "BTG", BreakGlassReason: "collapse", Patients: []string{"Patient/a"}},
			{Time: base.Add(4 * time.Hour), Action: audit.ActionLogin, Outcome: audit.OutcomeSuccess, ClientID: "operator", AgencyID: "broker"},
		}
		if err := tr.Append(ctx, evs...); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			f     audit.Filter
			total int64
			want  []string // recorded hours after base, newest first, as client ids
		}{
			{"all", audit.Filter{}, 5, []string{"operator", "custody-hcp", "court", "ld-team", "custody-hcp"}},
			{"patient a", audit.Filter{Patient: "Patient/a"}, 3, []string{"custody-hcp", "ld-team", "custody-hcp"}},
			{"patient b bare id", audit.Filter{Patient: "b"}, 2, []string{"court", "ld-team"}},
			{"agency", audit.Filter{Agency: "custody"}, 2, []string{"custody-hcp", "custody-hcp"}},
			{"client", audit.Filter{Client: "court"}, 1, []string{"court"}},
			{"action", audit.Filter{Action: audit.ActionBreakGlass}, 1, []string{"custody-hcp"}},
			{"since", audit.Filter{Since: base.Add(2 * time.Hour)}, 3, []string{"operator", "custody-hcp", "court"}},
			{"until exclusive", audit.Filter{Until: base.Add(2 * time.Hour)}, 2, []string{"ld-team", "custody-hcp"}},
			{"window and patient", audit.Filter{Patient: "a", Since: base.Add(30 * time.Minute), Until: base.Add(5 * time.Hour)}, 2, []string{"custody-hcp", "ld-team"}},
			{"page", audit.Filter{Limit: 2, Offset: 1}, 5, []string{"custody-hcp", "court"}},
			{"no match", audit.Filter{Patient: "a", Client: "court"}, 0, nil},
		}
		for _, tc := range tests {
			res, err := tr.Search(ctx, tc.f)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var got []string
			for _, raw := range res.Events {
				var ae map[string]any
				if err := json.Unmarshal(raw, &ae); err != nil {
					t.Fatal(err)
				}
				if ae["resourceType"] != "AuditEvent" {
					t.Fatalf("%s: not an AuditEvent: %s", tc.name, raw)
				}
				who := ae["agent"].([]any)[0].(map[string]any)["who"].(map[string]any)
				got = append(got, who["display"].(string))
			}
			if res.Total != tc.total || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: total %d %v; want %d %v", tc.name, res.Total, got, tc.total, tc.want)
			}
		}
		if _, err := tr.Search(ctx, audit.Filter{Patient: "Observation/1"}); err == nil {
			t.Error("a non-Patient patient filter was accepted")
		}
	})
}

func TestRecorderConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		tr := audit.NewTrail(s)
		rec := audit.NewRecorder(tr, audit.RecorderOptions{FlushInterval: 5 * time.Millisecond, BatchSize: 64})
		const workers, each = 40, 50
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					e := event(w*each + i)
					var err error
					if i%10 == 0 {
						err = rec.RecordWait(context.Background(), e)
					} else {
						err = rec.Record(e)
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		if err := rec.Close(); err != nil {
			t.Fatal(err)
		}
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		mustVerifyOK(t, tr, workers*each)
		if err := rec.Record(event(0)); !errors.Is(err, audit.ErrClosed) {
			t.Fatalf("Record after Close: %v", err)
		}
	})
}

func TestRecordWaitIsDurableOnReturn(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		tr := audit.NewTrail(s)
		// A long interval: RecordWait must not depend on a flush that happens later.
		rec := audit.NewRecorder(tr, audit.RecorderOptions{FlushInterval: 20 * time.Millisecond})
		defer rec.Close()
		if err := rec.RecordWait(context.Background(), event(1)); err != nil {
			t.Fatal(err)
		}
		res, err := tr.Search(context.Background(), audit.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != 1 {
			t.Fatalf("%d events after RecordWait returned", res.Total)
		}
	})
}

func TestRecordTxFollowsTheTransaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		ctx := context.Background()
		tr := audit.NewTrail(s)
		rec := audit.NewRecorder(tr, audit.RecorderOptions{})
		defer rec.Close()
		for _, commit := range []bool{false, true, false} {
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := event(1)
			e.Action = audit.ActionCreate
			if err := rec.RecordTx(ctx, tx, e); err != nil {
				t.Fatal(err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := rec.RecordWait(ctx, event(2)); err != nil {
			t.Fatal(err)
		}
		mustVerifyOK(t, tr, 2)
		res, err := tr.Search(ctx, audit.Filter{Action: audit.ActionCreate})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != 1 {
			t.Fatalf("%d create events, want the committed one only", res.Total)
		}
	})
}

// Two broker nodes on one PostgreSQL append through their own pools and recorders.
func TestTwoRecordersOnePostgres(t *testing.T) {
	u, _ := storetest.Postgres(t)
	b := storetest.Backend{Name: "postgres", StoreURL: u, DataDir: t.TempDir()}
	nodes := []*store.SQL{openStore(t, b), openStore(t, b)}
	var wg sync.WaitGroup
	const perNode, goroutines = 600, 12
	errs := make(chan error, len(nodes)*perNode)
	for n, s := range nodes {
		rec := audit.NewRecorder(audit.NewTrail(s), audit.RecorderOptions{FlushInterval: 2 * time.Millisecond, BatchSize: 25})
		var nodeWG sync.WaitGroup
		for g := range goroutines {
			nodeWG.Add(1)
			go func() {
				defer nodeWG.Done()
				for i := range perNode / goroutines {
					e := event(i)
					e.Node = fmt.Sprintf("node-%d", n)
					e.RequestID = fmt.Sprintf("n%d-g%d-%d", n, g, i)
					if err := rec.Record(e); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodeWG.Wait()
			if err := rec.Close(); err != nil {
				errs <- err
			}
		}()
	}
	// Writes in data transactions interleave with both recorders.
	for i := range 20 {
		tx, err := nodes[i%2].DB().Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.NewTrail(nodes[i%2]).AppendTx(context.Background(), tx, event(i)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustVerifyOK(t, audit.NewTrail(nodes[0]), int64(len(nodes)*perNode+20))
}

// BenchmarkRecorder measures sustained Record throughput, flushes included (events/s).
func BenchmarkRecorder(b *testing.B) {
	for _, be := range storetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := store.Open(ctx, be.StoreURL, be.DataDir, store.Options{Migrations: audit.Migrations()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rec := audit.NewRecorder(audit.NewTrail(s), audit.RecorderOptions{})
			e := fullEvent()
			e.Action = audit.ActionRead
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := rec.Record(e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := rec.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

func TestRecorderReportsWriteFailures(t *testing.T) {
	b := storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}
	s := openStore(t, b)
	var seen []error
	var mu sync.Mutex
	rec := audit.NewRecorder(audit.NewTrail(s), audit.RecorderOptions{FlushInterval: time.Millisecond, OnError: func(err error) {
		mu.Lock()
		seen = append(seen, err)
		mu.Unlock()
	}})
	s.Close() // the database goes away under the recorder
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := rec.RecordWait(ctx, event(1)); err == nil {
		t.Fatal("RecordWait succeeded with the database closed")
	}
	if rec.Err() == nil {
		t.Fatal("Err is nil while flushes fail")
	}
	if err := rec.Close(); err == nil {
		t.Fatal("Close lost events without an error")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("OnError was not called")
	}
}

// The patient index is kept in buckets of consecutive events; a search by patient must find
// events in every bucket, including the first, a full middle one and the partial last one.
func TestSearchByPatientAcrossIndexBuckets(t *testing.T) {
	const n = 2*4096 + 300
	eachBackend(t, func(t *testing.T, _ storetest.Backend, s *store.SQL) {
		ctx := context.Background()
		tr := audit.NewTrail(s)
		batch := make([]audit.Event, 0, 1000)
		for i := 1; i <= n; i++ {
			batch = append(batch, event(i))
			if len(batch) == cap(batch) || i == n {
				if err := tr.Append(ctx, batch...); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		for p, want := range map[string]int64{"Patient/p0": n / 3, "Patient/p1": n/3 + 1, "Patient/p2": n/3 + 1, "Patient/p9": 0} {
			res, err := tr.Search(ctx, audit.Filter{Patient: p, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if res.Total != want {
				t.Errorf("%s: %d events, want %d", p, res.Total, want)
			}
		}
		// The newest event of p2 is the last one appended (n % 3 == 2).
		res, err := tr.Search(ctx, audit.Filter{Patient: "Patient/p2", Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 1 || !strings.Contains(string(res.Events[0]), fmt.Sprintf("o%d", n)) {
			t.Errorf("newest event of Patient/p2: %.300s", res.Events)
		}
		mustVerifyOK(t, tr, n)
	})
}
