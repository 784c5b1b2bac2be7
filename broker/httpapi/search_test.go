package httpapi_test

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// searchFixture is a small custody-episode world with client-chosen ids, so queries can name
// the expected matches.
var searchFixture = []string{
	`{"resourceType":"Organization","id":"org1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"Y12345"}],"name":"Leeds Custody Suite","active":true}`,
	`{"resourceType":"Organization","id":"org2","name":"Probation North","active":false}`,
	`{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Khan","given":["Ali"]}]}`,
	`{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9200000010"}],"active":true,"name":[{"family":"Smith","given":["Jo"]}],"gender":"male","birthDate":"1980-02-03","address":[{"city":"Leeds"}],"telecom":[{"system":"email","value":"jo@example.org"}],"generalPractitioner":[{"reference":"Organization/org1"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jo Smith</div>"}}`,
	`{"resourceType":"Patient","id":"p2","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9200000002"}],"active":true,"name":[{"family":"Smithson","given":["Anna"]}],"gender":"female","birthDate":"1990-06-15","address":[{"city":"York"}],"generalPractitioner":[{"reference":"Practitioner/pr1"}]}`,
	`{"resourceType":"Patient","id":"p3","identifier":[{"system":"https://custody.example/id","value":"C-3"}],"active":false,"name":[{"family":"Jones","given":["Bob"]}],"birthDate":"2001"}`,
	`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-10T10:00:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
	`{"resourceType":"Observation","id":"o2","status":"preliminary","code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},"subject":{"reference":"Patient/p2","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9200000002"}},"effectiveDateTime":"2024-03-01","valueQuantity":{"value":80.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`,
	`{"resourceType":"Observation","id":"o3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p2"},"performer":[{"reference":"Practitioner/pr1"}],"effectiveDateTime":"2024-03-02T08:30:00+01:00","valueQuantity":{"value":100,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
	`{"resourceType":"Encounter","id":"e1","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-10T09:00:00Z","end":"2024-01-10T11:00:00Z"},"serviceProvider":{"reference":"Organization/org1"}}`,
	`{"resourceType":"Condition","id":"c1","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"35489007","display":"Depressive disorder"}]},"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"}}`,
	`{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Organization/org2"}],"authoredOn":"2024-01-10","instantiatesUri":["https://ld.example.org/pathways/referral"]}`,
	`{"resourceType":"ServiceRequest","id":"sr2","status":"completed","intent":"order","subject":{"reference":"Patient/p2"},"performer":[{"reference":"Organization/org1"}]}`,
	`{"resourceType":"Task","id":"t1","status":"requested","intent":"order","focus":{"reference":"ServiceRequest/sr1"},"for":{"reference":"Patient/p1"},"owner":{"reference":"Organization/org2"}}`,
	`{"resourceType":"Task","id":"t2","status":"completed","intent":"order","for":{"reference":"Patient/p2"},"owner":{"reference":"Organization/org1"}}`,
	`{"resourceType":"Consent","id":"cn1","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/p1"},"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]}}`,
	`{"resourceType":"Flag","id":"f1","status":"active","code":{"text":"Violent"},"subject":{"reference":"Patient/p2"}}`,
	`{"resourceType":"Questionnaire","id":"q1","status":"active","url":"http://example.org/fhir/Questionnaire/ld-screening","name":"LDScreening"}`,
	`{"resourceType":"Questionnaire","id":"q2","status":"draft","url":"http://other.example/Questionnaire/x"}`,
}

func TestSearch(t *testing.T) {
	t.Parallel()
	// One node per backend holds the fixture; the subtests only read it.
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		loadFixture(t, s)
		t.Run("parameter types", func(t *testing.T) { testSearchParameterTypes(t, s) })
		t.Run("resource types", func(t *testing.T) { testSearchResourceTypes(t, s) })
		t.Run("chains and has", func(t *testing.T) { testSearchChainsAndHas(t, s) })
		t.Run("result parameters", func(t *testing.T) { testSearchResultParameters(t, s) })
		t.Run("handling", func(t *testing.T) { testSearchHandling(t, s) })
		t.Run("bad syntax", func(t *testing.T) { testSearchBadSyntax(t, s) })
	})
}

