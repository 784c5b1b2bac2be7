package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/mappings/ld"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
)

const (
	odsProbation = "https://fhir.nhs.uk/Id/ods-organization-code|XPRB01"
)

// demoSinks are sinks standing in for the demo configuration's agency endpoints.
type demoSinks struct{ ld, probation *deliverytest.Sink }

// startReferralDemo runs a node with the built-in demo configuration, its L&D and
// probation endpoints pointed at sinks (others stay on the discard port).
func startReferralDemo(t *testing.T, b storetest.Backend) (*apptest.Server, demoSinks) {
	t.Helper()
	sk := demoSinks{deliverytest.NewSink(), deliverytest.NewSink()}
	t.Cleanup(func() { sk.ld.Close(); sk.probation.Close() })
	s := newDemoNode(t, b, map[string]string{"ld-team-fhir": sk.ld.FHIRBase(), "probation-messaging": sk.probation.FHIRBase()})
	s.Node.Start(context.Background())
	return s, sk
}

func sqlite(t *testing.T) storetest.Backend {
	return storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}
}

// assessmentQR reads the assessment test response of mappings/ld, for patient.
func assessmentQR(t *testing.T, patient string) map[string]any {
	t.Helper()
	qr := mappingtest.ReadJSON(t, "../../mappings/ld/testdata/assessment.qr.json")
	delete(qr, "id")
	qr["subject"] = map[string]any{"reference": patient}
	return qr
}

func newPatient(t *testing.T, s *apptest.Server, nhs string) string {
	t.Helper()
	return "Patient/" + s.DoAs("custody-hcp", http.MethodPost, "Patient", map[string]any{
		"resourceType": "Patient",
		"identifier":   []any{map[string]any{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}},
		"name":         []any{map[string]any{"family": "Doe", "given": []any{"John"}}},
	}).Want(t, http.StatusCreated).Str("id")
}

// count returns how many resources of typ about patient the operator sees.
func count(t *testing.T, s *apptest.Server, typ, patient string) int {
	t.Helper()
	param := "subject"
	switch typ {
	case "Consent":
		param = "patient"
	case "Task":
		param = "patient"
	}
	return s.Do(http.MethodGet, typ+"?"+param+"="+patient+"&_total=accurate", nil).Want(t, http.StatusOK).Total()
}

