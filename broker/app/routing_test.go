package app_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// sinks are the test endpoints of one node.
type sinks struct{ ld, court, custody *deliverytest.Sink }

func newSinks(t *testing.T) sinks {
	s := sinks{deliverytest.NewSink(), deliverytest.NewSink(), deliverytest.NewSink()}
	t.Cleanup(func() {
		s.ld.Close()
		s.court.Close()
		s.custody.Close()
	})
	return s
}

// queues are the backends every delivery test runs on.
var queues = []string{"embedded", "redis"}

// startRouted runs a node on the embedded store with the test routing configuration, the
// embedded or the Redis queue, and short retry delays; start runs its relay and workers.
func startRouted(t *testing.T, sk sinks, queue string, start bool) *apptest.Server {
	t.Helper()
	dir := t.TempDir()
	path, err := deliverytest.WriteConfig(dir, deliverytest.Endpoints{LD: sk.ld.FHIRBase(), Court: sk.court.FHIRBase(), Custody: sk.custody.FHIRBase()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.Config{ConfigFile: path, Routing: app.RoutingOptions{RetryBase: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond, Lease: 10 * time.Second}}
	if queue == "redis" {
		cfg.RedisURL = deliverytest.RedisURL(t)
		cfg.RedisPrefix = deliverytest.RedisPrefix(t, cfg.RedisURL)
	}
	s := apptest.Start(t, storetest.Backend{Name: "sqlite", DataDir: dir}, cfg)
	if start {
		s.Node.Start(context.Background())
	}
	return s
}

// postSeries writes n Observations per patient as custody, each patient's in sequence, and
// returns the sequence numbers acknowledged per patient.
func postSeries(t *testing.T, s *apptest.Server, patients []string, n int) map[string][]int {
	t.Helper()
	sent := map[string][]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range patients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				r := s.DoAs("custody", http.MethodPost, "Observation", deliverytest.Observation(p, i))
				if r.Status != http.StatusCreated {
					t.Errorf("POST Observation: %d %s", r.Status, r.Raw)
					return
				}
				mu.Lock()
				sent[p] = append(sent[p], i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return sent
}

// admin GETs an admin API path as the operator.
func admin(t *testing.T, s *apptest.Server, path string) *apptest.Result {
	t.Helper()
	return s.Do(http.MethodGet, s.URL+"/admin"+path, nil)
}

func deliveries(t *testing.T, s *apptest.Server, query string) []map[string]any {
	t.Helper()
	r := admin(t, s, "/deliveries?limit=1000&"+query).Want(t, http.StatusOK)
	var out []map[string]any
	for _, d := range r.JSON["deliveries"].([]any) {
		out = append(out, d.(map[string]any))
	}
	return out
}

// waitState waits until the admin API shows n deliveries matching query.
func waitState(t *testing.T, s *apptest.Server, query string, n int, timeout time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ds := deliveries(t, s, query)
		if len(ds) >= n {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API shows %d deliveries for %s after %s, want %d: %v", len(ds), query, timeout, n, ds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDestinationDownThenRecovers(t *testing.T) {
	for _, q := range queues {
		t.Run(q, func(t *testing.T) {
			sk := newSinks(t)
			sk.ld.SetDown(true, http.StatusServiceUnavailable)
			s := startRouted(t, sk, q, true)
			patients := []string{"Patient/a", "Patient/b", "Patient/c"}
			sent := postSeries(t, s, patients, 8)
			// Down for a while: attempts fail and are retried.
			if !sk.ld.WaitFor(10*time.Second, func(as []deliverytest.Attempt) bool { return len(as) >= 6 }) {
				t.Fatal("no failed attempts reached the sink")
			}
			waitState(t, s, "state=retrying&destination=ld-fhir", 1, 5*time.Second)
			time.Sleep(500 * time.Millisecond)
			sk.ld.SetDown(false, 0)
			if !sk.ld.WaitDelivered(24, 30*time.Second) {
				t.Fatalf("after recovery: %s", sk.ld.Check(sent))
			}
			rep := sk.ld.Check(sent)
			if !rep.OK() || rep.Delivered != 24 {
				t.Fatalf("after recovery: %s", rep)
			}
			// Retried deliveries carry their first attempt's X-Request-ID (Check counts
			// resources under several keys); make sure some were in fact retried.
			failedThenOK := map[string]int{}
			for _, a := range sk.ld.Attempts() {
				if a.Status != http.StatusOK {
					failedThenOK[a.RequestID] |= 1
				} else {
					failedThenOK[a.RequestID] |= 2
				}
			}
			retried := 0
			for _, v := range failedThenOK {
				if v == 3 {
					retried++
				}
			}
			if retried == 0 {
				t.Fatal("no delivery was retried and then delivered under the same X-Request-ID")
			}
			waitState(t, s, "state=delivered&destination=ld-fhir", 24, 5*time.Second)
			for _, d := range deliveries(t, s, "state=delivered&destination=ld-fhir") {
				if d["route"] != "obs-to-ld" || !strings.HasPrefix(d["resource"].(string), "Observation/") {
					t.Errorf("delivery %v", d)
				}
			}
		})
	}
}

func TestFailingPatientDoesNotHoldUpOthers(t *testing.T) {
	for _, q := range queues {
		t.Run(q, func(t *testing.T) {
			sk := newSinks(t)
			sk.ld.FailPatient("Patient/stuck", true)
			s := startRouted(t, sk, q, true)
			stuck := postSeries(t, s, []string{"Patient/stuck"}, 2)
			others := postSeries(t, s, []string{"Patient/x", "Patient/y"}, 5)
			if !sk.ld.WaitDelivered(10, 20*time.Second) {
				t.Fatalf("others held up: %s", sk.ld.Check(others))
			}
			if rep := sk.ld.Check(others); !rep.OK() {
				t.Fatalf("others: %s", rep)
			}
			for _, a := range sk.ld.Delivered() {
				if a.Patient == "Patient/stuck" {
					t.Fatalf("a delivery of the failing patient was accepted: %+v", a)
				}
			}
			// The stuck patient's first delivery retries; its second waits behind it.
			waitState(t, s, "patient=Patient/stuck&state=retrying", 1, 5*time.Second)
			if ds := deliveries(t, s, "patient=Patient/stuck&state=pending"); len(ds) != 1 {
				t.Fatalf("pending deliveries of the stuck patient: %v", ds)
			}
			sk.ld.FailPatient("Patient/stuck", false)
			if !sk.ld.WaitDelivered(12, 20*time.Second) {
				t.Fatalf("stuck patient after recovery: %s", sk.ld.Check(stuck))
			}
			all := map[string][]int{"Patient/stuck": stuck["Patient/stuck"], "Patient/x": others["Patient/x"], "Patient/y": others["Patient/y"]}
			if rep := sk.ld.Check(all); !rep.OK() {
				t.Fatalf("after recovery: %s", rep)
			}
		})
	}
}

// consent returns a patient-privacy Consent for patient: "court" permits disclosure to the
// test court for HLEGAL, "optout" denies all sharing.
func consent(patient, kind string) map[string]any {
	c := map[string]any{
		"resourceType": "Consent",
		"status":       "active",
		"scope":        map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}}}},
		"patient":      map[string]any{"reference": patient},
		"dateTime":     "2025-03-01",
	}
	switch kind {
	case "court":
		c["policyRule"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}}
		c["provision"] = map[string]any{
			"type": "permit",
			"actor": []any{map[string]any{
				"role":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}},
				"reference": map[string]any{"identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XTR001"}},
			}},
			"purpose": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HLEGAL"}},
			"class":   []any{map[string]any{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}},
		}
	default:
		c["policyRule"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}}}
		c["provision"] = map[string]any{"type": "deny"}
	}
	return c
}