// loadFixture stores searchFixture in one transaction.
func loadFixture(t *testing.T, s *apptest.Server) {
	t.Helper()
	var entries []map[string]any
	for _, r := range searchFixture {
		m := raw(t, r)
		entries = append(entries, ent("", "PUT", m["resourceType"].(string)+"/"+m["id"].(string), m))
	}
	s.Do("POST", "", bundle("transaction", entries...)).Want(t, 200)
}

type searchCase struct {
	query string
	want  []string // "Type/id" of the matches, any order
}

func runSearchCases(t *testing.T, s *apptest.Server, cases []searchCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			r := s.Do("GET", c.query, nil).Want(t, 200)
			got := entryIDs(r, "match")
			if !sameSet(got, c.want) {
				t.Errorf("matches %v, want %v", got, c.want)
			}
			if r.Total() != len(c.want) {
				t.Errorf("total %d, want %d", r.Total(), len(c.want))
			}
			// The self link states the search as understood: following it gives the same.
			again := s.Do("GET", link(r, "self"), nil).Want(t, 200)
			if !sameSet(entryIDs(again, "match"), got) {
				t.Errorf("self link %s matches %v, want %v", link(r, "self"), entryIDs(again, "match"), got)
			}
		})
	}
}

func testSearchParameterTypes(t *testing.T, s *apptest.Server) {
	p1, p2, p3 := "Patient/p1", "Patient/p2", "Patient/p3"
	o1, o2, o3 := "Observation/o1", "Observation/o2", "Observation/o3"
	nhs := url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number")
	loinc := url.QueryEscape("http://loinc.org")
	ucum := url.QueryEscape("http://unitsofmeasure.org")
	runSearchCases(t, s, []searchCase{
		// token
		{"Patient?gender=male", []string{p1}},
		{"Patient?gender=male,female", []string{p1, p2}},
		{"Patient?gender:not=male", []string{p2, p3}},
		{"Patient?gender:missing=true", []string{p3}},
		{"Patient?gender:missing=false", []string{p1, p2}},
		{"Patient?identifier=" + nhs + "|9200000010", []string{p1}},
		{"Patient?identifier=9200000002", []string{p2}},
		{"Patient?identifier=" + nhs + "|", []string{p1, p2}},
		{"Patient?identifier=" + url.QueryEscape("https://custody.example/id|C-3"), []string{p3}},
		{"Patient?identifier=" + nhs + "|C-3", nil},
		{"Patient?active=true", []string{p1, p2}},
		{"Patient?active=false", []string{p3}},
		{"Patient?email=jo@example.org", []string{p1}},
		{"Observation?code=" + loinc + "|8867-4", []string{o1, o3}},
		{"Observation?code=29463-7", []string{o2}},
		{"Observation?code:text=heart", []string{o1}},
		{"Observation?status=final", []string{o1, o3}},
		{"Observation?status:not=final", []string{o2}},
		// string
		{"Patient?family=smi", []string{p1, p2}},
		{"Patient?family=SMITH", []string{p1, p2}},
		{"Patient?family:exact=Smith", []string{p1}},
		{"Patient?family:exact=smith", nil},
		{"Patient?family:contains=mith", []string{p1, p2}},
		{"Patient?family:contains=ones", []string{p3}},
		{"Patient?name=anna", []string{p2}},
		{"Patient?address-city=leeds", []string{p1}},
		{"Patient?given=jo,bob", []string{p1, p3}},
		{"Organization?name=leeds", []string{"Organization/org1"}},
		// date
		{"Patient?birthdate=1980-02-03", []string{p1}},
		{"Patient?birthdate=1980", []string{p1}},
		{"Patient?birthdate=eq1990-06", []string{p2}},
		{"Patient?birthdate=ge1990-06-15", []string{p2, p3}},
		{"Patient?birthdate=gt1990-06-15", []string{p3}},
		{"Patient?birthdate=lt1990", []string{p1}},
		{"Patient?birthdate=le1990-06-15", []string{p1, p2}},
		{"Patient?birthdate=ne1980-02-03", []string{p2, p3}},
		{"Patient?birthdate=sa1985", []string{p2, p3}},
		{"Patient?birthdate=eb1985", []string{p1}},
		{"Patient?birthdate=2001-05-05", nil}, // p3 is the whole year 2001: not contained in the day
		{"Patient?birthdate=ap1980-02-03", []string{p1}},
		{"Patient?birthdate=ge1980&birthdate=lt1995", []string{p1, p2}},
		{"Patient?birthdate:missing=true", nil},
		{"Observation?date=2024-01-10", []string{o1}},
		{"Observation?date=ge2024-03-02T07:00:00Z", []string{o3}},
		{"Observation?date=lt2024-03-02T07:00:00Z", []string{o1, o2}},
		{"Observation?date=" + url.QueryEscape("2024-03-02T08:30:00+01:00"), []string{o3}},
		// reference
		{"Observation?subject=Patient/p2", []string{o2, o3}},
		{"Observation?subject=p1", []string{o1}},
		{"Observation?subject:Patient=p1", []string{o1}},
		{"Observation?patient=p2", []string{o2, o3}},
		{"Observation?subject=" + url.QueryEscape(s.Base+"/Patient/p1"), []string{o1}},
		{"Observation?subject=Patient/p1,Patient/p2", []string{o1, o2, o3}},
		{"Observation?performer:missing=true", []string{o1, o2}},
		{"Patient?general-practitioner=Organization/org1", []string{p1}},
		{"Patient?general-practitioner:Practitioner=pr1", []string{p2}},
		// quantity
		{"Observation?value-quantity=72", []string{o1}},
		{"Observation?value-quantity=gt75", []string{o2, o3}},
		{"Observation?value-quantity=le80.5", []string{o1, o2}},
		{"Observation?value-quantity=80.5|" + ucum + "|kg", []string{o2}},
		{"Observation?value-quantity=gt50||kg", []string{o2}},
		{"Observation?value-quantity=gt50|" + ucum + "|/min", []string{o1, o3}},
		{"Observation?value-quantity=ap100", []string{o3}},
		{"Observation?value-quantity=ne72", []string{o2, o3}},
		// uri
		{"Questionnaire?url=" + url.QueryEscape("http://example.org/fhir/Questionnaire/ld-screening"), []string{"Questionnaire/q1"}},
		{"Questionnaire?url=" + url.QueryEscape("http://example.org/fhir"), nil},
		{"Questionnaire?url:below=" + url.QueryEscape("http://example.org/fhir"), []string{"Questionnaire/q1"}},
		{"Questionnaire?url:above=" + url.QueryEscape("http://example.org/fhir/Questionnaire/ld-screening/v2"), []string{"Questionnaire/q1"}},
		{"Questionnaire?url:below=" + url.QueryEscape("http://other.example"), []string{"Questionnaire/q2"}},
		{"ServiceRequest?instantiates-uri=" + url.QueryEscape("https://ld.example.org/pathways/referral"), []string{"ServiceRequest/sr1"}},
		// _id, _lastUpdated, AND
		{"Patient?_id=p1,p3", []string{p1, p3}},
		{"Patient?_id:not=p1", []string{p2, p3}},
		{"Patient?_lastUpdated=gt" + url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)), []string{p1, p2, p3}},
		{"Patient?_lastUpdated=lt2000-01-01", nil},
		{"Patient?family=smi&given=jo", []string{p1}},
		{"Patient?family=smi&gender=female&active=true", []string{p2}},
	})
}

