package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
)

const ingestPath = "$ingest-clinical-entries"

// countAll is the number of stored resources of each type the ingest paths write.
func countAll(t *testing.T, s *apptest.Server, types ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, typ := range types {
		out[typ] = s.Do(http.MethodGet, typ+"?_summary=count", nil).Want(t, http.StatusOK).Total()
	}
	return out
}

var clinicalTypes = []string{"Patient", "Encounter", "Observation", "Condition", "MedicationStatement", "MedicationAdministration", "AllergyIntolerance", "Provenance"}

// TestIngestClinicalEntries posts the full example as the custody HCP client and searches
// what was stored back: the Encounter by the custody episode, its Observations, and the
// Provenance of the mapping.
func TestIngestClinicalEntries(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		entries := mappingtest.ReadJSON(t, "../../mappings/clinical/testdata/full.input.json")
		r := s.DoAs("custody-hcp", http.MethodPost, ingestPath, entries, "Content-Type: application/json").Want(t, http.StatusOK)
		if r.Str("type") != "transaction-response" {
			t.Fatalf("type %q; body %s", r.Str("type"), r.Raw)
		}
		created := 0
		for _, e := range r.Entries() {
			if st, _ := apptest.Get(e, "response.status").(string); strings.HasPrefix(st, "201") {
				created++
			}
		}
		if created != len(r.Entries()) || created != 16 {
			t.Errorf("%d of %d entries created, want all 16", created, len(r.Entries()))
		}

		enc := s.DoAs("custody-hcp", http.MethodGet, "Encounter?identifier=https://hjbroker.dev/fhir/Id/custody-episode|XCS01/EP-2026-0412", nil).Want(t, http.StatusOK)
		if enc.Total() != 1 || enc.Str("entry.0.resource.status") != "finished" || enc.Str("entry.0.resource.class.code") != "FLD" {
			t.Fatalf("Encounter search: %s", enc.Raw)
		}
		encID := enc.Str("entry.0.resource.id")
		pat := s.DoAs("custody-hcp", http.MethodGet, "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", nil).Want(t, http.StatusOK)
		patID := pat.Str("entry.0.resource.id")
		if pat.Total() != 1 || enc.Str("entry.0.resource.subject.reference") != "Patient/"+patID {
			t.Fatalf("Encounter subject %q, patient %s", enc.Str("entry.0.resource.subject.reference"), pat.Raw)
		}
		// The retired verification spelling was normalised to the England code system.
		if got := pat.Str("entry.0.resource.identifier.0.extension.0.valueCodeableConcept.coding.0.system"); got != "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland" {
			t.Errorf("verification system %q", got)
		}

		obs := s.DoAs("custody-hcp", http.MethodGet, "Observation?encounter=Encounter/"+encID+"&category=vital-signs", nil).Want(t, http.StatusOK)
		if obs.Total() != 6 {
			t.Fatalf("vital-sign Observations of the encounter: %d, want 6 (HR, RR, BP, T, SpO2, ACVPU): %s", obs.Total(), obs.Raw)
		}
		hr := s.DoAs("custody-hcp", http.MethodGet, "Observation?subject=Patient/"+patID+"&code=http://loinc.org|8867-4", nil).Want(t, http.StatusOK)
		if hr.Total() != 1 || fmt.Sprint(apptest.Get(hr.JSON, "entry.0.resource.valueQuantity.value")) != "104" {
			t.Fatalf("heart rate: %s", hr.Raw)
		}
		news := s.DoAs("custody-hcp", http.MethodGet, "Observation?code=http://snomed.info/sct|1104051000000101", nil).Want(t, http.StatusOK)
		if news.Total() != 1 || len(apptest.Get(news.JSON, "entry.0.resource.derivedFrom").([]any)) != 6 {
			t.Fatalf("NEWS2: %s", news.Raw)
		}
		cond := s.DoAs("custody-hcp", http.MethodGet, "Condition?code=http://snomed.info/sct|66590003", nil).Want(t, http.StatusOK)
		if cond.Total() != 1 || cond.Str("entry.0.resource.meta.security.0.code") != "ETHUD" {
			t.Fatalf("alcohol dependence Condition: %s", cond.Raw)
		}
		prov := s.DoAs("custody-hcp", http.MethodGet, "Provenance?target=Encounter/"+encID, nil).Want(t, http.StatusOK)
		if prov.Total() != 1 || prov.Str("entry.0.resource.policy.0") != "https://hjbroker.dev/fhir/StructureMap/clinical-entries" ||
			prov.Str("entry.0.resource.agent.1.who.identifier.value") != "XCUST01" {
			t.Fatalf("Provenance: %s", prov.Raw)
		}

		// Routing applies as to any write: the finished episode goes to the GP and the clinical
		// record to the L&D team, queued in the same transaction.
		dl := s.Do(http.MethodGet, s.URL+"/admin/deliveries?patient=Patient/"+patID+"&limit=1000", nil).Want(t, http.StatusOK)
		routes := map[string]int{}
		for _, d := range asList(dl.JSON["deliveries"]) {
			typ, _, _ := strings.Cut(fmt.Sprint(apptest.Get(d, "resource")), "/")
			routes[fmt.Sprint(apptest.Get(d, "route"))+" "+typ]++
		}
		if routes["custody-discharge-to-gp Encounter"] != 1 || routes["custody-clinical-to-ld Observation"] != 7 || routes["custody-clinical-to-ld Condition"] != 3 ||
			routes["custody-clinical-to-ld MedicationAdministration"] != 1 {
			t.Errorf("deliveries by route and type: %v; %s", routes, dl.Raw)
		}

		// Posting the same entries again creates nothing new: the Patient, the episode and
		// every entry with an id are matched.
		before := countAll(t, s, clinicalTypes...)
		again := s.DoAs("custody-hcp", http.MethodPost, ingestPath, entries, "Content-Type: application/json").Want(t, http.StatusOK)
		after := countAll(t, s, clinicalTypes...)
		if after["Encounter"] != before["Encounter"] || after["Patient"] != before["Patient"] || after["Observation"] != before["Observation"] {
			t.Errorf("reposting changed counts: %v -> %v; %s", before, after, again.Raw)
		}
		// The asthma Condition had no id, so it is recorded again.
		if after["Condition"] != before["Condition"]+1 {
			t.Errorf("Conditions %d -> %d, want one more (the entry without an id)", before["Condition"], after["Condition"])
		}

		// The audit trail holds both postings as transactions by the custody client (the
		// recorder writes in batches, so give it a moment).
		n := 0
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if n = s.Do(http.MethodGet, "AuditEvent?client=custody-hcp&action=transaction", nil).Want(t, http.StatusOK).Total(); n >= 2 {
				break
			}
		}
		if n != 2 {
			t.Errorf("audited transactions: %d, want 2", n)
		}
	})
}

