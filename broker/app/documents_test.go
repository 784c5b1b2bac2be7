package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// received is one request a recording endpoint got: the resource it carried.
type received struct {
	Method, Path string
	Resource     map[string]any // the first entry of a transaction Bundle
}

// recorder is a FHIR endpoint that keeps what it receives.
type recorder struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var b map[string]any
		_ = json.Unmarshal(body, &b)
		rc := received{Method: req.Method, Path: req.URL.Path}
		if es, _ := b["entry"].([]any); len(es) > 0 {
			rc.Resource, _ = es[0].(map[string]any)["resource"].(map[string]any)
		}
		r.mu.Lock()
		r.got = append(r.got, rc)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response"}`) //nolint:errcheck
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// waitFor waits until some received resource satisfies cond.
func (r *recorder) waitFor(t *testing.T, what string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, g := range r.all() {
			if g.Resource != nil && cond(g.Resource) {
				return g.Resource
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the endpoint never received %s; it got %d requests", what, len(r.all()))
	return nil
}

// startDemo runs a node with the built-in demo configuration, its court and GP endpoints
// pointing at test endpoints, and starts routing.
func startDemo(t *testing.T, courtURL string, gp *recorder) *apptest.Server {
	t.Helper()
	s := newDemo(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}, courtURL, gp)
	s.Node.Start(context.Background())
	return s
}

// newDemo is startDemo on a backend, with routing not yet started.
func newDemo(t *testing.T, b storetest.Backend, courtURL string, gp *recorder) *apptest.Server {
	t.Helper()
	return newDemoNode(t, b, map[string]string{"court-fhir": courtURL, "gp-fhir": gp.URL + "/fhir"})
}

func create(t *testing.T, s *apptest.Server, client string, res map[string]any) string {
	t.Helper()
	r := s.DoAs(client, http.MethodPost, res["resourceType"].(string), res).Want(t, http.StatusCreated)
	return r.Str("id")
}

func patient(nhs, family string, extra map[string]any) map[string]any {
	p := map[string]any{"resourceType": "Patient",
		"identifier": []any{map[string]any{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}},
		"name":       []any{map[string]any{"family": family, "given": []any{"Alex"}}},
		"birthDate":  "1988-02-03"}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

var gpXGP001 = []any{map[string]any{"identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XGP001"},
	"display": "Anytown Medical Practice"}}

func courtConsent(pid string) map[string]any {
	rt := func(c string) map[string]any {
		return map[string]any{"system": "http://hl7.org/fhir/resource-types", "code": c}
	}
	return map[string]any{"resourceType": "Consent", "status": "active",
		"scope":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":   []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}}}},
		"patient":    map[string]any{"reference": "Patient/" + pid},
		"dateTime":   "2025-03-03",
		"policyRule": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}},
		"provision": map[string]any{"type": "permit",
			"actor": []any{map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}},
				"reference": map[string]any{"identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XCRT01"}}}},
			"action":  []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose"}}}},
			"purpose": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HLEGAL"}},
			"class":   []any{rt("Composition"), rt("Patient"), rt("DocumentReference")}}}
}

func assessment(pid, rec, summary string) map[string]any {
	return map[string]any{"resourceType": "QuestionnaireResponse", "status": "completed",
		"subject": map[string]any{"reference": "Patient/" + pid}, "authored": "2025-03-03T15:30:00Z",
		"item": []any{map[string]any{"linkId": "court", "item": []any{
			map[string]any{"linkId": "court-recommendation", "answer": []any{map[string]any{"valueCoding": map[string]any{
				"system": "https://hjbroker.dev/fhir/CodeSystem/court-recommendation", "code": rec}}}},
			map[string]any{"linkId": "court-summary", "answer": []any{map[string]any{"valueString": summary}}},
		}}}}
}

func entryTypes(doc map[string]any) []string {
	var out []string
	for _, e := range doc["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		out = append(out, r["resourceType"].(string))
	}
	return out
}

