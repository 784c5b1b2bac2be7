package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/searchparam"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// The contract suite: every test runs against every backend from storetest.Backends, each
// on a fresh database, with index rows built by hand and queries built by the real parser.

// t0 anchors the timestamps the helpers give to new versions.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// searchNow is the reference time for the ap prefix, so approximate ranges are fixed.
var searchNow = time.Date(2024, 3, 20, 0, 0, 0, 0, time.UTC)

type env struct {
	ctx  context.Context
	b    storetest.Backend
	s    *store.SQL
	reg  *searchparam.Registry
	tick atomic.Int64
}

// forEachBackend runs fn once per backend, in parallel, each with a freshly migrated store.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Parallel()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, newEnv(t, b))
		})
	}
}

func newEnv(t *testing.T, b storetest.Backend) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	// The embedded store runs with its read cache, as the broker opens it.
	opts := store.Options{}
	if b.StoreURL == "" {
		opts.ReadCacheBytes = store.DefaultReadCacheBytes
	}
	s, err := store.Open(ctx, b.StoreURL, b.DataDir, opts)
	if err != nil {
		t.Fatalf("opening %s store: %v", b.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Backend() != b.Name {
		t.Fatalf("Backend() = %q, want %q", s.Backend(), b.Name)
	}
	reg, err := searchparam.NewR4()
	if err != nil {
		t.Fatal(err)
	}
	// R4 defines no number parameter among the ones the broker ships, so the suite adds one
	// the way a custom SearchParameter is added.
	if _, err := reg.AddFromResource(map[string]any{
		"resourceType": "SearchParameter",
		"url":          "https://example.org/SearchParameter/risk-probability",
		"code":         "probability",
		"base":         []any{"RiskAssessment"},
		"type":         "number",
		"expression":   "RiskAssessment.prediction.probability",
	}); err != nil {
		t.Fatal(err)
	}
	return &env{ctx: ctx, b: b, s: s, reg: reg}
}

// next returns a new, strictly later timestamp for a version.
func (e *env) next() time.Time {
	return t0.Add(time.Duration(e.tick.Add(1)) * time.Second)
}

func body(typ, id string, v int64) []byte {
	return fmt.Appendf(nil, `{"resourceType":%q,"id":%q,"meta":{"versionId":"%d"}}`, typ, id, v)
}

// write stores the next version of typ/id (a deletion when deleted) in its own transaction,
// reading the current version inside it as the engine does.
func (e *env) write(typ, id string, at time.Time, deleted bool, ix store.Index) (*store.Write, error) {
	if at.IsZero() {
		at = e.next()
	}
	var w *store.Write
	err := e.s.Update(e.ctx, func(tx store.Tx) error {
		v, method := int64(1), "POST"
		cur, err := tx.Current(e.ctx, typ, id)
		switch {
		case err == nil:
			v, method = cur.Version+1, "PUT"
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		w = &store.Write{Type: typ, ID: id, Version: v, LastUpdated: at, Method: method, Deleted: deleted, Index: ix}
		if deleted {
			w.Method = "DELETE"
		} else {
			w.Body = body(typ, id, v)
		}
		return tx.Put(e.ctx, w)
	})
	return w, err
}

func (e *env) put(t testing.TB, typ, id string, ix store.Index) *store.Write {
	t.Helper()
	w, err := e.write(typ, id, time.Time{}, false, ix)
	if err != nil {
		t.Fatalf("writing %s/%s: %v", typ, id, err)
	}
	return w
}

func (e *env) putAt(t testing.TB, typ, id string, at time.Time, ix store.Index) *store.Write {
	t.Helper()
	w, err := e.write(typ, id, at, false, ix)
	if err != nil {
		t.Fatalf("writing %s/%s: %v", typ, id, err)
	}
	return w
}

func (e *env) del(t testing.TB, typ, id string) *store.Write {
	t.Helper()
	w, err := e.write(typ, id, time.Time{}, true, store.Index{})
	if err != nil {
		t.Fatalf("deleting %s/%s: %v", typ, id, err)
	}
	return w
}

// query parses a query string (as it would arrive in a URL) for typ.
func (e *env) query(t testing.TB, typ, raw string) *search.Query {
	t.Helper()
	vals, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("bad test query %q: %v", raw, err)
	}
	return e.parse(t, typ, vals)
}

func (e *env) parse(t testing.TB, typ string, vals url.Values) *search.Query {
	t.Helper()
	q, err := search.Parse(typ, vals, e.reg, search.Options{Strict: true, Now: searchNow})
	if err != nil {
		t.Fatalf("parsing %s?%s: %v", typ, vals.Encode(), err)
	}
	return q
}

func (e *env) run(t testing.TB, q *search.Query, o store.SearchOptions) *store.SearchPage {
	t.Helper()
	p, err := e.s.Search(e.ctx, q, o)
	if err != nil {
		t.Fatalf("search %s %+v: %v", q.Type, q.Clauses, err)
	}
	return p
}

// find returns the sorted ids matching typ?raw.
func (e *env) find(t testing.TB, typ, raw string) []string {
	t.Helper()
	return sorted(ids(e.run(t, e.query(t, typ, raw), store.SearchOptions{Limit: 1000}).Entries))
}

// ordered returns the ids matching typ?raw in result order.
func (e *env) ordered(t testing.TB, typ, raw string) []string {
	t.Helper()
	return ids(e.run(t, e.query(t, typ, raw), store.SearchOptions{Limit: 1000}).Entries)
}

// rid returns the internal key of a current resource.
func (e *env) rid(t testing.TB, typ, id string) int64 {
	t.Helper()
	p := e.run(t, e.query(t, typ, "_id="+id), store.SearchOptions{Limit: 2, KeysOnly: true})
	if len(p.RIDs) != 1 {
		t.Fatalf("%s/%s: %d keys", typ, id, len(p.RIDs))
	}
	return p.RIDs[0]
}

func ids(rs []*store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func refs(rs []*store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Type+"/"+r.ID)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func list(s ...string) []string {
	if s == nil {
		return []string{}
	}
	return sorted(s)
}

// Index row builders. Strings are normalised with search.Normalize, as the indexer does.

func tok(param, system, code string) store.TokenRow {
	return store.TokenRow{Param: param, System: system, Code: code}
}

func str(param, s string) store.StringRow {
	return store.StringRow{Param: param, Norm: search.Normalize(s), Exact: s}
}

func ref(param, typ, id string) store.RefRow {
	return store.RefRow{Param: param, TargetType: typ, TargetID: id}
}

func dateRange(v string) search.Range {
	r, err := search.DateRange(v)
	if err != nil {
		panic(err)
	}
	return r
}

func periodRange(start, end string) search.Range {
	r, err := search.PeriodRange(start, end)
	if err != nil {
		panic(err)
	}
	return r
}

func dateRow(param string, r search.Range) store.DateRow {
	return store.DateRow{Param: param, Lo: r.Low, Hi: r.High}
}

// ---------------------------------------------------------------------------------------
// Versions

func TestVersions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		if _, err := e.s.Current(ctx, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Current of a resource never stored: %v, want ErrNotFound", err)
		}
		at1 := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
		w1 := e.putAt(t, "Patient", "p1", at1, store.Index{})
		w2 := e.put(t, "Patient", "p1", store.Index{})
		w3 := e.del(t, "Patient", "p1")
		if w1.Version != 1 || w2.Version != 2 || w3.Version != 3 {
			t.Fatalf("versions %d %d %d, want 1 2 3", w1.Version, w2.Version, w3.Version)
		}
		for _, w := range []*store.Write{w1, w2, w3} {
			got, err := e.s.VRead(ctx, "Patient", "p1", w.Version)
			if err != nil {
				t.Fatalf("VRead %d: %v", w.Version, err)
			}
			if got.Type != "Patient" || got.ID != "p1" || got.Version != w.Version || got.Deleted != w.Deleted ||
				got.Method != w.Method || !got.LastUpdated.Equal(w.LastUpdated) || string(got.Body) != string(w.Body) {
				t.Errorf("VRead %d = %+v (body %s), want %+v", w.Version, got, got.Body, w)
			}
		}
		if got, _ := e.s.VRead(ctx, "Patient", "p1", 1); got.LastUpdated.Location() != time.UTC || !got.LastUpdated.Equal(at1) {
			t.Errorf("lastUpdated %v, want %v in UTC (microseconds kept)", got.LastUpdated, at1)
		}
		if got, _ := e.s.VRead(ctx, "Patient", "p1", 3); len(got.Body) != 0 || !got.Deleted || got.Method != "DELETE" {
			t.Errorf("deletion version = %+v, want Deleted with no body", got)
		}
		cur, err := e.s.Current(ctx, "Patient", "p1")
		if err != nil || cur.Version != 3 || !cur.Deleted || len(cur.Body) != 0 {
			t.Fatalf("Current of a deleted resource = %+v, %v; want version 3, Deleted, no body", cur, err)
		}
		for _, v := range []int64{0, 4} {
			if _, err := e.s.VRead(ctx, "Patient", "p1", v); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("VRead version %d: %v, want ErrNotFound", v, err)
			}
		}
		if _, err := e.s.VRead(ctx, "Observation", "p1", 1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("VRead of another type: %v, want ErrNotFound", err)
		}
		// Recreating after a deletion continues the version sequence.
		w4 := e.put(t, "Patient", "p1", store.Index{})
		cur, err = e.s.Current(ctx, "Patient", "p1")
		if err != nil || w4.Version != 4 || cur.Version != 4 || cur.Deleted || string(cur.Body) != string(w4.Body) {
			t.Fatalf("after recreate: %+v, %v", cur, err)
		}
		// The same id under another type is another resource.
		if w := e.put(t, "Observation", "p1", store.Index{}); w.Version != 1 {
			t.Errorf("Observation/p1 version %d, want 1", w.Version)
		}
		if err := e.s.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

func TestUpdateRollback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		e.put(t, "Patient", "keep", store.Index{Tokens: []store.TokenRow{tok("gender", "", "male")}})
		boom := errors.New("boom")
		calls := 0
		err := e.s.Update(ctx, func(tx store.Tx) error {
			calls++
			for _, w := range []*store.Write{
				{Type: "Patient", ID: "gone", Version: 1, LastUpdated: e.next(), Method: "POST", Body: body("Patient", "gone", 1),
					Index: store.Index{Tokens: []store.TokenRow{tok("gender", "", "male")}}},
				{Type: "Patient", ID: "keep", Version: 2, LastUpdated: e.next(), Method: "PUT", Body: body("Patient", "keep", 2),
					Index: store.Index{Tokens: []store.TokenRow{tok("gender", "", "female")}}},
			} {
				if err := tx.Put(ctx, w); err != nil {
					return err
				}
			}
			// The transaction sees its own writes.
			p, err := tx.Search(ctx, e.query(t, "Patient", "gender=male"), store.SearchOptions{Limit: 10})
			if err != nil {
				return err
			}
			if got := ids(p.Entries); !slices.Equal(got, []string{"gone"}) {
				t.Errorf("search inside the transaction = %v, want [gone]", got)
			}
			if cur, err := tx.Current(ctx, "Patient", "gone"); err != nil || cur.Version != 1 {
				t.Errorf("Current inside the transaction = %+v, %v", cur, err)
			}
			return boom
		})
		if !errors.Is(err, boom) || calls != 1 {
			t.Fatalf("Update = %v after %d calls, want boom after 1", err, calls)
		}
		if _, err := e.s.Current(ctx, "Patient", "gone"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("rolled back create is visible: %v", err)
		}
		if cur, err := e.s.Current(ctx, "Patient", "keep"); err != nil || cur.Version != 1 {
			t.Errorf("rolled back update is visible: %+v, %v", cur, err)
		}
		if got := e.find(t, "Patient", "gender=male"); !slices.Equal(got, list("keep")) {
			t.Errorf("gender=male after rollback = %v, want [keep]", got)
		}
		if got := e.find(t, "Patient", "gender=female"); len(got) != 0 {
			t.Errorf("index rows of a rolled back update are visible: %v", got)
		}
		h, err := e.s.History(ctx, store.HistoryQuery{Count: 10})
		if err != nil || h.Total != 1 {
			t.Errorf("history after rollback: total %v, %v; want 1", h, err)
		}
		// The store stays usable: the next version is 2.
		if w := e.put(t, "Patient", "keep", store.Index{}); w.Version != 2 {
			t.Errorf("next version %d, want 2", w.Version)
		}
	})
}

