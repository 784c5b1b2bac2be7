package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/routing"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{1, 0.999999, 99999900 * time.Nanosecond},
		{1, 0.5, 50 * time.Millisecond},
		{2, 0.5, 100 * time.Millisecond},
		{3, 1, 400 * time.Millisecond},
		{10, 0.5, 500 * time.Millisecond}, // capped at Max before the jitter
		{1000, 1, time.Second},
		{2, 0, 0}, // full jitter can retry at once
	}
	for _, tt := range tests {
		if got := b.Delay(tt.n, tt.r); got != tt.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.n, tt.r, got, tt.want)
		}
	}
	none := Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: -1}
	if got := none.Delay(2, 0); got != 200*time.Millisecond {
		t.Errorf("without jitter Delay(2) = %v, want 200ms", got)
	}
}

// A destination that is down for a while gets everything once it recovers, in order per
// patient, and the endpoint's failure and recovery are logged once each.
func TestDownDestinationRecoversInOrder(t *testing.T) {
	h := newHarness(t, harnessOpts{})
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

	want := map[string]bool{}
	patients := []string{"Patient/a", "Patient/b", "Patient/c"}
	for v := int64(1); v <= 5; v++ {
		for _, p := range patients {
			id := "obs-" + strings.TrimPrefix(p, "Patient/")
			h.add(t, id, p, v)
			want[fmt.Sprintf("%s/%d", id, v)] = true
		}
	}
	waitFor(t, "attempts while down", func() bool { return len(h.rc.received()) >= 10 })
	down.Store(false)
	waitFor(t, "every delivery", func() bool {
		st, _ := h.q.Stats(ctx, "court-ep")
		return st.Depth == 0
	})
	cancel()
	<-done

	last := map[string]int{}
	got := map[string]bool{}
	for _, r := range h.rc.received() {
		if r.Status != http.StatusOK {
			continue
		}
		res := bundleResource(r.JSON)
		id := res["id"].(string)
		v := int(res["valueQuantity"].(map[string]any)["value"].(float64))
		if v < last[id] {
			t.Errorf("%s: version %d delivered after version %d", id, v, last[id])
		}
		last[id] = v
		got[fmt.Sprintf("%s/%d", id, v)] = true
	}
	for k := range want {
		if !got[k] {
			t.Errorf("%s was never delivered", k)
		}
	}
	if n := h.logs.FilterMessage("endpoint failing").Len(); n != 1 {
		t.Errorf("%d 'endpoint failing' log lines, want 1", n)
	}
	if n := h.logs.FilterMessage("endpoint recovered").Len(); n != 1 {
		t.Errorf("%d 'endpoint recovered' log lines, want 1", n)
	}
	if h.w.Health("court-ep").Failing {
		t.Error("the endpoint is still marked failing")
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Every attempt of a delivery carries its id as X-Request-ID, and the same correlation id.
func TestRetriesKeepRequestID(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var mu sync.Mutex
	tries := map[string]int{}
	h.rc.setStatus(func(r received) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		tries[r.RequestID]++
		if tries[r.RequestID] < 3 {
			return http.StatusBadGateway, nil
		}
		return http.StatusOK, nil
	})
	d1 := h.add(t, "o1", "Patient/a", 1)
	d2 := h.add(t, "o2", "Patient/b", 1)
	h.drain(t, 0)
	byID := map[string][]received{}
	for _, r := range h.rc.received() {
		byID[r.RequestID] = append(byID[r.RequestID], r)
	}
	for _, d := range []routing.Delivery{d1, d2} {
		rs := byID[d.ID]
		if len(rs) != 3 {
			t.Fatalf("delivery %s: %d attempts with its X-Request-ID, want 3 (got ids %v)", d.ID, len(rs), keys(byID))
		}
		for _, r := range rs {
			if r.CorrelationID != d.ID {
				t.Errorf("X-Correlation-ID %q, want %q", r.CorrelationID, d.ID)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A patient whose deliveries keep failing does not hold up other patients.
func TestFailingPatientDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(o *Options) { o.Backoff = Backoff{Base: time.Hour, Max: time.Hour, Jitter: -1} }})
	h.rc.setStatus(func(r received) (int, http.Header) {
		if bundleResource(r.JSON)["id"] == "stuck" {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	h.add(t, "stuck", "Patient/a", 1)
	h.add(t, "stuck", "Patient/a", 2)
	for v := int64(1); v <= 3; v++ {
		h.add(t, "ok-b", "Patient/b", v)
		h.add(t, "ok-c", "Patient/c", v)
	}
	for range 10 {
		if _, err := h.w.ProcessOnce(context.Background(), "court-ep"); err != nil {
			t.Fatal(err)
		}
	}
	ok := 0
	stuck := 0
	for _, r := range h.rc.received() {
		switch bundleResource(r.JSON)["id"] {
		case "stuck":
			stuck++
			if v := bundleResource(r.JSON)["valueQuantity"].(map[string]any)["value"]; v != float64(1) {
				t.Errorf("version %v of the stuck patient was sent before version 1 was delivered", v)
			}
		default:
			if r.Status == http.StatusOK {
				ok++
			}
		}
	}
	if ok != 6 {
		t.Errorf("%d deliveries of other patients, want 6", ok)
	}
	if stuck != 1 {
		t.Errorf("%d attempts for the stuck patient, want 1 (its retry is an hour away)", stuck)
	}
	st, _ := h.q.Stats(context.Background(), "court-ep")
	if st.Depth != 2 {
		t.Errorf("depth %d, want the stuck patient's 2", st.Depth)
	}
}

// Failures are sorted: permanent ones are dead at once; transient ones retry until the
// endpoint's attempt limit.
func TestFailureClassification(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		maxAttempts  int
		wantAttempts int
		wantErr      string
	}{
		{"400 is permanent", http.StatusBadRequest, 5, 1, "HTTP 400"},
		{"422 is permanent", http.StatusUnprocessableEntity, 5, 1, "HTTP 422"},
		{"404 is permanent", http.StatusNotFound, 5, 1, "HTTP 404"},
		{"503 until maxAttempts", http.StatusServiceUnavailable, 3, 3, "gave up after 3 attempts"},
		{"408 until maxAttempts", http.StatusRequestTimeout, 2, 2, "HTTP 408"},
		{"429 until maxAttempts", http.StatusTooManyRequests, 2, 2, "HTTP 429"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{extra: []string{fmt.Sprintf("maxAttempts: %d", tt.maxAttempts)}})
			h.rc.setStatus(func(received) (int, http.Header) {
				return tt.status, http.Header{"Content-Type": {"application/fhir+json"}}
			})
			h.add(t, "o1", "Patient/a", 1)
			h.drain(t, 0)
			if n := len(h.rc.received()); n != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", n, tt.wantAttempts)
			}
			dl, _ := h.q.DeadLetters(context.Background(), "court-ep", 10)
			if len(dl) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dl))
			}
			if !strings.Contains(dl[0].LastError, tt.wantErr) || !strings.Contains(dl[0].LastError, fmt.Sprint(tt.status)) {
				t.Errorf("last error %q, want it to mention %q and the status", dl[0].LastError, tt.wantErr)
			}
		})
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	h := newHarness(t, harnessOpts{extra: []string{"maxAttempts: 2"}})
	h.rc.srv.Close() // nothing listens any more
	h.add(t, "o1", "Patient/a", 1)
	h.drain(t, 0)
	dl, _ := h.q.DeadLetters(context.Background(), "court-ep", 10)
	if len(dl) != 1 || !strings.Contains(dl[0].LastError, "gave up after 2 attempts") {
		t.Fatalf("dead letters %+v, want one after 2 attempts", dl)
	}
}