func TestShippedQuestionnairesLoadIdempotently(t *testing.T) {
	dir := t.TempDir()
	b := storetest.Backend{Name: "sqlite", DataDir: dir}
	start := func() *app.Node {
		n, err := app.New(context.Background(), app.Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := start()
	n.Close()
	n = start()
	n.Close()
	s := apptest.Start(t, b, app.Config{})
	for _, u := range []string{ld.IdentificationURL, ld.ScreeningURL, ld.AssessmentURL} {
		r := s.DoAs("ld-team", http.MethodGet, "Questionnaire?url="+u, nil).Want(t, http.StatusOK)
		if len(r.Entries()) != 1 {
			t.Fatalf("%s: %d stored after three starts, want 1", u, len(r.Entries()))
		}
		if v := r.Str("entry.0.resource.meta.versionId"); v != "1" {
			t.Errorf("%s: versionId %s after restarts, want 1 (restarts must not rewrite it)", u, v)
		}
	}
	if n := len(s.DoAs("ld-team", http.MethodGet, "HealthcareService?_count=100", nil).Want(t, http.StatusOK).Entries()); n != 11 {
		t.Errorf("%d HealthcareServices in the directory, want 11", n)
	}
	// A stored older version is replaced by the shipped one at the next start.
	old := s.Do(http.MethodGet, "Questionnaire/ld-screening", nil).Want(t, http.StatusOK).JSON
	old["version"] = "0.9.0"
	s.Do(http.MethodPut, "Questionnaire/ld-screening", old).Want(t, http.StatusOK)
	s.Close()
	s.Node.Close()
	s = apptest.Start(t, b, app.Config{})
	r := s.Do(http.MethodGet, "Questionnaire/ld-screening", nil).Want(t, http.StatusOK)
	if r.Str("version") != "1.0.0" || r.Str("meta.versionId") != "3" {
		t.Errorf("after an older version was stored: version %s, versionId %s; want 1.0.0 at versionId 3", r.Str("version"), r.Str("meta.versionId"))
	}
}

func TestExtractOverHTTP(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := apptest.Start(t, b, app.Config{})
			p := newPatient(t, s, "9000000009")
			r := s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", assessmentQR(t, p)).Want(t, http.StatusOK)
			if r.JSON["type"] != "transaction-response" {
				t.Fatalf("answer %s", r.Raw)
			}
			got := map[string]int{}
			for _, e := range r.Entries() {
				got[apptest.Get(e, "resource.resourceType").(string)]++
			}
			want := map[string]int{"QuestionnaireResponse": 1, "Flag": 6, "Observation": 3, "Condition": 2, "ServiceRequest": 4, "Task": 1, "Consent": 2, "Provenance": 1}
			for typ, n := range want {
				if got[typ] != n {
					t.Errorf("%d %s in the answer, want %d", got[typ], typ, n)
				}
				if typ != "Provenance" && typ != "QuestionnaireResponse" {
					if c := count(t, s, typ, p); c != n {
						t.Errorf("%d %s stored for the patient, want %d", c, typ, n)
					}
				}
			}
			// References point at the stored response, not at urn:uuids.
			var qrID string
			for _, e := range r.Entries() {
				if apptest.Get(e, "resource.resourceType") == "QuestionnaireResponse" {
					qrID = apptest.Get(e, "resource.id").(string)
				}
			}
			sr := s.DoAs("ld-team", http.MethodGet, "ServiceRequest?subject="+p+"&performer:identifier="+odsProbation, nil).Want(t, http.StatusOK)
			if len(sr.Entries()) != 1 || sr.Str("entry.0.resource.supportingInfo.0.reference") != "QuestionnaireResponse/"+qrID {
				t.Fatalf("probation ServiceRequest: %s", sr.Raw)
			}
			prov := s.Do(http.MethodGet, "Provenance?entity=QuestionnaireResponse/"+qrID, nil).Want(t, http.StatusOK)
			if len(prov.Entries()) != 1 {
				t.Errorf("Provenance of the extraction: %s", prov.Raw)
			}
			// The CapabilityStatement advertises the operation.
			found := false
			for _, res := range apptest.Get(s.Do(http.MethodGet, "metadata", nil).Want(t, http.StatusOK).JSON, "rest.0.resource").([]any) {
				if apptest.Get(res, "type") == "QuestionnaireResponse" {
					for _, op := range apptest.Get(res, "operation").([]any) {
						found = found || apptest.Get(op, "name") == "extract"
					}
				}
			}
			if !found {
				t.Error("the CapabilityStatement does not list QuestionnaireResponse/$extract")
			}
			// The same response again is refused: it was extracted once.
			again := assessmentQR(t, p)
			again["id"] = qrID
			s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", again).Want(t, http.StatusConflict)
		})
	}
}

func TestExtractRejectsAndStoresNothing(t *testing.T) {
	s := apptest.Start(t, sqlite(t), app.Config{})
	p := newPatient(t, s, "9000000009")
	cases := []struct {
		name   string
		change func(qr map[string]any) any
		status int
		path   string
	}{
		{"answer not an option", func(qr map[string]any) any {
			mh := qr["item"].([]any)[1].(map[string]any)
			mh["item"].([]any)[2].(map[string]any)["answer"] = []any{map[string]any{"valueCoding": map[string]any{"system": ld.SystemRisk, "code": "extreme"}}}
			return qr
		}, http.StatusUnprocessableEntity, "QuestionnaireResponse.item[1].item[2].answer[0]"},
		{"unknown service", func(qr map[string]any) any {
			ref := qr["item"].([]any)[7].(map[string]any)["item"].([]any)[1].(map[string]any)
			ref["answer"] = []any{map[string]any{"valueReference": map[string]any{"reference": "HealthcareService/no-such-service"}}}
			return qr
		}, http.StatusUnprocessableEntity, "QuestionnaireResponse.item[7].item[1].answer[0].valueReference"},
		{"unknown questionnaire", func(qr map[string]any) any {
			qr["questionnaire"] = "https://hjbroker.dev/fhir/Questionnaire/nope"
			return qr
		}, http.StatusUnprocessableEntity, "QuestionnaireResponse.questionnaire"},
		{"not completed", func(qr map[string]any) any {
			qr["status"] = "in-progress"
			return qr
		}, http.StatusUnprocessableEntity, "QuestionnaireResponse.status"},
		{"not a QuestionnaireResponse", func(qr map[string]any) any {
			return map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "other", "valueString": "x"}}}
		}, http.StatusBadRequest, "Parameters.parameter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", tc.change(assessmentQR(t, p))).Want(t, tc.status)
			found := false
			for _, x := range r.IssueExpressions() {
				found = found || strings.HasPrefix(x, tc.path)
			}
			if !found {
				t.Errorf("issues at %v, want %s: %s", r.IssueExpressions(), tc.path, r.Raw)
			}
			for _, typ := range []string{"QuestionnaireResponse", "Flag", "ServiceRequest", "Task", "Observation"} {
				if n := count(t, s, typ, p); n != 0 {
					t.Errorf("%d %s stored after a refused extraction", n, typ)
				}
			}
		})
	}
	// A plain create of a response is checked against the stored Questionnaire too.
	bad := assessmentQR(t, p)
	bad["item"].([]any)[1].(map[string]any)["item"].([]any)[2].(map[string]any)["answer"] = []any{map[string]any{"valueCoding": map[string]any{"system": ld.SystemRisk, "code": "extreme"}}}
	r := s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse", bad).Want(t, http.StatusUnprocessableEntity)
	if x := strings.Join(r.IssueExpressions(), " "); !strings.Contains(x, "QuestionnaireResponse.item[1].item[2].answer[0]") {
		t.Errorf("plain create refused at %s", x)
	}
	// The Parameters form works, and a client without the scopes cannot extract.
	s.DoAs("custody-hcp", http.MethodPost, "QuestionnaireResponse/$extract", assessmentQR(t, p)).Want(t, http.StatusForbidden)
	params := map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "questionnaire-response", "resource": assessmentQR(t, p)}}}
	s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", params).Want(t, http.StatusOK)
	if n := count(t, s, "Task", p); n != 1 {
		t.Errorf("%d Tasks after the Parameters extraction, want 1", n)
	}
}

