package httpapi_test

import (
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func TestBundles(t *testing.T) {
	t.Parallel()
	// One node per backend serves every subtest: they use disjoint data.
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		t.Run("transaction references and response", func(t *testing.T) { testTransactionReferencesAndResponse(t, s) })
		t.Run("transaction order and duplicates", func(t *testing.T) { testTransactionOrderAndDuplicates(t, s) })
		t.Run("transaction patch and conditional", func(t *testing.T) { testTransactionPatchAndConditional(t, s) })
		t.Run("batch", func(t *testing.T) { testBatch(t, s) })
		t.Run("transaction overlap", func(t *testing.T) { testTransactionOverlap(t, s) })
	})
}

// bundle builds a batch or transaction Bundle from entries.
func bundle(kind string, entries ...map[string]any) map[string]any {
	list := make([]any, len(entries))
	for i, e := range entries {
		list[i] = e
	}
	return map[string]any{"resourceType": "Bundle", "type": kind, "entry": list}
}

// ent builds an entry; res may be nil, request extras come as key/value pairs.
func ent(fullURL, method, url string, res map[string]any, extra ...string) map[string]any {
	req := map[string]any{"method": method, "url": url}
	for i := 0; i+1 < len(extra); i += 2 {
		req[extra[i]] = extra[i+1]
	}
	e := map[string]any{"request": req}
	if fullURL != "" {
		e["fullUrl"] = fullURL
	}
	if res != nil {
		e["resource"] = res
	}
	return e
}

func entryResp(r *apptest.Result, i int, field string) string {
	s, _ := apptest.Get(r.JSON, "entry."+itoa(i)+".response."+field).(string)
	return s
}

