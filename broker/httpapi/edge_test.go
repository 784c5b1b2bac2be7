package httpapi_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func TestEdgeCases(t *testing.T) {
	t.Parallel()
	// One node per backend serves every subtest: they use disjoint data.
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		t.Run("media type variants", func(t *testing.T) { testMediaTypeVariants(t, s) })
		t.Run("search edge cases", func(t *testing.T) { testSearchEdgeCases(t, s) })
		t.Run("paging with sort and include", func(t *testing.T) { testPagingWithSortAndInclude(t, s) })
		t.Run("transaction canonical duplicates", func(t *testing.T) { testTransactionCanonicalDuplicates(t, s) })
		t.Run("transaction nested references", func(t *testing.T) { testTransactionNestedReferences(t, s) })
		t.Run("history since", func(t *testing.T) { testHistorySince(t, s) })
		t.Run("decimal precision", func(t *testing.T) { testDecimalPrecision(t, s) })
		t.Run("responses are valid R4", func(t *testing.T) { testResponsesAreValid(t, s) })
	})
}

func testMediaTypeVariants(t *testing.T, s *apptest.Server) {
	for _, ct := range []string{"application/fhir+json; charset=utf-8", "application/json", "application/json+fhir", "application/fhir+json;fhirVersion=4.0"} {
		s.Do("POST", "Patient", patient(""), "Content-Type: "+ct).Want(t, 201)
	}
	id := create(t, s, "Patient", patient(""))
	s.Do("PATCH", "Patient/"+id, `[{"op":"add","path":"/active","value":true}]`, "Content-Type: application/json-patch+json; charset=utf-8").Want(t, 200)
	s.Do("GET", "Patient/"+id, nil, "Accept: application/json").Want(t, 200)
	s.Do("GET", "Patient/"+id, nil, "Accept: application/fhir+json;fhirVersion=4.0").Want(t, 200)
}

func testSearchEdgeCases(t *testing.T, s *apptest.Server) {
	zoe := create(t, s, "Patient", patient("", `"name":[{"family":"Zoë","given":["Ångström"]}]`))
	obs := create(t, s, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+zoe+`/_history/1"}}`)
	runSearchCases(t, s, []searchCase{
		{"Patient?family=zoe", []string{"Patient/" + zoe}},
		{"Patient?given=angstrom", []string{"Patient/" + zoe}},
		{"Patient?family:exact=" + url.QueryEscape("Zoë"), []string{"Patient/" + zoe}},
		{"Patient?family:exact=Zoe", nil},
		{"Observation?subject=Patient/" + zoe, []string{"Observation/" + obs}},
		{"Observation?subject=" + zoe, []string{"Observation/" + obs}},
	})
	// _count above the maximum is lowered, with a warning.
	r := s.Do("GET", "Patient?family=zoe&_count=5000", nil).Want(t, 200)
	if len(entryIDs(r, "outcome")) != 1 || len(entryIDs(r, "match")) != 1 {
		t.Errorf("_count=5000: %s", r.Raw)
	}
	// Escaped commas and pipes are part of the value, not separators.
	id := create(t, s, "Patient", patient("", `"identifier":[{"system":"urn:x","value":"a,b"}]`))
	if got := entryIDs(s.Do("GET", "Patient?identifier="+url.QueryEscape(`urn:x|a\,b`), nil).Want(t, 200), "match"); !slices.Equal(got, []string{"Patient/" + id}) {
		t.Errorf("escaped comma: %v", got)
	}
}