func TestOptimisticConcurrency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		e.put(t, "Patient", "p", store.Index{})
		stale := func(v int64) *store.Write {
			return &store.Write{Type: "Patient", ID: "p", Version: v, LastUpdated: e.next(), Method: "PUT", Body: body("Patient", "p", v)}
		}

		// A second Put of an existing version loses: ErrRetry, and Update keeps retrying
		// until it gives up with ErrRetry.
		calls := 0
		err := e.s.Update(ctx, func(tx store.Tx) error {
			calls++
			err := tx.Put(ctx, stale(1))
			if !errors.Is(err, store.ErrRetry) {
				t.Errorf("Put of an existing version: %v, want ErrRetry", err)
			}
			return err
		})
		if !errors.Is(err, store.ErrRetry) || calls < 2 {
			t.Fatalf("Update with a losing Put = %v after %d calls, want ErrRetry after retries", err, calls)
		}

		// Skipping a version (the writer read a version that is no longer current) loses too.
		err = e.s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, stale(3)) })
		if !errors.Is(err, store.ErrRetry) {
			t.Fatalf("Put of version 3 over version 1 = %v, want ErrRetry", err)
		}

		// Update runs fn again after ErrRetry; the retry reads the new current version.
		calls = 0
		err = e.s.Update(ctx, func(tx store.Tx) error {
			calls++
			if calls == 1 {
				return tx.Put(ctx, stale(1))
			}
			cur, err := tx.Current(ctx, "Patient", "p")
			if err != nil {
				return err
			}
			return tx.Put(ctx, stale(cur.Version+1))
		})
		if err != nil || calls != 2 {
			t.Fatalf("Update = %v after %d calls, want success on the second", err, calls)
		}
		for v := int64(1); v <= 2; v++ {
			if _, err := e.s.VRead(ctx, "Patient", "p", v); err != nil {
				t.Errorf("VRead %d: %v", v, err)
			}
		}
		for _, v := range []int64{3, 4} {
			if _, err := e.s.VRead(ctx, "Patient", "p", v); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("VRead %d after failed writes: %v, want ErrNotFound", v, err)
			}
		}
		if cur, _ := e.s.Current(ctx, "Patient", "p"); cur.Version != 2 {
			t.Errorf("current version %d, want 2", cur.Version)
		}
	})
}