// A delivery older than the endpoint's maxAge is dead at its next failure.
func TestMaxAge(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)}
	h := newHarness(t, harnessOpts{clock: clock, extra: []string{"maxAge: 10m", "maxAttempts: 100"},
		mutate: func(o *Options) { o.Backoff = Backoff{Base: time.Minute, Max: time.Minute, Jitter: -1} }})
	h.rc.setStatus(func(received) (int, http.Header) { return http.StatusInternalServerError, nil })
	h.add(t, "o1", "Patient/a", 1)
	h.drain(t, time.Minute)
	n := len(h.rc.received())
	// Attempts at 0, 1, ..., 10 minutes; the retry after the last would be past 10 minutes.
	if n != 11 {
		t.Errorf("%d attempts, want 11 within the 10 minute age", n)
	}
	dl, _ := h.q.DeadLetters(context.Background(), "court-ep", 10)
	if len(dl) != 1 || !strings.Contains(dl[0].LastError, "older than 10m") || !strings.Contains(dl[0].LastError, "HTTP 500") {
		t.Fatalf("dead letters %+v, want one older than 10m with the last error", dl)
	}
}

// Retry-After is honoured when it asks for longer than the backoff.
func TestRetryAfter(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)}
	h := newHarness(t, harnessOpts{clock: clock})
	h.rc.setStatus(func(received) (int, http.Header) {
		return http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}}
	})
	h.add(t, "o1", "Patient/a", 1)
	if _, err := h.w.ProcessOnce(context.Background(), "court-ep"); err != nil {
		t.Fatal(err)
	}
	got := h.mq.notBefore("court-ep", "m1")
	if want := clock.Now().Add(120 * time.Second); !got.Equal(want) {
		t.Errorf("retry not before %v, want %v", got, want)
	}
}

