package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/mappings/scr"
)

// startWithSpine runs a simulator and a node using it.
func startWithSpine(t *testing.T, b storetest.Backend) (*apptest.Server, *spinesim.Running) {
	t.Helper()
	sim, opts := apptest.StartSpine(t, spinesim.Options{SlowDelay: 10 * time.Second})
	opts.Timeout, opts.Attempts, opts.ASID = 300*time.Millisecond, 2, "200000001234"
	return apptest.Start(t, b, app.Config{Spine: opts}), sim
}

func byNHS(nhs string) string { return "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs }

// countPath counts the simulator's requests whose path contains part.
func countPath(sim *spinesim.Running, part string) int {
	n := 0
	for _, r := range sim.Requests() {
		if strings.Contains(r.Path, part) {
			n++
		}
	}
	return n
}

func issueCode(r *apptest.Result) string { return r.Str("issue.0.code") }

func TestSpinePatientFallback(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s, sim := startWithSpine(t, b)
			const hcp = "custody-hcp"

			// A normal patient: looked up, normalised, stored with a Provenance, found again locally.
			r := s.DoAs(hcp, http.MethodGet, byNHS(spinesim.NormalPatient), nil).Want(t, 200)
			if r.Total() != 1 {
				t.Fatalf("total %d, want 1: %s", r.Total(), r.Raw)
			}
			id := r.Str("entry.0.resource.id")
			// The request id the broker gave this request (the client sent none) travels to the
			// Spine as the correlation id, so one request can be followed across both.
			reqID := r.Header.Get("X-Request-ID")
			var correlated bool
			for _, q := range sim.Requests() {
				correlated = correlated || (strings.Contains(q.Path, "/Patient/") && q.CorrelationID == reqID)
			}
			if reqID == "" || !correlated {
				t.Errorf("no PDS request carried X-Correlation-ID %q: %+v", reqID, sim.Requests())
			}
			if got := r.Str("entry.0.resource.generalPractitioner.0.identifier.value"); got != spinesim.NormalGP {
				t.Errorf("GP ODS %q, want %s", got, spinesim.NormalGP)
			}
			if got := r.Str("entry.0.resource.identifier.0.extension.0.valueCodeableConcept.coding.0.system"); got != "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland" {
				t.Errorf("verification status system %q", got)
			}
			if got := r.Str("entry.0.resource.meta.security.0.code"); got != "U" {
				t.Errorf("security label %q, want U kept", got)
			}
			s.DoAs(hcp, http.MethodGet, "Patient/"+id, nil).Want(t, 200)
			prov := s.Do(http.MethodGet, "Provenance?target=Patient/"+id, nil).Want(t, 200)
			if prov.Total() != 1 || !strings.Contains(string(prov.Raw), "spine-pds") {
				t.Errorf("Provenance of the PDS record: %s", prov.Raw)
			}
			pdsCalls := countPath(sim, "/Patient/")
			s.DoAs(hcp, http.MethodGet, byNHS(spinesim.NormalPatient), nil).Want(t, 200)
			if countPath(sim, "/Patient/") != pdsCalls {
				t.Error("a known patient was looked up in the PDS again")
			}

			// Restricted: location stays out, in what is stored too.
			r = s.DoAs(hcp, http.MethodGet, byNHS(spinesim.RestrictedPatient), nil).Want(t, 200)
			rid := r.Str("entry.0.resource.id")
			stored := s.Do(http.MethodGet, "Patient/"+rid, nil).Want(t, 200)
			for _, k := range []string{"address", "telecom", "generalPractitioner"} {
				if stored.JSON[k] != nil || apptest.Get(r.JSON, "entry.0.resource."+k) != nil {
					t.Errorf("restricted patient has %s", k)
				}
			}
			if stored.Str("meta.security.0.code") != "R" {
				t.Errorf("stored restricted patient lost its R label: %s", stored.Raw)
			}

			// Superseded: the new number's record, found by the new number without a second store.
			r = s.DoAs(hcp, http.MethodGet, byNHS(spinesim.SupersededNumber), nil).Want(t, 200)
			sid := r.Str("entry.0.resource.id")
			if r.Total() != 1 || r.Str("entry.0.resource.identifier.0.value") != spinesim.ReplacementNumber {
				t.Fatalf("superseded: %s", r.Raw)
			}
			r = s.DoAs(hcp, http.MethodGet, byNHS(spinesim.ReplacementNumber), nil).Want(t, 200)
			if r.Str("entry.0.resource.id") != sid {
				t.Errorf("the replacement number found %q, want the stored %q", r.Str("entry.0.resource.id"), sid)
			}

			before := s.Do(http.MethodGet, "Patient?_summary=count", nil).Want(t, 200).Total()
			for _, tc := range []struct {
				name, nhs, issue, expr string
				status                 int
			}{
				{"not found", spinesim.UnknownPatient, "", "", 200},
				{"invalid NHS number", spinesim.InvalidNumber, "value", "identifier", 400},
				{"PDS timeout", spinesim.SlowPDSPatient, "timeout", "", 504},
				{"PDS garbage", spinesim.GarbagePDSPatient, "exception", "", 502},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := s.DoAs(hcp, http.MethodGet, byNHS(tc.nhs), nil).Want(t, tc.status)
					if tc.status == 200 && r.Total() != 0 {
						t.Errorf("total %d, want 0", r.Total())
					}
					if tc.status != 200 && (r.JSON["resourceType"] != "OperationOutcome" || issueCode(r) != tc.issue) {
						t.Errorf("want an OperationOutcome %s: %s", tc.issue, r.Raw)
					}
					if tc.expr != "" && strings.Join(r.IssueExpressions(), ",") != tc.expr {
						t.Errorf("expression %v, want %s", r.IssueExpressions(), tc.expr)
					}
				})
			}
			if countPath(sim, "/Patient/"+spinesim.InvalidNumber) != 0 {
				t.Error("an invalid NHS number was sent to the PDS")
			}
			if after := s.Do(http.MethodGet, "Patient?_summary=count", nil).Want(t, 200).Total(); after != before {
				t.Errorf("%d Patients after failed lookups, want %d: nothing may be stored", after, before)
			}

			// An agency that could not see the person does not make the broker look them up.
			calls := len(sim.Requests())
			s.DoAs("court", http.MethodGet, byNHS(spinesim.AskPatient), nil).Want(t, 200)
			if len(sim.Requests()) != calls {
				t.Error("the court's search made the broker read the PDS")
			}
		})
	}
}