func TestConcurrentUpdates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const n = 12
		var wg sync.WaitGroup
		errs := make([]error, n)
		versions := make([]int64, n)
		for i := range n {
			wg.Go(func() {
				w, err := e.write("Patient", "hot", time.Time{}, false, store.Index{
					Tokens: []store.TokenRow{tok("identifier", "urn:writer", fmt.Sprint(i))}})
				errs[i] = err
				if w != nil {
					versions[i] = w.Version
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
		if t.Failed() {
			return
		}
		slices.Sort(versions)
		for i, v := range versions {
			if v != int64(i+1) {
				t.Fatalf("versions written %v, want 1..%d each once", versions, n)
			}
		}
		cur, err := e.s.Current(e.ctx, "Patient", "hot")
		if err != nil || cur.Version != n {
			t.Fatalf("Current = %+v, %v; want version %d", cur, err, n)
		}
		h, err := e.s.History(e.ctx, store.HistoryQuery{Type: "Patient", ID: "hot", Count: 100})
		if err != nil || h.Total != n || len(h.Entries) != n {
			t.Fatalf("history: %+v, %v", h, err)
		}
		// Only the last writer's index rows remain.
		if got := e.find(t, "Patient", "identifier=urn:writer|"); !slices.Equal(got, []string{"hot"}) {
			t.Errorf("identifier=urn:writer| = %v", got)
		}
		p := e.run(t, e.query(t, "Patient", "_id=hot"), store.SearchOptions{Limit: 1})
		if len(p.Entries) != 1 || p.Entries[0].Version != n {
			t.Errorf("search returns %+v, want version %d", p.Entries, n)
		}

		// Updates of an existing resource: Current inside the transaction must never report
		// it missing while another writer commits (an update or patch would answer 404).
		e.put(t, "Patient", "warm", store.Index{})
		for i := range n {
			errs[i] = nil
			wg.Go(func() {
				errs[i] = e.s.Update(e.ctx, func(tx store.Tx) error {
					cur, err := tx.Current(e.ctx, "Patient", "warm")
					if err != nil {
						return fmt.Errorf("reading an existing resource: %w", err)
					}
					return tx.Put(e.ctx, &store.Write{Type: "Patient", ID: "warm", Version: cur.Version + 1,
						LastUpdated: e.next(), Method: "PATCH", Body: body("Patient", "warm", cur.Version+1)})
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("updater %d: %v", i, err)
			}
		}
		if cur, err := e.s.Current(e.ctx, "Patient", "warm"); err != nil || cur.Version != n+1 {
			t.Errorf("Current = %+v, %v; want version %d", cur, err, n+1)
		}
	})
}

func TestLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		// A conditional create: lock the criteria, search inside the transaction, create when
		// nothing matches. Racing creates must produce one resource.
		const n = 10
		criteria := "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"
		q := e.query(t, "Patient", criteria)
		created := make([]bool, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				errs[i] = e.s.Update(ctx, func(tx store.Tx) error {
					created[i] = false
					if err := tx.Lock(ctx, "Patient?"+criteria); err != nil {
						return err
					}
					p, err := tx.Search(ctx, q, store.SearchOptions{Limit: 2, Total: true})
					if err != nil {
						return err
					}
					if p.Total > 0 {
						return nil
					}
					created[i] = true
					id := fmt.Sprintf("racer-%d", i)
					return tx.Put(ctx, &store.Write{Type: "Patient", ID: id, Version: 1,
						LastUpdated: e.next(), Method: "POST", Body: body("Patient", id, 1),
						Index: store.Index{Tokens: []store.TokenRow{tok("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9000000009")}}})
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
		}
		if got := e.find(t, "Patient", criteria); len(got) != 1 {
			t.Fatalf("racing conditional creates made %v, want one resource", got)
		}
		if c := slices.Index(created, true); c < 0 || slices.Index(created[c+1:], true) >= 0 {
			t.Errorf("creators %v, want exactly one", created)
		}

		// Different keys do not serialise. (SQLite runs one write transaction at a time, so
		// there the question does not arise.)
		if e.s.Backend() == "postgres" {
			held, release := make(chan struct{}), make(chan struct{})
			holder := make(chan error, 1)
			go func() {
				holder <- e.s.Update(ctx, func(tx store.Tx) error {
					if err := tx.Lock(ctx, "Patient?identifier=a|1"); err != nil {
						return err
					}
					close(held)
					<-release
					return nil
				})
			}()
			<-held
			other, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := e.s.Update(other, func(tx store.Tx) error { return tx.Lock(other, "Patient?identifier=a|2") })
			cancel()
			close(release)
			if err != nil {
				t.Errorf("locking another key while one is held: %v", err)
			}
			if err := <-holder; err != nil {
				t.Errorf("holder: %v", err)
			}
		}

		// A lock taken by a rolled back transaction is released.
		boom := errors.New("boom")
		if err := e.s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Lock(ctx, "k"); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want boom", err)
		}
		done := make(chan error, 1)
		go func() { done <- e.s.Update(ctx, func(tx store.Tx) error { return tx.Lock(ctx, "k") }) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("locking after a rollback: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("lock held after its transaction rolled back")
		}
	})
}

// ---------------------------------------------------------------------------------------
// History

// versionsOf renders history entries as "Type/id/version" ("-" marks a deletion).
func versionsOf(rs []*store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		s := fmt.Sprintf("%s/%s/%d", r.Type, r.ID, r.Version)
		if r.Deleted {
			s += "-"
		}
		out = append(out, s)
	}
	return out
}

func TestHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		at := func(h int) time.Time { return time.Date(2024, 2, 1, h, 0, 0, 0, time.UTC) }
		e.putAt(t, "Patient", "a", at(1), store.Index{})
		e.putAt(t, "Patient", "b", at(2), store.Index{})
		e.putAt(t, "Observation", "o", at(3), store.Index{})
		e.putAt(t, "Patient", "a", at(4), store.Index{})
		if _, err := e.write("Patient", "a", at(5), true, store.Index{}); err != nil {
			t.Fatal(err)
		}
		e.putAt(t, "Patient", "ab", at(6), store.Index{}) // an id with "a" as a prefix is another resource

		hist := func(q store.HistoryQuery) *store.HistoryPage {
			t.Helper()
			p, err := e.s.History(ctx, q)
			if err != nil {
				t.Fatalf("History(%+v): %v", q, err)
			}
			return p
		}
		tests := []struct {
			name string
			q    store.HistoryQuery
			want []string
		}{
			{"instance", store.HistoryQuery{Type: "Patient", ID: "a"}, []string{"Patient/a/3-", "Patient/a/2", "Patient/a/1"}},
			{"type", store.HistoryQuery{Type: "Patient"}, []string{"Patient/ab/1", "Patient/a/3-", "Patient/a/2", "Patient/b/1", "Patient/a/1"}},
			{"system", store.HistoryQuery{}, []string{"Patient/ab/1", "Patient/a/3-", "Patient/a/2", "Observation/o/1", "Patient/b/1", "Patient/a/1"}},
			{"instance since", store.HistoryQuery{Type: "Patient", ID: "a", Since: at(4)}, []string{"Patient/a/3-", "Patient/a/2"}},
			{"type since", store.HistoryQuery{Type: "Patient", Since: at(2).Add(time.Microsecond)}, []string{"Patient/ab/1", "Patient/a/3-", "Patient/a/2"}},
			{"system since", store.HistoryQuery{Since: at(3)}, []string{"Patient/ab/1", "Patient/a/3-", "Patient/a/2", "Observation/o/1"}},
			{"since after everything", store.HistoryQuery{Since: at(7)}, []string{}},
			{"unknown instance", store.HistoryQuery{Type: "Patient", ID: "zz"}, []string{}},
			{"unknown type", store.HistoryQuery{Type: "Encounter"}, []string{}},
			// At: each resource as it stood at the instant.
			{"instance at its first version", store.HistoryQuery{Type: "Patient", ID: "a", At: at(1)}, []string{"Patient/a/1"}},
			{"instance at between versions", store.HistoryQuery{Type: "Patient", ID: "a", At: at(4).Add(-time.Microsecond)}, []string{"Patient/a/1"}},
			{"instance at its second version", store.HistoryQuery{Type: "Patient", ID: "a", At: at(4)}, []string{"Patient/a/2"}},
			{"instance at after its deletion", store.HistoryQuery{Type: "Patient", ID: "a", At: at(6)}, []string{"Patient/a/3-"}},
			{"instance at before it existed", store.HistoryQuery{Type: "Patient", ID: "b", At: at(1)}, []string{}},
			{"type at", store.HistoryQuery{Type: "Patient", At: at(4)}, []string{"Patient/a/2", "Patient/b/1"}},
			{"system at", store.HistoryQuery{At: at(3)}, []string{"Observation/o/1", "Patient/b/1", "Patient/a/1"}},
			{"system at and since", store.HistoryQuery{At: at(6), Since: at(4)}, []string{"Patient/ab/1", "Patient/a/3-"}},
		}
		for _, tc := range tests {
			q := tc.q
			q.Count = 100
			p := hist(q)
			if got := versionsOf(p.Entries); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
			if p.Total != len(tc.want) {
				t.Errorf("%s: Total %d, want %d", tc.name, p.Total, len(tc.want))
			}
		}
		// Entries carry bodies, except deletions.
		p := hist(store.HistoryQuery{Type: "Patient", ID: "a", Count: 10})
		if string(p.Entries[1].Body) != string(body("Patient", "a", 2)) || len(p.Entries[0].Body) != 0 || p.Entries[0].Method != "DELETE" {
			t.Errorf("history bodies: %q / %q", p.Entries[1].Body, p.Entries[0].Body)
		}
		// Count 0 gives the total only.
		if p := hist(store.HistoryQuery{Type: "Patient"}); p.Total != 5 || len(p.Entries) != 0 {
			t.Errorf("Count 0: %d entries, Total %d; want none and 5", len(p.Entries), p.Total)
		}

		// Paging: the first page fixes a snapshot; later pages use it as Before and neither
		// see new versions nor shift while writes happen.
		first := hist(store.HistoryQuery{Type: "Patient", Count: 2})
		if got := versionsOf(first.Entries); !slices.Equal(got, []string{"Patient/ab/1", "Patient/a/3-"}) || first.Total != 5 || first.Snapshot == 0 {
			t.Fatalf("first page %v total %d snapshot %d", got, first.Total, first.Snapshot)
		}
		e.put(t, "Patient", "late", store.Index{})
		e.put(t, "Patient", "b", store.Index{})
		second := hist(store.HistoryQuery{Type: "Patient", Count: 2, Offset: 2, Before: first.Snapshot})
		if got := versionsOf(second.Entries); !slices.Equal(got, []string{"Patient/a/2", "Patient/b/1"}) || second.Total != 5 || second.Snapshot != first.Snapshot {
			t.Errorf("second page %v total %d snapshot %d; want [a/2 b/1], 5, %d", got, second.Total, second.Snapshot, first.Snapshot)
		}
		third := hist(store.HistoryQuery{Type: "Patient", Count: 2, Offset: 4, Before: first.Snapshot})
		if got := versionsOf(third.Entries); !slices.Equal(got, []string{"Patient/a/1"}) {
			t.Errorf("third page %v", got)
		}
		fresh := hist(store.HistoryQuery{Type: "Patient", Count: 2})
		if got := versionsOf(fresh.Entries); !slices.Equal(got, []string{"Patient/b/2", "Patient/late/1"}) || fresh.Total != 7 || fresh.Snapshot <= first.Snapshot {
			t.Errorf("new first page %v total %d snapshot %d", got, fresh.Total, fresh.Snapshot)
		}
		inst := hist(store.HistoryQuery{Type: "Patient", ID: "b", Count: 10, Before: first.Snapshot})
		if got := versionsOf(inst.Entries); !slices.Equal(got, []string{"Patient/b/1"}) {
			t.Errorf("instance history before the snapshot: %v", got)
		}
	})
}