func courtObservation(patient string) map[string]any {
	o := deliverytest.Observation(patient, 1)
	o["code"] = map[string]any{"text": "court"}
	return o
}

func TestAdminStatesReplayAndWithheld(t *testing.T) {
	for _, q := range queues {
		t.Run(q, func(t *testing.T) {
			sk := newSinks(t)
			s := startRouted(t, sk, q, false)
			// Before the workers run, a routed write is pending.
			s.DoAs("custody", http.MethodPost, "Observation", deliverytest.Observation("Patient/p", 1)).Want(t, http.StatusCreated)
			if ds := deliveries(t, s, "state=pending"); len(ds) != 1 || ds[0]["destination"] != "ld-fhir" {
				t.Fatalf("pending: %v", ds)
			}
			// Operators only.
			s.Do(http.MethodGet, s.URL+"/admin/deliveries", nil, "Authorization:").Want(t, http.StatusUnauthorized)
			s.Do(http.MethodGet, s.URL+"/admin/deliveries", nil, "Authorization: Bearer "+s.Token("ld")).Want(t, http.StatusForbidden)

			// Dead: the court rejects the delivery (permanent 400) of a consented report.
			sk.court.SetDown(true, http.StatusBadRequest)
			s.DoAs("custody", http.MethodPost, "Consent", consent("Patient/c", "court")).Want(t, http.StatusCreated)
			s.DoAs("custody", http.MethodPost, "Observation", courtObservation("Patient/c")).Want(t, http.StatusCreated)
			// Withheld at once: no consent for the court.
			s.DoAs("custody", http.MethodPost, "Observation", courtObservation("Patient/n")).Want(t, http.StatusCreated)
			// Withheld after the person withdrew consent while the delivery was retrying.
			sk.ld.FailPatient("Patient/w", true)
			s.DoAs("custody", http.MethodPost, "Observation", deliverytest.Observation("Patient/w", 1)).Want(t, http.StatusCreated)
			s.Node.Start(context.Background())

			dead := waitState(t, s, "state=dead&destination=court-fhir", 1, 10*time.Second)
			if d := dead[0]; d["patient"] != "Patient/c" || !strings.Contains(d["lastError"].(string), "HTTP 400") {
				t.Fatalf("dead delivery %v", d)
			}
			withheld := waitState(t, s, "state=withheld&patient=Patient/n", 1, 10*time.Second)
			if r := withheld[0]["reason"].(string); !strings.Contains(r, "Consent") {
				t.Errorf("withheld without consent: reason %q", r)
			}
			waitState(t, s, "state=retrying&patient=Patient/w", 1, 10*time.Second)
			s.DoAs("custody", http.MethodPost, "Consent", consent("Patient/w", "optout")).Want(t, http.StatusCreated)
			sk.ld.FailPatient("Patient/w", false)
			withheld = waitState(t, s, "state=withheld&patient=Patient/w", 1, 10*time.Second)
			if r := withheld[0]["reason"].(string); !strings.Contains(r, "Consent/") {
				t.Errorf("withheld after withdrawal: reason %q", r)
			}
			for _, a := range sk.ld.Delivered() {
				if a.Patient == "Patient/w" {
					t.Fatalf("delivered after consent was withdrawn: %+v", a)
				}
			}

			// Endpoint figures, then replay of the dead delivery once the court accepts.
			r := admin(t, s, "/endpoints").Want(t, http.StatusOK)
			if !strings.Contains(string(r.Raw), `"court-fhir"`) || !strings.Contains(string(r.Raw), `"deadLetters":1`) {
				t.Errorf("endpoints: %s", r.Raw)
			}
			sk.court.SetDown(false, 0)
			id := dead[0]["id"].(string)
			s.Do(http.MethodPost, s.URL+"/admin/deliveries/"+id+"/replay", nil).Want(t, http.StatusOK)
			if !sk.court.WaitDelivered(1, 10*time.Second) {
				t.Fatal("the replayed delivery did not arrive")
			}
			if got := sk.court.Delivered()[0].RequestID; got != id {
				t.Errorf("replayed with X-Request-ID %q, want %q", got, id)
			}
			waitState(t, s, "state=delivered&destination=court-fhir", 1, 5*time.Second)
			s.Do(http.MethodPost, s.URL+"/admin/deliveries/"+id+"/replay", nil).Want(t, http.StatusConflict)
			m := s.Do(http.MethodGet, s.URL+"/metrics", nil).Want(t, http.StatusOK)
			for _, name := range []string{"hjbroker_deliveries_total", "hjbroker_queue_depth", "hjbroker_outbox_backlog"} {
				if !strings.Contains(string(m.Raw), name) {
					t.Errorf("metrics lack %s", name)
				}
			}
		})
	}
}