func testSearchResourceTypes(t *testing.T, s *apptest.Server) {
	runSearchCases(t, s, []searchCase{
		{"Encounter?subject=Patient/p1&status=in-progress", []string{"Encounter/e1"}},
		{"Encounter?class=AMB&date=2024-01-10", []string{"Encounter/e1"}},
		{"Encounter?service-provider=Organization/org1", []string{"Encounter/e1"}},
		{"Condition?patient=p1&clinical-status=active", []string{"Condition/c1"}},
		{"Condition?code=" + url.QueryEscape("http://snomed.info/sct|35489007"), []string{"Condition/c1"}},
		{"Condition?encounter=Encounter/e1", []string{"Condition/c1"}},
		{"ServiceRequest?performer=Organization/org2&status=active", []string{"ServiceRequest/sr1"}},
		{"ServiceRequest?status=active,completed", []string{"ServiceRequest/sr1", "ServiceRequest/sr2"}},
		{"ServiceRequest?authored=2024-01", []string{"ServiceRequest/sr1"}},
		{"Task?owner=Organization/org2&status=requested", []string{"Task/t1"}},
		{"Task?owner=Organization/org1", []string{"Task/t2"}},
		{"Task?status:not=completed", []string{"Task/t1"}},
		{"Task?focus=ServiceRequest/sr1", []string{"Task/t1"}},
		{"Task?patient=p2", []string{"Task/t2"}},
		{"Consent?patient=p1&status=active", []string{"Consent/cn1"}},
		{"Consent?scope=patient-privacy", []string{"Consent/cn1"}},
		{"Flag?subject=Patient/p2", []string{"Flag/f1"}},
		{"Flag?patient=p1", nil},
		{"Practitioner?family=khan", []string{"Practitioner/pr1"}},
		{"Organization?active=false", []string{"Organization/org2"}},
	})
}