func testPagingWithSortAndInclude(t *testing.T, s *apptest.Server) {
	var pats []string
	for i := range 5 {
		id := create(t, s, "Patient", patient("", `"name":[{"family":"Sorted"}]`, `"birthDate":"19`+itoa(50+i)+`-01-01"`))
		pats = append(pats, "Patient/"+id)
		create(t, s, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"s"},"subject":{"reference":"Patient/`+id+`"}}`)
	}
	// Newest birthDate first, two per page, across three pages.
	var got []string
	next := "Patient?family=sorted&_sort=-birthdate&_count=2&_revinclude=Observation:subject"
	for pages := 0; next != "" && pages < 5; pages++ {
		p := s.Do("GET", next, nil).Want(t, 200)
		m := entryIDs(p, "match")
		got = append(got, m...)
		if len(entryIDs(p, "include")) != len(m) {
			t.Errorf("page %d: %d matches but %d revincluded Observations", pages, len(m), len(entryIDs(p, "include")))
		}
		next = link(p, "next")
	}
	want := slices.Clone(pats)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("sorted pages %v, want %v", got, want)
	}
}

func testTransactionCanonicalDuplicates(t *testing.T, s *apptest.Server) {
	cases := []struct{ name, a, b, family string }{
		{"value order", "identifier=urn:a|1,urn:a|2", "identifier=urn:a|2,urn:a|1", "Valueorder"},
		{"eq prefix", "birthdate=eq1971-01-01&family=Canon", "family=Canon&birthdate=1971-01-01", "Canon"},
		{"parameter order", "family=Order&given=Ann", "given=Ann&family=Order", "Order"},
		{"written as a URL", "Patient?family=Urlform", "?family=Urlform", "Urlform"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := raw(t, patient("", `"identifier":[{"system":"urn:a","value":"`+itoa(i+1)+`"}]`, `"birthDate":"1971-01-01"`, `"name":[{"family":"`+c.family+`","given":["Ann"]}]`))
			b := bundle("transaction",
				ent("urn:uuid:d0d0d0d0-0000-4000-8000-00000000000"+itoa(i)+"a", "POST", "Patient", body, "ifNoneExist", c.a),
				ent("urn:uuid:d0d0d0d0-0000-4000-8000-00000000000"+itoa(i)+"b", "POST", "Patient", body, "ifNoneExist", c.b),
			)
			r := s.Do("POST", "", b).Want(t, 200)
			if !strings.HasPrefix(entryResp(r, 0, "status"), "201") || !strings.HasPrefix(entryResp(r, 1, "status"), "200") ||
				locID(entryResp(r, 0, "location")) != locID(entryResp(r, 1, "location")) {
				t.Errorf("entries: %v", r.Entries())
			}
		})
	}
	if n := total(t, s, "Patient?given=ann"); n != len(cases) {
		t.Errorf("%d patients, want %d", n, len(cases))
	}
}

func testTransactionNestedReferences(t *testing.T, s *apptest.Server) {
	b := bundle("transaction",
		ent("urn:uuid:e0e0e0e0-0000-4000-8000-000000000001", "POST", "Practitioner", raw(t, `{"resourceType":"Practitioner","name":[{"family":"Nested"}]}`)),
		ent("urn:uuid:e0e0e0e0-0000-4000-8000-000000000002", "PUT", "Patient/nested-1", raw(t, patient("",
			`"id":"nested-1"`,
			`"generalPractitioner":[{"reference":"urn:uuid:e0e0e0e0-0000-4000-8000-000000000001"}]`,
			`"extension":[{"url":"http://example.org/ext","valueReference":{"reference":"urn:uuid:e0e0e0e0-0000-4000-8000-000000000001"}}]`))),
		ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:e0e0e0e0-0000-4000-8000-000000000002"},"performer":[{"reference":"urn:uuid:e0e0e0e0-0000-4000-8000-000000000001"}]}`)),
	)
	r := s.Do("POST", "", b).Want(t, 200)
	pr := "Practitioner/" + locID(entryResp(r, 0, "location"))
	p := s.Do("GET", "Patient/nested-1", nil).Want(t, 200)
	if p.Str("generalPractitioner.0.reference") != pr || p.Str("extension.0.valueReference.reference") != pr {
		t.Errorf("nested references not rewritten to %s: %s", pr, p.Raw)
	}
	o := s.Do("GET", "Observation/"+locID(entryResp(r, 2, "location")), nil).Want(t, 200)
	if o.Str("subject.reference") != "Patient/nested-1" || o.Str("performer.0.reference") != pr {
		t.Errorf("observation references: %s", o.Raw)
	}
	if n := total(t, s, "Observation?performer="+pr); n != 1 {
		t.Errorf("search by rewritten performer: %d", n)
	}
}