// TestCourtReportPathway: L&D generate a report from an assessment; without the person's
// consent it is a draft the court neither receives nor can read; once consent is recorded
// the regenerated report is final, reaches the court and reads there as HTML and PDF.
func TestCourtReportPathway(t *testing.T) {
	court := deliverytest.NewSink()
	t.Cleanup(court.Close)
	s := startDemo(t, court.FHIRBase(), newRecorder(t))
	pid := create(t, s, "custody-hcp", patient("9000000009", "Smith", nil))
	create(t, s, "custody-hcp", map[string]any{"resourceType": "Condition", "subject": map[string]any{"reference": "Patient/" + pid},
		"clinicalStatus": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}}},
		"code":           map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "35489007", "display": "Depressive disorder"}}}})
	create(t, s, "ld-team", map[string]any{"resourceType": "Flag", "status": "active", "subject": map[string]any{"reference": "Patient/" + pid},
		"code": map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "401206008", "display": "At risk of deliberate self harm"}}}})
	create(t, s, "ld-team", map[string]any{"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": map[string]any{"reference": "Patient/" + pid},
		"code": map[string]any{"text": "Referral to community mental health team"}, "performer": []any{map[string]any{"display": "Anytown CMHT"}}})
	qr := create(t, s, "ld-team", assessment(pid, "divert", "Engaged well; accepts a referral."))
	op := "QuestionnaireResponse/" + qr + "/$court-report"

	// No consent: a preliminary draft for L&D, not routed.
	r := s.DoAs("ld-team", http.MethodPost, op, nil).Want(t, http.StatusCreated)
	comp := apptest.Get(r.JSON, "entry.0.resource").(map[string]any)
	cid := comp["id"].(string)
	if comp["status"] != "preliminary" || r.Header.Get("Location") == "" {
		t.Fatalf("without consent: status %v, Location %q", comp["status"], r.Header.Get("Location"))
	}
	if got := strings.Join(entryTypes(r.JSON), ","); got != "Composition,Patient,QuestionnaireResponse,Flag,Condition,ServiceRequest" {
		t.Errorf("draft entries %s", got)
	}
	s.DoAs("court", http.MethodGet, "Composition/"+cid, nil).Want(t, http.StatusNotFound)
	s.DoAs("court", http.MethodGet, "Composition/"+cid+"/$document", nil).Want(t, http.StatusNotFound)
	s.DoAs("court", http.MethodPost, op, nil).Want(t, http.StatusForbidden) // courts do not write reports

	// Bad inputs change nothing.
	bad := s.DoAs("ld-team", http.MethodPost, op, map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "recommendation", "valueCode": "acquit"}}}).Want(t, http.StatusBadRequest)
	if ex := bad.IssueExpressions(); len(ex) != 1 || ex[0] != "Parameters.parameter[0].value[x]" {
		t.Errorf("bad recommendation: expressions %v", ex)
	}
	s.DoAs("ld-team", http.MethodPost, op, nil, "Accept: application/xml").Want(t, http.StatusNotAcceptable)
	s.DoAs("ld-team", http.MethodGet, op, nil).Want(t, http.StatusMethodNotAllowed)
	s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/nope/$court-report", nil).Want(t, http.StatusNotFound)
	noRec := create(t, s, "ld-team", map[string]any{"resourceType": "QuestionnaireResponse", "status": "completed",
		"subject": map[string]any{"reference": "Patient/" + pid}, "item": []any{map[string]any{"linkId": "mental-health", "answer": []any{map[string]any{"valueBoolean": true}}}}})
	r = s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/"+noRec+"/$court-report", nil).Want(t, http.StatusUnprocessableEntity)
	if ex := r.IssueExpressions(); len(ex) != 1 || ex[0] != "recommendation" {
		t.Errorf("no recommendation: expressions %v", ex)
	}
	if n := s.DoAs("ld-team", http.MethodGet, "Composition?subject=Patient/"+pid, nil).Want(t, http.StatusOK).Total(); n != 1 {
		t.Errorf("%d Compositions after the failed calls, want the one draft", n)
	}

	// Consent recorded: the report, generated again with a new summary, is final and goes
	// to the court.
	consent := create(t, s, "ld-team", courtConsent(pid))
	r = s.DoAs("ld-team", http.MethodPost, op, map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "summary", "valueString": "Ms Smith <engaged> & accepts support."}}}).Want(t, http.StatusOK)
	comp = apptest.Get(r.JSON, "entry.0.resource").(map[string]any)
	if comp["status"] != "final" || comp["id"] != cid {
		t.Fatalf("with consent: %v %v", comp["id"], comp["status"])
	}
	if types := entryTypes(r.JSON); types[len(types)-1] != "Consent" {
		t.Errorf("the Consent is not in the report: %v", types)
	}
	if !strings.Contains(string(r.Raw), "Consent/"+consent) {
		t.Error("the report does not reference the Consent")
	}
	if !court.WaitDelivered(1, 15*time.Second) {
		t.Fatal("the court never received the final report")
	}
	// The draft was version 1 of the Composition; only the final version 2 reached the court.
	for _, a := range court.Attempts() {
		if a.Resource != "Composition/"+cid || a.Version != "2" || a.Patient != "Patient/"+pid {
			t.Errorf("the court received %s version %s about %s", a.Resource, a.Version, a.Patient)
		}
	}

	// The court reads it, and its renderings, but none of the clinical record behind it.
	s.DoAs("court", http.MethodGet, "Composition/"+cid, nil).Want(t, http.StatusOK)
	// Only the document operations render; a plain read still speaks FHIR JSON only.
	s.DoAs("court", http.MethodGet, "Composition/"+cid, nil, "Accept: text/html").Want(t, http.StatusNotAcceptable)
	docr := s.DoAs("court", http.MethodGet, "Composition/"+cid+"/$document", nil).Want(t, http.StatusOK)
	if got := strings.Join(entryTypes(docr.JSON), ","); got != "Composition,Patient" {
		t.Errorf("the court's document holds %s", got)
	}
	html := s.DoAs("court", http.MethodGet, "Composition/"+cid+"/$document?_format=html", nil).Want(t, http.StatusOK)
	if ct := html.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("HTML Content-Type %q", ct)
	}
	for _, want := range []string{"Alex SMITH", "Divert: refer the person", "Ms Smith &lt;engaged&gt; &amp; accepts support.", "At risk of deliberate self harm"} {
		if !strings.Contains(string(html.Raw), want) {
			t.Errorf("the court's HTML lacks %q", want)
		}
	}
	pdf := s.DoAs("court", http.MethodGet, "Composition/"+cid+"/$document", nil, "Accept: application/pdf").Want(t, http.StatusOK)
	if !bytes.HasPrefix(pdf.Raw, []byte("%PDF-")) || pdf.Header.Get("Content-Type") != "application/pdf" {
		t.Errorf("not a PDF: %q %q", pdf.Header.Get("Content-Type"), pdf.Raw[:min(8, len(pdf.Raw))])
	}
	// L&D get the rendering straight from the operation.
	own := s.DoAs("ld-team", http.MethodPost, op, nil, "Accept: text/html").Want(t, http.StatusOK)
	if !strings.Contains(string(own.Raw), "<h1>Liaison and diversion report to the court") {
		t.Errorf("L&D HTML: %.200s", own.Raw)
	}
	// The renderings are kept with the report for systems that fetch documents.
	refs := s.DoAs("court", http.MethodGet, "DocumentReference?subject=Patient/"+pid, nil).Want(t, http.StatusOK)
	var types []string
	for _, c := range apptest.Get(refs.JSON, "entry.0.resource.content").([]any) {
		types = append(types, apptest.Get(c, "attachment.contentType").(string))
	}
	if strings.Join(types, ",") != "application/pdf,text/html" {
		t.Errorf("DocumentReference content %v", types)
	}
}

