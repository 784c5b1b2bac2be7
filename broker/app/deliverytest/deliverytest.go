// Package deliverytest supports routing tests and load runs: a recording FHIR sink that can
// be taken down or made to fail per patient, a routing configuration pointing at sinks, test
// Observations that carry a sequence number, and checks of what a sink received (nothing
// lost, order per patient, one idempotency key per delivery).
package deliverytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Attempt is one request a sink received.
type Attempt struct {
	RequestID string
	Method    string
	// Resource is "Type/id" of the delivered resource, Version its meta.versionId, Patient
	// its subject and Seq the valueInteger of a test Observation (-1 when none).
	Resource string
	Version  string
	Patient  string
	Seq      int
	// Status is what the sink answered.
	Status int
	At     time.Time
}

// Sink is a FHIR endpoint that records every request. The zero value is not usable; call
// NewSink.
type Sink struct {
	*httptest.Server

	mu       sync.Mutex
	attempts []Attempt
	down     bool
	status   int // answer while down
	failing  map[string]bool
	delay    time.Duration
	changed  chan struct{}
	onAccept func(Attempt)
}

// NewSink starts a sink on a loopback port; Close it when done.
func NewSink() *Sink {
	s := &Sink{failing: map[string]bool{}, status: http.StatusServiceUnavailable, changed: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the sink's FHIR base.
func (s *Sink) FHIRBase() string { return s.Server.URL + "/fhir" }

// SetDown makes the sink answer every request with status (503 when 0) until SetDown(false, 0).
func (s *Sink) SetDown(down bool, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	s.status = status
}

// FailPatient makes deliveries about patient ("Patient/x") fail with 503 while fail is true.
func (s *Sink) FailPatient(patient string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[patient] = fail
}

// SetDelay makes every request take at least d.
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// OnAccept is called for each accepted request (for latency measurements).
func (s *Sink) OnAccept(f func(Attempt)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onAccept = f
}

func (s *Sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a := Attempt{RequestID: r.Header.Get("X-Request-ID"), Method: r.Method, Seq: -1, At: time.Now()}
	describe(&a, r, body)
	s.mu.Lock()
	delay := s.delay
	status := http.StatusOK
	switch {
	case s.down:
		status = s.status
	case a.Patient != "" && s.failing[a.Patient]:
		status = http.StatusServiceUnavailable
	}
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	a.Status = status
	s.mu.Lock()
	s.attempts = append(s.attempts, a)
	close(s.changed)
	s.changed = make(chan struct{})
	f := s.onAccept
	s.mu.Unlock()
	if status == http.StatusOK && f != nil {
		f(a)
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response"}`) //nolint:errcheck
		return
	}
	io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"sink unavailable"}]}`) //nolint:errcheck
}

// describe finds the delivered resource in a transaction or message Bundle, or a resource
// PUT by a rest-hook.
func describe(a *Attempt, r *http.Request, body []byte) {
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		if r.Method == http.MethodDelete {
			a.Resource = strings.TrimPrefix(r.URL.Path, "/fhir/")
		}
		return
	}
	res := doc
	if doc["resourceType"] == "Bundle" {
		// The delivered resource: the first that is not a message's own header, else that.
		res = nil
		entries, _ := doc["entry"].([]any)
		for _, e := range entries {
			m, _ := e.(map[string]any)
			rr, ok := m["resource"].(map[string]any)
			if !ok {
				continue
			}
			if res == nil || res["resourceType"] == "MessageHeader" {
				res = rr
			}
		}
	}
	if res == nil {
		return
	}
	typ, _ := res["resourceType"].(string)
	id, _ := res["id"].(string)
	a.Resource = typ + "/" + id
	meta, _ := res["meta"].(map[string]any)
	a.Version, _ = meta["versionId"].(string)
	subj, _ := res["subject"].(map[string]any)
	a.Patient, _ = subj["reference"].(string)
	if v, ok := res["valueInteger"].(float64); ok {
		a.Seq = int(v)
	}
}

// Attempts returns a copy of every request received so far.
func (s *Sink) Attempts() []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Attempt(nil), s.attempts...)
}

// Delivered returns the accepted requests, the first of each X-Request-ID only, in arrival
// order.
func (s *Sink) Delivered() []Attempt {
	seen := map[string]bool{}
	var out []Attempt
	for _, a := range s.Attempts() {
		if a.Status == http.StatusOK && !seen[a.RequestID] {
			seen[a.RequestID] = true
			out = append(out, a)
		}
	}
	return out
}

// WaitFor waits until cond holds of the attempts so far, or timeout; it reports whether cond
// held.
func (s *Sink) WaitFor(timeout time.Duration, cond func([]Attempt) bool) bool {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ch := s.changed
		ok := cond(s.attempts)
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitDelivered waits until n distinct X-Request-IDs were accepted.
func (s *Sink) WaitDelivered(n int, timeout time.Duration) bool {
	return s.WaitFor(timeout, func(as []Attempt) bool { return distinctAccepted(as) >= n })
}

func distinctAccepted(as []Attempt) int {
	seen := map[string]bool{}
	for _, a := range as {
		if a.Status == http.StatusOK {
			seen[a.RequestID] = true
		}
	}
	return len(seen)
}

// Report is the check of what a sink received against what was sent.
type Report struct {
	// Missing lists "patient#seq" sent but never accepted.
	Missing []string
	// OutOfOrder lists deliveries accepted before an earlier one of the same patient.
	OutOfOrder []string
	// KeysPerResource lists resources delivered (or attempted) under more than one
	// X-Request-ID.
	KeysPerResource []string
	// Duplicates counts accepted requests that repeated an X-Request-ID already accepted
	// (at-least-once redeliveries).
	Duplicates int
	Delivered  int
}

// OK reports whether nothing was lost, out of order or delivered under two keys.
func (r Report) OK() bool {
	return len(r.Missing) == 0 && len(r.OutOfOrder) == 0 && len(r.KeysPerResource) == 0
}

func (r Report) String() string {
	trim := func(l []string) []string {
		if len(l) > 10 {
			return append(l[:10:10], fmt.Sprintf("... %d more", len(l)-10))
		}
		return l
	}
	return fmt.Sprintf("delivered %d (+%d duplicates), missing %v, out of order %v, resources with several keys %v",
		r.Delivered, r.Duplicates, trim(r.Missing), trim(r.OutOfOrder), trim(r.KeysPerResource))
}

// Check compares the sink's requests with sent: for each patient, the sequence numbers sent
// in the order their writes were acknowledged.
func (s *Sink) Check(sent map[string][]int) Report {
	var r Report
	all := s.Attempts()
	keys := map[string]map[string]bool{}
	for _, a := range all {
		if a.Resource == "" {
			continue
		}
		if keys[a.Resource] == nil {
			keys[a.Resource] = map[string]bool{}
		}
		keys[a.Resource][a.RequestID] = true
	}
	for res, ks := range keys {
		if len(ks) > 1 {
			r.KeysPerResource = append(r.KeysPerResource, fmt.Sprintf("%s (%d keys)", res, len(ks)))
		}
	}
	accepted := 0
	for _, a := range all {
		if a.Status == http.StatusOK {
			accepted++
		}
	}
	got := s.Delivered()
	r.Delivered, r.Duplicates = len(got), accepted-len(got)
	pos := map[string]map[int]int{} // patient -> seq -> arrival position
	for i, a := range got {
		if pos[a.Patient] == nil {
			pos[a.Patient] = map[int]int{}
		}
		if _, dup := pos[a.Patient][a.Seq]; !dup {
			pos[a.Patient][a.Seq] = i
		}
	}
	patients := make([]string, 0, len(sent))
	for p := range sent {
		patients = append(patients, p)
	}
	sort.Strings(patients)
	for _, p := range patients {
		last, lastSeq := -1, -1
		for _, seq := range sent[p] {
			i, ok := pos[p][seq]
			if !ok {
				r.Missing = append(r.Missing, p+"#"+strconv.Itoa(seq))
				continue
			}
			if i < last {
				r.OutOfOrder = append(r.OutOfOrder, fmt.Sprintf("%s#%d before #%d", p, seq, lastSeq))
			}
			last, lastSeq = i, seq
		}
	}
	return r
}

// Observation is a test Observation about patient carrying seq as its value.
func Observation(patient string, seq int) map[string]any {
	return map[string]any{
		"resourceType":      "Observation",
		"status":            "final",
		"code":              map[string]any{"text": "routing test"},
		"subject":           map[string]any{"reference": patient},
		"effectiveDateTime": "2025-03-01T10:00:00Z",
		"valueInteger":      seq,
	}
}

// Endpoints names the sink of each test endpoint.
type Endpoints struct {
	// LD receives custody Observations for direct care (route obs-to-ld, purpose TREAT).
	LD string
	// Court receives custody Observations coded "court" (route obs-to-court, purpose HLEGAL,
	// which needs the patient's consent); MaxAttempts 2.
	Court string
	// Custody receives replies to the messages custody sends (endpoint custody-fhir).
	Custody string
}

// Config is a routing configuration: agencies custody (custody-healthcare, client custody,
// endpoint custody-fhir that only message replies reach),
// ld (liaison-diversion, endpoint ld-fhir), court (court, endpoint court-fhir) and operators
// (broker, client operator).
func Config(ep Endpoints) string {
	return fmt.Sprintf(`version: 1