// TestIngestClinicalEntriesWarnings: unknown codes are stored as given, tagged, and reported
// as warnings on the entries they concern.
func TestIngestClinicalEntriesWarnings(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		entries := mappingtest.ReadJSON(t, "../../mappings/clinical/testdata/unknown-codes.input.json")
		r := s.DoAs("custody-hcp", http.MethodPost, ingestPath, entries, "Content-Type: application/json").Want(t, http.StatusOK)
		var warned []string
		for i, e := range r.Entries() {
			for _, is := range asList(apptest.Get(e, "response.outcome.issue")) {
				if apptest.Get(is, "severity") == "warning" {
					warned = append(warned, fmt.Sprintf("%d:%v", i, apptest.Get(is, "expression.0")))
				}
			}
		}
		want := "2:problems[0].code 3:problems[1].code 4:medications[0].code 5:allergies[0].code"
		if strings.Join(warned, " ") != want {
			t.Errorf("warnings %v, want %s", warned, want)
		}
		// With Prefer: return=OperationOutcome the warnings join the per-entry outcome.
		r = s.DoAs("custody-hcp", http.MethodPost, ingestPath, entries, "Content-Type: application/json", "Prefer: return=OperationOutcome").Want(t, http.StatusOK)
		var sev []string
		for _, is := range asList(apptest.Get(r.JSON, "entry.2.response.outcome.issue")) {
			sev = append(sev, fmt.Sprint(apptest.Get(is, "severity")))
		}
		if strings.Join(sev, ",") != "information,warning" {
			t.Errorf("entry 2 outcome severities %v: %s", sev, apptest.Get(r.JSON, "entry.2.response"))
		}
		c := s.DoAs("custody-hcp", http.MethodGet, "Condition?_tag=https://hjbroker.dev/fhir/CodeSystem/mapping|unmapped-code", nil).Want(t, http.StatusOK)
		// PRB-9 was matched the second time; the problem without an id was stored twice.
		if c.Total() != 3 {
			t.Fatalf("tagged Conditions: %s", c.Raw)
		}
		for _, e := range c.Entries() {
			sys, _ := apptest.Get(e, "resource.code.coding.0.system").(string)
			if sys != "http://read.info/readv2" && sys != "https://emr.example.org/codes" {
				t.Errorf("code kept as %q", sys)
			}
			if n := len(asList(apptest.Get(e, "resource.code.coding"))); n != 1 {
				t.Errorf("an unknown code gained %d codings; it must not be guessed", n)
			}
		}
	})
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestIngestClinicalEntriesBadInput: every bad input answers 400 with the JSON path of the
// problem, and nothing is stored.
func TestIngestClinicalEntriesBadInput(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		good := func() map[string]any {
			return mappingtest.ReadJSON(t, "../../mappings/clinical/testdata/full.input.json")
		}
		before := countAll(t, s, clinicalTypes...)
		for _, tc := range []struct {
			name   string
			body   any
			status int
			expr   string
		}{
			{"not JSON", "{not json", http.StatusBadRequest, ""},
			{"schema: missing episode", func() map[string]any { d := good(); delete(d, "episode"); return d }(), http.StatusBadRequest, "episode"},
			{"unknown field", func() map[string]any { d := good(); d["patient"].(map[string]any)["shoeSize"] = 9; return d }(), http.StatusBadRequest, "patient.shoeSize"},
			{"bad date", func() map[string]any {
				d := good()
				d["observations"].([]any)[0].(map[string]any)["time"] = "01/12/2026 08:40"
				return d
			}(), http.StatusBadRequest, "observations[0].time"},
			{"custody suite code format", func() map[string]any {
				d := good()
				d["episode"].(map[string]any)["custodySuite"] = "Anytown-central"
				return d
			}(), http.StatusBadRequest, "episode.custodySuite"},
			{"NHS number check digit", func() map[string]any {
				d := good()
				d["patient"].(map[string]any)["nhsNumber"] = "9000000001"
				return d
			}(), http.StatusBadRequest, "patient.nhsNumber"},
			{"value out of range, late in the document", func() map[string]any {
				d := good()
				d["allergies"].([]any)[0].(map[string]any)["criticality"] = "very"
				return d
			}(), http.StatusBadRequest, "allergies[0].criticality"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.DoAs("custody-hcp", http.MethodPost, ingestPath, tc.body, "Content-Type: application/json").Want(t, tc.status)
				if r.Str("resourceType") != "OperationOutcome" {
					t.Fatalf("not an OperationOutcome: %s", r.Raw)
				}
				if tc.expr != "" && !contains(r.IssueExpressions(), tc.expr) {
					t.Errorf("expressions %v, want %q", r.IssueExpressions(), tc.expr)
				}
			})
		}
		t.Run("wrong method", func(t *testing.T) {
			s.DoAs("custody-hcp", http.MethodGet, ingestPath, nil).Want(t, http.StatusMethodNotAllowed)
		})
		t.Run("wrong content type", func(t *testing.T) {
			s.DoAs("custody-hcp", http.MethodPost, ingestPath, good(), "Content-Type: text/plain").Want(t, http.StatusUnsupportedMediaType)
		})
		t.Run("no token", func(t *testing.T) {
			s.Do(http.MethodPost, ingestPath, good(), "Authorization:", "Content-Type: application/json").Want(t, http.StatusUnauthorized)
		})
		t.Run("client without the scopes", func(t *testing.T) {
			r := s.DoAs("court", http.MethodPost, ingestPath, good(), "Content-Type: application/json").Want(t, http.StatusForbidden)
			if !strings.Contains(string(r.Raw), "system/Observation.c") {
				t.Errorf("the refusal should name the missing scopes: %s", r.Raw)
			}
		})
		if after := countAll(t, s, clinicalTypes...); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("bad input stored something: %v -> %v", before, after)
		}
	})
}