// Consent withdrawn between the write and the delivery: withheld with the reason, nothing sent.
func TestWithheldWhenConsentWithdrawn(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.st.setConsents("Patient/a", consent("Patient/a", "active"))
	h.add(t, "o1", "Patient/a", 1)
	h.drain(t, 0)
	if n := len(h.rc.received()); n != 1 {
		t.Fatalf("with consent: %d sent, want 1", n)
	}
	h.st.setConsents("Patient/a", consent("Patient/a", "inactive"))
	h.add(t, "o1", "Patient/a", 2)
	h.drain(t, 0)
	if n := len(h.rc.received()); n != 1 {
		t.Fatalf("after withdrawal: %d sent in all, want still 1", n)
	}
	logs := h.logs.FilterMessage("delivery withheld").All()
	if len(logs) != 1 {
		t.Fatalf("%d 'delivery withheld' log lines, want 1", len(logs))
	}
	reason := logs[0].ContextMap()["reason"].(string)
	if !strings.Contains(reason, "Consent") {
		t.Errorf("reason %q does not name the missing Consent", reason)
	}
	if dl, _ := h.q.DeadLetters(context.Background(), "court-ep", 10); len(dl) != 0 {
		t.Errorf("a withheld delivery was dead-lettered: %+v", dl)
	}
}

// A deleted resource is sent as a DELETE when its last version could be disclosed.
func TestDeletion(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.st.setConsents("Patient/a", consent("Patient/a", "active"))
	h.st.put(observation("o1", "Patient/a", 1), 1)
	h.st.del("Observation", "o1", 2)
	h.enqueue(t, "Observation", "o1", "Patient/a", 2, "delete")
	h.drain(t, 0)
	rs := h.rc.received()
	if len(rs) != 1 {
		t.Fatalf("%d requests, want 1", len(rs))
	}
	e := obj(list(rs[0].JSON["entry"])[0])
	if req := obj(e["request"]); req["method"] != "DELETE" || req["url"] != "Observation/o1" || e["resource"] != nil {
		t.Errorf("entry %v, want a DELETE of Observation/o1 without a resource", e)
	}
}

func TestMissingVersionAndUnknownTransformAreDead(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.st.setConsents("Patient/a", consent("Patient/a", "active"))
	h.enqueue(t, "Observation", "never", "Patient/a", 1, "create")
	h.drain(t, 0)
	dl, _ := h.q.DeadLetters(context.Background(), "court-ep", 10)
	if len(dl) != 1 || !strings.Contains(dl[0].LastError, "not stored") {
		t.Fatalf("dead letters %+v, want the missing version", dl)
	}
	if len(h.rc.received()) != 0 {
		t.Error("something was sent")
	}
}