func testSearchChainsAndHas(t *testing.T, s *apptest.Server) {
	nhs := url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number")
	runSearchCases(t, s, []searchCase{
		{"Observation?subject.family=Smithson", []string{"Observation/o2", "Observation/o3"}},
		{"Observation?subject:Patient.identifier=" + nhs + "|9200000010", []string{"Observation/o1"}},
		{"Observation?subject:identifier=" + nhs + "|9200000002", []string{"Observation/o2"}},
		{"Observation?subject:identifier=" + nhs + "|9200000010", nil}, // o1's reference has no identifier
		{"Observation?patient.gender=male", []string{"Observation/o1"}},
		{"Observation?subject:Patient.general-practitioner:Organization.name=leeds", []string{"Observation/o1"}},
		{"Task?owner:Organization.name=probation", []string{"Task/t1"}},
		{"Task?focus:ServiceRequest.status=active", []string{"Task/t1"}},
		{"Patient?_has:Observation:subject:code=8867-4", []string{"Patient/p1", "Patient/p2"}},
		{"Patient?_has:Observation:patient:status=preliminary", []string{"Patient/p2"}},
		{"Patient?_has:Task:patient:owner=Organization/org2", []string{"Patient/p1"}},
		{"Patient?_has:Flag:subject:_id=f1", []string{"Patient/p2"}},
		{"Organization?_has:ServiceRequest:performer:status=active", []string{"Organization/org2"}},
		{"Patient?_has:Observation:subject:code=8867-4&gender=female", []string{"Patient/p2"}},
	})
}