// locID returns the id in a response location "Type/id/_history/n".
func locID(loc string) string {
	parts := strings.Split(loc, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

func testTransactionReferencesAndResponse(t *testing.T, s *apptest.Server) {
	existing := create(t, s, "Patient", patient("9100000000"))
	gp := create(t, s, "Organization", `{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"Y12345"}],"name":"Surgery"}`)
	b := bundle("transaction",
		ent("urn:uuid:0b7b5b2c-9a55-4f2e-9b1a-000000000001", "POST", "Patient",
			raw(t, patient("9100000205", `"generalPractitioner":[{"reference":"Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|Y12345"}]`))),
		ent("urn:uuid:0b7b5b2c-9a55-4f2e-9b1a-000000000002", "POST", "Observation",
			raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"pulse"},"subject":{"reference":"urn:uuid:0b7b5b2c-9a55-4f2e-9b1a-000000000001"}}`)),
		ent("", "PUT", "Patient/"+existing, raw(t, patient("9100000000", `"id":"`+existing+`"`, `"gender":"male"`))),
		ent("", "PUT", "Patient/tx-client-id", raw(t, patient("9100000213", `"id":"tx-client-id"`))),
		ent("", "POST", "Encounter", raw(t, `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9100000000"}}`)),
	)
	r := s.Do("POST", "", b).Want(t, 200)
	if r.Str("type") != "transaction-response" || len(r.Entries()) != 5 {
		t.Fatalf("response: %s", r.Raw)
	}
	wantStatus := []string{"201", "201", "200", "201", "201"}
	for i, want := range wantStatus {
		if st := entryResp(r, i, "status"); !strings.HasPrefix(st, want) {
			t.Errorf("entry %d status %q, want %s", i, st, want)
		}
		loc, et := entryResp(r, i, "location"), entryResp(r, i, "etag")
		if loc == "" || !strings.Contains(loc, "/_history/") || et == "" || entryResp(r, i, "lastModified") == "" {
			t.Errorf("entry %d lacks location/etag/lastModified: %v", i, r.Entries()[i])
		}
	}
	if entryResp(r, 2, "etag") != `W/"2"` || entryResp(r, 3, "location") != "Patient/tx-client-id/_history/1" {
		t.Errorf("PUT entries: %v / %v", r.Entries()[2], r.Entries()[3])
	}
	patID := locID(entryResp(r, 0, "location"))
	obs := s.Do("GET", "Observation/"+locID(entryResp(r, 1, "location")), nil).Want(t, 200)
	if got := obs.Str("subject.reference"); got != "Patient/"+patID {
		t.Errorf("urn:uuid reference became %q, want Patient/%s", got, patID)
	}
	pat := s.Do("GET", "Patient/"+patID, nil).Want(t, 200)
	if got := pat.Str("generalPractitioner.0.reference"); got != "Organization/"+gp {
		t.Errorf("conditional reference became %q, want Organization/%s", got, gp)
	}
	enc := s.Do("GET", "Encounter/"+locID(entryResp(r, 4, "location")), nil).Want(t, 200)
	if got := enc.Str("subject.reference"); got != "Patient/"+existing {
		t.Errorf("conditional subject became %q", got)
	}
	// Searching by the rewritten reference works: the index saw the final reference.
	if n := total(t, s, "Observation?subject=Patient/"+patID); n != 1 {
		t.Errorf("Observation?subject: %d", n)
	}
}

func TestTransactionAtomic(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		keep := create(t, s, "Patient", patient("9100000019", `"gender":"female"`))
		other := create(t, s, "Patient", patient("9100000221"))
		create(t, s, "Patient", patient("9100000027"))
		create(t, s, "Patient", patient("9100000027"))
		good := func(nhs string) map[string]any {
			return ent("urn:uuid:6f1c2e0a-1111-4b7b-8c0d-"+nhs[:10]+"00", "POST", "Patient", raw(t, patient(nhs)))
		}
		cases := []struct {
			name   string
			bad    map[string]any
			status int
			expr   string
		}{
			{"bad primitive", ent("", "POST", "Patient", raw(t, patient("9100000035", `"birthDate":"1980-13-45"`))), 400, "Bundle.entry[1].resource.birthDate"},
			{"unknown element", ent("", "POST", "Patient", raw(t, patient("9100000035", `"foo":1`))), 400, "Bundle.entry[1].resource.foo"},
			{"empty string", ent("", "POST", "Patient", raw(t, patient("9100000035", `"name":[{"family":""}]`))), 400, "Bundle.entry[1].resource.name[0].family"},
			{"read of unknown resource", ent("", "GET", "Patient/not-there", nil), 404, "Bundle.entry[1]"},
			{"bad search entry", ent("", "GET", "Patient?birthdate=notadate", nil), 400, "birthdate"},
			{"deleted twice", ent("", "DELETE", "Patient/"+keep, nil), 400, "Bundle.entry[2]"},
			{"put and delete one resource", ent("", "PUT", "Patient/"+keep, raw(t, patient("9100000019", `"id":"`+keep+`"`))), 400, "Bundle.entry[1]"},
			{"conditional delete of the same resource", ent("", "DELETE", "Patient?"+nhsQuery("9100000019"), nil), 400, "Bundle.entry[2]"},
			{"bad code", ent("", "POST", "Patient", raw(t, patient("9100000035", `"gender":"x"`))), 400, "Bundle.entry[1].resource.gender"},
			{"stale if-match", ent("", "PUT", "Patient/"+other, raw(t, patient("9100000019", `"id":"`+other+`"`, `"gender":"male"`)), "ifMatch", `W/"9"`), 412, "Bundle.entry[1]"},
			{"unresolved urn", ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:5e0f5a4c-0000-4000-8000-000000000000"}}`)), 400, "Bundle.entry[1].resource.subject.reference"},
			{"conditional ref no match", ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|0000000000"}}`)), 404, "Bundle.entry[1].resource.subject.reference"},
			{"conditional ref many", ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9100000027"}}`)), 412, "Bundle.entry[1].resource.subject.reference"},
			{"delete unknown", ent("", "DELETE", "Patient/not-there", nil), 404, "Bundle.entry[1]"},
			{"put id mismatch", ent("", "PUT", "Patient/abc", raw(t, patient("9100000035", `"id":"xyz"`))), 400, "Bundle.entry[1].resource.id"},
			{"no request", map[string]any{"resource": raw(t, patient("9100000035"))}, 400, "Bundle.entry[1].request"},
			{"bad method", ent("", "FETCH", "Patient", nil), 400, "Bundle.entry[1].request.method"},
			{"missing required", ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","code":{"text":"x"}}`)), 422, "Bundle.entry[1].resource"},
			{"patch conflicting", ent("", "PATCH", "Patient/"+other, binaryPatch(`[{"op":"add","path":"/gender","value":"nonsense"}]`)), 422, "Bundle.entry[1]"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				b := bundle("transaction", good("9100000043"), c.bad, ent("", "DELETE", "Patient/"+keep, nil))
				wantOutcome(t, s.Do("POST", "", b), c.status, c.expr)
				// Nothing stored, nothing deleted.
				if n := total(t, s, "Patient?"+nhsQuery("9100000043")); n != 0 {
					t.Errorf("the good entry was stored (%d)", n)
				}
				for _, id := range []string{keep, other} {
					if v := s.Do("GET", "Patient/"+id, nil).Want(t, 200).Str("meta.versionId"); v != "1" {
						t.Errorf("patient %s changed to version %s", id, v)
					}
				}
			})
		}
		if n := total(t, s, "Observation"); n != 0 {
			t.Errorf("%d Observations stored by failed transactions", n)
		}
	})
}

func testTransactionOrderAndDuplicates(t *testing.T, s *apptest.Server) {
	old := create(t, s, "Patient", patient("9100000051"))
	// DELETE runs before POST, so the conditional create finds nothing and creates anew;
	// GET runs last and sees the PUT listed after it.
	b := bundle("transaction",
		ent("", "GET", "Patient/ordered", nil),
		ent("", "POST", "Patient", raw(t, patient("9100000051")), "ifNoneExist", nhsQuery("9100000051")),
		ent("", "PUT", "Patient/ordered", raw(t, patient("9100000140", `"id":"ordered"`))),
		ent("", "DELETE", "Patient/"+old, nil),
		ent("", "GET", "Patient?"+nhsQuery("9100000140"), nil),
	)
	r := s.Do("POST", "", b).Want(t, 200)
	if got := apptest.Get(r.JSON, "entry.4.resource.total"); got == nil || got.(interface{ String() string }).String() != "1" {
		t.Errorf("GET search entry should see the PUT: %v", r.Entries()[4])
	}
	if st := entryResp(r, 1, "status"); !strings.HasPrefix(st, "201") || locID(entryResp(r, 1, "location")) == old {
		t.Errorf("POST after DELETE: %v", r.Entries()[1])
	}
	if st := entryResp(r, 3, "status"); !strings.HasPrefix(st, "204") {
		t.Errorf("DELETE entry status %q", st)
	}
	if st := entryResp(r, 0, "status"); !strings.HasPrefix(st, "200") || apptest.Get(r.JSON, "entry.0.resource.id") != "ordered" {
		t.Errorf("GET entry should see the PUT: %v", r.Entries()[0])
	}
	wantOutcome(t, s.Do("GET", "Patient/"+old, nil), 410, "")

	// Duplicate conditional creates resolve to one resource, whatever the criteria order.
	create(t, s, "Patient", patient("9100000078", `"name":[{"family":"Other"}]`)) // same NHS number, different name
	b = bundle("transaction",
		ent("urn:uuid:aaaaaaaa-0000-4000-8000-000000000001", "POST", "Patient", raw(t, patient("9100000078", `"name":[{"family":"Dupont"}]`)),
			"ifNoneExist", nhsQuery("9100000078")+"&family=Dupont"),
		ent("urn:uuid:aaaaaaaa-0000-4000-8000-000000000002", "POST", "Patient", raw(t, patient("9100000078", `"name":[{"family":"Dupont"}]`)),
			"ifNoneExist", "family=Dupont&"+nhsQuery("9100000078")),
		ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"a"},"subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}}`)),
		ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"b"},"subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000002"}}`)),
	)
	r = s.Do("POST", "", b).Want(t, 200)
	if !strings.HasPrefix(entryResp(r, 0, "status"), "201") || !strings.HasPrefix(entryResp(r, 1, "status"), "200") {
		t.Errorf("duplicate conditional creates: %q, %q", entryResp(r, 0, "status"), entryResp(r, 1, "status"))
	}
	id := locID(entryResp(r, 0, "location"))
	if id == "" || locID(entryResp(r, 1, "location")) != id {
		t.Errorf("duplicates resolved to %q and %q", entryResp(r, 0, "location"), entryResp(r, 1, "location"))
	}
	if n := total(t, s, "Patient?family=Dupont"); n != 1 {
		t.Errorf("%d Dupont patients, want 1", n)
	}
	if n := total(t, s, "Observation?subject=Patient/"+id); n != 2 {
		t.Errorf("%d Observations point at the one patient, want 2", n)
	}
	// Run again: both entries now match the stored patient (200, same id).
	r = s.Do("POST", "", b).Want(t, 200)
	for i := range 2 {
		if !strings.HasPrefix(entryResp(r, i, "status"), "200") || locID(entryResp(r, i, "location")) != id {
			t.Errorf("rerun entry %d: %v", i, r.Entries()[i])
		}
	}
	if n := total(t, s, "Patient?family=Dupont"); n != 1 {
		t.Errorf("%d Dupont patients after rerun, want 1", n)
	}
}

func testTransactionPatchAndConditional(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9100000086", `"gender":"male"`))
	b := bundle("transaction",
		ent("", "PATCH", "Patient/"+id, binaryPatch(`[{"op":"replace","path":"/gender","value":"female"}]`)),
		ent("", "PUT", "Patient?"+nhsQuery("9100000094"), raw(t, patient("9100000094"))),
		ent("", "DELETE", "Patient?"+nhsQuery("0000000000"), nil),
	)
	r := s.Do("POST", "", b).Want(t, 200)
	if !strings.HasPrefix(entryResp(r, 0, "status"), "200") || entryResp(r, 0, "etag") != `W/"2"` {
		t.Errorf("PATCH entry: %v", r.Entries()[0])
	}
	if !strings.HasPrefix(entryResp(r, 1, "status"), "201") || !strings.HasPrefix(entryResp(r, 2, "status"), "204") {
		t.Errorf("conditional entries: %v", r.Entries())
	}
	if g := s.Do("GET", "Patient/"+id, nil).Want(t, 200).Str("gender"); g != "female" {
		t.Errorf("patched gender %q", g)
	}
	// A PATCH entry that is not a Binary JSON Patch is rejected.
	b = bundle("transaction", ent("", "PATCH", "Patient/"+id, raw(t, patient(""))))
	wantOutcome(t, s.Do("POST", "", b), 400, "Bundle.entry[0].resource")
	// Prefer: return=minimal leaves resources out of the response.
	b = bundle("transaction", ent("", "POST", "Patient", raw(t, patient("9100000108"))))
	r = s.Do("POST", "", b, "Prefer: return=minimal").Want(t, 200)
	if apptest.Get(r.JSON, "entry.0.resource") != nil || entryResp(r, 0, "location") == "" {
		t.Errorf("return=minimal entry: %v", r.Entries()[0])
	}
}

func testBatch(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9100000116"))
	b := bundle("batch",
		ent("", "POST", "Patient", raw(t, patient("9100000124"))),
		ent("", "POST", "Patient", raw(t, patient("9100000132", `"birthDate":"not-a-date"`))),
		ent("", "GET", "Patient/"+id, nil),
		ent("", "GET", "Patient/missing", nil),
		ent("", "PATCH", "Patient/"+id, binaryPatch(`[{"op":"add","path":"/gender","value":"other"}]`)),
		ent("", "GET", "Patient?"+nhsQuery("9100000116"), nil),
		map[string]any{"resource": raw(t, patient(""))}, // no request
		ent("", "DELETE", "Patient/missing", nil),
	)
	r := s.Do("POST", "", b).Want(t, 200)
	if r.Str("type") != "batch-response" || len(r.Entries()) != 8 {
		t.Fatalf("batch response: %s", r.Raw)
	}
	for i, want := range []string{"201", "400", "200", "404", "200", "200", "400", "404"} {
		if st := entryResp(r, i, "status"); !strings.HasPrefix(st, want) {
			t.Errorf("entry %d status %q, want %s", i, st, want)
		}
	}
	if apptest.Get(r.JSON, "entry.1.response.outcome.resourceType") != "OperationOutcome" {
		t.Errorf("failed entry has no outcome: %v", r.Entries()[1])
	}
	if apptest.Get(r.JSON, "entry.5.resource.resourceType") != "Bundle" || apptest.Get(r.JSON, "entry.5.resource.total") == nil {
		t.Errorf("search entry: %v", r.Entries()[5])
	}
	// The good entries happened despite the bad ones.
	if n := total(t, s, "Patient?"+nhsQuery("9100000124")); n != 1 {
		t.Errorf("good POST entry stored %d times", n)
	}
	if n := total(t, s, "Patient?"+nhsQuery("9100000132")); n != 0 {
		t.Errorf("bad POST entry stored")
	}
	if g := s.Do("GET", "Patient/"+id, nil).Str("gender"); g != "other" {
		t.Errorf("batch PATCH: gender %q", g)
	}
}

func TestBundleRejected(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		shipped := versions(t, s) // the L&D resources every node loads at start
		cases := []struct {
			name, body string
			status     int
			expr       string
		}{
			{"not a bundle", patient(""), 400, "Bundle.resourceType"},
			{"collection", `{"resourceType":"Bundle","type":"collection"}`, 400, "Bundle.type"},
			{"malformed", `{"resourceType":"Bundle",`, 400, ""},
			{"repeated property in an entry", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","gender":"male","gender":"female"}}]}`, 400, ""},
			{"empty entry list", `{"resourceType":"Bundle","type":"transaction","entry":[]}`, 400, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				wantOutcome(t, s.Do("POST", "", c.body), c.status, c.expr)
			})
		}
		if n := versions(t, s) - shipped; n != 0 {
			t.Errorf("rejected bundles wrote %d versions", n)
		}
		// A Bundle without entries is valid and gets a response without entries.
		for _, kind := range []string{"batch", "transaction"} {
			r := s.Do("POST", "", `{"resourceType":"Bundle","type":"`+kind+`"}`).Want(t, 200)
			if r.Str("type") != kind+"-response" || r.JSON["entry"] != nil {
				t.Errorf("empty %s: %s", kind, r.Raw)
			}
		}
	})
}