// TestIngestClinicalEntriesAtomic: an entry the engine rejects (a Patient the custody client
// may not see is not the case here; an invalid resource is) rolls the whole posting back.
func TestIngestClinicalEntriesAtomic(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		// An Encounter already stored twice under the episode identifier makes the
		// conditional update of the episode ambiguous (412), after the Patient and
		// Observations were prepared: nothing of the posting may remain.
		for i := 0; i < 2; i++ {
			s.Do(http.MethodPost, "Encounter", map[string]any{"resourceType": "Encounter", "status": "planned",
				"class":      map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "FLD"},
				"identifier": []any{map[string]any{"system": "https://hjbroker.dev/fhir/Id/custody-episode", "value": "XCS02/EP-9"}}}).Want(t, http.StatusCreated)
		}
		before := countAll(t, s, clinicalTypes...)
		r := s.DoAs("custody-hcp", http.MethodPost, ingestPath, mappingtest.ReadJSON(t, "../../mappings/clinical/testdata/minimal.input.json"), "Content-Type: application/json")
		if r.Status < 400 {
			t.Fatalf("status %d: %s", r.Status, r.Raw)
		}
		if !contains(r.IssueExpressions(), "episode") {
			t.Errorf("the failure should name the input it came from: %v", r.IssueExpressions())
		}
		if after := countAll(t, s, clinicalTypes...); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a failed posting stored something: %v -> %v", before, after)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestImportCareConnect posts a GP Connect structured record and reads the R4 resources