func message(id, event, respondsTo string, focus map[string]any) map[string]any {
	mh := map[string]any{
		"resourceType": "MessageHeader",
		"id":           id,
		"eventCoding":  map[string]any{"system": "https://hjbroker.dev/fhir/CodeSystem/test-event", "code": event},
		"source":       map[string]any{"endpoint": "https://sender.example/fhir"},
	}
	entries := []any{map[string]any{"fullUrl": "urn:uuid:" + id, "resource": mh}}
	if focus != nil {
		mh["focus"] = []any{map[string]any{"reference": "urn:uuid:focus-" + id}}
		entries = append(entries, map[string]any{"fullUrl": "urn:uuid:focus-" + id, "resource": focus})
	}
	if respondsTo != "" {
		mh["response"] = map[string]any{"identifier": respondsTo, "code": "ok"}
	}
	return map[string]any{"resourceType": "Bundle", "type": "message", "entry": entries}
}

func TestProcessMessageRoutesAndCorrelatesReplies(t *testing.T) {
	sk := newSinks(t)
	s := startRouted(t, sk, "embedded", true)
	req := "2b8f3c1e-0d6a-4c1e-9b7e-5f1a2c3d4e01"
	r := s.DoAs("custody", http.MethodPost, "$process-message", message(req, "referral-request", "", deliverytest.Observation("Patient/m", 7))).Want(t, http.StatusOK)
	if r.Str("entry.0.resource.response.identifier") != req || r.Str("entry.0.resource.response.code") != "ok" {
		t.Fatalf("acknowledgement: %s", r.Raw)
	}
	// The message goes to L&D by the message route, and its focus by the Observation route.
	if !sk.ld.WaitDelivered(2, 10*time.Second) {
		t.Fatalf("L&D received %v", sk.ld.Attempts())
	}
	got := map[string]string{}
	for _, a := range sk.ld.Delivered() {
		got[strings.SplitN(a.Resource, "/", 2)[0]] = a.Patient
	}
	if _, ok := got["MessageHeader"]; !ok || got["Observation"] != "Patient/m" {
		t.Fatalf("L&D received %v", sk.ld.Delivered())
	}
	ms := deliveries(t, s, "destination=ld-fhir")
	found := false
	for _, d := range ms {
		if d["route"] == "messages-to-ld" {
			found = true
			if d["resource"] != "MessageHeader/"+req+"/_history/1" || d["patient"] != "Patient/m" {
				t.Errorf("message delivery %v", d)
			}
		}
	}
	if !found {
		t.Fatalf("no delivery by messages-to-ld: %v", ms)
	}
	// The same message again is acknowledged, not stored or routed twice.
	s.DoAs("custody", http.MethodPost, "$process-message", message(req, "referral-request", "", deliverytest.Observation("Patient/m", 7))).Want(t, http.StatusOK)
	// L&D's reply goes back to custody, who sent the request.
	reply := "2b8f3c1e-0d6a-4c1e-9b7e-5f1a2c3d4e02"
	s.DoAs("ld", http.MethodPost, "$process-message", message(reply, "referral-response", req, nil)).Want(t, http.StatusOK)
	if !sk.custody.WaitDelivered(1, 10*time.Second) {
		t.Fatalf("custody received %v", sk.custody.Attempts())
	}
	if a := sk.custody.Delivered()[0]; a.Resource != "MessageHeader/"+reply {
		t.Fatalf("custody received %+v", a)
	}
	// A reply to a message nobody sent is refused.
	s.DoAs("ld", http.MethodPost, "$process-message", message("2b8f3c1e-0d6a-4c1e-9b7e-5f1a2c3d4e03", "referral-response", "no-such-message", nil)).Want(t, http.StatusUnprocessableEntity)
	time.Sleep(300 * time.Millisecond)
	if n := len(sk.ld.Delivered()); n != 2 {
		t.Errorf("L&D received %d deliveries, want 2 (the repeated message must not be routed again)", n)
	}
}