func TestMetricsExposed(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, harnessOpts{mutate: func(o *Options) { o.Registerer = reg }})
	h.st.setConsents("Patient/a", consent("Patient/a", "active"))
	var fail atomic.Bool
	fail.Store(true)
	h.rc.setStatus(func(received) (int, http.Header) {
		if fail.Swap(false) {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	h.add(t, "o1", "Patient/a", 1)
	h.st.setConsents("Patient/b", consent("Patient/b", "inactive"))
	h.add(t, "o2", "Patient/b", 1) // withheld: the Consent was withdrawn
	h.drain(t, 0)
	h.add(t, "o3", "Patient/a", 1) // still queued

	for _, tt := range []struct {
		outcome string
		want    float64
	}{{outcomeDelivered, 1}, {outcomeRetried, 1}, {outcomeWithheld, 1}, {outcomeDead, 0}} {
		if got := counterValue(h.w.m.deliveries.WithLabelValues("court-ep", tt.outcome)); got != tt.want {
			t.Errorf("deliveries %s = %v, want %v", tt.outcome, got, tt.want)
		}
	}
	if got := counterValue(h.w.m.failures.WithLabelValues("court-ep", "transient")); got != 1 {
		t.Errorf("transient failures = %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				names[mf.GetName()] = g.GetValue()
			} else {
				names[mf.GetName()] = 0
			}
		}
	}
	for _, n := range []string{"hjbroker_deliveries_total", "hjbroker_delivery_failures_total", "hjbroker_delivery_attempt_seconds",
		"hjbroker_delivery_latency_seconds", "hjbroker_delivery_attempts", "hjbroker_queue_depth", "hjbroker_queue_oldest_age_seconds",
		"hjbroker_queue_dead_letters", "hjbroker_endpoint_failing"} {
		if _, ok := names[n]; !ok {
			t.Errorf("metric %s is not exposed", n)
		}
	}
	if names["hjbroker_queue_depth"] != 1 {
		t.Errorf("queue depth %v, want 1", names["hjbroker_queue_depth"])
	}
}

func TestNewRejectsBadMaxAge(t *testing.T) {
	cfg := testConfig(t, endpointYAML("e", TypeFHIRRest, "http://x.invalid", "maxAge: 5m"))
	cfg.Agencies[1].Endpoints[0].MaxAge = "soon"
	_, err := New(Options{Queue: newMemQueue(time.Now), Store: newMemStore(), Policy: stubPolicy{}, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "maxAge") {
		t.Fatalf("err = %v, want a maxAge error", err)
	}
	if _, err := New(Options{Config: &config.Config{}}); err == nil {
		t.Error("New without a queue succeeded")
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// The agency that made the change decides which consent defaults apply when the resource
// does not name its source; the delivered resource is not altered.
func TestSourceAgencyForConsentDefaults(t *testing.T) {
	h := newHarness(t, harnessOpts{mutate: func(o *Options) {
		o.Config.Sharing[0].RequiresConsent = false
		o.Config.ConsentDefaults = []config.ConsentDefault{{ID: "ld-to-court", Purposes: []string{"HLEGAL"},
			FromKinds: []string{config.KindLiaisonDiversion}, ToKinds: []string{config.KindCourt}, Decision: "permit"}}
		o.Policy = policy.New(o.Config, nil)
	}})
	tests := []struct {
		source string
		sent   bool
	}{{"", true}, {"custody", false}}
	for i, tt := range tests {
		h.st.put(observation("o1", "Patient/a", i+1), int64(i+1))
		d := routing.Delivery{ID: fmt.Sprint("d", i), Destination: "court-ep", Purpose: "HLEGAL", Event: "update", SourceAgency: tt.source,
			ResourceType: "Observation", ResourceID: "o1", Version: int64(i + 1), Patient: "Patient/a"}
		b, _ := json.Marshal(d)
		h.q.Enqueue(context.Background(), queueMessage(d, b)) //nolint:errcheck
		before := len(h.rc.received())
		h.drain(t, 0)
		rs := h.rc.received()
		if sent := len(rs) > before; sent != tt.sent {
			t.Errorf("source %q: sent %v, want %v", tt.source, sent, tt.sent)
		}
		if tt.sent && len(rs) > before && bundleResource(rs[len(rs)-1].JSON)["meta"] != nil {
			t.Errorf("source %q: the delivered resource gained meta %v", tt.source, bundleResource(rs[len(rs)-1].JSON)["meta"])
		}
	}
}
