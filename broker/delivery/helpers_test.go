package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/store"
)

// memQueue is an in-memory queue with the semantics of the queue contract (leases, order per
// key, retry not before, dead letters, replay restarting the count).
type memQueue struct {
	mu   sync.Mutex
	now  func() time.Time
	seq  int
	msgs map[string][]*memMsg
	dead map[string][]queue.Message
}

type memMsg struct {
	m          queue.Message
	notBefore  time.Time
	leaseUntil time.Time
}

func newMemQueue(now func() time.Time) *memQueue {
	return &memQueue{now: now, msgs: map[string][]*memMsg{}, dead: map[string][]queue.Message{}}
}

func (q *memQueue) Enqueue(_ context.Context, msgs ...queue.Message) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ids []string
	for _, m := range msgs {
		q.seq++
		m.ID = fmt.Sprintf("m%d", q.seq)
		if m.EnqueuedAt.IsZero() {
			m.EnqueuedAt = q.now()
		}
		q.msgs[m.Destination] = append(q.msgs[m.Destination], &memMsg{m: m})
		ids = append(ids, m.ID)
	}
	return ids, nil
}

func (q *memQueue) Claim(_ context.Context, dest, _ string, n int, lease time.Duration) ([]queue.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	blocked := map[string]bool{}
	var out []queue.Message
	for _, mm := range q.msgs[dest] {
		if len(out) == n {
			break
		}
		k := mm.m.Key
		if k != "" && blocked[k] {
			continue
		}
		if k != "" {
			blocked[k] = true
		}
		if mm.leaseUntil.After(now) || mm.notBefore.After(now) {
			continue
		}
		mm.leaseUntil = now.Add(lease)
		out = append(out, mm.m)
	}
	return out, nil
}

func (q *memQueue) find(dest, id string) (int, *memMsg) {
	for i, mm := range q.msgs[dest] {
		if mm.m.ID == id {
			return i, mm
		}
	}
	return -1, nil
}

func (q *memQueue) Ack(_ context.Context, dest, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i, _ := q.find(dest, id)
	if i < 0 {
		return queue.ErrNotFound
	}
	q.msgs[dest] = slices.Delete(q.msgs[dest], i, i+1)
	return nil
}

func (q *memQueue) Retry(_ context.Context, dest, id string, notBefore time.Time, lastErr string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, mm := q.find(dest, id)
	if mm == nil {
		return queue.ErrNotFound
	}
	mm.m.Attempt++
	mm.m.LastError = lastErr
	mm.notBefore, mm.leaseUntil = notBefore, time.Time{}
	return nil
}

func (q *memQueue) DeadLetter(_ context.Context, dest, id, lastErr string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i, mm := q.find(dest, id)
	if i < 0 {
		return queue.ErrNotFound
	}
	q.msgs[dest] = slices.Delete(q.msgs[dest], i, i+1)
	mm.m.LastError = lastErr
	q.dead[dest] = append(q.dead[dest], mm.m)
	return nil
}

func (q *memQueue) DeadLetters(_ context.Context, dest string, limit int) ([]queue.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dead[dest]
	if limit > 0 && len(d) > limit {
		d = d[:limit]
	}
	return slices.Clone(d), nil
}

func (q *memQueue) Replay(_ context.Context, dest string, ids ...string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var keep []queue.Message
	n := 0
	for _, m := range q.dead[dest] {
		if len(ids) > 0 && !slices.Contains(ids, m.ID) {
			keep = append(keep, m)
			continue
		}
		m.Attempt, m.EnqueuedAt = 0, q.now()
		q.msgs[dest] = append(q.msgs[dest], &memMsg{m: m})
		n++
	}
	q.dead[dest] = keep
	return n, nil
}

func (q *memQueue) Stats(_ context.Context, dest string) (queue.Stats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := queue.Stats{Depth: len(q.msgs[dest]), DeadLetters: len(q.dead[dest])}
	for _, mm := range q.msgs[dest] {
		if st.Oldest.IsZero() || mm.m.EnqueuedAt.Before(st.Oldest) {
			st.Oldest = mm.m.EnqueuedAt
		}
	}
	return st, nil
}