// TestProbationPullsAndWorksReferral: L&D's assessment refers the person to probation;
// probation finds the referral by search, works its Task through the workflow, and L&D is
// told of every status change by the demo configuration's task-status-to-referrer route.
func TestProbationPullsAndWorksReferral(t *testing.T) {
	s, sk := startReferralDemo(t, sqlite(t))
	p := newPatient(t, s, "9000000009")
	before := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", assessmentQR(t, p)).Want(t, http.StatusOK)

	// The referral goes to probation's endpoint by the probation-referral route.
	if !sk.probation.WaitFor(10*time.Second, func(as []deliverytest.Attempt) bool {
		for _, a := range as {
			if strings.HasPrefix(a.Resource, "ServiceRequest/") && a.Status == http.StatusOK {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("probation received %+v", sk.probation.Attempts())
	}

	// Safeguarding and reasonable-adjustment flags go with it, but not those labelled as
	// sexual or domestic violence.
	var delivered, sdv int
	for _, d := range waitState(t, s, "destination=probation-messaging&state=delivered", 3, 10*time.Second) {
		if strings.HasPrefix(d["resource"].(string), "Flag/") {
			delivered++
		}
	}
	for _, d := range deliveries(t, s, "destination=probation-messaging&state=withheld") {
		if strings.Contains(d["reason"].(string), "SDV") {
			sdv++
		}
	}
	if delivered != 2 || sdv != 1 {
		t.Errorf("flags to probation: %d delivered (want the self-harm and learning disability ones), %d withheld as SDV (want 1)", delivered, sdv)
	}

	q := url.Values{
		"performer:identifier": {odsProbation}, "status": {"active"},
		"_include": {"ServiceRequest:subject"}, "_lastUpdated": {"gt" + before},
	}
	r := s.DoAs("probation", http.MethodGet, "ServiceRequest?"+q.Encode(), nil).Want(t, http.StatusOK)
	var srID string
	patients := 0
	for _, e := range r.Entries() {
		switch apptest.Get(e, "resource.resourceType") {
		case "ServiceRequest":
			srID = apptest.Get(e, "resource.id").(string)
		case "Patient":
			patients++
		}
	}
	if srID == "" || patients != 1 || len(r.Entries()) != 2 {
		t.Fatalf("probation's pull: %s", r.Raw)
	}
	// Nothing newer than now.
	later := url.Values{"performer:identifier": {odsProbation}, "_lastUpdated": {"gt" + time.Now().UTC().Add(time.Minute).Format(time.RFC3339)}}
	if n := len(s.DoAs("probation", http.MethodGet, "ServiceRequest?"+later.Encode(), nil).Want(t, http.StatusOK).Entries()); n != 0 {
		t.Errorf("%d referrals after a future _lastUpdated", n)
	}
	// The mental-health referral is labelled PSY: probation does not see it.
	all := s.DoAs("probation", http.MethodGet, "ServiceRequest?subject="+p, nil).Want(t, http.StatusOK)
	for _, e := range all.Entries() {
		if apptest.Get(e, "resource.code.coding.0.code") == "mental-health" {
			t.Errorf("probation sees the mental-health referral")
		}
	}
	tasks := s.DoAs("probation", http.MethodGet, "Task?owner:identifier="+url.QueryEscape(odsProbation)+"&status=requested", nil).Want(t, http.StatusOK)
	if len(tasks.Entries()) != 1 || tasks.Str("entry.0.resource.focus.reference") != "ServiceRequest/"+srID {
		t.Fatalf("probation's open Tasks: %s", tasks.Raw)
	}
	if byRef := s.DoAs("probation", http.MethodGet, "Task?owner=Organization/org-xprb01&status=requested", nil).Want(t, http.StatusOK); len(byRef.Entries()) != 1 {
		t.Errorf("Task?owner=Organization/org-xprb01: %s", byRef.Raw)
	}
	task := apptest.Get(tasks.JSON, "entry.0.resource").(map[string]any)
	taskID := task["id"].(string)

	put := func(status string, reason string) *apptest.Result {
		task["status"] = status
		delete(task, "statusReason")
		if reason != "" {
			task["statusReason"] = map[string]any{"text": reason}
		}
		return s.DoAs("probation", http.MethodPut, "Task/"+taskID, task)
	}
	// Illegal first: requested cannot jump to completed; nothing changes.
	r = put("completed", "").Want(t, http.StatusConflict)
	if x := r.IssueExpressions(); len(x) == 0 || x[0] != "Task.status" {
		t.Errorf("refusal names %v", x)
	}
	// Only probation, the owner, moves the work on; L&D may not accept on its behalf.
	task["status"] = "received"
	r = s.DoAs("ld-team", http.MethodPut, "Task/"+taskID, task).Want(t, http.StatusForbidden)
	if x := r.IssueExpressions(); len(x) == 0 || x[0] != "Task.status" {
		t.Errorf("refusal names %v", x)
	}
	for i, status := range []string{"received", "accepted", "in-progress", "completed"} {
		r := put(status, "").Want(t, http.StatusOK)
		if v := r.Str("meta.versionId"); v != fmt.Sprint(i+2) {
			t.Errorf("%s stored as version %s, want %d", status, v, i+2)
		}
	}
	put("in-progress", "").Want(t, http.StatusConflict) // completed is final
	// L&D gets each of the four status changes.
	if !sk.ld.WaitFor(10*time.Second, func(as []deliverytest.Attempt) bool {
		seen := map[string]bool{}
		for _, a := range as {
			if a.Resource == "Task/"+taskID && a.Status == http.StatusOK {
				seen[a.Version] = true
			}
		}
		return len(seen) == 4
	}) {
		t.Fatalf("L&D received %+v; deliveries %v", sk.ld.Attempts(), deliveries(t, s, ""))
	}
	for _, d := range deliveries(t, s, "destination=ld-team-fhir") {
		if strings.HasPrefix(d["resource"].(string), "Task/") && d["route"] != "task-status-to-referrer" {
			t.Errorf("Task delivery by route %v", d["route"])
		}
	}
	// Probation may not create referrals or change them.
	s.DoAs("probation", http.MethodPost, "ServiceRequest", map[string]any{"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": map[string]any{"reference": p}}).Want(t, http.StatusForbidden)
}

func TestTaskRejectNeedsReason(t *testing.T) {
	s := apptest.Start(t, sqlite(t), app.Config{})
	p := newPatient(t, s, "9000000009")
	s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", assessmentQR(t, p)).Want(t, http.StatusOK)
	task := apptest.Get(s.Do(http.MethodGet, "Task?patient="+p, nil).Want(t, http.StatusOK).JSON, "entry.0.resource").(map[string]any)
	task["status"] = "rejected"
	r := s.Do(http.MethodPut, "Task/"+task["id"].(string), task).Want(t, http.StatusUnprocessableEntity)
	if x := r.IssueExpressions(); len(x) == 0 || x[0] != "Task.statusReason" {
		t.Errorf("refusal names %v", x)
	}
	task["statusReason"] = map[string]any{"text": "The person lives outside the region"}
	s.Do(http.MethodPut, "Task/"+task["id"].(string), task).Want(t, http.StatusOK)
	// A referral Task cannot be created already accepted.
	task["status"] = "accepted"
	delete(task, "id")
	s.Do(http.MethodPost, "Task", task).Want(t, http.StatusUnprocessableEntity)
}

// barsReferral is a BaRS-style referral message from L&D to probation.
func barsReferral(header, patientNHS string) map[string]any {
	pat, sr, consent := "urn:uuid:7f0c7d1e-0000-4000-8000-000000000001", "urn:uuid:7f0c7d1e-0000-4000-8000-000000000002", "urn:uuid:7f0c7d1e-0000-4000-8000-000000000003"
	return map[string]any{
		"resourceType": "Bundle", "type": "message", "timestamp": "2026-12-01T12:00:00Z",
		"entry": []any{
			map[string]any{"fullUrl": "urn:uuid:" + header, "resource": map[string]any{
				"resourceType": "MessageHeader", "id": header,
				"eventCoding": map[string]any{"system": "https://fhir.nhs.uk/CodeSystem/message-events-bars", "code": "servicerequest-request"},
				"reason":      map[string]any{"coding": []any{map[string]any{"system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars", "code": "new"}}},
				"source":      map[string]any{"endpoint": "https://ld.example/fhir/$process-message"},
				"destination": []any{map[string]any{"endpoint": "https://probation.example/fhir/$process-message"}},
				"focus":       []any{map[string]any{"reference": sr}},
			}},
			map[string]any{"fullUrl": pat, "resource": map[string]any{
				"resourceType": "Patient",
				"identifier":   []any{map[string]any{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": patientNHS}},
				"name":         []any{map[string]any{"family": "Roe", "given": []any{"Richard"}}},
			}},
			map[string]any{"fullUrl": sr, "resource": map[string]any{
				"resourceType": "ServiceRequest", "status": "active", "intent": "order",
				"category":   []any{map[string]any{"coding": []any{map[string]any{"system": "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest", "code": "referral"}}}},
				"subject":    map[string]any{"reference": pat},
				"authoredOn": "2026-12-01T11:55:00Z",
				"requester":  map[string]any{"identifier": map[string]any{"system": ld.SystemODS, "value": "XLD001"}, "display": "Anytown Liaison and Diversion Service"},
				"performer":  []any{map[string]any{"reference": "HealthcareService/svc-probation"}},
			}},
			map[string]any{"fullUrl": consent, "resource": map[string]any{
				"resourceType": "Consent", "status": "active",
				"scope":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
				"category":   []any{map[string]any{"coding": []any{map[string]any{"system": "https://fhir.nhs.uk/CodeSystem/consent-categories-bars", "code": "DRC"}}}},
				"patient":    map[string]any{"reference": pat},
				"dateTime":   "2026-12-01T11:50:00Z",
				"policyRule": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}},
				"provision": map[string]any{"type": "permit", "actor": []any{map[string]any{
					"role":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}},
					"reference": map[string]any{"identifier": map[string]any{"system": ld.SystemODS, "value": "XPRB01"}},
				}}, "purpose": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}}},
			}},
		},
	}
}

