package spine_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine"
	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/outcome"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func key(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

// fakeClock is a settable clock shared by client and simulator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type rig struct {
	sim    *spinesim.Running
	client *spine.Client
}

func start(t *testing.T, simOpts spinesim.Options, edit func(*spine.Config)) rig {
	t.Helper()
	k := key(t)
	if simOpts.Clients == nil {
		simOpts.Clients = []spinesim.Client{{ID: "hjb-test", KeyID: "test-1", Key: &k.PublicKey}}
	}
	sim, err := spinesim.Start("", simOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	cfg := spine.Config{BaseURL: sim.URL, ClientID: "hjb-test", KeyID: "test-1", Key: k, ODS: "XCUST01",
		Timeout: 2 * time.Second, Backoff: 10 * time.Millisecond}
	if edit != nil {
		edit(&cfg)
	}
	c, err := spine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rig{sim: sim, client: c}
}

// spineErr asserts err is a *spine.Error with the status and issue code, and that the
// engine sees an OperationOutcome error with the same status.
func spineErr(t *testing.T, err error, status int, issue string) *spine.Error {
	t.Helper()
	var se *spine.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *spine.Error", err, err)
	}
	if se.Status != status || se.IssueCode != issue {
		t.Fatalf("status %d %s, want %d %s (%v)", se.Status, se.IssueCode, status, issue, se)
	}
	var oe *outcome.Error
	if !errors.As(err, &oe) || oe.Status != status || oe.Issues[0].Code != issue {
		t.Fatalf("the error does not unwrap to the OperationOutcome %d %s: %+v", status, issue, oe)
	}
	return se
}

func TestReadPatient(t *testing.T) {
	r := start(t, spinesim.Options{SlowDelay: 5 * time.Second}, func(c *spine.Config) {
		c.Timeout, c.MaxAttempts = 150*time.Millisecond, 2
	})
	ctx := context.Background()
	p, err := r.client.ReadPatient(ctx, spinesim.NormalPatient)
	if err != nil {
		t.Fatal(err)
	}
	gp := p["generalPractitioner"].([]any)[0].(map[string]any)["identifier"].(map[string]any)["value"]
	if p["id"] != spinesim.NormalPatient || gp != spinesim.NormalGP {
		t.Errorf("normal patient: id %v GP %v", p["id"], gp)
	}
	p, err = r.client.ReadPatient(ctx, spinesim.RestrictedPatient)
	if err != nil {
		t.Fatal(err)
	}
	label := p["meta"].(map[string]any)["security"].([]any)[0].(map[string]any)["code"]
	if label != "R" || p["address"] != nil || p["telecom"] != nil || p["generalPractitioner"] != nil {
		t.Errorf("restricted patient: label %v, address %v, telecom %v, GP %v", label, p["address"], p["telecom"], p["generalPractitioner"])
	}
	p, err = r.client.ReadPatient(ctx, spinesim.SupersededNumber)
	if err != nil {
		t.Fatal(err)
	}
	if p["id"] != spinesim.ReplacementNumber {
		t.Errorf("superseded number: id %v, want the replacement %s", p["id"], spinesim.ReplacementNumber)
	}

	for _, tc := range []struct {
		name, nhs    string
		status       int
		issue, code  string
		wantAttempts int
	}{
		{"not found", spinesim.UnknownPatient, 404, "not-found", "RESOURCE_NOT_FOUND", 1},
		{"invalid NHS number", spinesim.InvalidNumber, 400, "value", "INVALID_RESOURCE_ID", 1},
		{"garbage", spinesim.GarbagePDSPatient, 502, "exception", "", 1},
		{"timeout", spinesim.SlowPDSPatient, 504, "timeout", "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.sim.Requests())
			_, err := r.client.ReadPatient(ctx, tc.nhs)
			se := spineErr(t, err, tc.status, tc.issue)
			if se.Code != tc.code {
				t.Errorf("Spine code %q, want %q", se.Code, tc.code)
			}
			if tc.code != "" && se.System != "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode" {
				t.Errorf("Spine system %q not kept", se.System)
			}
			if n := len(r.sim.Requests()) - before; n != tc.wantAttempts && tc.name != "timeout" {
				t.Errorf("%d attempts, want %d", n, tc.wantAttempts)
			}
		})
	}
}