// TestHistoryKeysetPaging pages type history by sequence number while writes happen. On
// PostgreSQL a writer that took its sequence number before the first page was read commits
// only after it: with offsets that version would push a version already shown onto the
// next page again; by keyset every version shown once is shown once, in order.
func TestHistoryKeysetPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		hist := func(q store.HistoryQuery) *store.HistoryPage {
			t.Helper()
			p, err := e.s.History(ctx, q)
			if err != nil {
				t.Fatalf("History(%+v): %v", q, err)
			}
			return p
		}
		for _, id := range []string{"p1", "p2", "p3", "p4"} {
			e.put(t, "Patient", id, store.Index{})
		}
		// The late writer takes its sequence number now and commits after the first page.
		release, late := make(chan struct{}), make(chan error, 1)
		if e.b.Name == "postgres" {
			started := make(chan struct{})
			go func() {
				late <- e.s.Update(ctx, func(tx store.Tx) error {
					w := &store.Write{Type: "Patient", ID: "late", Version: 1, LastUpdated: e.next(), Method: "POST", Body: body("Patient", "late", 1)}
					if err := tx.Put(ctx, w); err != nil {
						return err
					}
					close(started)
					<-release
					return nil
				})
			}()
			<-started
		} else {
			late <- nil // SQLite has one writer at a time: nothing commits late
		}
		e.put(t, "Patient", "p5", store.Index{})

		first := hist(store.HistoryQuery{Type: "Patient", Count: 2})
		if got := versionsOf(first.Entries); !slices.Equal(got, []string{"Patient/p5/1", "Patient/p4/1"}) || first.Newer || !first.Older {
			t.Fatalf("first page %v newer %v older %v", got, first.Newer, first.Older)
		}
		close(release)
		if err := <-late; err != nil {
			t.Fatal(err)
		}
		e.put(t, "Patient", "p6", store.Index{}) // after the snapshot: never on these pages
		if e.b.Name == "postgres" {
			// The case keyset paging is for: by offset, the late version pushes p4, already
			// shown, onto the second page again.
			byOffset := hist(store.HistoryQuery{Type: "Patient", Count: 2, Offset: 2, Before: first.Snapshot})
			if got := versionsOf(byOffset.Entries); !slices.Equal(got, []string{"Patient/p4/1", "Patient/p3/1"}) {
				t.Fatalf("the late writer did not commit late: second page by offset %v", got)
			}
		}

		seen := versionsOf(first.Entries)
		page := first
		for page.Older {
			page = hist(store.HistoryQuery{Type: "Patient", Count: 2, Before: first.Snapshot, Below: page.Last})
			if !page.Newer {
				t.Errorf("page after %v says nothing is newer", seen)
			}
			seen = append(seen, versionsOf(page.Entries)...)
		}
		want := []string{"Patient/p5/1", "Patient/p4/1", "Patient/p3/1", "Patient/p2/1", "Patient/p1/1"}
		if !slices.Equal(seen, want) {
			t.Errorf("paged %v, want %v", seen, want)
		}
		// Back from the last page by Above, to the newest version of the snapshot. The late
		// version has committed by now and takes its place there, displacing nothing; so
		// does it in Total, which counts the snapshot as it stands.
		var back []string
		for page.Newer {
			page = hist(store.HistoryQuery{Type: "Patient", Count: 2, Before: first.Snapshot, Above: page.First})
			back = append(versionsOf(page.Entries), back...)
		}
		wantBack, total := []string{"Patient/p5/1", "Patient/p4/1", "Patient/p3/1", "Patient/p2/1"}, 5
		if e.b.Name == "postgres" {
			wantBack, total = slices.Insert(wantBack, 1, "Patient/late/1"), 6
		}
		if !slices.Equal(back, wantBack) {
			t.Errorf("paged back %v, want %v", back, wantBack)
		}
		if page.First != first.First {
			t.Errorf("paging back ended at sequence %d, the newest of the snapshot is %d", page.First, first.First)
		}
		if page.Total != total {
			t.Errorf("Total %d, want %d", page.Total, total)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Search: one test per value kind. Each table row is a query string and the ids it finds.

type searchCase struct {
	query string
	want  []string
}

func (e *env) check(t *testing.T, typ string, cases []searchCase) {
	t.Helper()
	for _, c := range cases {
		if got := e.find(t, typ, c.query); !slices.Equal(got, list(c.want...)) {
			t.Errorf("%s?%s = %v, want %v", typ, c.query, got, list(c.want...))
		}
	}
}

func TestSearchToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const loinc, snomed = "http://loinc.org", "http://snomed.info/sct"
		text := func(r store.TokenRow, display string) store.TokenRow {
			r.Text = search.Normalize(display)
			return r
		}
		e.put(t, "Observation", "loinc", store.Index{Tokens: []store.TokenRow{
			text(tok("code", loinc, "29463-7"), "Body Weight"), tok("status", "http://hl7.org/fhir/observation-status", "final")}})
		e.put(t, "Observation", "snomed", store.Index{Tokens: []store.TokenRow{
			text(tok("code", snomed, "29463-7"), "Poids corporel"), tok("status", "http://hl7.org/fhir/observation-status", "amended")}})
		e.put(t, "Observation", "nosys", store.Index{Tokens: []store.TokenRow{text(tok("code", "", "29463-7"), "Élan vital")}})
		e.put(t, "Observation", "other", store.Index{Tokens: []store.TokenRow{
			text(tok("code", loinc, "8867-4"), "Heart rate"), tok("code", snomed, "364075005")}})
		e.put(t, "Observation", "bare", store.Index{})
		// Identifier type|value rows for :of-type, as the indexer writes them.
		mr := "http://terminology.hl7.org/CodeSystem/v2-0203"
		e.put(t, "Patient", "mrn", store.Index{Tokens: []store.TokenRow{
			tok("identifier", "urn:oid:1.2.3", "12345"), tok(store.OfTypeParam("identifier"), mr, "MR|12345")}})
		e.put(t, "Patient", "nhs", store.Index{Tokens: []store.TokenRow{
			tok("identifier", "https://fhir.nhs.uk/Id/nhs-number", "12345"), tok(store.OfTypeParam("identifier"), mr, "NH|12345")}})
		e.put(t, "Patient", "pipe", store.Index{Tokens: []store.TokenRow{tok("identifier", "urn:x", "a|b"), tok("identifier", "urn:x", "a,b")}})

		e.check(t, "Observation", []searchCase{
			{"code=29463-7", []string{"loinc", "snomed", "nosys"}},                                   // any system
			{"code=" + loinc + "|29463-7", []string{"loinc"}},                                        // system|code
			{"code=|29463-7", []string{"nosys"}},                                                     // no system
			{"code=" + loinc + "|", []string{"loinc", "other"}},                                      // any code in the system
			{"code=" + snomed + "|8867-4", nil},                                                      // code from another system
			{"code=29463", nil},                                                                      // codes match whole
			{"code=29463-7," + snomed + "|364075005", []string{"loinc", "snomed", "nosys", "other"}}, // OR
			{"code=8867-4&code=364075005", []string{"other"}},                                        // AND across repetitions
			{"code=29463-7&status=final", []string{"loinc"}},                                         // AND across parameters
			{"code:not=29463-7", []string{"other", "bare"}},                                          // missing values count as not matching
			{"code:not=" + loinc + "|29463-7", []string{"snomed", "nosys", "other", "bare"}},
			{"code:not=" + loinc + "|", []string{"snomed", "nosys", "bare"}},
			{"code:not=29463-7,8867-4", []string{"bare"}},
			{"code:text=body", []string{"loinc"}}, // starts-with on the display
			{"code:text=BODY%20WEIGHT", []string{"loinc"}},
			{"code:text=weight", nil},             // not a word search
			{"code:text=elan", []string{"nosys"}}, // accents folded
			{"code:text=%C3%A9LAN", []string{"nosys"}},
			{"code:text=heart,poids", []string{"snomed", "other"}},
			{"code:missing=true", []string{"bare"}},
			{"code:missing=false", []string{"loinc", "snomed", "nosys", "other"}},
			{"status:missing=true", []string{"nosys", "other", "bare"}},
		})
		e.check(t, "Patient", []searchCase{
			{"identifier=12345", []string{"mrn", "nhs"}},
			{"identifier=https://fhir.nhs.uk/Id/nhs-number|12345", []string{"nhs"}},
			{"identifier:of-type=" + mr + "|MR|12345", []string{"mrn"}},
			{"identifier:of-type=" + mr + "|NH|12345", []string{"nhs"}},
			{"identifier:of-type=" + mr + "|MR|54321", nil},
			{"identifier:of-type=urn:other|MR|12345", nil},
			{`identifier=urn:x|a\|b`, []string{"pipe"}}, // escaped separators are literal
			{`identifier=a\,b`, []string{"pipe"}},
			{`identifier=a`, nil},
		})
	})
}

func TestSearchString(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		name := func(id string, names ...string) {
			var ix store.Index
			for _, n := range names {
				ix.Strings = append(ix.Strings, str("name", n))
			}
			e.put(t, "Patient", id, ix)
		}
		name("zoe1", "Zoë", "Smith-Jones")
		name("zoe2", "Zoe", "Zeller")
		name("zoey", "ZOEY")
		name("max", "Max")
		name("wild", "100%_done*[x]?")
		name("slash", `a\b`)
		name("spaced", "  Mary   Ann ")
		name("none")
		e.put(t, "Patient", "fam", store.Index{Strings: []store.StringRow{str("family", "Smith-Jones")}})

		e.check(t, "Patient", []searchCase{
			{"name=zoe", []string{"zoe1", "zoe2", "zoey"}},      // starts with, case-insensitive
			{"name=Zo%C3%AB", []string{"zoe1", "zoe2", "zoey"}}, // accents folded on both sides
			{"name=ZOE", []string{"zoe1", "zoe2", "zoey"}},
			{"name=zoey", []string{"zoey"}},
			{"name=smith", []string{"zoe1"}},
			{"name=jones", nil}, // not a substring search
			{"name=smith,max", []string{"zoe1", "max"}},
			{"name=zoe&name=zeller", []string{"zoe2"}},
			{"name:contains=jones", []string{"zoe1"}},
			{"name:contains=OE", []string{"zoe1", "zoe2", "zoey"}},
			{"name:contains=ith-jo", []string{"zoe1"}},
			{"name:exact=Zo%C3%AB", []string{"zoe1"}},
			{"name:exact=Zoe", []string{"zoe2"}},
			{"name:exact=zoe", nil}, // :exact is case-sensitive
			{"name:exact=Zo", nil},  // and whole
			{"name=mary%20%20ann", []string{"spaced"}},
			{"name:exact=%20%20Mary%20%20%20Ann%20", []string{"spaced"}},
			// Pattern characters in values are literal on both backends.
			{"name=100%25", []string{"wild"}},
			{"name:contains=_", []string{"wild"}},
			{"name:contains=%25", []string{"wild"}},
			{"name:contains=*", []string{"wild"}},
			{"name:contains=?", []string{"wild"}},
			{"name:contains=[x]", []string{"wild"}},
			{"name=1__", nil},
			{`name=a%5C%5Cb`, []string{"slash"}}, // a\\b: an escaped backslash
			{`name:exact=a%5C%5Cb`, []string{"slash"}},
			{"name:missing=true", []string{"none", "fam"}},
			{"family=smith", []string{"fam"}},
			{"family:exact=Smith-Jones", []string{"fam"}},
		})
	})
}

// ranges maps resource ids to their indexed ranges for one parameter.
type ranges map[string][]search.Range

// expectDates applies search.Date.Matches, the reference semantics, to every indexed range:
// a resource matches when one of its ranges matches one of the clause's values.
func expectDates(q *search.Query, data ranges) []string {
	out := []string{}
	for id, rs := range data {
		if slices.ContainsFunc(rs, func(r search.Range) bool {
			return slices.ContainsFunc(q.Clauses[0].Values, func(v search.Value) bool { return v.Date.Matches(r) })
		}) {
			out = append(out, id)
		}
	}
	return sorted(out)
}

func TestSearchDate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		data := ranges{
			"day":       {dateRange("2024-03-10")},
			"prev":      {dateRange("2024-03-09")},
			"next":      {dateRange("2024-03-11")},
			"old":       {dateRange("2023-12-31")},
			"instant":   {dateRange("2024-03-10T12:00:00Z")},
			"midnight":  {dateRange("2024-03-10T23:59:59.999999Z")},
			"month":     {dateRange("2024-03")},
			"year":      {dateRange("2024")},
			"period":    {periodRange("2024-03-05", "2024-03-15")},
			"openEnd":   {periodRange("2024-03-10T06:00:00Z", "")},
			"openStart": {periodRange("", "2024-03-10")},
			"two":       {dateRange("2023-01-01"), dateRange("2025-06-01")},
			"none":      nil,
		}
		for id, rs := range data {
			var ix store.Index
			for _, r := range rs {
				ix.Dates = append(ix.Dates, dateRow("date", r))
			}
			e.put(t, "Observation", id, ix)
		}

		// A few hand-checked answers pin the boundaries (ranges are half-open).
		e.check(t, "Observation", []searchCase{
			{"date=2024-03-10", []string{"day", "instant", "midnight"}},
			{"date=sa2024-03-10", []string{"next", "two"}},
			{"date=eb2024-03-10", []string{"prev", "old", "two"}},
			{"date=gt2024-03-10", []string{"next", "month", "year", "period", "openEnd", "two"}},
			{"date=lt2024-03-10", []string{"prev", "old", "month", "year", "period", "openStart", "two"}},
			// ap widens by 10% of the distance to now (2024-03-20): one day each side.
			{"date=ap2024-03-10", []string{"day", "prev", "next", "instant", "midnight", "month", "year", "period", "openEnd", "openStart"}},
			{"date=2024-03-10T12:00:00Z", []string{"instant"}},
			{"date=2024-03-10T13:00:00%2B01:00", []string{"instant"}}, // the same instant in +01:00
			{"date=ne2024", []string{"old", "openEnd", "openStart", "two"}},
			{"date:missing=true", []string{"none"}},
			{"date=2023,2025", []string{"old", "two"}},
			// Ranges that overlap both bounds match both clauses (each clause alone).
			{"date=ge2024-03-10&date=lt2024-03-11", []string{"day", "instant", "midnight", "month", "year", "period", "openEnd", "two"}},
			{"date=ge2024-03-10&date=le2024-03-10", []string{"day", "instant", "midnight", "month", "year", "period", "two"}},
		})

		// Every prefix against values of every precision, checked against Date.Matches.
		values := []string{"2024-03-10", "2024-03", "2024", "2024-03-10T12:00:00Z", "2024-03-10T12:00Z",
			"2024-03-10T00:00:00+01:00", "2024-03-10T23:59:59.999999Z", "2024-03-11", "2023-12-31T23:59:59Z"}
		prefixes := []string{"", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}
		for _, v := range values {
			for _, p := range prefixes {
				q := e.parse(t, "Observation", url.Values{"date": {p + v}})
				want := expectDates(q, data)
				if got := sorted(ids(e.run(t, q, store.SearchOptions{Limit: 100}).Entries)); !slices.Equal(got, want) {
					t.Errorf("date=%s%s = %v, want %v", p, v, got, want)
				}
			}
		}
	})
}