func testHistorySince(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient(""))
	time.Sleep(20 * time.Millisecond)
	mid := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	s.Do("PUT", "Patient/"+id, patient("", `"id":"`+id+`"`, `"active":true`)).Want(t, 200)
	r := s.Do("GET", "Patient/"+id+"/_history?_since="+url.QueryEscape(mid.Format(time.RFC3339Nano)), nil).Want(t, 200)
	if r.Total() != 1 || apptest.Get(r.JSON, "entry.0.response.etag") != `W/"2"` {
		t.Errorf("_since: %s", r.Raw)
	}
}

func testDecimalPrecision(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":1.50,"unit":"kg"},"component":[{"code":{"text":"c"},"valueQuantity":{"value":0.000001230}}]}`)
	r := s.Do("GET", "Observation/"+id, nil).Want(t, 200)
	for _, want := range []string{`"value":1.50`, `"value":0.000001230`} {
		if !strings.Contains(string(r.Raw), want) {
			t.Errorf("decimal not kept as written (%s): %s", want, r.Raw)
		}
	}
	if n := total(t, s, "Observation?value-quantity=1.5&_id="+id); n != 1 {
		t.Errorf("1.50 should match a search for 1.5: %d", n)
	}
}

// testResponsesAreValid stores what the server answers, so the server's own checks confirm
// that its Bundles, OperationOutcomes and CapabilityStatement are valid R4.
func testResponsesAreValid(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000017", `"name":[{"family":"Valid"}]`))
	create(t, s, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"v"},"subject":{"reference":"Patient/`+id+`"}}`)
	s.Do("PUT", "Patient/"+id, patient("9000000017", `"id":"`+id+`"`, `"name":[{"family":"Valid"}]`, `"active":true`)).Want(t, 200)
	tx := s.Do("POST", "", bundle("transaction", ent("", "POST", "Patient", raw(t, patient(""))), ent("", "GET", "Patient?family=valid", nil))).Want(t, 200)
	responses := map[string]*apptest.Result{
		"metadata":           s.Do("GET", "metadata", nil),
		"searchset":          s.Do("GET", "Patient?family=valid&_revinclude=Observation:subject&_foo=1", nil),
		"paged searchset":    s.Do("GET", "Patient?_count=1", nil),
		"summary":            s.Do("GET", "Patient?family=valid&_summary=true", nil),
		"history":            s.Do("GET", "Patient/"+id+"/_history", nil),
		"everything":         s.Do("GET", "Patient/"+id+"/$everything", nil),
		"transaction":        tx,
		"operation outcome":  s.Do("GET", "Patient/nobody", nil),
		"search outcome":     s.Do("GET", "Patient?birthdate=x", nil),
		"read with elements": s.Do("GET", "Patient/"+id+"?_elements=name", nil),
	}
	for name, r := range responses {
		typ := r.Str("resourceType")
		if typ == "" {
			t.Errorf("%s: no resource: %s", name, r.Raw)
			continue
		}
		if typ == "CapabilityStatement" { // served read-only, so validated rather than stored
			if got := s.Do("POST", typ+"/$validate", r.Raw).Want(t, 200); strings.Contains(string(got.Raw), `"severity":"error"`) {
				t.Errorf("%s is not valid %s: %s", name, typ, got.Raw)
			}
			continue
		}
		if got := s.Do("POST", typ, r.Raw); got.Status != 201 {
			t.Errorf("%s is not valid %s: %s", name, typ, got.Raw)
		}
	}
}