agencies:
  - id: custody
    ods: XTC001
    name: Test Custody Healthcare
    kind: custody-healthcare
    endpoints:
      - {id: custody-fhir, type: fhir-rest, url: %q}
    clients:
      - id: custody
        purposes: [TREAT]
        # system/*.c: the engine asks a type scope of system-level operations ($process-message)
        scopes: [system/Patient.cruds, system/Observation.cruds, system/Consent.cruds, system/Subscription.cruds, system/MessageHeader.cruds, system/*.c]
  - id: ld
    ods: XTL001
    name: Test Liaison and Diversion
    kind: liaison-diversion
    endpoints:
      - {id: ld-fhir, type: fhir-rest, url: %q, maxAttempts: 1000}
    clients:
      - id: ld
        purposes: [TREAT]
        scopes: [system/Patient.rs, system/Observation.rs, system/Subscription.cruds, system/MessageHeader.cruds, system/ServiceRequest.cruds, system/*.c]
  - id: court
    ods: XTR001
    name: Test Court
    kind: court
    endpoints:
      - {id: court-fhir, type: fhir-rest, url: %q, maxAttempts: 2}
    clients:
      - id: court
        purposes: [HLEGAL]
        scopes: [system/Patient.rs, system/Observation.rs]
  - id: operators
    ods: XTO001
    name: Test operators
    kind: broker
    clients:
      - id: operator
        purposes: [HSYSADMIN]
        scopes: [system/*.cruds]
sharing:
  - id: direct-care
    agencyKinds: [custody-healthcare, liaison-diversion]
    purposes: [TREAT]
    allow: {types: ["*"]}
  - id: court
    agencyKinds: [court]
    purposes: [HLEGAL]
    allow: {types: [Patient, Observation]}
    requiresConsent: true
  - id: operators
    agencyKinds: [broker]
    purposes: [HSYSADMIN]
    allow: {types: ["*"]}
consentDefaults:
  - id: implied-direct-care
    purposes: [TREAT]
    fromKinds: [custody-healthcare, liaison-diversion]
    toKinds: [custody-healthcare, liaison-diversion]
    decision: permit
  - id: court-needs-consent
    purposes: [HLEGAL]
    toKinds: [court]
    decision: deny
routes:
  - id: obs-to-ld
    on: {event: [create, update], resource: Observation}
    from: [custody]
    to: [ld]
    purpose: TREAT
  - id: obs-to-court
    on: {event: create, resource: Observation}
    from: [custody]
    criteria: code.text = 'court'
    to: [court]
    purpose: HLEGAL
  - id: messages-to-ld
    on: {event: message, messageEvent: [referral-request, referral-response]}
    to: [ld]
    purpose: TREAT
`, ep.Custody, ep.LD, ep.Court)
}

// WriteConfig writes Config(ep) to dir/routing.yaml and returns the path.
func WriteConfig(dir string, ep Endpoints) (string, error) {
	p := filepath.Join(dir, "routing.yaml")
	return p, os.WriteFile(p, []byte(Config(ep)), 0o600)
}

// RedisURL returns the test Redis (HJB_TEST_REDIS_URL, default redis://127.0.0.1:6379/0),
// skipping the test when it is unreachable, or failing it under HJB_REQUIRE_SERVICES=1.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("HJB_TEST_REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("HJB_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("HJB_REQUIRE_SERVICES") == "1" {
			t.Fatalf("Redis is required but unreachable at %s: %v", opts.Addr, err)
		}
		t.Skipf("Redis unreachable at %s: %v", opts.Addr, err)
	}
	return u
}

// RedisPrefix returns a fresh key prefix whose keys are deleted when the test ends.
func RedisPrefix(t testing.TB, url string) string {
	t.Helper()
	p := fmt.Sprintf("hjbtest:route:%d:", time.Now().UnixNano())
	t.Cleanup(func() {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return p
}