func testSearchResultParameters(t *testing.T, s *apptest.Server) {
	ids := func(r *apptest.Result) []string { return entryIDs(r, "match") }

	t.Run("_sort", func(t *testing.T) {
		cases := []struct {
			query string
			want  []string
		}{
			{"Patient?_sort=birthdate", []string{"Patient/p1", "Patient/p2", "Patient/p3"}},
			{"Patient?_sort=-birthdate", []string{"Patient/p3", "Patient/p2", "Patient/p1"}},
			{"Patient?_sort=family", []string{"Patient/p3", "Patient/p1", "Patient/p2"}},
			{"Patient?_sort=-active,-birthdate", []string{"Patient/p2", "Patient/p1", "Patient/p3"}},
			{"Patient?_sort=active,family", []string{"Patient/p3", "Patient/p1", "Patient/p2"}},
			{"Observation?_sort=-value-quantity", []string{"Observation/o3", "Observation/o2", "Observation/o1"}},
			{"Observation?_sort=status,-date", []string{"Observation/o3", "Observation/o1", "Observation/o2"}},
			{"Patient?_sort=_id", []string{"Patient/p1", "Patient/p2", "Patient/p3"}},
		}
		for _, c := range cases {
			if got := ids(s.Do("GET", c.query, nil).Want(t, 200)); !slices.Equal(got, c.want) {
				t.Errorf("%s: %v, want %v", c.query, got, c.want)
			}
		}
	})
	t.Run("_count and _total", func(t *testing.T) {
		r := s.Do("GET", "Patient?_count=2&_sort=_id", nil).Want(t, 200)
		if len(r.Entries()) != 2 || r.Total() != 3 || link(r, "next") == "" {
			t.Errorf("_count=2: %s", r.Raw)
		}
		r = s.Do("GET", "Patient?_total=none", nil).Want(t, 200)
		if _, ok := r.JSON["total"]; ok || len(r.Entries()) != 3 {
			t.Errorf("_total=none still has a total: %s", r.Raw)
		}
		if n := s.Do("GET", "Patient?_total=accurate&_count=1", nil).Want(t, 200).Total(); n != 3 {
			t.Errorf("_total=accurate: %d", n)
		}
		r = s.Do("GET", "Patient?_count=0", nil).Want(t, 200)
		if len(r.Entries()) != 0 || r.Total() != 3 {
			t.Errorf("_count=0: %s", r.Raw)
		}
	})
	t.Run("_summary", func(t *testing.T) {
		r := s.Do("GET", "Patient?_summary=count", nil).Want(t, 200)
		if r.Total() != 3 || len(r.Entries()) != 0 {
			t.Errorf("_summary=count: %s", r.Raw)
		}
		r = s.Do("GET", "Patient?_id=p1&_summary=true", nil).Want(t, 200)
		res := apptest.Get(r.JSON, "entry.0.resource")
		if apptest.Get(res, "text") != nil || apptest.Get(res, "birthDate") != "1980-02-03" || apptest.Get(res, "telecom") == nil {
			t.Errorf("_summary=true should keep summary elements and drop text: %v", res)
		}
		if !subsetted(res) {
			t.Errorf("_summary=true lacks the SUBSETTED tag: %v", res)
		}
		r = s.Do("GET", "Patient?_id=p1&_summary=text", nil).Want(t, 200)
		res = apptest.Get(r.JSON, "entry.0.resource")
		if apptest.Get(res, "text") == nil || apptest.Get(res, "birthDate") != nil || apptest.Get(res, "id") != "p1" || !subsetted(res) {
			t.Errorf("_summary=text: %v", res)
		}
		r = s.Do("GET", "Patient?_id=p1&_summary=data", nil).Want(t, 200)
		res = apptest.Get(r.JSON, "entry.0.resource")
		if apptest.Get(res, "text") != nil || apptest.Get(res, "address") == nil || !subsetted(res) {
			t.Errorf("_summary=data: %v", res)
		}
		r = s.Do("GET", "Patient/p1?_summary=true", nil).Want(t, 200)
		if r.JSON["text"] != nil || !subsetted(r.JSON) {
			t.Errorf("read with _summary=true: %s", r.Raw)
		}
		wantOutcome(t, s.Do("GET", "Patient?_summary=maybe", nil), 400, "_summary")
	})
	t.Run("_elements", func(t *testing.T) {
		r := s.Do("GET", "Patient?_id=p1&_elements=identifier,gender", nil).Want(t, 200)
		res := apptest.Get(r.JSON, "entry.0.resource")
		if apptest.Get(res, "gender") != "male" || apptest.Get(res, "identifier") == nil || apptest.Get(res, "birthDate") != nil || apptest.Get(res, "name") != nil {
			t.Errorf("_elements: %v", res)
		}
		if apptest.Get(res, "id") != "p1" || !subsetted(res) {
			t.Errorf("_elements lacks id or SUBSETTED: %v", res)
		}
		r = s.Do("GET", "Observation/o1?_elements=value", nil).Want(t, 200)
		if r.JSON["valueQuantity"] == nil || r.JSON["code"] == nil || r.JSON["subject"] != nil {
			t.Errorf("_elements on a read (choice element, mandatory code kept): %s", r.Raw)
		}
		// The stored resource is untouched.
		if full := s.Do("GET", "Patient/p1", nil).Want(t, 200); subsetted(full.JSON) || full.JSON["birthDate"] == nil {
			t.Errorf("the stored resource was changed: %s", full.Raw)
		}
	})
	t.Run("_include and _revinclude", func(t *testing.T) {
		r := s.Do("GET", "Observation?code=8867-4&_include=Observation:subject", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "match"), []string{"Observation/o1", "Observation/o3"}) ||
			!sameSet(entryIDs(r, "include"), []string{"Patient/p1", "Patient/p2"}) || r.Total() != 2 {
			t.Errorf("_include: %v / %v", entryIDs(r, "match"), entryIDs(r, "include"))
		}
		r = s.Do("GET", "Observation?_id=o3&_include=Observation:subject:Patient&_include=Observation:performer", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "include"), []string{"Patient/p2", "Practitioner/pr1"}) {
			t.Errorf("two _includes: %v", entryIDs(r, "include"))
		}
		r = s.Do("GET", "Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:general-practitioner", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "include"), []string{"Patient/p1", "Organization/org1"}) {
			t.Errorf("_include:iterate: %v", entryIDs(r, "include"))
		}
		r = s.Do("GET", "Observation?_id=o1&_include=Observation:subject", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "include"), []string{"Patient/p1"}) {
			t.Errorf("no iterate must not follow further: %v", entryIDs(r, "include"))
		}
		r = s.Do("GET", "Patient?_id=p2&_revinclude=Observation:subject", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "match"), []string{"Patient/p2"}) || !sameSet(entryIDs(r, "include"), []string{"Observation/o2", "Observation/o3"}) {
			t.Errorf("_revinclude: %v / %v", entryIDs(r, "match"), entryIDs(r, "include"))
		}
		r = s.Do("GET", "ServiceRequest?_id=sr1&_revinclude=Task:focus&_include:iterate=Task:owner", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "include"), []string{"Task/t1", "Organization/org2"}) {
			t.Errorf("_revinclude then _include:iterate: %v", entryIDs(r, "include"))
		}
		r = s.Do("GET", "Organization?_id=org1&_revinclude=Patient:general-practitioner&_revinclude:iterate=Observation:subject", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "include"), []string{"Patient/p1", "Observation/o1"}) {
			t.Errorf("_revinclude:iterate: %v", entryIDs(r, "include"))
		}
		r = s.Do("GET", "Encounter?_id=e1&_include=*", nil).Want(t, 200)
		if !sameSet(entryIDs(r, "include"), []string{"Patient/p1", "Organization/org1"}) {
			t.Errorf("_include=*: %v", entryIDs(r, "include"))
		}
		wantOutcome(t, s.Do("GET", "Observation?_include=Observation:code", nil), 400, "_include")
	})
	t.Run("POST _search", func(t *testing.T) {
		r := s.Do("POST", "Patient/_search", []byte("family=smi&gender=female"), "Content-Type: application/x-www-form-urlencoded").Want(t, 200)
		if !sameSet(entryIDs(r, "match"), []string{"Patient/p2"}) {
			t.Errorf("POST _search: %v", entryIDs(r, "match"))
		}
		r = s.Do("POST", "Patient/_search?family=smi", []byte("gender=male"), "Content-Type: application/x-www-form-urlencoded").Want(t, 200)
		if !sameSet(entryIDs(r, "match"), []string{"Patient/p1"}) {
			t.Errorf("POST _search with URL and body parameters: %v", entryIDs(r, "match"))
		}
		wantOutcome(t, s.Do("POST", "Patient/_search", `{"family":"smi"}`), 415, "")
		r = s.Do("POST", "_search", []byte("_type=Patient,Observation&_id=p1,o1"), "Content-Type: application/x-www-form-urlencoded").Want(t, 200)
		if !sameSet(entryIDs(r, "match"), []string{"Patient/p1", "Observation/o1"}) {
			t.Errorf("system POST _search: %v", entryIDs(r, "match"))
		}
	})
	t.Run("system search", func(t *testing.T) {
		r := s.Do("GET", "?_type=Patient,Flag&_lastUpdated=gt2000-01-01", nil).Want(t, 200)
		if r.Total() != 4 {
			t.Errorf("system search over two types: total %d", r.Total())
		}
		if n := total(t, s, "?_id=p1,f1,o1"); n != 3 {
			t.Errorf("system search by _id: %d", n)
		}
	})
	t.Run("$everything", func(t *testing.T) {
		r := s.Do("GET", "Patient/p1/$everything", nil).Want(t, 200)
		got := entryIDs(r, "")
		for _, want := range []string{"Patient/p1", "Observation/o1", "Encounter/e1", "Condition/c1", "ServiceRequest/sr1", "Task/t1", "Consent/cn1", "Organization/org1"} {
			if !slices.Contains(got, want) {
				t.Errorf("$everything lacks %s: %v", want, got)
			}
		}
		for _, other := range []string{"Patient/p2", "Observation/o2", "Flag/f1", "Task/t2"} {
			if slices.Contains(got, other) {
				t.Errorf("$everything for p1 has %s", other)
			}
		}
		wantOutcome(t, s.Do("GET", "Patient/nobody/$everything", nil), 404, "")
		wantOutcome(t, s.Do("GET", "Patient/p1/$nosuchop", nil), 404, "")
	})
}