func TestRestHookSubscription(t *testing.T) {
	sk := newSinks(t)
	hook := deliverytest.NewSink()
	t.Cleanup(hook.Close)
	s := startRouted(t, sk, "embedded", true)
	sub := map[string]any{
		"resourceType": "Subscription",
		"status":       "requested",
		"reason":       "L&D follows custody observations of one person",
		"criteria":     "Observation?subject=Patient/s",
		"channel": map[string]any{
			"type": "rest-hook", "endpoint": hook.FHIRBase(), "payload": "application/fhir+json",
			"header": []any{"X-Hook: yes"},
		},
	}
	id := s.DoAs("ld", http.MethodPost, "Subscription", sub).Want(t, http.StatusCreated).Str("id")
	s.DoAs("custody", http.MethodPost, "Observation", deliverytest.Observation("Patient/other", 1)).Want(t, http.StatusCreated)
	obs := s.DoAs("custody", http.MethodPost, "Observation", deliverytest.Observation("Patient/s", 1)).Want(t, http.StatusCreated).Str("id")
	if !hook.WaitDelivered(1, 10*time.Second) {
		t.Fatalf("no notification: %v", hook.Attempts())
	}
	if a := hook.Delivered()[0]; a.Method != http.MethodPut || a.Resource != "Observation/"+obs {
		t.Fatalf("notification %+v", a)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.DoAs("ld", http.MethodGet, "Subscription/"+id, nil).Str("status") != "active" {
		if time.Now().After(deadline) {
			t.Fatal("the Subscription did not become active")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(hook.Attempts()); n != 1 {
		t.Errorf("%d notifications, want 1 (the other patient's Observation does not match)", n)
	}
}