func TestSearchLastUpdated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		noon := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
		stamps := map[string]time.Time{
			"before": noon.Add(-500 * time.Millisecond),
			"at":     noon,
			"within": noon.Add(time.Second - time.Microsecond),
			"after":  noon.Add(time.Second),
		}
		data := ranges{}
		for id, ts := range stamps {
			e.putAt(t, "Patient", id, ts, store.Index{})
			data[id] = []search.Range{{Low: ts.UnixMicro(), High: ts.UnixMicro() + 1}}
		}
		// A newer version moves a resource; only its current lastUpdated counts.
		e.putAt(t, "Patient", "moved", noon, store.Index{})
		e.putAt(t, "Patient", "moved", noon.Add(time.Hour), store.Index{})
		data["moved"] = []search.Range{{Low: noon.Add(time.Hour).UnixMicro(), High: noon.Add(time.Hour).UnixMicro() + 1}}

		e.check(t, "Patient", []searchCase{
			{"_lastUpdated=2024-03-10T12:00:00Z", []string{"at", "within"}},
			{"_lastUpdated=gt2024-03-10T12:00:00Z", []string{"after", "moved"}},
			{"_lastUpdated=lt2024-03-10T12:00:00Z", []string{"before"}},
			{"_lastUpdated=ge2024-03-10T12:00:00Z", []string{"at", "within", "after", "moved"}},
			{"_lastUpdated=le2024-03-10T12:00:00Z", []string{"before", "at", "within"}},
			{"_lastUpdated=ne2024-03-10T12:00:00Z", []string{"before", "after", "moved"}},
			{"_lastUpdated=sa2024-03-10T12:00:00Z", []string{"after", "moved"}},
			{"_lastUpdated=eb2024-03-10T12:00:00Z", []string{"before"}},
			{"_lastUpdated=2024-03-10T12:00:00.000Z", []string{"at"}},
		})
		for _, v := range []string{"2024-03-10T12:00:00Z", "2024-03-10", "2024-03-10T12:00Z", "2024-03-10T13:00:00Z"} {
			for _, p := range []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"} {
				q := e.parse(t, "Patient", url.Values{"_lastUpdated": {p + v}})
				want := expectDates(q, data)
				if got := sorted(ids(e.run(t, q, store.SearchOptions{Limit: 100}).Entries)); !slices.Equal(got, want) {
					t.Errorf("_lastUpdated=%s%s = %v, want %v", p, v, got, want)
				}
			}
		}
	})
}

func TestSearchNumber(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		data := map[string][]float64{
			"n100": {100}, "n99_5": {99.5}, "n100_4": {100.4999}, "n100_5": {100.5}, "n101": {101},
			"neg": {-3}, "half": {0.5}, "two": {1, 200}, "none": nil,
		}
		for id, vs := range data {
			var ix store.Index
			for _, v := range vs {
				ix.Numbers = append(ix.Numbers, store.NumberRow{Param: "probability", Value: v})
			}
			e.put(t, "RiskAssessment", id, ix)
		}
		e.check(t, "RiskAssessment", []searchCase{
			{"probability=100", []string{"n100", "n99_5", "n100_4"}}, // [99.5, 100.5)
			{"probability=100.0", []string{"n100"}},                  // [99.95, 100.05)
			{"probability=1e2", []string{"n100", "n99_5", "n100_4", "n100_5", "n101"}},
			{"probability=ne100", []string{"n100_5", "n101", "neg", "half", "two"}},
			{"probability=gt100", []string{"n100_4", "n100_5", "n101", "two"}},
			{"probability=ge100", []string{"n100", "n100_4", "n100_5", "n101", "two"}},
			{"probability=lt100", []string{"n99_5", "neg", "half", "two"}},
			{"probability=le100", []string{"n100", "n99_5", "neg", "half", "two"}},
			{"probability=sa100", []string{"n100_4", "n100_5", "n101", "two"}},
			{"probability=eb100", []string{"n99_5", "neg", "half", "two"}},
			{"probability=ap100", []string{"n100", "n99_5", "n100_4", "n100_5", "n101"}}, // ±10%
			{"probability=-3", []string{"neg"}},
			{"probability=0.5,200", []string{"half", "two"}},
			{"probability=gt50&probability=lt150", []string{"n100", "n99_5", "n100_4", "n100_5", "n101", "two"}},
			{"probability:missing=true", []string{"none"}},
		})
		for _, v := range []string{"100", "100.0", "1e2", "-3", "0.5", "1.5e-1", "200.00"} {
			for _, p := range []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"} {
				q := e.parse(t, "RiskAssessment", url.Values{"probability": {p + v}})
				n := q.Clauses[0].Values[0].Number
				want := []string{}
				for id, vs := range data {
					if slices.ContainsFunc(vs, n.Matches) {
						want = append(want, id)
					}
				}
				if got := sorted(ids(e.run(t, q, store.SearchOptions{Limit: 100}).Entries)); !slices.Equal(got, sorted(want)) {
					t.Errorf("probability=%s%s = %v, want %v", p, v, got, sorted(want))
				}
			}
		}
	})
}

func TestSearchQuantity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const ucum = "http://unitsofmeasure.org"
		qty := func(v float64, system, code, unit string) store.NumberRow {
			return store.NumberRow{Param: "value-quantity", Value: v, System: system, Code: code, Unit: unit}
		}
		e.put(t, "Observation", "mg", store.Index{Numbers: []store.NumberRow{qty(5.4, ucum, "mg", "mg")}})
		e.put(t, "Observation", "unitOnly", store.Index{Numbers: []store.NumberRow{qty(5.4, "", "", "mg")}})
		e.put(t, "Observation", "otherSys", store.Index{Numbers: []store.NumberRow{qty(5.4, "urn:local", "mg", "milligram")}})
		e.put(t, "Observation", "g", store.Index{Numbers: []store.NumberRow{qty(10, ucum, "g", "gram")}})
		e.put(t, "Observation", "none", store.Index{})
		e.check(t, "Observation", []searchCase{
			{"value-quantity=5.4", []string{"mg", "unitOnly", "otherSys"}},
			{"value-quantity=5.4|" + ucum + "|mg", []string{"mg"}},
			{"value-quantity=5.4||mg", []string{"mg", "unitOnly", "otherSys"}}, // code or unit
			{"value-quantity=5.4||milligram", []string{"otherSys"}},
			{"value-quantity=5.4|urn:local|mg", []string{"otherSys"}},
			{"value-quantity=5.4|" + ucum + "|g", nil},
			{"value-quantity=5|" + ucum + "|mg", []string{"mg"}}, // 5 is [4.5, 5.5)
			{"value-quantity=5.0|" + ucum + "|mg", nil},          // 5.0 is [4.95, 5.05)
			{"value-quantity=gt5|" + ucum + "|g", []string{"g"}},
			{"value-quantity=gt5", []string{"mg", "unitOnly", "otherSys", "g"}},
			{"value-quantity=lt10", []string{"mg", "unitOnly", "otherSys"}},
			{"value-quantity=le10||gram", []string{"g"}},
			{"value-quantity=ap5||mg", []string{"mg", "unitOnly", "otherSys"}},
			{"value-quantity=ne5.4", []string{"g"}},
			{"value-quantity=5.4||mg,10||g", []string{"mg", "unitOnly", "otherSys", "g"}},
			{"value-quantity:missing=true", []string{"none"}},
		})
	})
}

func TestSearchReference(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ext := "http://other.example/fhir/Patient/x"
		e.put(t, "Observation", "toP1", store.Index{Refs: []store.RefRow{ref("subject", "Patient", "p1"), ref("patient", "Patient", "p1")}})
		e.put(t, "Observation", "toG1", store.Index{Refs: []store.RefRow{ref("subject", "Group", "p1")}})
		e.put(t, "Observation", "toP2", store.Index{Refs: []store.RefRow{ref("subject", "Patient", "p2"), ref("performer", "Practitioner", "p1")}})
		e.put(t, "Observation", "toURL", store.Index{Refs: []store.RefRow{{Param: "subject", URL: ext}}})
		e.put(t, "Observation", "byIdent", store.Index{Tokens: []store.TokenRow{
			tok(store.IdentifierParam("subject"), "https://fhir.nhs.uk/Id/nhs-number", "9000000009")}})
		e.put(t, "Observation", "none", store.Index{})
		e.check(t, "Observation", []searchCase{
			{"subject=Patient/p1", []string{"toP1"}},
			{"subject=p1", []string{"toP1", "toG1"}}, // id only: any target type
			{"subject:Patient=p1", []string{"toP1"}},
			{"subject:Group=p1", []string{"toG1"}},
			{"subject=Patient/p1/_history/3", []string{"toP1"}}, // versions are not indexed
			{"subject=Patient/p1,Patient/p2", []string{"toP1", "toP2"}},
			{"subject=Patient/p3", nil},
			{"subject=" + url.QueryEscape(ext), []string{"toURL"}},
			{"subject=" + url.QueryEscape("http://other.example/fhir/Patient/y"), nil},
			{"patient=p1", []string{"toP1"}},
			{"performer=p1", []string{"toP2"}}, // the parameter is part of the match
			{"subject:identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", []string{"byIdent"}},
			{"subject:identifier=9000000009", []string{"byIdent"}},
			{"subject:identifier=urn:other|9000000009", nil},
			{"subject:missing=true", []string{"byIdent", "none"}},
			{"subject:missing=false", []string{"toP1", "toG1", "toP2", "toURL"}},
		})
	})
}