// testTransactionOverlap: a transaction in which two entries change one resource fails, also
// when the overlap only shows once conditional criteria are resolved.
func testTransactionOverlap(t *testing.T, s *apptest.Server) {
	a := create(t, s, "Patient", patient("9600000034", `"gender":"male"`))
	x, y := "9600000018", "9600000026"
	put := func(url, nhs string) map[string]any { return ent("", "PUT", url, raw(t, patient(nhs))) }
	cases := []struct {
		name    string
		entries []map[string]any
	}{
		{"create then conditional update", []map[string]any{
			ent("", "POST", "Patient", raw(t, patient(x)), "ifNoneExist", nhsQuery(x)),
			put("Patient?"+nhsQuery(x), x)}},
		{"two conditional updates", []map[string]any{put("Patient?"+nhsQuery(x), x), put("Patient?"+nhsQuery(x), x)}},
		{"update and patch", []map[string]any{
			ent("", "PUT", "Patient/"+a, raw(t, patient("9600000034", `"id":"`+a+`"`))),
			ent("", "PATCH", "Patient/"+a, binaryPatch(`[{"op":"add","path":"/active","value":true}]`))}},
		{"delete and update", []map[string]any{
			ent("", "DELETE", "Patient/"+a, nil),
			ent("", "PUT", "Patient/"+a, raw(t, patient("9600000034", `"id":"`+a+`"`)))}},
		{"conditional delete and patch", []map[string]any{
			ent("", "DELETE", "Patient?"+nhsQuery("9600000034"), nil),
			ent("", "PATCH", "Patient/"+a, binaryPatch(`[{"op":"add","path":"/active","value":true}]`))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantOutcome(t, s.Do("POST", "", bundle("transaction", c.entries...)), 400, "Bundle.entry[")
			if n := total(t, s, "Patient?"+nhsQuery(x)); n != 0 {
				t.Errorf("%d patients stored", n)
			}
			if v := s.Do("GET", "Patient/"+a, nil).Want(t, 200).Str("meta.versionId"); v != "1" {
				t.Errorf("patient changed to version %s", v)
			}
		})
	}
	// A conditional create that matches and a conditional update of the same resource do not
	// overlap: only the update writes.
	create(t, s, "Patient", patient(y))
	r := s.Do("POST", "", bundle("transaction",
		ent("", "POST", "Patient", raw(t, patient(y)), "ifNoneExist", nhsQuery(y)),
		put("Patient?"+nhsQuery(y), y))).Want(t, 200)
	if !strings.HasPrefix(entryResp(r, 0, "status"), "200") || !strings.HasPrefix(entryResp(r, 1, "status"), "200") || entryResp(r, 1, "etag") != `W/"2"` {
		t.Errorf("match and update: %v", r.Entries())
	}
	if n := total(t, s, "Patient?"+nhsQuery(y)); n != 1 {
		t.Errorf("%d patients with %s, want 1", n, y)
	}
}