// consentFor is an active Consent of a patient permitting an agency (by ODS code) to access
// their record for direct care.
func consentFor(patientID, ods string) map[string]any {
	raw := `{"resourceType":"Consent","status":"active",
		"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"INFA"}]}],
		"patient":{"reference":"Patient/` + patientID + `"},"dateTime":"2026-12-01",
		"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
		"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},
			"reference":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"` + ods + `"}}}],
			"action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}]}}`
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		panic(err)
	}
	return m
}

func TestSpineSummary(t *testing.T) {
	b := storetest.Backends(t)[0]
	s, sim := startWithSpine(t, b)
	const hcp = "custody-hcp"
	ids := map[string]string{}
	for _, nhs := range []string{spinesim.NormalPatient, spinesim.AskPatient, spinesim.OptedOutPatient, spinesim.RestrictedPatient,
		spinesim.SlowSCRPatient, spinesim.GarbageSCRPatient, spinesim.NoSCRPatient} {
		r := s.DoAs(hcp, http.MethodGet, byNHS(nhs), nil).Want(t, 200)
		ids[nhs] = r.Str("entry.0.resource.id")
	}
	summary := func(client, nhs string, headers ...string) *apptest.Result {
		return s.DoAs(client, http.MethodGet, "Patient/"+ids[nhs]+"/$summary", nil, headers...)
	}
	consent := func(nhs, ods string) {
		s.DoAs(hcp, http.MethodPost, "Consent", consentFor(ids[nhs], ods)).Want(t, 201)
	}
	composition := func(nhs string) int {
		return s.Do(http.MethodGet, "Composition?subject=Patient/"+ids[nhs]+"&_summary=count", nil).Want(t, 200).Total()
	}

	// Yes and Ask without a Consent: permission is needed.
	for _, nhs := range []string{spinesim.NormalPatient, spinesim.AskPatient} {
		r := summary(hcp, nhs).Want(t, 403)
		if issueCode(r) != "forbidden" || !strings.Contains(r.Str("issue.0.diagnostics"), "permission") {
			t.Errorf("%s without Consent: %s", nhs, r.Raw)
		}
	}
	if n := len(sim.Alerts()); n != 0 {
		t.Fatalf("%d privacy alerts before any emergency", n)
	}

	// With a Consent permitting custody healthcare.
	consent(spinesim.NormalPatient, "XCUST01")
	r := summary(hcp, spinesim.NormalPatient).Want(t, 200)
	if r.JSON["type"] != "document" || r.Str("entry.0.resource.resourceType") != "Composition" {
		t.Fatalf("not a document Bundle: %s", r.Raw)
	}
	if got := r.Str("entry.0.resource.section.0.code.coding.0.system"); got != scr.SectionSystem {
		t.Errorf("section code system %q", got)
	}
	if div := r.Str("entry.0.resource.section.0.text.div"); !strings.Contains(div, "<table>") || !strings.Contains(div, "Penicillin") {
		t.Errorf("allergy narrative not kept: %q", div)
	}
	if got := r.Str("entry.0.resource.subject.reference"); got != "Patient/"+ids[spinesim.NormalPatient] {
		t.Errorf("subject %q", got)
	}
	entries := r.Entries()
	last := apptest.Get(entries[len(entries)-1], "resource")
	if lastJSON, _ := json.Marshal(last); !strings.Contains(string(lastJSON), "spine-scr") {
		t.Errorf("no Provenance naming the Spine SCR: %s", lastJSON)
	}
	if n := len(sim.Alerts()); n != 0 {
		t.Errorf("%d privacy alerts for access with Consent, want 0", n)
	}
	if composition(spinesim.NormalPatient) != 0 {
		t.Error("the summary was stored; it must not be")
	}
	// A Consent for another agency does not help the L&D team.
	summary("ld-team", spinesim.NormalPatient).Want(t, 403)
	// Operators administer the service: no SCR without the patient's permission.
	summary("operator", spinesim.AskPatient).Want(t, 403)
	// Clients without Composition read may not have the summary.
	summary("probation", spinesim.NormalPatient).Want(t, 403)

	// Ask with a Consent.
	consent(spinesim.AskPatient, "XCUST01")
	summary(hcp, spinesim.AskPatient).Want(t, 200)

	// Emergency: no Consent needed, a privacy alert goes to the Spine and into the trail.
	summary(hcp, spinesim.GarbageSCRPatient, "X-Purpose-Of-Use: ETREAT") // alert sent before the (garbage) Bundle
	alerts := len(sim.Alerts())
	r = summary("ld-team", spinesim.NormalPatient, "X-Purpose-Of-Use: BTG", "X-Break-Glass-Reason: unconscious in cell").Want(t, 200)
	if r.JSON["type"] != "document" {
		t.Errorf("emergency summary: %s", r.Raw)
	}
	got := sim.Alerts()
	if len(got) != alerts+1 {
		t.Fatalf("%d privacy alerts, want %d", len(got), alerts+1)
	}
	a := got[len(got)-1]
	if apptest.Get(a, "type.code") != "2" || apptest.Get(a, "subtype.0.code") != "5" || apptest.Get(a, "type.system") != "https://fhir.nhs.uk/CodeSystem/SCR-AlertType" {
		t.Errorf("privacy alert type/subtype: %v %v", a["type"], a["subtype"])
	}
	trail := s.Do(http.MethodGet, "AuditEvent?patient=Patient/"+ids[spinesim.NormalPatient]+"&action=break-glass", nil).Want(t, 200)
	if !strings.Contains(string(trail.Raw), "SCR privacy alert") {
		t.Errorf("the privacy alert is not in the audit trail: %s", trail.Raw)
	}

	for _, tc := range []struct {
		name, nhs string
		headers   []string
		status    int
		issue     string
		diag      string
	}{
		{"opted out", spinesim.OptedOutPatient, nil, 403, "forbidden", "opted out"},
		{"opted out, even in an emergency", spinesim.OptedOutPatient, []string{"X-Purpose-Of-Use: ETREAT"}, 403, "forbidden", "opted out"},
		{"restricted", spinesim.RestrictedPatient, []string{"X-Purpose-Of-Use: ETREAT"}, 404, "not-found", "restricted"},
		{"no SCR", spinesim.NoSCRPatient, nil, 404, "not-found", "has no Summary Care Record"},
		{"SCR timeout", spinesim.SlowSCRPatient, []string{"X-Purpose-Of-Use: ETREAT"}, 504, "timeout", "did not answer in time"},
		{"SCR garbage", spinesim.GarbageSCRPatient, []string{"X-Purpose-Of-Use: ETREAT"}, 502, "exception", "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(sim.Requests())
			r := summary(hcp, tc.nhs, tc.headers...).Want(t, tc.status)
			if r.JSON["resourceType"] != "OperationOutcome" || issueCode(r) != tc.issue {
				t.Errorf("want an OperationOutcome %s: %s", tc.issue, r.Raw)
			}
			if !strings.Contains(r.Str("issue.0.diagnostics"), tc.diag) {
				t.Errorf("diagnostics %q, want them to say %q", r.Str("issue.0.diagnostics"), tc.diag)
			}
			if tc.name == "restricted" && len(sim.Requests()) != before {
				t.Error("the SCR was asked about a restricted patient")
			}
			if composition(tc.nhs) != 0 {
				t.Error("something was stored")
			}
		})
	}
	// A Spine error keeps the Spine's code, in the answer and in the trail.
	sim.Fail("scr", spinesim.NormalPatient, spinesim.Fault{Status: 500, Code: "UNKNOWN_ERROR"}, spinesim.Fault{Status: 500, Code: "UNKNOWN_ERROR"})
	r = summary(hcp, spinesim.NormalPatient).Want(t, 502)
	if r.Str("issue.0.details.coding.0.code") != "UNKNOWN_ERROR" || r.Str("issue.0.details.coding.0.system") != "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode" {
		t.Errorf("the Spine code is not kept: %s", r.Raw)
	}
	trail = s.Do(http.MethodGet, "AuditEvent?patient=Patient/"+ids[spinesim.NormalPatient]+"&action=search", nil).Want(t, 200)
	if !strings.Contains(string(trail.Raw), "UNKNOWN_ERROR") {
		t.Errorf("the Spine code is not in the audit trail: %s", trail.Raw)
	}
	s.DoAs(hcp, http.MethodGet, "Patient/unknown-id/$summary", nil).Want(t, 404)
	anon := s.DoAs(hcp, http.MethodPost, "Patient", map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": "Unknown"}}}).Want(t, 201)
	r = s.DoAs(hcp, http.MethodGet, "Patient/"+anon.Str("id")+"/$summary", nil).Want(t, 422)
	if strings.Join(r.IssueExpressions(), ",") != "Patient.identifier" {
		t.Errorf("no NHS number: %s", r.Raw)
	}
	s.DoAs(hcp, http.MethodPost, "Patient/"+ids[spinesim.NormalPatient]+"/$summary", map[string]any{"resourceType": "Parameters"}).Want(t, 405)
}

func TestSpineOff(t *testing.T) {
	s := apptest.Start(t, storetest.Backends(t)[0], app.Config{})
	r := s.Do(http.MethodPost, "Patient", map[string]any{"resourceType": "Patient"}).Want(t, 201)
	s.Do(http.MethodGet, "Patient/"+r.Str("id")+"/$summary", nil).Want(t, 404)
	if got := s.Do(http.MethodGet, byNHS(spinesim.NormalPatient), nil).Want(t, 200).Total(); got != 0 {
		t.Errorf("without HJB_SPINE_URL a search found %d", got)
	}
}