func TestSearchURI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for id, u := range map[string]string{
			"q1":     "http://acme.org/fhir/Questionnaire/q1",
			"q1v":    "http://acme.org/fhir/Questionnaire/q1/v2",
			"coll":   "http://acme.org/fhir/Questionnaire",
			"root":   "http://acme.org/fhir",
			"elsewh": "http://other.org/fhir/Questionnaire/q1",
			"urn":    "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
		} {
			e.put(t, "Questionnaire", id, store.Index{URIs: []store.URIRow{{Param: "url", URI: u}}})
		}
		e.put(t, "Questionnaire", "none", store.Index{})
		e.check(t, "Questionnaire", []searchCase{
			{"url=http://acme.org/fhir/Questionnaire/q1", []string{"q1"}}, // exact, not a prefix
			{"url=http://acme.org/fhir/Questionnaire/Q1", nil},            // and case-sensitive
			{"url=urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7", []string{"urn"}},
			{"url:below=http://acme.org/fhir/Questionnaire", []string{"q1", "q1v", "coll"}},
			{"url:below=http://acme.org/fhir/", []string{"q1", "q1v", "coll"}},
			{"url:below=http://acme.org/fhir/Questionnaire/q1", []string{"q1", "q1v"}},
			{"url:above=http://acme.org/fhir/Questionnaire/q1/v2", []string{"q1v", "q1", "coll", "root"}},
			{"url:above=http://acme.org/fhir/Questionnaire/q9", []string{"coll", "root"}},
			{"url:above=http://acme.org/fhir", []string{"root"}},
			{"url=http://acme.org/fhir/Questionnaire/q1,http://other.org/fhir/Questionnaire/q1", []string{"q1", "elsewh"}},
			{"url:missing=true", []string{"none"}},
		})
	})
}

func TestSearchIDAndTypes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.put(t, "Patient", "a", store.Index{Tokens: []store.TokenRow{tok("_tag", "urn:t", "x")}})
		e.put(t, "Patient", "b", store.Index{})
		e.put(t, "Patient", "c", store.Index{})
		e.put(t, "Observation", "a", store.Index{Tokens: []store.TokenRow{tok("_tag", "urn:t", "x")}})
		e.put(t, "Encounter", "e", store.Index{Tokens: []store.TokenRow{tok("_tag", "urn:t", "x")}})
		e.check(t, "Patient", []searchCase{
			{"_id=a", []string{"a"}},
			{"_id=a,c,zz", []string{"a", "c"}},
			{"_id:not=a", []string{"b", "c"}},
			{"_id=a&_id=b", nil},
			{"_id=A", nil}, // ids are case-sensitive
			{"_tag=urn:t|x", []string{"a"}},
			{"_tag=urn:t|x&_id=b", nil},
		})
		system := func(raw string) []string {
			return sorted(refs(e.run(t, e.query(t, "", raw), store.SearchOptions{Limit: 100}).Entries))
		}
		for _, c := range []searchCase{
			{"_id=a", []string{"Observation/a", "Patient/a"}},
			{"_type=Patient&_id=a", []string{"Patient/a"}},
			{"_type=Patient,Encounter&_tag=urn:t|x", []string{"Encounter/e", "Patient/a"}},
			{"_tag=urn:t|x", []string{"Encounter/e", "Observation/a", "Patient/a"}},
			{"_type=Encounter", []string{"Encounter/e"}},
		} {
			if got := system(c.query); !slices.Equal(got, list(c.want...)) {
				t.Errorf("?%s = %v, want %v", c.query, got, list(c.want...))
			}
		}
	})
}

func TestSearchChains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.put(t, "Organization", "acme", store.Index{Strings: []store.StringRow{str("name", "Acme Health")}})
		e.put(t, "Organization", "gone", store.Index{Strings: []store.StringRow{str("name", "Acme Gone")}})
		e.put(t, "Patient", "alice", store.Index{Strings: []store.StringRow{str("name", "Alice")},
			Refs: []store.RefRow{ref("organization", "Organization", "acme")}})
		e.put(t, "Patient", "alicia", store.Index{Strings: []store.StringRow{str("name", "Alicia")},
			Refs: []store.RefRow{ref("organization", "Organization", "gone")}})
		e.put(t, "Patient", "bob", store.Index{Strings: []store.StringRow{str("name", "Bob")}})
		e.put(t, "Patient", "deleted", store.Index{Strings: []store.StringRow{str("name", "Alison")}})
		e.put(t, "Group", "alice", store.Index{})
		obs := func(id, subjType, subj, code string) {
			e.put(t, "Observation", id, store.Index{
				Refs:   []store.RefRow{ref("subject", subjType, subj), ref("patient", subjType, subj)},
				Tokens: []store.TokenRow{tok("code", "http://loinc.org", code)}})
		}
		obs("o-alice", "Patient", "alice", "c1")
		obs("o-alicia", "Patient", "alicia", "c2")
		obs("o-bob", "Patient", "bob", "c3")
		obs("o-deleted-patient", "Patient", "deleted", "c1")
		obs("o-group", "Group", "alice", "c1")
		obs("o-dangling", "Patient", "nobody", "c1")
		obs("o-deleted", "Patient", "bob", "c9")
		e.del(t, "Patient", "deleted")
		e.del(t, "Observation", "o-deleted")
		e.del(t, "Organization", "gone")

		e.check(t, "Observation", []searchCase{
			{"subject:Patient.name=ali", []string{"o-alice", "o-alicia"}}, // not through the deleted patient
			{"patient.name=alice", []string{"o-alice"}},                   // the only target with "name"
			{"subject:Patient.name=bob&code=c3", []string{"o-bob"}},
			{"subject:Patient.name=bob&code=c1", nil},
			{"subject:Patient.name=alice,bob", []string{"o-alice", "o-bob"}},
			{"subject:Patient.name:exact=Alice", []string{"o-alice"}},
			{"subject:Patient._id=alice", []string{"o-alice"}},              // not the Group with the same id
			{"subject:Patient.organization.name=acme", []string{"o-alice"}}, // two links; "gone" is deleted
			{"subject:Patient.name:missing=true", nil},
		})
		e.check(t, "Patient", []searchCase{
			{"_has:Observation:subject:code=c1", []string{"alice"}},           // deleted patient excluded
			{"_has:Observation:subject:code=c9", nil},                         // the observation is deleted
			{"_has:Observation:subject:code=c1,c3", []string{"alice", "bob"}}, // OR inside one clause
			{"_has:Observation:subject:code=c1&_has:Observation:subject:code=c3", nil},
			{"_has:Observation:patient:code=c2&name=alicia", []string{"alicia"}},
			{"_has:Observation:subject:_id=o-bob", []string{"bob"}},
			{"_has:Observation:subject:subject:Patient.name=bob", []string{"bob"}}, // reverse then forward
			{"organization.name=acme", []string{"alice"}},
		})
		e.check(t, "Organization", []searchCase{
			{"_has:Patient:organization:_has:Observation:subject:code=c1", []string{"acme"}},
		})
	})
}

func TestSearchSortAndPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		pat := func(id, birth, gender string, families ...string) {
			var ix store.Index
			if birth != "" {
				ix.Dates = append(ix.Dates, dateRow("birthdate", dateRange(birth)))
			}
			if gender != "" {
				ix.Tokens = append(ix.Tokens, tok("gender", "http://hl7.org/fhir/administrative-gender", gender))
			}
			for _, f := range families {
				ix.Strings = append(ix.Strings, str("family", f))
			}
			e.put(t, "Patient", id, ix)
		}
		// Creation order is p1..p5, which also breaks ties.
		pat("p1", "1980", "male", "Brown")
		pat("p2", "1990-05-05", "female", "adams")
		pat("p3", "", "male", "Clark")
		pat("p4", "1970-01-01", "female")
		pat("p5", "", "", "Young", "Abbot") // sorts by its lowest value ascending, highest descending
		e.put(t, "Patient", "p6", store.Index{Strings: []store.StringRow{str("family", "Zed")}})
		e.del(t, "Patient", "p6")
		pat("p3", "", "male", "Clark") // a new version keeps its place in ties (same key)

		for _, c := range []searchCase{
			{"_sort=birthdate", []string{"p4", "p1", "p2", "p3", "p5"}},
			{"_sort=-birthdate", []string{"p2", "p1", "p4", "p3", "p5"}}, // missing values still last
			{"_sort=family", []string{"p5", "p2", "p1", "p3", "p4"}},
			{"_sort=-family", []string{"p5", "p3", "p1", "p2", "p4"}},
			{"_sort=gender,-birthdate", []string{"p2", "p4", "p1", "p3", "p5"}},
			{"_sort=-gender,birthdate", []string{"p1", "p3", "p4", "p2", "p5"}},
			{"_sort=gender,family", []string{"p2", "p4", "p1", "p3", "p5"}},
			{"_sort=_id", []string{"p1", "p2", "p3", "p4", "p5"}},
			{"_sort=-_id", []string{"p5", "p4", "p3", "p2", "p1"}},
			{"_sort=-_lastUpdated", []string{"p3", "p5", "p4", "p2", "p1"}},
			{"_sort=_lastUpdated", []string{"p1", "p2", "p4", "p5", "p3"}},
			{"_sort=gender,-_lastUpdated&gender:missing=false", []string{"p4", "p2", "p3", "p1"}},
			{"", []string{"p1", "p2", "p3", "p4", "p5"}}, // default order: stable by internal key
		} {
			if got := e.ordered(t, "Patient", c.query); !slices.Equal(got, c.want) {
				t.Errorf("Patient?%s = %v, want %v", c.query, got, c.want)
			}
		}

		// Offset, Limit, Total and KeysOnly.
		q := e.query(t, "Patient", "_sort=family")
		all := e.run(t, q, store.SearchOptions{Limit: 100, Total: true})
		if all.Total != 5 || len(all.RIDs) != 5 {
			t.Fatalf("Total %d with %d keys, want 5", all.Total, len(all.RIDs))
		}
		page := e.run(t, q, store.SearchOptions{Offset: 1, Limit: 2, Total: true})
		if got := ids(page.Entries); !slices.Equal(got, []string{"p2", "p1"}) || page.Total != 5 || !slices.Equal(page.RIDs, all.RIDs[1:3]) {
			t.Errorf("offset 1 limit 2: %v keys %v total %d", got, page.RIDs, page.Total)
		}
		if p := e.run(t, q, store.SearchOptions{Offset: 4, Limit: 10}); !slices.Equal(ids(p.Entries), []string{"p4"}) || p.Total != -1 {
			t.Errorf("last page: %v total %d (want -1 when not asked)", ids(p.Entries), p.Total)
		}
		if p := e.run(t, q, store.SearchOptions{Offset: 10, Limit: 10, Total: true}); len(p.Entries) != 0 || p.Total != 5 {
			t.Errorf("past the end: %v total %d", ids(p.Entries), p.Total)
		}
		if p := e.run(t, q, store.SearchOptions{Total: true}); len(p.Entries) != 0 || len(p.RIDs) != 0 || p.Total != 5 {
			t.Errorf("limit 0: %d entries total %d, want none and 5", len(p.Entries), p.Total)
		}
		keys := e.run(t, q, store.SearchOptions{Limit: 3, KeysOnly: true})
		if len(keys.Entries) != 0 || !slices.Equal(keys.RIDs, all.RIDs[:3]) {
			t.Errorf("KeysOnly: %d entries, keys %v, want %v", len(keys.Entries), keys.RIDs, all.RIDs[:3])
		}
		if p := e.run(t, e.query(t, "Patient", "gender=male"), store.SearchOptions{Total: true, Limit: 1}); p.Total != 2 || len(p.Entries) != 1 {
			t.Errorf("gender=male: total %d, %d entries", p.Total, len(p.Entries))
		}
		if got := all.Entries[2]; got.ID != "p1" || got.Version != 1 || string(got.Body) != string(body("Patient", "p1", 1)) {
			t.Errorf("entry %+v", got)
		}
		if got := all.Entries[3]; got.ID != "p3" || got.Version != 2 {
			t.Errorf("search returns %s version %d, want the current version 2", got.ID, got.Version)
		}
	})
}

func TestSearchCurrentVersionsOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		fam := func(f string) store.Index { return store.Index{Strings: []store.StringRow{str("family", f)}} }
		e.put(t, "Patient", "moved", fam("Old"))
		e.put(t, "Patient", "moved", fam("New"))
		e.put(t, "Patient", "gone", fam("New"))
		e.del(t, "Patient", "gone")
		e.put(t, "Patient", "back", fam("Old"))
		e.del(t, "Patient", "back")
		e.put(t, "Patient", "back", fam("Back"))
		e.put(t, "Patient", "emptied", fam("New"))
		e.put(t, "Patient", "emptied", store.Index{})
		e.check(t, "Patient", []searchCase{
			{"family=old", nil},
			{"family=new", []string{"moved"}},
			{"family=back", []string{"back"}},
			{"family:missing=true", []string{"emptied"}},
			{"_id=gone", nil},
			{"_id:not=zz", []string{"moved", "back", "emptied"}},
			{"family:missing=false", []string{"moved", "back"}},
		})
		if p := e.run(t, e.query(t, "Patient", ""), store.SearchOptions{Total: true}); p.Total != 3 {
			t.Errorf("Total %d, want 3 (deleted resources are not counted)", p.Total)
		}
		if got := e.ordered(t, "Patient", "_sort=family"); !slices.Equal(got, []string{"back", "moved", "emptied"}) {
			t.Errorf("sorted by family: %v (old index rows must not count)", got)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Saved searches, includes and migrations

func TestSavedSearches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		for _, id := range []string{"a", "b", "c", "d"} {
			e.put(t, "Patient", id, store.Index{})
		}
		rid := func(id string) int64 { return e.rid(t, "Patient", id) }
		keys := []int64{rid("c"), rid("a"), rid("d"), rid("b")} // an order of the caller's choosing
		future := time.Now().Add(time.Hour)
		if err := e.s.SaveSearch(ctx, "s1", keys, 4, future); err != nil {
			t.Fatal(err)
		}
		load := func(id string, offset, count int) ([]string, int, error) {
			rs, total, _, err := e.s.LoadSearch(ctx, id, offset, count)
			return ids(rs), total, err
		}
		for _, c := range []struct {
			offset, count int
			want          []string
		}{
			{0, 2, []string{"c", "a"}},
			{2, 2, []string{"d", "b"}},
			{1, 10, []string{"a", "d", "b"}},
			{4, 2, []string{}},
			{9, 2, []string{}},
		} {
			rs, total, saved, err := e.s.LoadSearch(ctx, "s1", c.offset, c.count)
			if got := ids(rs); err != nil || total != 4 || saved != 4 || !slices.Equal(got, c.want) {
				t.Errorf("LoadSearch(%d, %d) = %v, total %d, saved %d, %v; want %v, 4, 4", c.offset, c.count, got, total, saved, err, c.want)
			}
		}
		// A list that holds fewer ids than the total (the first of many matches) says so.
		if err := e.s.SaveSearch(ctx, "part", keys[:2], 10, future); err != nil {
			t.Fatal(err)
		}
		if rs, total, saved, err := e.s.LoadSearch(ctx, "part", 1, 5); err != nil || total != 10 || saved != 2 || !slices.Equal(ids(rs), []string{"a"}) {
			t.Errorf("partial list: %v, total %d, saved %d, %v; want [a], 10, 2", ids(rs), total, saved, err)
		}
		// Later changes: a deleted resource leaves the page, an updated one is served current.
		e.del(t, "Patient", "a")
		e.put(t, "Patient", "d", store.Index{})
		rs, total, _, err := e.s.LoadSearch(ctx, "s1", 0, 3)
		if err != nil || total != 4 || !slices.Equal(ids(rs), []string{"c", "d"}) || rs[1].Version != 2 {
			t.Errorf("after changes: %v (%v), %d, %v; want [c d] with d at version 2", ids(rs), rs, total, err)
		}
		// An empty result list is a valid saved search.
		if err := e.s.SaveSearch(ctx, "empty", nil, 0, future); err != nil {
			t.Fatal(err)
		}
		if got, total, err := load("empty", 0, 10); err != nil || len(got) != 0 || total != 0 {
			t.Errorf("empty saved search: %v, %d, %v", got, total, err)
		}
		// The total is kept as given (the list may have been capped).
		if err := e.s.SaveSearch(ctx, "capped", keys[:2], 12000, future); err != nil {
			t.Fatal(err)
		}
		if got, total, err := load("capped", 0, 10); err != nil || total != 12000 || !slices.Equal(got, []string{"c"}) {
			t.Errorf("capped: %v, %d, %v", got, total, err)
		}
		// Expired and unknown searches are not found.
		if err := e.s.SaveSearch(ctx, "old", keys, 4, time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"old", "nope"} {
			if _, _, _, err := e.s.LoadSearch(ctx, id, 0, 10); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("LoadSearch(%q): %v, want ErrNotFound", id, err)
			}
		}
		// Saving again purges expired searches without disturbing live ones.
		if err := e.s.SaveSearch(ctx, "s2", keys[:1], 1, future); err != nil {
			t.Fatal(err)
		}
		if got, _, err := load("s1", 0, 1); err != nil || !slices.Equal(got, []string{"c"}) {
			t.Errorf("s1 after another save: %v, %v", got, err)
		}
		// Keys from a real search round-trip.
		q := e.query(t, "Patient", "_sort=-_id")
		p := e.run(t, q, store.SearchOptions{Limit: 100, KeysOnly: true, Total: true})
		if err := e.s.SaveSearch(ctx, "real", p.RIDs, p.Total, future); err != nil {
			t.Fatal(err)
		}
		if got, total, err := load("real", 0, 100); err != nil || total != 3 || !slices.Equal(got, []string{"d", "c", "b"}) {
			t.Errorf("saved real search: %v, %d, %v", got, total, err)
		}
	})
}

func TestReferencedAndReferencing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		e.put(t, "Patient", "p1", store.Index{})
		e.put(t, "Patient", "p2", store.Index{})
		e.put(t, "Practitioner", "dr", store.Index{})
		e.put(t, "Organization", "org", store.Index{})
		e.put(t, "Observation", "o1", store.Index{Refs: []store.RefRow{
			ref("subject", "Patient", "p1"), ref("patient", "Patient", "p1"), ref("performer", "Practitioner", "dr"),
			ref("performer", "Organization", "org"), ref("performer", "Patient", "missing"),
			{Param: "derived-from", URL: "http://elsewhere.example/Observation/1"}}})
		e.put(t, "Observation", "o2", store.Index{Refs: []store.RefRow{ref("subject", "Patient", "p2"), ref("performer", "Practitioner", "dr")}})
		e.put(t, "Encounter", "enc", store.Index{Refs: []store.RefRow{ref("subject", "Patient", "p1")}})
		e.put(t, "Observation", "o3", store.Index{Refs: []store.RefRow{ref("subject", "Patient", "p1")}})
		o1, o2 := e.rid(t, "Observation", "o1"), e.rid(t, "Observation", "o2")
		e.del(t, "Patient", "p2")
		e.del(t, "Observation", "o3")

		referenced := func(from []int64, param, target string) []string {
			t.Helper()
			rs, rids, err := e.s.Referenced(ctx, from, param, target)
			if err != nil {
				t.Fatalf("Referenced: %v", err)
			}
			if len(rids) != len(rs) {
				t.Errorf("Referenced: %d resources, %d keys", len(rs), len(rids))
			}
			return sorted(refs(rs))
		}
		for _, c := range []struct {
			from          []int64
			param, target string
			want          []string
		}{
			{[]int64{o1, o2}, "", "", []string{"Organization/org", "Patient/p1", "Practitioner/dr"}}, // each once; p2 deleted
			{[]int64{o1}, "subject", "", []string{"Patient/p1"}},
			{[]int64{o1}, "performer", "", []string{"Organization/org", "Practitioner/dr"}},
			{[]int64{o1}, "performer", "Organization", []string{"Organization/org"}},
			{[]int64{o2}, "", "Patient", []string{}},
			{[]int64{o2}, "subject", "", []string{}},
			{nil, "", "", []string{}},
		} {
			if got := referenced(c.from, c.param, c.target); !slices.Equal(got, list(c.want...)) {
				t.Errorf("Referenced(%v, %q, %q) = %v, want %v", c.from, c.param, c.target, got, list(c.want...))
			}
		}
		if rs, rids, _ := e.s.Referenced(ctx, []int64{o1}, "subject", ""); len(rids) != 1 || rids[0] != e.rid(t, "Patient", "p1") || rs[0].Version != 1 || len(rs[0].Body) == 0 {
			t.Errorf("Referenced keys %v, resources %+v", rids, rs)
		}

		referencing := func(to []store.Key, src, param string) []string {
			t.Helper()
			rs, rids, err := e.s.Referencing(ctx, to, src, param)
			if err != nil {
				t.Fatalf("Referencing: %v", err)
			}
			if len(rids) != len(rs) {
				t.Errorf("Referencing: %d resources, %d keys", len(rs), len(rids))
			}
			return sorted(refs(rs))
		}
		p1, dr := store.Key{Type: "Patient", ID: "p1"}, store.Key{Type: "Practitioner", ID: "dr"}
		for _, c := range []struct {
			to         []store.Key
			src, param string
			want       []string
		}{
			{[]store.Key{p1}, "", "", []string{"Encounter/enc", "Observation/o1"}}, // o3 is deleted
			{[]store.Key{p1}, "Observation", "", []string{"Observation/o1"}},
			{[]store.Key{p1}, "Observation", "subject", []string{"Observation/o1"}},
			{[]store.Key{p1}, "Observation", "performer", []string{}},
			{[]store.Key{p1}, "", "subject", []string{"Encounter/enc", "Observation/o1"}},
			{[]store.Key{dr}, "Observation", "performer", []string{"Observation/o1", "Observation/o2"}},
			{[]store.Key{p1, dr}, "Observation", "", []string{"Observation/o1", "Observation/o2"}},
			{[]store.Key{{Type: "Practitioner", ID: "p1"}}, "", "", []string{}}, // the type is part of the key
			{[]store.Key{{Type: "Patient", ID: "p2"}}, "", "", []string{"Observation/o2"}},
			{nil, "", "", []string{}},
		} {
			if got := referencing(c.to, c.src, c.param); !slices.Equal(got, list(c.want...)) {
				t.Errorf("Referencing(%v, %q, %q) = %v, want %v", c.to, c.src, c.param, got, list(c.want...))
			}
		}
	})
}