func TestRetriesKeepRequestID(t *testing.T) {
	r := start(t, spinesim.Options{}, nil)
	ctx := spine.WithCorrelationID(context.Background(), "corr-42")
	began := time.Now()
	if _, err := r.client.ReadPatient(ctx, spinesim.ThrottledPatient); err != nil {
		t.Fatal(err)
	}
	if time.Since(began) < time.Second {
		t.Errorf("retried after %s: Retry-After: 1 was not honoured", time.Since(began))
	}
	reqs := r.sim.Requests()
	if len(reqs) != 2 || reqs[0].Status != 429 || reqs[1].Status != 200 {
		t.Fatalf("requests %+v, want a 429 then a 200", reqs)
	}
	if reqs[0].RequestID == "" || reqs[0].RequestID != reqs[1].RequestID {
		t.Errorf("X-Request-ID %q then %q: a retry must send the same", reqs[0].RequestID, reqs[1].RequestID)
	}
	if reqs[0].CorrelationID != "corr-42" || reqs[1].CorrelationID != "corr-42" {
		t.Errorf("X-Correlation-ID %q, %q, want corr-42", reqs[0].CorrelationID, reqs[1].CorrelationID)
	}
	// A new request gets a new X-Request-ID.
	if _, err := r.client.ReadPatient(ctx, spinesim.NormalPatient); err != nil {
		t.Fatal(err)
	}
	if last := r.sim.Requests()[2]; last.RequestID == reqs[0].RequestID {
		t.Error("a new request reused the X-Request-ID of the previous one")
	}
}

func TestRetriesBounded(t *testing.T) {
	r := start(t, spinesim.Options{}, nil)
	ctx := context.Background()
	r.sim.Fail("pds", spinesim.NormalPatient, spinesim.Fault{Status: 503}, spinesim.Fault{Status: 503}, spinesim.Fault{Status: 503}, spinesim.Fault{Status: 503})
	_, err := r.client.ReadPatient(ctx, spinesim.NormalPatient)
	spineErr(t, err, 503, "transient")
	reqs := r.sim.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(reqs))
	}
	for _, q := range reqs {
		if q.RequestID != reqs[0].RequestID {
			t.Errorf("retries sent X-Request-IDs %q and %q", reqs[0].RequestID, q.RequestID)
		}
	}
	// A Retry-After beyond the limit ends the retries at once.
	r.sim.Fail("pds", spinesim.AskPatient, spinesim.Fault{Status: 429, Code: "TOO_MANY_REQUESTS", RetryAfter: "3600"})
	_, err = r.client.ReadPatient(ctx, spinesim.AskPatient)
	spineErr(t, err, 503, "throttled")
	if n := len(r.sim.Requests()); n != 4 {
		t.Errorf("%d requests in all, want 4 (no retry after a one-hour Retry-After)", n)
	}
	// 5xx then success.
	r.sim.Fail("pds", spinesim.NoSCRPatient, spinesim.Fault{Status: 500, Code: "UNKNOWN_ERROR"})
	if _, err := r.client.ReadPatient(ctx, spinesim.NoSCRPatient); err != nil {
		t.Errorf("a 500 then a 200: %v", err)
	}
}