// TestBaRSReferralMessage: a BaRS referral message at $process-message creates the referral
// and its Task; probation's reply message updates the Task (workflow enforced) and goes back
// to L&D, correlated by MessageHeader.response.identifier.
func TestBaRSReferralMessage(t *testing.T) {
	s, sk := startReferralDemo(t, sqlite(t))
	known := newPatient(t, s, "9000000025")
	// A referral whose performer cannot be resolved is refused whole.
	bad := barsReferral("4c0ffee0-0000-4000-8000-0000000000ff", "9000000025")
	apptest.Get(bad, "entry.2.resource").(map[string]any)["performer"] = []any{map[string]any{"reference": "HealthcareService/nowhere"}}
	r := s.DoAs("ld-team", http.MethodPost, "$process-message", bad).Want(t, http.StatusUnprocessableEntity)
	if x := r.IssueExpressions(); len(x) == 0 || x[0] != "Bundle.entry[2].resource.performer" {
		t.Errorf("refusal names %v", x)
	}
	if n := s.Do(http.MethodGet, "ServiceRequest?_total=accurate", nil).Want(t, http.StatusOK).Total(); n != 0 {
		t.Errorf("%d ServiceRequests stored by a refused message", n)
	}

	req := "4c0ffee0-0000-4000-8000-000000000001"
	ack := s.DoAs("ld-team", http.MethodPost, "$process-message", barsReferral(req, "9000000025")).Want(t, http.StatusOK)
	if ack.Str("entry.0.resource.response.identifier") != req {
		t.Fatalf("acknowledgement %s", ack.Raw)
	}
	// Received again: acknowledged, not stored twice.
	s.DoAs("ld-team", http.MethodPost, "$process-message", barsReferral(req, "9000000025")).Want(t, http.StatusOK)
	if n := s.Do(http.MethodGet, "Task?_total=accurate", nil).Want(t, http.StatusOK).Total(); n != 1 {
		t.Errorf("%d Tasks after the message twice, want 1", n)
	}
	// The person the broker knows by NHS number is the one referred, not a new Patient.
	if n := s.Do(http.MethodGet, "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000025&_total=accurate", nil).Want(t, http.StatusOK).Total(); n != 1 {
		t.Errorf("%d Patients with the NHS number, want 1", n)
	}
	tasks := s.DoAs("probation", http.MethodGet, "Task?owner:identifier="+url.QueryEscape(odsProbation)+"&status=requested&_include=Task:focus", nil).Want(t, http.StatusOK)
	var task, sr map[string]any
	for _, e := range tasks.Entries() {
		switch m := apptest.Get(e, "resource").(map[string]any); m["resourceType"] {
		case "Task":
			task = m
		case "ServiceRequest":
			sr = m
		}
	}
	if task == nil || sr == nil || apptest.Get(task, "focus.reference") != "ServiceRequest/"+sr["id"].(string) ||
		apptest.Get(task, "requester.identifier.value") != "XLD001" || apptest.Get(task, "for.reference") != known || apptest.Get(sr, "subject.reference") != known {
		t.Fatalf("probation's Tasks: %s", tasks.Raw)
	}
	reply := func(id, status string) map[string]any {
		task["status"] = status
		return map[string]any{
			"resourceType": "Bundle", "type": "message", "timestamp": "2026-12-01T13:00:00Z",
			"entry": []any{
				map[string]any{"fullUrl": "urn:uuid:" + id, "resource": map[string]any{
					"resourceType": "MessageHeader", "id": id,
					"eventCoding": map[string]any{"system": "https://fhir.nhs.uk/CodeSystem/message-events-bars", "code": "servicerequest-response"},
					"source":      map[string]any{"endpoint": "https://probation.example/fhir/$process-message"},
					"response":    map[string]any{"identifier": req, "code": "ok"},
					"focus":       []any{map[string]any{"reference": "Task/" + task["id"].(string)}},
				}},
				map[string]any{"fullUrl": s.Base + "/Task/" + task["id"].(string), "resource": task},
			},
		}
	}
	// received → completed is not allowed: refused, and the Task is unchanged.
	s.DoAs("probation", http.MethodPost, "$process-message", reply("4c0ffee0-0000-4000-8000-000000000002", "received")).Want(t, http.StatusOK)
	r = s.DoAs("probation", http.MethodPost, "$process-message", reply("4c0ffee0-0000-4000-8000-000000000003", "completed")).Want(t, http.StatusConflict)
	if !strings.Contains(strings.Join(r.IssueExpressions(), " "), "Task.status") {
		t.Errorf("refusal names %v", r.IssueExpressions())
	}
	s.DoAs("probation", http.MethodPost, "$process-message", reply("4c0ffee0-0000-4000-8000-000000000004", "accepted")).Want(t, http.StatusOK)
	if got := s.DoAs("probation", http.MethodGet, "Task/"+task["id"].(string), nil).Want(t, http.StatusOK); got.Str("status") != "accepted" || got.Str("meta.versionId") != "3" {
		t.Errorf("Task after the replies: %s version %s", got.Str("status"), got.Str("meta.versionId"))
	}
	// Both accepted replies reach L&D, who sent the request: the Task versions and the reply headers.
	if !sk.ld.WaitFor(10*time.Second, func(as []deliverytest.Attempt) bool {
		n := 0
		for _, a := range as {
			if a.Status == http.StatusOK && (a.Resource == "MessageHeader/4c0ffee0-0000-4000-8000-000000000002" || a.Resource == "MessageHeader/4c0ffee0-0000-4000-8000-000000000004") {
				n++
			}
		}
		return n == 2
	}) {
		t.Fatalf("L&D received %+v", sk.ld.Attempts())
	}
	for _, a := range sk.ld.Attempts() {
		if a.Resource == "MessageHeader/4c0ffee0-0000-4000-8000-000000000003" {
			t.Errorf("the refused reply was delivered")
		}
	}
}