func subsetted(res any) bool {
	tags, _ := apptest.Get(res, "meta.tag").([]any)
	for _, tag := range tags {
		if apptest.Get(tag, "code") == "SUBSETTED" {
			return true
		}
	}
	return false
}

func testSearchHandling(t *testing.T, s *apptest.Server) {
	// Lenient (default): the unknown parameter is ignored and reported.
	r := s.Do("GET", "Patient?foo=bar&gender=male", nil).Want(t, 200)
	if !sameSet(entryIDs(r, "match"), []string{"Patient/p1"}) {
		t.Errorf("lenient matches %v", entryIDs(r, "match"))
	}
	var warned bool
	for _, e := range r.Entries() {
		if apptest.Get(e, "search.mode") == "outcome" && apptest.Get(e, "resource.resourceType") == "OperationOutcome" &&
			apptest.Get(e, "resource.issue.0.severity") == "warning" && apptest.Get(e, "resource.issue.0.expression.0") == "foo" {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning entry naming foo: %s", r.Raw)
	}
	if strings.Contains(link(r, "self"), "foo") {
		t.Errorf("self link keeps the ignored parameter: %s", link(r, "self"))
	}
	wantOutcome(t, s.Do("GET", "Patient?foo=bar&gender=male", nil, "Prefer: handling=strict"), 400, "foo")
	s.Do("GET", "Patient?gender=male", nil, "Prefer: handling=strict").Want(t, 200)
	wantOutcome(t, s.Do("GET", "Patient/_history?foo=1", nil, "Prefer: handling=strict"), 400, "foo")
}

func testSearchBadSyntax(t *testing.T, s *apptest.Server) {
	cases := []struct{ query, expr string }{
		{"Patient?birthdate=notadate", "birthdate"},
		{"Patient?birthdate=xx2020", "birthdate"},
		{"Patient?_count=abc", "_count"},
		{"Patient?_count=-1", "_count"},
		{"Patient?_sort=family:exact", "_sort"},
		{"Patient?_total=lots", "_total"},
		{"Patient?gender:exact=male", "gender:exact"},
		{"Patient?family:below=x", "family:below"},
		{"Observation?value-quantity=abc", "value-quantity"},
		{"Observation?subject.=x", "subject."},
		{"Task?owner.name=x", "owner.name"}, // ambiguous target
		{"Patient?_has:Observation=x", "_has:Observation"},
		{"Patient?_has:Observation:code:status=final", "_has:Observation:code:status"},
		{"Patient?_id:missing=true", "_id:missing"},
		{"Patient?_contained=true", "_contained"},
		{"Observation?code:in=" + url.QueryEscape("http://example.org/vs"), "code:in"},
		{"Observation?subject:Patient.gender:not-in=" + url.QueryEscape("http://example.org/vs"), "subject:Patient.gender:not-in"},
		{"Patient?_type=Observation", "_type"},
		{"Patient?family:missing=maybe", "family:missing"},
		{"Patient?_elements=" + url.QueryEscape("name[0]"), "_elements"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			wantOutcome(t, s.Do("GET", c.query, nil), 400, c.expr)
		})
	}
}