func TestTokenReuse(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	r := start(t, spinesim.Options{Now: clk.Now, TokenTTL: 10 * time.Minute}, func(c *spine.Config) { c.Clock = clk.Now })
	ctx := context.Background()
	for range 3 {
		if _, err := r.client.ReadPatient(ctx, spinesim.NormalPatient); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.sim.TokensIssued(); n != 1 {
		t.Fatalf("%d tokens for 3 calls, want 1 (cached)", n)
	}
	clk.Add(11 * time.Minute)
	if _, err := r.client.ReadPatient(ctx, spinesim.NormalPatient); err != nil {
		t.Fatal(err)
	}
	if n := r.sim.TokensIssued(); n != 2 {
		t.Fatalf("%d tokens after expiry, want 2", n)
	}
	// A token the service refuses is replaced once.
	r.sim.Fail("pds", spinesim.NormalPatient, spinesim.Fault{Status: 401, Code: "ACCESS_DENIED"})
	if _, err := r.client.ReadPatient(ctx, spinesim.NormalPatient); err != nil {
		t.Fatalf("after a 401: %v", err)
	}
	if n := r.sim.TokensIssued(); n != 3 {
		t.Fatalf("%d tokens after a 401, want 3", n)
	}
}

func TestTokenEndpointDown(t *testing.T) {
	r := start(t, spinesim.Options{}, nil)
	r.sim.Fail("token", "", spinesim.Fault{Status: 503, Text: "down for maintenance"})
	if _, err := r.client.ReadPatient(context.Background(), spinesim.NormalPatient); err != nil {
		t.Fatalf("a token endpoint 503 then a token: %v", err)
	}
	if r.sim.TokensIssued() != 1 || len(r.sim.Requests()) != 1 {
		t.Errorf("%d tokens, %d API calls, want 1 and 1", r.sim.TokensIssued(), len(r.sim.Requests()))
	}
	r2 := start(t, spinesim.Options{}, nil)
	r2.sim.Fail("token", "", spinesim.Fault{Status: 503}, spinesim.Fault{Status: 503}, spinesim.Fault{Status: 503})
	_, err := r2.client.ReadPatient(context.Background(), spinesim.NormalPatient)
	se := spineErr(t, err, 503, "transient")
	if se.Service != "token" || se.HTTPStatus != 503 || len(r2.sim.Requests()) != 0 {
		t.Errorf("service %s HTTP %d, want token 503", se.Service, se.HTTPStatus)
	}
}

func TestBadCredentials(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*spine.Config)
	}{
		{"unregistered key", func(c *spine.Config) { c.Key = other }},
		{"wrong client id", func(c *spine.Config) { c.ClientID = "someone-else" }},
		{"unknown kid", func(c *spine.Config) { c.KeyID = "nope" }},
		{"wrong audience", func(c *spine.Config) { c.TokenURL = c.BaseURL + "/oauth2/token?x=1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, spinesim.Options{}, tc.edit)
			_, err := r.client.ReadPatient(context.Background(), spinesim.NormalPatient)
			se := spineErr(t, err, 502, "security")
			if se.Service != "token" || se.Code != "invalid_client" {
				t.Errorf("service %q code %q, want token invalid_client", se.Service, se.Code)
			}
			if len(r.sim.Requests()) != 0 || r.sim.TokensIssued() != 0 {
				t.Error("the API was called without a token")
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	r := start(t, spinesim.Options{}, func(c *spine.Config) { c.MaxAttempts = 1 })
	ctx := context.Background()
	for _, tc := range []struct {
		service string
		fault   spinesim.Fault
		status  int
		issue   string
	}{
		{"pds", spinesim.Fault{Status: 404, Code: "INVALIDATED_RESOURCE"}, 404, "not-found"},
		{"pds", spinesim.Fault{Status: 403, Code: "ACCESS_DENIED"}, 403, "forbidden"},
		{"pds", spinesim.Fault{Status: 400, Code: "MISSING_VALUE"}, 502, "processing"},
		{"pds", spinesim.Fault{Status: 408, Code: "UNABLE_TO_CALL_SERVICE"}, 504, "timeout"},
		{"pds", spinesim.Fault{Status: 429, Code: "TOO_MANY_REQUESTS"}, 503, "throttled"},
		{"pds", spinesim.Fault{Status: 404, Code: "PATIENT_NOT_FOUND"}, 404, "not-found"},  // GP Connect
		{"pds", spinesim.Fault{Status: 400, Code: "INVALID_NHS_NUMBER"}, 400, "value"},     // GP Connect, NRL
		{"pds", spinesim.Fault{Status: 403, Code: "NO_PATIENT_CONSENT"}, 403, "forbidden"}, // GP Connect
		{"pds", spinesim.Fault{Status: 409, Code: "REC_CONFLICT"}, 409, "duplicate"},       // BaRS
		{"pds", spinesim.Fault{Status: 503, Code: "REC_UNAVAILABLE"}, 503, "transient"},    // BaRS
		{"pds", spinesim.Fault{Status: 502, Garbage: true}, 502, "exception"},
		{"scr", spinesim.Fault{Status: 403, Text: "Patient has not consented"}, 403, "forbidden"},
		{"scr", spinesim.Fault{Status: 420, Text: "[PSIS-30418] ACF does not permit access to resource"}, 403, "forbidden"},
		{"scr", spinesim.Fault{Status: 500, Code: "UNKNOWN_ERROR"}, 502, "exception"},
		{"scr", spinesim.Fault{Status: 504, Text: "Gateway timeout"}, 504, "timeout"},
		{"scr", spinesim.Fault{Status: 400, Text: "Invalid request"}, 502, "processing"},
	} {
		t.Run(tc.service+" "+tc.fault.Code+" "+http.StatusText(tc.fault.Status), func(t *testing.T) {
			r.sim.Fail(tc.service, spinesim.NormalPatient, tc.fault)
			var err error
			if tc.service == "pds" {
				_, err = r.client.ReadPatient(ctx, spinesim.NormalPatient)
			} else {
				_, err = r.client.SCRPointer(ctx, spinesim.NormalPatient)
			}
			se := spineErr(t, err, tc.status, tc.issue)
			if se.Code != tc.fault.Code || se.HTTPStatus != tc.fault.Status {
				t.Errorf("kept code %q HTTP %d, want %q %d", se.Code, se.HTTPStatus, tc.fault.Code, tc.fault.Status)
			}
			oo := se.OperationOutcome()
			issue := oo["issue"].([]any)[0].(map[string]any)
			if tc.fault.Code != "" {
				coding := issue["details"].(map[string]any)["coding"].([]any)[0].(map[string]any)
				if coding["code"] != tc.fault.Code || coding["system"] == "" {
					t.Errorf("OperationOutcome details %v lack the Spine code", coding)
				}
			}
			if tc.fault.Text != "" && !strings.Contains(issue["diagnostics"].(string), tc.fault.Text) {
				t.Errorf("diagnostics %q lack the Spine's text", issue["diagnostics"])
			}
			if !strings.Contains(se.AuditDetail(), se.RequestID) || se.RequestID == "" {
				t.Errorf("audit detail %q lacks the X-Request-ID", se.AuditDetail())
			}
		})
	}
}

func TestSCR(t *testing.T) {
	r := start(t, spinesim.Options{SlowDelay: 5 * time.Second}, func(c *spine.Config) {
		c.Timeout, c.MaxAttempts = 150*time.Millisecond, 1
	})
	ctx := context.Background()
	for nhs, want := range map[string]string{spinesim.NormalPatient: "Yes", spinesim.OptedOutPatient: "No", spinesim.AskPatient: "Ask"} {
		p, err := r.client.SCRPointer(ctx, nhs)
		if err != nil {
			t.Fatal(err)
		}
		if p == nil || p.Permission != want || p.UUID == "" || p.BundleURL == "" {
			t.Errorf("%s: pointer %+v, want permission %s", nhs, p, want)
		}
	}
	if p, err := r.client.SCRPointer(ctx, spinesim.NoSCRPatient); err != nil || p != nil {
		t.Errorf("no SCR: %+v, %v", p, err)
	}
	p, _ := r.client.SCRPointer(ctx, spinesim.NormalPatient)
	b, err := r.client.SCRBundle(ctx, p, spinesim.NormalPatient)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b["entry"].([]any)); n != 6 {
		t.Errorf("SCR Bundle has %d entries, want 6", n)
	}
	last := r.sim.Requests()[len(r.sim.Requests())-1]
	if last.Query.Get("composition.identifier") != p.UUID {
		t.Errorf("Bundle read with %v", last.Query)
	}
	// A stale document id gives an empty Bundle.
	stale := *p
	stale.BundleURL, stale.UUID = "", "00000000-0000-4000-8000-000000000000"
	if b, err := r.client.SCRBundle(ctx, &stale, spinesim.NormalPatient); err != nil || b["entry"] != nil {
		t.Errorf("stale id: %v, %v", b["entry"], err)
	}
	gp, _ := r.client.SCRPointer(ctx, spinesim.GarbageSCRPatient)
	_, err = r.client.SCRBundle(ctx, gp, spinesim.GarbageSCRPatient)
	spineErr(t, err, 502, "exception")
	_, err = r.client.SCRPointer(ctx, spinesim.SlowSCRPatient)
	spineErr(t, err, 504, "timeout")

	alert := func(typ, sub string) map[string]any {
		return map[string]any{"resourceType": "AuditEvent",
			"type":     map[string]any{"system": spine.SystemAlertType, "code": typ},
			"subtype":  []any{map[string]any{"system": spine.SystemAlertReason, "code": sub}},
			"recorded": "2026-12-01T10:00:00Z"}
	}
	if id, err := r.client.PrivacyAlert(ctx, alert("2", "5")); err != nil || id == "" {
		t.Errorf("access alert for emergency access: id %q, %v", id, err)
	}
	_, err = r.client.PrivacyAlert(ctx, alert("1", "5"))
	spineErr(t, err, 502, "processing")
	if n := len(r.sim.Alerts()); n != 1 {
		t.Errorf("%d alerts kept, want 1", n)
	}
}

func TestSearchPatient(t *testing.T) {
	r := start(t, spinesim.Options{}, nil)
	ctx := context.Background()
	q := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = []string{kv[i+1]}
		}
		return m
	}
	p, err := r.client.SearchPatient(ctx, q("family", "Smith", "birthdate", "eq1985-10-22"))
	if err != nil || p == nil || p["id"] != spinesim.NormalPatient {
		t.Fatalf("search: %v, %v", p, err)
	}
	if r.sim.Requests()[0].Query.Get("_max-results") != "1" {
		t.Error("an application-restricted search must ask for one result")
	}
	if p, err := r.client.SearchPatient(ctx, q("family", "Nobody", "birthdate", "1900-01-01")); err != nil || p != nil {
		t.Errorf("no match: %v, %v", p, err)
	}
	if p, err := r.client.SearchPatient(ctx, q("family", "Hidden", "birthdate", "1990-03-14", "address-postalcode", "LS1")); err != nil || p != nil {
		t.Errorf("a restricted person found by postcode: %v, %v", p, err)
	}
	_, err = r.client.SearchPatient(ctx, q("family", "Smith"))
	spineErr(t, err, 400, "invalid")
}