// TestCourtReportWrittenDirectlyIsWithheld: a final court report written without consent
// is routed, and the delivery-time consent check withholds it with the reason.
func TestCourtReportWrittenDirectlyIsWithheld(t *testing.T) {
	court := deliverytest.NewSink()
	t.Cleanup(court.Close)
	s := startDemo(t, court.FHIRBase(), newRecorder(t))
	pid := create(t, s, "custody-hcp", patient("9000000025", "Jones", nil))
	cid := create(t, s, "ld-team", map[string]any{"resourceType": "Composition", "status": "final",
		"type":    map[string]any{"coding": []any{map[string]any{"system": "https://hjbroker.dev/fhir/CodeSystem/document-type", "code": "court-report"}}},
		"subject": map[string]any{"reference": "Patient/" + pid}, "date": "2025-03-04T10:00:00Z",
		"author": []any{map[string]any{"display": "Anytown Liaison and Diversion Service"}}, "title": "L&D report to the court",
		"section": []any{map[string]any{"title": "Summary", "text": map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>`}}}})
	ds := waitState(t, s, "state=withheld&destination=court-fhir", 1, 15*time.Second)
	if !strings.Contains(ds[0]["resource"].(string), "Composition/"+cid) || !strings.Contains(ds[0]["reason"].(string), "Consent") {
		t.Errorf("withheld delivery %v", ds[0])
	}
	if n := len(court.Attempts()); n != 0 {
		t.Errorf("the court received %d requests", n)
	}
}

// TestHandbackPathway: the custody episode ends and the registered GP gets the hand-back
// document with the episode's record, less what the person's Consent keeps from the GP; a
// restricted person and one with no GP are withheld with reasons and custody gets a Task.
func TestHandbackPathway(t *testing.T) {
	court := deliverytest.NewSink()
	t.Cleanup(court.Close)
	gp := newRecorder(t)
	s := startDemo(t, court.FHIRBase(), gp)
	pid := create(t, s, "custody-hcp", patient("9000000033", "Brown", map[string]any{"generalPractitioner": gpXGP001}))
	subj := map[string]any{"reference": "Patient/" + pid}
	enc := create(t, s, "custody-hcp", map[string]any{"resourceType": "Encounter", "status": "in-progress",
		"class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "subject": subj,
		"period": map[string]any{"start": "2025-03-03T22:00:00Z"}})
	other := create(t, s, "custody-hcp", map[string]any{"resourceType": "Encounter", "status": "finished",
		"class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "subject": subj,
		"period": map[string]any{"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T12:00:00Z"}})
	inEpisode := map[string]any{"reference": "Encounter/" + enc}
	obs := create(t, s, "custody-hcp", map[string]any{"resourceType": "Observation", "status": "final", "subject": subj, "encounter": inEpisode,
		"code": map[string]any{"text": "Breath alcohol"}, "valueString": "negative", "effectiveDateTime": "2025-03-03T22:30:00Z"})
	oldObs := create(t, s, "custody-hcp", map[string]any{"resourceType": "Observation", "status": "final", "subject": subj,
		"encounter": map[string]any{"reference": "Encounter/" + other}, "code": map[string]any{"text": "Old reading"}, "valueString": "x"})
	allergy := create(t, s, "custody-hcp", map[string]any{"resourceType": "AllergyIntolerance", "patient": subj, "encounter": inEpisode,
		"clinicalStatus": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}}},
		"code":           map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "764146007", "display": "Penicillin"}}}})
	med := create(t, s, "custody-hcp", map[string]any{"resourceType": "MedicationStatement", "status": "active", "subject": subj, "context": inEpisode,
		"medicationCodeableConcept": map[string]any{"text": "Methadone 1mg/ml oral solution"}})
	flag := create(t, s, "ld-team", map[string]any{"resourceType": "Flag", "status": "active", "subject": subj, "encounter": inEpisode,
		"code": map[string]any{"text": "Vulnerable adult"}})
	// The person does not want the GP told about the medication given in custody.
	create(t, s, "custody-hcp", map[string]any{"resourceType": "Consent", "status": "active",
		"scope":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":   []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}}}},
		"patient":    subj,
		"policyRule": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}},
		"provision": map[string]any{"type": "permit", "provision": []any{map[string]any{"type": "deny",
			"actor": []any{map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}},
				"reference": map[string]any{"identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XGP001"}}}},
			"class": []any{map[string]any{"system": "http://hl7.org/fhir/resource-types", "code": "MedicationStatement"}}}}}})

	r := s.DoAs("custody-hcp", http.MethodPost, "Encounter/"+enc+"/$handback", nil).Want(t, http.StatusOK)
	if p := params(r.JSON); p["episode"] != "finished" || p["outcome"] != "queued" || p["gp"] != "XGP001" {
		t.Fatalf("$handback answered %v", p)
	}
	doc := gp.waitFor(t, "the hand-back", func(m map[string]any) bool {
		return m["type"] == "document" && apptest.Get(m, "entry.0.resource.encounter.reference") == "Encounter/"+enc
	})
	comp := apptest.Get(doc, "entry.0.resource").(map[string]any)
	if apptest.Get(comp, "type.coding.0.code") != "373942005" || apptest.Get(comp, "encounter.reference") != "Encounter/"+enc {
		t.Errorf("hand-back Composition %v", comp)
	}
	in := map[string]bool{}
	for _, e := range doc["entry"].([]any) {
		res := e.(map[string]any)["resource"].(map[string]any)
		in[res["resourceType"].(string)+"/"+res["id"].(string)] = true
	}
	for ref, want := range map[string]bool{"Patient/" + pid: true, "Encounter/" + enc: true, "Observation/" + obs: true,
		"AllergyIntolerance/" + allergy: true, "Flag/" + flag: true, "Observation/" + oldObs: false, "MedicationStatement/" + med: false, "Encounter/" + other: false} {
		if in[ref] != want {
			t.Errorf("%s in the hand-back: %v, want %v", ref, in[ref], want)
		}
	}
	// The earlier episode, recorded as finished, was handed back by the route alone.
	gp.waitFor(t, "the earlier episode's hand-back", func(m map[string]any) bool {
		return apptest.Get(m, "entry.0.resource.encounter.reference") == "Encounter/"+other
	})
	// Asked again, the episode is already finished and nothing more is sent.
	r = s.DoAs("custody-hcp", http.MethodPost, "Encounter/"+enc+"/$handback", nil).Want(t, http.StatusOK)
	if p := params(r.JSON); p["episode"] != "already-finished" {
		t.Errorf("second $handback: %v", p)
	}

	// A restricted person (PDS removed the GP) and a person with no GP: withheld, and a Task.
	restricted := create(t, s, "custody-hcp", patient("9111231130", "Hidden", map[string]any{
		"meta":    map[string]any{"security": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}}},
		"address": []any{map[string]any{"line": []any{"1 Secret Lane"}, "postalCode": "ZZ1 1ZZ"}}, "generalPractitioner": gpXGP001}))
	noGP := create(t, s, "custody-hcp", patient("4010232137", "Nogp", nil))
	for _, tc := range []struct{ pid, reason string }{{restricted, "restricted (PDS sensitive) record"}, {noGP, "no registered GP practice"}} {
		e := create(t, s, "custody-hcp", map[string]any{"resourceType": "Encounter", "status": "in-progress",
			"class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "subject": map[string]any{"reference": "Patient/" + tc.pid}})
		r := s.DoAs("custody-hcp", http.MethodPost, "Encounter/"+e+"/$handback", nil).Want(t, http.StatusOK)
		if p := params(r.JSON); p["outcome"] != "withheld" || !strings.Contains(p["reason"], tc.reason) || p["gp"] != "" {
			t.Errorf("$handback for %s: %v", tc.pid, p)
		}
		ds := waitState(t, s, "state=withheld&destination=gp-fhir&patient=Patient/"+tc.pid, 1, 15*time.Second)
		if reason := ds[0]["reason"].(string); !strings.HasPrefix(reason, app.ManualTransferPrefix) || !strings.Contains(reason, tc.reason) {
			t.Errorf("withheld reason %q", reason)
		}
		task := waitTask(t, s, e)
		if apptest.Get(task, "owner.identifier.value") != "XCUST01" || apptest.Get(task, "for.reference") != "Patient/"+tc.pid ||
			!strings.Contains(task["description"].(string), tc.reason) {
			t.Errorf("Task %v", task)
		}
		raw, _ := json.Marshal(task)
		if bytes.Contains(raw, []byte("Secret Lane")) || bytes.Contains(raw, []byte("XGP001")) {
			t.Errorf("the Task leaks location data: %s", raw)
		}
	}
	for _, g := range gp.all() {
		raw, _ := json.Marshal(g.Resource)
		if bytes.Contains(raw, []byte(restricted)) || bytes.Contains(raw, []byte(noGP)) {
			t.Errorf("the GP received a hand-back of a withheld person: %.300s", raw)
		}
	}
	s.DoAs("custody-hcp", http.MethodGet, "Encounter/"+enc+"/$handback", nil).Want(t, http.StatusMethodNotAllowed)
	s.DoAs("gp", http.MethodPost, "Encounter/"+enc+"/$handback", nil).Want(t, http.StatusForbidden)
}

// waitTask waits for the manual-transfer Task of an Encounter, read as custody.
func waitTask(t *testing.T, s *apptest.Server, enc string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r := s.DoAs("custody-hcp", http.MethodGet, "Task?code=https://hjbroker.dev/fhir/CodeSystem/task-code|manual-gp-transfer&focus=Encounter/"+enc, nil).Want(t, http.StatusOK)
		if es := r.Entries(); len(es) == 1 {
			return es[0].(map[string]any)["resource"].(map[string]any)
		} else if len(es) > 1 {
			t.Fatalf("%d Tasks for Encounter/%s", len(es), enc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no manual-transfer Task for Encounter/%s", enc)
	return nil
}

// params reads a Parameters resource's simple values.
func params(p map[string]any) map[string]string {
	out := map[string]string{}
	for _, x := range p["parameter"].([]any) {
		m := x.(map[string]any)
		for k, v := range m {
			switch {
			case k == "name":
			case strings.HasPrefix(k, "valueReference"):
				out[m["name"].(string)] = v.(map[string]any)["reference"].(string)
			case strings.HasPrefix(k, "valueIdentifier"):
				out[m["name"].(string)] = v.(map[string]any)["value"].(string)
			default:
				out[m["name"].(string)], _ = v.(string)
			}
		}
	}
	return out
}

// TestHandbackAsRecorded: the hand-back is the record as it stood when the episode ended,
// whenever the delivery is made (the same document on every attempt), on every store.
func TestHandbackAsRecorded(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			court := deliverytest.NewSink()
			t.Cleanup(court.Close)
			gp := newRecorder(t)
			s := newDemo(t, b, court.FHIRBase(), gp)
			pid := create(t, s, "custody-hcp", patient("9000000009", "Early", map[string]any{"generalPractitioner": gpXGP001}))
			subj := map[string]any{"reference": "Patient/" + pid}
			enc := create(t, s, "custody-hcp", map[string]any{"resourceType": "Encounter", "status": "in-progress",
				"class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "subject": subj})
			before := create(t, s, "custody-hcp", map[string]any{"resourceType": "Observation", "status": "final", "subject": subj,
				"encounter": map[string]any{"reference": "Encounter/" + enc}, "code": map[string]any{"text": "Pulse"}, "valueString": "80"})
			time.Sleep(5 * time.Millisecond) // later writes get later timestamps
			s.DoAs("custody-hcp", http.MethodPost, "Encounter/"+enc+"/$handback", nil).Want(t, http.StatusOK)
			time.Sleep(5 * time.Millisecond)
			// After the episode ended, before the delivery is made: a new name, a new reading.
			p := s.DoAs("custody-hcp", http.MethodGet, "Patient/"+pid, nil).Want(t, http.StatusOK).JSON
			p["name"] = []any{map[string]any{"family": "Later", "given": []any{"Alex"}}}
			s.DoAs("custody-hcp", http.MethodPut, "Patient/"+pid, p).Want(t, http.StatusOK)
			after := create(t, s, "custody-hcp", map[string]any{"resourceType": "Observation", "status": "final", "subject": subj,
				"encounter": map[string]any{"reference": "Encounter/" + enc}, "code": map[string]any{"text": "Pulse"}, "valueString": "120"})
			s.Node.Start(context.Background())
			doc := gp.waitFor(t, "the hand-back", func(m map[string]any) bool { return m["type"] == "document" })
			raw, _ := json.Marshal(doc)
			if !bytes.Contains(raw, []byte("Observation/"+before)) || bytes.Contains(raw, []byte("Observation/"+after)) {
				t.Errorf("the hand-back does not hold the record as it stood: %s", raw)
			}
			if !bytes.Contains(raw, []byte("EARLY")) || bytes.Contains(raw, []byte("Later")) {
				t.Errorf("the hand-back names the person as renamed later")
			}
		})
	}
}