func TestSearchPagingUnderWrites(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		var original []string
		for range 7 {
			original = append(original, "Patient/"+create(t, s, "Patient", patient("", `"name":[{"family":"Pager"}]`)))
		}
		create(t, s, "Patient", patient("", `"name":[{"family":"Other"}]`))
		first := s.Do("GET", "Patient?family=pager&_count=3", nil).Want(t, 200)
		if first.Total() != 7 || len(first.Entries()) != 3 {
			t.Fatalf("first page: %s", first.Raw)
		}
		for _, rel := range []string{"self", "next", "last"} {
			if link(first, rel) == "" {
				t.Errorf("first page lacks %s link", rel)
			}
		}
		if link(first, "previous") != "" {
			t.Errorf("first page has a previous link")
		}
		// New matches and a deletion arrive between page requests.
		for range 3 {
			create(t, s, "Patient", patient("", `"name":[{"family":"Pager"}]`))
		}
		seen := entryIDs(first, "match")
		pages := []*apptest.Result{first}
		for next := link(first, "next"); next != ""; {
			p := s.Do("GET", next, nil).Want(t, 200)
			if p.Total() != 7 {
				t.Errorf("later page total %d, want 7", p.Total())
			}
			seen = append(seen, entryIDs(p, "match")...)
			pages = append(pages, p)
			next = link(p, "next")
			if len(pages) > 5 {
				t.Fatalf("too many pages")
			}
		}
		if len(pages) != 3 || !sameSet(seen, original) || len(dedupe(seen)) != len(seen) {
			t.Errorf("pages saw %v (%d pages), want exactly %v", seen, len(pages), original)
		}
		// previous and last links lead to the same pages.
		prev := s.Do("GET", link(pages[1], "previous"), nil).Want(t, 200)
		if !slices.Equal(entryIDs(prev, "match"), entryIDs(first, "match")) {
			t.Errorf("previous of page 2 = %v, want %v", entryIDs(prev, "match"), entryIDs(first, "match"))
		}
		last := s.Do("GET", link(first, "last"), nil).Want(t, 200)
		if !slices.Equal(entryIDs(last, "match"), entryIDs(pages[2], "match")) || link(last, "next") != "" {
			t.Errorf("last page %v, want %v", entryIDs(last, "match"), entryIDs(pages[2], "match"))
		}
		// A fresh search sees the new resources.
		if n := total(t, s, "Patient?family=pager"); n != 10 {
			t.Errorf("fresh search total %d, want 10", n)
		}
		// An unknown page set is 410.
		wantOutcome(t, s.Do("GET", "?_getpages=nope&_getpagesoffset=0&_count=3", nil), 410, "")
		// Paging links keep _elements and _summary.
		p := s.Do("GET", "Patient?family=pager&_count=4&_elements=name", nil).Want(t, 200)
		p2 := s.Do("GET", link(p, "next"), nil).Want(t, 200)
		if res := apptest.Get(p2.JSON, "entry.0.resource"); !subsetted(res) {
			t.Errorf("page 2 lost _elements: %v", res)
		}
	})
}