// back: the confidential-items warning is on the stored List and in the answer, the STU3
// statuses are CodeableConcepts, and the authorisation and issue are linked.
func TestImportCareConnect(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		record := mappingtest.ReadJSON(t, "../../mappings/careconnect/testdata/structured-record.input.json")
		r := s.DoAs("custody-hcp", http.MethodPost, "$import-careconnect", record).Want(t, http.StatusOK)
		if r.Str("type") != "transaction-response" || len(r.Entries()) != 15 {
			t.Fatalf("answer: %s", r.Raw)
		}
		if d, _ := apptest.Get(r.JSON, "entry.4.response.outcome.issue.0.diagnostics").(string); !strings.Contains(d, "may be incomplete") {
			t.Errorf("the List entry should carry the incompleteness warning: %s", apptest.Get(r.JSON, "entry.4.response"))
		}
		lists := s.DoAs("custody-hcp", http.MethodGet, "List?code=http://snomed.info/sct|886921000000105", nil).Want(t, http.StatusOK)
		if lists.Total() != 1 || lists.Str("entry.0.resource.extension.0.valueCodeableConcept.coding.0.code") != "confidential-items" {
			t.Fatalf("allergy List: %s", lists.Raw)
		}
		allergy := s.DoAs("custody-hcp", http.MethodGet, "AllergyIntolerance?clinical-status=active&code=http://snomed.info/sct|91936005", nil).Want(t, http.StatusOK)
		if allergy.Total() != 1 || allergy.Str("entry.0.resource.recordedDate") == "" {
			t.Fatalf("allergy: %s", allergy.Raw)
		}
		// intent plan is the authorisation, order the issue made under it.
		reqs := s.DoAs("custody-hcp", http.MethodGet, "MedicationRequest", nil).Want(t, http.StatusOK)
		byIntent := map[string]any{}
		for _, e := range reqs.Entries() {
			if in, ok := apptest.Get(e, "resource.intent").(string); ok {
				byIntent[in] = apptest.Get(e, "resource")
			}
		}
		planID, _ := apptest.Get(byIntent["plan"], "id").(string)
		if reqs.Total() != 2 || planID == "" || apptest.Get(byIntent["order"], "basedOn.0.reference") != "MedicationRequest/"+planID {
			t.Fatalf("MedicationRequests: %s", reqs.Raw)
		}
		// The practice, the GP and the patient are matched, not duplicated, on a second import.
		before := countAll(t, s, "Patient", "Organization", "Practitioner")
		s.DoAs("custody-hcp", http.MethodPost, "$import-careconnect", record).Want(t, http.StatusOK)
		if after := countAll(t, s, "Patient", "Organization", "Practitioner"); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("re-import duplicated: %v -> %v", before, after)
		}
	})
}

// TestImportCareConnectRefused: unsupported STU3 content is refused naming the element, and
// nothing is stored.
func TestImportCareConnectRefused(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		record := mappingtest.ReadJSON(t, "../../mappings/careconnect/testdata/structured-record.input.json")
		record["entry"].([]any)[7].(map[string]any)["resource"].(map[string]any)["clinicalStatus"] = "current"
		before := countAll(t, s, "Patient", "Organization", "Practitioner", "List", "Condition", "AllergyIntolerance")
		r := s.DoAs("custody-hcp", http.MethodPost, "$import-careconnect", record).Want(t, http.StatusUnprocessableEntity)
		if !contains(r.IssueExpressions(), "Bundle.entry[7].resource.clinicalStatus") {
			t.Errorf("expressions %v", r.IssueExpressions())
		}
		s.DoAs("custody-hcp", http.MethodPost, "$import-careconnect", "[1,2]").Want(t, http.StatusBadRequest)
		if after := countAll(t, s, "Patient", "Organization", "Practitioner", "List", "Condition", "AllergyIntolerance"); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a refused import stored something: %v -> %v", before, after)
		}
	})
}