func TestMigrations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		e.put(t, "Patient", "kept", store.Index{Tokens: []store.TokenRow{tok("gender", "", "other")}})
		versions := func(s *store.SQL) []int {
			t.Helper()
			rows, err := s.DB().QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []int
			for rows.Next() {
				var v int
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				out = append(out, v)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}
		first := versions(e.s)
		if len(first) == 0 || first[0] != 1 {
			t.Fatalf("schema_migrations = %v, want 1..n", first)
		}
		for i, v := range first {
			if v != i+1 {
				t.Fatalf("schema_migrations = %v, want 1..n", first)
			}
		}
		// Opening the database again (twice, as broker nodes sharing it would) changes nothing.
		for range 2 {
			s, err := store.Open(ctx, e.b.StoreURL, e.b.DataDir, store.Options{})
			if err != nil {
				t.Fatalf("reopening: %v", err)
			}
			if got := versions(s); !slices.Equal(got, first) {
				t.Errorf("after reopening schema_migrations = %v, want %v", got, first)
			}
			cur, err := s.Current(ctx, "Patient", "kept")
			if err != nil || cur.Version != 1 {
				t.Errorf("data after reopening: %+v, %v", cur, err)
			}
			p, err := s.Search(ctx, e.query(t, "Patient", "gender=other"), store.SearchOptions{Limit: 5})
			if err != nil || !slices.Equal(ids(p.Entries), []string{"kept"}) {
				t.Errorf("index after reopening: %v, %v", p, err)
			}
			s.Close()
		}
		// A database migrated by a newer broker (a core step this one lacks; versions from 100
		// belong to other packages) is refused rather than used.
		if _, err := e.s.DB().ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)`); err != nil {
			t.Fatal(err)
		}
		if s, err := store.Open(ctx, e.b.StoreURL, e.b.DataDir, store.Options{}); err == nil {
			s.Close()
			t.Error("opening a database with a newer schema succeeded")
		}
	})
}

func TestManyIndexRows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// More rows than one multi-row INSERT takes, in several tables, replaced on update.
		const n = 1000
		ix := store.Index{}
		for i := range n {
			ix.Tokens = append(ix.Tokens, tok("identifier", "urn:many", fmt.Sprint(i)))
			ix.Strings = append(ix.Strings, str("name", fmt.Sprintf("name%04d", i)))
		}
		e.put(t, "Patient", "many", ix)
		e.check(t, "Patient", []searchCase{
			{"identifier=urn:many|0", []string{"many"}},
			{"identifier=urn:many|999", []string{"many"}},
			{"name=name0500", []string{"many"}},
		})
		e.put(t, "Patient", "many", store.Index{Tokens: []store.TokenRow{tok("identifier", "urn:many", "new")}})
		e.check(t, "Patient", []searchCase{
			{"identifier=urn:many|999", nil},
			{"identifier=urn:many|new", []string{"many"}},
			{"name:missing=true", []string{"many"}},
		})
	})
}

func TestSavedSearchDuringWriteTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// A transaction Bundle's search entry runs inside the write transaction and may save
		// its result list for paging: neither may wait for the other.
		e.put(t, "Patient", "a", store.Index{})
		rid := e.rid(t, "Patient", "a")
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		err := e.s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Put(ctx, &store.Write{Type: "Patient", ID: "b", Version: 1, LastUpdated: e.next(), Method: "POST", Body: body("Patient", "b", 1)}); err != nil {
				return err
			}
			if err := e.s.SaveSearch(ctx, "in-tx", []int64{rid}, 1, time.Now().Add(time.Hour)); err != nil {
				return fmt.Errorf("saving: %w", err)
			}
			rs, total, _, err := e.s.LoadSearch(ctx, "in-tx", 0, 10)
			if err != nil || total != 1 || !slices.Equal(ids(rs), []string{"a"}) {
				return fmt.Errorf("loading: %v, %d, %v", ids(rs), total, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if rs, _, _, err := e.s.LoadSearch(e.ctx, "in-tx", 0, 10); err != nil || !slices.Equal(ids(rs), []string{"a"}) {
			t.Errorf("after commit: %v, %v", ids(rs), err)
		}
	})
}

func TestSortIsBinary(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// Ids and codes are case-sensitive and compare by code point on both backends, whatever
		// the database's collation.
		for _, id := range []string{"abc", "Zed", "a-b", "Abd", "ZZ"} {
			e.put(t, "Patient", id, store.Index{
				Tokens:  []store.TokenRow{tok("identifier", "urn:x", id)},
				Strings: []store.StringRow{str("family", id)}})
		}
		binary := []string{"Abd", "ZZ", "Zed", "a-b", "abc"}
		for _, c := range []searchCase{
			{"_sort=_id", binary},
			{"_sort=-_id", []string{"abc", "a-b", "Zed", "ZZ", "Abd"}},
			{"_sort=identifier", binary},
			{"_sort=-identifier", []string{"abc", "a-b", "Zed", "ZZ", "Abd"}},
			// Strings sort by their normalised (lower-case) form.
			{"_sort=family", []string{"a-b", "abc", "Abd", "Zed", "ZZ"}},
		} {
			if got := e.ordered(t, "Patient", c.query); !slices.Equal(got, c.want) {
				t.Errorf("Patient?%s = %v, want %v", c.query, got, c.want)
			}
		}
	})
}

func TestUpdatePanicReleasesTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// A panic in fn (recovered further up, as an HTTP server does) must not leave the
		// transaction open: on SQLite it would hold the only writer for good.
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic did not reach the caller")
				}
			}()
			_ = e.s.Update(context.Background(), func(tx store.Tx) error {
				if err := tx.Put(e.ctx, &store.Write{Type: "Patient", ID: "half", Version: 1, LastUpdated: e.next(), Method: "POST", Body: body("Patient", "half", 1)}); err != nil {
					return err
				}
				panic("fn failed")
			})
		}()
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		if err := e.s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: "after", Version: 1, LastUpdated: e.next(), Method: "POST", Body: body("Patient", "after", 1)})
		}); err != nil {
			t.Fatalf("Update after a panic: %v", err)
		}
		if _, err := e.s.Current(e.ctx, "Patient", "half"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the panicking transaction's write is visible: %v", err)
		}
	})
}

// A transaction's index rows are written in batches, yet a search inside it sees every
// resource Put before it, a resource written twice keeps only its last version's rows, and
// a transaction that fails leaves no rows at all.
func TestIndexRowsWithinATransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		put := func(tx store.Tx, id string, v int64, code string) error {
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: id, Version: v, LastUpdated: e.next(), Method: "PUT",
				Body: body("Patient", id, v), Index: store.Index{Tokens: []store.TokenRow{tok("identifier", "urn:tx", code)}}})
		}
		err := e.s.Update(ctx, func(tx store.Tx) error {
			for i := range 300 { // more than one full chunk of rows
				if err := put(tx, fmt.Sprintf("p%d", i), 1, fmt.Sprintf("c%d", i)); err != nil {
					return err
				}
			}
			q := e.query(t, "Patient", "identifier=urn:tx|c299")
			p, err := tx.Search(ctx, q, store.SearchOptions{Limit: 10})
			if err != nil {
				return err
			}
			if got := ids(p.Entries); !slices.Equal(got, []string{"p299"}) {
				t.Errorf("search inside the transaction found %v, want [p299]", got)
			}
			return put(tx, "p0", 2, "renamed")
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.find(t, "Patient", "identifier=urn:tx|c0"); len(got) != 0 {
			t.Errorf("the first version's index rows survived: %v", got)
		}
		if got := e.find(t, "Patient", "identifier=urn:tx|renamed"); !slices.Equal(got, []string{"p0"}) {
			t.Errorf("identifier=renamed finds %v", got)
		}
		if got := e.find(t, "Patient", "identifier=urn:tx|"); len(got) != 300 {
			t.Errorf("identifier=urn:tx| finds %d, want 300", len(got))
		}
		boom := errors.New("boom")
		err = e.s.Update(ctx, func(tx store.Tx) error {
			if err := put(tx, "gone", 1, "gone"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v", err)
		}
		var n int
		if err := e.s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM idx_token WHERE code = 'gone'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("a failed transaction left %d index rows (%v)", n, err)
		}
	})
}