// TestSearchPagingBeyondSavedResults: a search with more matches than the saved-result limit
// pages through the saved ones, says where they end, and goes on from there with _offset.
func TestSearchPagingBeyondSavedResults(t *testing.T) {
	t.Parallel()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := apptest.Start(t, b, app.Config{Limits: engine.Limits{MaxSavedResults: 5}})
			var want []string
			for range 12 {
				want = append(want, "Patient/"+create(t, s, "Patient", patient("", `"name":[{"family":"Deep"}]`)))
			}
			// continuation returns the URL the first page's information issue gives, or "".
			continuation := func(r *apptest.Result) string {
				for _, e := range r.Entries() {
					if apptest.Get(e, "search.mode") != "outcome" {
						continue
					}
					for i := 0; apptest.Get(e, "resource.issue."+strconv.Itoa(i)) != nil; i++ {
						is := "resource.issue." + strconv.Itoa(i)
						if apptest.Get(e, is+".code") == "incomplete" && apptest.Get(e, is+".expression.0") == "_offset" {
							msg, _ := apptest.Get(e, is+".diagnostics").(string)
							_, u, _ := strings.Cut(msg, " at ")
							return u
						}
					}
				}
				return ""
			}
			var seen []string
			next := "Patient?family=deep&_count=2"
			for block := 0; next != ""; block++ {
				if block > 3 {
					t.Fatalf("too many blocks")
				}
				first := s.Do("GET", next, nil).Want(t, 200)
				if first.Total() != 12 {
					t.Errorf("block %d: total %d, want 12", block, first.Total())
				}
				pages := 0
				for p := first; p != nil; {
					pages++
					seen = append(seen, entryIDs(p, "match")...)
					u := link(p, "next")
					if u == "" {
						break
					}
					p = s.Do("GET", u, nil).Want(t, 200)
				}
				// Blocks of 5 saved matches in pages of 2; the last block holds 2.
				if wantPages := []int{3, 3, 1}[min(block, 2)]; pages != wantPages {
					t.Errorf("block %d: %d pages, want %d", block, pages, wantPages)
				}
				next = continuation(first)
				if wantOffset := "_offset=" + strconv.Itoa(5*(block+1)); next != "" && !strings.Contains(next, wantOffset) {
					t.Errorf("block %d continues at %s, want %s", block, next, wantOffset)
				}
				if (next == "") != (block == 2) {
					t.Errorf("block %d: continuation %q", block, next)
				}
			}
			if !sameSet(seen, want) || len(dedupe(seen)) != 12 {
				t.Errorf("saw %v, want each of %v once", seen, want)
			}
			// A search from an offset saves only what follows it: its links end at the last match.
			r := s.Do("GET", "Patient?family=deep&_count=2&_offset=9", nil).Want(t, 200)
			last := s.Do("GET", link(r, "last"), nil).Want(t, 200)
			if got := len(entryIDs(r, "match")) + len(entryIDs(last, "match")); got != 3 || link(last, "next") != "" {
				t.Errorf("from _offset=9: %d matches over the first and last pages, want 3; last page %s", got, last.Raw)
			}
		})
	}
}