func (q *memQueue) Destinations(context.Context) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for d := range q.msgs {
		out = append(out, d)
	}
	for d := range q.dead {
		if _, ok := q.msgs[d]; !ok {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (q *memQueue) Close() error { return nil }

// notBefore returns when a queued message may next be claimed.
func (q *memQueue) notBefore(dest, id string) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, mm := q.find(dest, id)
	if mm == nil {
		return time.Time{}
	}
	return mm.notBefore
}

// memStore holds resource versions and Consents.
type memStore struct {
	mu       sync.Mutex
	versions map[string]*store.Resource
	consents map[string][]map[string]any
}

func newMemStore() *memStore {
	return &memStore{versions: map[string]*store.Resource{}, consents: map[string][]map[string]any{}}
}

func (s *memStore) put(res map[string]any, version int64) {
	b, _ := json.Marshal(res)
	s.mu.Lock()
	defer s.mu.Unlock()
	typ, id := res["resourceType"].(string), res["id"].(string)
	s.versions[fmt.Sprintf("%s/%s/%d", typ, id, version)] = &store.Resource{Type: typ, ID: id, Version: version, Body: b}
}

func (s *memStore) del(typ, id string, version int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions[fmt.Sprintf("%s/%s/%d", typ, id, version)] = &store.Resource{Type: typ, ID: id, Version: version, Deleted: true}
}

func (s *memStore) setConsents(patient string, cs ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consents[patient] = cs
}

func (s *memStore) VRead(_ context.Context, typ, id string, v int64) (*store.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.versions[fmt.Sprintf("%s/%s/%d", typ, id, v)]
	if !ok {
		return nil, store.ErrNotFound
	}
	return r, nil
}

func (s *memStore) Consents(_ context.Context, patient string) ([]map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.consents[patient], nil
}

// testConfig has a custody agency and a court agency whose endpoints are given; the court
// sees Observations for HLEGAL only with the patient's explicit Consent.
func testConfig(t testing.TB, endpoints string) *config.Config {
	t.Helper()
	y := `version: 1
agencies:
  - id: custody
    ods: AAA01
    name: Custody Healthcare
    kind: custody-healthcare
  - id: court
    ods: CRT01
    name: Magistrates Court
    kind: court
    endpoints:
` + endpoints + `
sharing:
  - id: court-legal
    agencyKinds: [court]
    purposes: [HLEGAL]
    allow: {types: [Observation, Patient]}
    requiresConsent: true
`
	cfg, err := config.Parse([]byte(y), "test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func endpointYAML(id, typ, url string, extra ...string) string {
	s := fmt.Sprintf("      - id: %s\n        type: %s\n        url: %s\n", id, typ, url)
	for _, e := range extra {
		s += "        " + e + "\n"
	}
	return s
}

func consent(patient, status string) map[string]any {
	return map[string]any{
		"resourceType": "Consent", "id": "c-" + strings.TrimPrefix(patient, "Patient/"), "status": status,
		"scope":      map[string]any{"coding": []any{map[string]any{"system": policy.SystemConsentScope, "code": "patient-privacy"}}},
		"category":   []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "59284-0"}}}},
		"patient":    map[string]any{"reference": patient},
		"policyRule": map[string]any{"coding": []any{map[string]any{"system": policy.SystemActCode, "code": "OPTIN"}}},
		"provision":  map[string]any{"type": "permit"},
	}
}

func observation(id, patient string, value int) map[string]any {
	return map[string]any{
		"resourceType": "Observation", "id": id, "status": "final",
		"code":          map[string]any{"text": "test"},
		"subject":       map[string]any{"reference": patient},
		"valueQuantity": map[string]any{"value": value},
	}
}

// receiver is a destination that records what it receives and answers with status(req).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	status func(r received) (int, http.Header)
}

type received struct {
	Method, Path, RequestID, CorrelationID, Auth, ContentType string
	Header                                                    http.Header
	Body                                                      []byte
	JSON                                                      map[string]any
	Status                                                    int
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{status: func(received) (int, http.Header) { return http.StatusOK, nil }}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got := received{Method: r.Method, Path: r.URL.Path, RequestID: r.Header.Get("X-Request-ID"), CorrelationID: r.Header.Get("X-Correlation-ID"),
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Header: r.Header.Clone(), Body: b}
		json.Unmarshal(b, &got.JSON) //nolint:errcheck
		rc.mu.Lock()
		st := rc.status
		rc.mu.Unlock()
		code, h := st(got)
		got.Status = code
		rc.mu.Lock()
		rc.got = append(rc.got, got)
		rc.mu.Unlock()
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setStatus(f func(r received) (int, http.Header)) {
	rc.mu.Lock()
	rc.status = f
	rc.mu.Unlock()
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// bundleResource returns the resource of the first entry of a transaction Bundle.
func bundleResource(b map[string]any) map[string]any {
	e := obj(list(b["entry"])[0])
	return obj(e["resource"])
}

// harness wires a worker to a queue, a fake store and a receiver.
type harness struct {
	q     queue.Queue
	mq    *memQueue // when q is the in-memory queue
	st    *memStore
	cfg   *config.Config
	w     *Worker
	rc    *receiver
	logs  *observer.ObservedLogs
	clock *fakeClock
	dlog  *Log
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harnessOpts struct {
	q        queue.Queue
	clock    *fakeClock
	extra    []string
	mutate   func(*Options)
	typ      string
	log      *Log
	adapters map[string]Adapter
}

func newHarness(t *testing.T, ho harnessOpts) *harness {
	t.Helper()
	h := &harness{st: newMemStore(), rc: newReceiver(t), clock: ho.clock, dlog: ho.log}
	now := time.Now
	if h.clock != nil {
		now = h.clock.Now
	}
	if ho.q == nil {
		h.mq = newMemQueue(now)
		h.q = h.mq
	} else {
		h.q = ho.q
	}
	typ := ho.typ
	if typ == "" {
		typ = TypeFHIRRest
	}
	h.cfg = testConfig(t, endpointYAML("court-ep", typ, h.rc.srv.URL, ho.extra...))
	core, logs := observer.New(zapcore.InfoLevel)
	h.logs = logs
	hopts := HTTPOptions{Now: now}
	adapters := ho.adapters
	if adapters == nil {
		adapters = map[string]Adapter{
			TypeFHIRRest:    NewFHIRRest(hopts),
			TypeFHIRMessage: NewFHIRMessage(MessageOptions{HTTPOptions: hopts, Source: "https://broker.example/fhir"}),
			TypeRestHook:    NewRestHook(HookOptions{HTTPOptions: hopts, BaseURL: "https://broker.example/fhir"}),
		}
	}
	o := Options{
		Queue: h.q, Store: h.st, Policy: policy.New(h.cfg, now), Config: h.cfg, Adapters: adapters, Log: ho.log,
		Clock: now, Rand: func() float64 { return 0.5 }, Logger: zap.New(core),
		Concurrency: 4, Lease: 5 * time.Second, Backoff: Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond},
		Poll: 5 * time.Millisecond, Node: "test",
	}
	if ho.mutate != nil {
		ho.mutate(&o)
	}
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h
}

// add stores an Observation version for patient and enqueues its delivery to court-ep.
func (h *harness) add(t testing.TB, id, patient string, version int64) routing.Delivery {
	t.Helper()
	h.st.mu.Lock()
	_, ok := h.st.consents[patient]
	h.st.mu.Unlock()
	if !ok {
		h.st.setConsents(patient, consent(patient, "active"))
	}
	h.st.put(observation(id, patient, int(version)), version)
	return h.enqueue(t, "Observation", id, patient, version, "update")
}

func (h *harness) enqueue(t testing.TB, typ, id, patient string, version int64, event string) routing.Delivery {
	t.Helper()
	d := routing.Delivery{ID: uuid.NewString(), Route: "r1", Destination: "court-ep", Agency: "court", Purpose: "HLEGAL", Event: event,
		ResourceType: typ, ResourceID: id, Version: version, Patient: patient, CreatedAt: time.Now()}
	b, _ := json.Marshal(d)
	if _, err := h.q.Enqueue(context.Background(), queue.Message{Destination: d.Destination, Key: patient, IdempotencyKey: d.ID, Body: b}); err != nil {
		t.Fatal(err)
	}
	return d
}

// drain runs ProcessOnce until the destination has nothing left to claim for a while.
func (h *harness) drain(t testing.TB, advance time.Duration) {
	t.Helper()
	for range 200 {
		n, err := h.w.ProcessOnce(context.Background(), "court-ep")
		if err != nil {
			t.Fatal(err)
		}
		st, _ := h.q.Stats(context.Background(), "court-ep")
		if n == 0 && st.Depth == 0 {
			return
		}
		if h.clock != nil {
			h.clock.Advance(advance)
		} else if n == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	t.Fatal("the queue did not drain")
}

type stubPolicy struct{}

func (stubPolicy) Decide(policy.Request, map[string]any, []map[string]any) policy.Decision {
	return policy.Decision{Permit: true}
}

func queueMessage(d routing.Delivery, body []byte) queue.Message {
	return queue.Message{Destination: d.Destination, Key: d.Patient, IdempotencyKey: d.ID, Body: body}
}
