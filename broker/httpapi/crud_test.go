package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func TestInteractions(t *testing.T) {
	t.Parallel()
	// One node per backend serves every subtest: they use disjoint data.
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		t.Run("metadata", func(t *testing.T) { testMetadata(t, s) })
		t.Run("create", func(t *testing.T) { testCreate(t, s) })
		t.Run("conditional create", func(t *testing.T) { testConditionalCreate(t, s) })
		t.Run("read vread", func(t *testing.T) { testReadVread(t, s) })
		t.Run("update", func(t *testing.T) { testUpdate(t, s) })
		t.Run("conditional update", func(t *testing.T) { testConditionalUpdate(t, s) })
		t.Run("patch", func(t *testing.T) { testPatch(t, s) })
		t.Run("delete", func(t *testing.T) { testDelete(t, s) })
		t.Run("conditional delete", func(t *testing.T) { testConditionalDelete(t, s) })
		t.Run("conditional read", func(t *testing.T) { testConditionalRead(t, s) })
		t.Run("prefer return", func(t *testing.T) { testPreferReturn(t, s) })
		t.Run("head", func(t *testing.T) { testHead(t, s) })
		t.Run("method not allowed", func(t *testing.T) { testMethodNotAllowed(t, s) })
	})
}

func testMetadata(t *testing.T, s *apptest.Server) {
	r := s.Do("GET", "metadata", nil).Want(t, 200)
	if r.Str("resourceType") != "CapabilityStatement" || r.Str("fhirVersion") != "4.0.1" {
		t.Fatalf("not an R4 CapabilityStatement: %.300s", r.Raw)
	}
	formats, _ := r.JSON["format"].([]any)
	if !containsAny(formats, "application/fhir+json") {
		t.Errorf("format %v lacks application/fhir+json", formats)
	}
	if !containsAny(apptest.Get(r.JSON, "patchFormat").([]any), "application/json-patch+json") {
		t.Errorf("patchFormat lacks JSON Patch")
	}
	resources, _ := apptest.Get(r.JSON, "rest.0.resource").([]any)
	var pat any
	for _, res := range resources {
		if apptest.Get(res, "type") == "Patient" {
			pat = res
		}
	}
	if pat == nil {
		t.Fatalf("no Patient in rest.resource")
	}
	var params, inter []any
	for _, p := range apptest.Get(pat, "searchParam").([]any) {
		params = append(params, apptest.Get(p, "name"))
	}
	for _, i := range apptest.Get(pat, "interaction").([]any) {
		inter = append(inter, apptest.Get(i, "code"))
	}
	for _, want := range []string{"identifier", "family", "birthdate", "general-practitioner"} {
		if !containsAny(params, want) {
			t.Errorf("Patient searchParam lacks %s", want)
		}
	}
	for _, want := range []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"} {
		if !containsAny(inter, want) {
			t.Errorf("Patient interaction lacks %s", want)
		}
	}
	var sys []any
	for _, i := range apptest.Get(r.JSON, "rest.0.interaction").([]any) {
		sys = append(sys, apptest.Get(i, "code"))
	}
	for _, want := range []string{"transaction", "batch", "search-system", "history-system"} {
		if !containsAny(sys, want) {
			t.Errorf("system interaction lacks %s", want)
		}
	}
}

func containsAny(list []any, want string) bool {
	for _, v := range list {
		if v == want {
			return true
		}
	}
	return false
}

func testCreate(t *testing.T, s *apptest.Server) {
	before := time.Now().Add(-2 * time.Second)
	r := s.Do("POST", "Patient", patient("9000000017", `"id":"client-chosen"`, `"birthDate":"1970-01-01"`)).Want(t, 201)
	id := r.Str("id")
	if id == "" || id == "client-chosen" {
		t.Fatalf("create kept or lost the id: %q", id)
	}
	if got, want := r.Header.Get("Location"), s.Base+"/Patient/"+id+"/_history/1"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if r.Header.Get("ETag") != `W/"1"` {
		t.Errorf("ETag %q", r.Header.Get("ETag"))
	}
	lm, err := http.ParseTime(r.Header.Get("Last-Modified"))
	if err != nil || lm.Before(before) {
		t.Errorf("Last-Modified %q: %v", r.Header.Get("Last-Modified"), err)
	}
	if r.Str("meta.versionId") != "1" || r.Str("meta.lastUpdated") == "" {
		t.Errorf("meta not stamped: %s", r.Raw)
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/fhir+json") {
		t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	s.Do("GET", "Patient/client-chosen", nil).Want(t, 404)
	got := s.Do("GET", "Patient/"+id, nil).Want(t, 200)
	if got.Str("birthDate") != "1970-01-01" || got.Str("identifier.0.value") != "9000000017" {
		t.Errorf("read back %s", got.Raw)
	}
}

func testConditionalCreate(t *testing.T, s *apptest.Server) {
	ine := "If-None-Exist: " + nhsQuery("9000000025")
	first := s.Do("POST", "Patient", patient("9000000025"), ine).Want(t, 201)
	second := s.Do("POST", "Patient", patient("9000000025", `"gender":"male"`), ine).Want(t, 200)
	if first.Str("id") != second.Str("id") {
		t.Fatalf("conditional create made a second resource: %s vs %s", first.Str("id"), second.Str("id"))
	}
	if second.Str("gender") != "" {
		t.Errorf("the match was changed: %s", second.Raw)
	}
	for _, form := range []string{"?", "Patient?"} {
		r := s.Do("POST", "Patient", patient("9000000025"), "If-None-Exist: "+form+nhsQuery("9000000025")).Want(t, 200)
		if r.Str("id") != first.Str("id") {
			t.Errorf("If-None-Exist written as %q matched %q", form, r.Str("id"))
		}
	}
	if n := total(t, s, "Patient?"+nhsQuery("9000000025")); n != 1 {
		t.Fatalf("%d resources, want 1", n)
	}
	// Two matches: 412, nothing created.
	create(t, s, "Patient", patient("", `"name":[{"family":"Twin"}]`))
	create(t, s, "Patient", patient("", `"name":[{"family":"Twin"}]`))
	r := s.Do("POST", "Patient", patient("", `"name":[{"family":"Twin"}]`), "If-None-Exist: family:exact=Twin")
	wantOutcome(t, r, 412, "")
	if n := total(t, s, "Patient?family:exact=Twin"); n != 2 {
		t.Errorf("%d Twins after the 412, want 2", n)
	}
	// Criteria naming an unknown parameter would match too widely: rejected.
	r = s.Do("POST", "Patient", patient(""), "If-None-Exist: nonsense=1")
	wantOutcome(t, r, 400, "nonsense")
}

func testReadVread(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000041", `"gender":"female"`))
	s.Do("PUT", "Patient/"+id, patient("9000000041", `"id":"`+id+`"`, `"gender":"male"`)).Want(t, 200)

	cur := s.Do("GET", "Patient/"+id, nil).Want(t, 200)
	if cur.Str("gender") != "male" || cur.Header.Get("ETag") != `W/"2"` || cur.Str("meta.versionId") != "2" {
		t.Errorf("current version: %v %s", cur.Header, cur.Raw)
	}
	if cur.Header.Get("Last-Modified") == "" {
		t.Errorf("read has no Last-Modified")
	}
	old := s.Do("GET", "Patient/"+id+"/_history/1", nil).Want(t, 200)
	if old.Str("gender") != "female" || old.Header.Get("ETag") != `W/"1"` {
		t.Errorf("vread 1: %s", old.Raw)
	}
	wantOutcome(t, s.Do("GET", "Patient/"+id+"/_history/3", nil), 404, "")
	wantOutcome(t, s.Do("GET", "Patient/"+id+"/_history/x", nil), 400, "")
	wantOutcome(t, s.Do("GET", "Patient/does-not-exist", nil), 404, "")
	wantOutcome(t, s.Do("GET", "Patient/bad$id", nil), 400, "")
	wantOutcome(t, s.Do("GET", "NotAType/1", nil), 404, "")

	s.Do("DELETE", "Patient/"+id, nil).Want(t, 204)
	gone := s.Do("GET", "Patient/"+id, nil)
	wantOutcome(t, gone, 410, "")
	if gone.Header.Get("ETag") != `W/"3"` {
		t.Errorf("410 ETag %q, want the deletion's version", gone.Header.Get("ETag"))
	}
	wantOutcome(t, s.Do("GET", "Patient/"+id+"/_history/3", nil), 410, "")
	// Old versions stay readable after a delete.
	s.Do("GET", "Patient/"+id+"/_history/2", nil).Want(t, 200)
}

func testUpdate(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000203"))
	body := func(id string, extra ...string) string {
		if id != "" {
			extra = append(extra, `"id":"`+id+`"`)
		}
		return patient("9000000203", extra...)
	}
	cases := []struct {
		name    string
		path    string
		body    string
		headers []string
		status  int
		etag    string
		expr    string
	}{
		{"update", "Patient/" + id, body(id, `"gender":"male"`), nil, 200, `W/"2"`, ""},
		{"if-match current", "Patient/" + id, body(id, `"gender":"female"`), []string{`If-Match: W/"2"`}, 200, `W/"3"`, ""},
		{"if-match stale", "Patient/" + id, body(id, `"gender":"other"`), []string{`If-Match: W/"1"`}, 412, "", ""},
		{"if-match garbage", "Patient/" + id, body(id), []string{`If-Match: nope`}, 400, "", ""},
		{"create on update", "Patient/client-id-1", body("client-id-1"), nil, 201, `W/"1"`, ""},
		{"id mismatch", "Patient/" + id, body("other-id"), nil, 400, "", "Patient.id"},
		{"missing id", "Patient/" + id, body(""), nil, 400, "", "Patient.id"},
		{"wrong type", "Patient/" + id, `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"}}`, nil, 400, "", "resourceType"},
		{"if-match on missing", "Patient/never-was", body("never-was"), []string{`If-Match: W/"1"`}, 412, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Do("PUT", c.path, c.body, c.headers...)
			if c.status >= 400 {
				wantOutcome(t, r, c.status, c.expr)
				return
			}
			r.Want(t, c.status)
			if r.Header.Get("ETag") != c.etag {
				t.Errorf("ETag %q, want %q", r.Header.Get("ETag"), c.etag)
			}
			if !strings.HasSuffix(r.Header.Get("Location"), "/"+c.path+"/_history/"+strings.Trim(c.etag, `W/"`)) {
				t.Errorf("Location %q", r.Header.Get("Location"))
			}
		})
	}
	// The failed cases changed nothing.
	cur := s.Do("GET", "Patient/"+id, nil).Want(t, 200)
	if cur.Str("meta.versionId") != "3" || cur.Str("gender") != "female" {
		t.Errorf("after the failures: %s", cur.Raw)
	}
	s.Do("GET", "Patient/never-was", nil).Want(t, 404)
	// Updating a deleted resource brings it back (201).
	s.Do("DELETE", "Patient/client-id-1", nil).Want(t, 204)
	s.Do("PUT", "Patient/client-id-1", body("client-id-1")).Want(t, 201)
	if s.Do("GET", "Patient/client-id-1", nil).Want(t, 200).Str("meta.versionId") != "3" {
		t.Errorf("recreated resource should be version 3")
	}
}

func testConditionalUpdate(t *testing.T, s *apptest.Server) {
	// No match: created, with a server id when the body has none.
	r := s.Do("PUT", "Patient?"+nhsQuery("9000000068"), patient("9000000068", `"gender":"male"`)).Want(t, 201)
	id := r.Str("id")
	if id == "" {
		t.Fatalf("no id: %s", r.Raw)
	}
	// One match: updated in place.
	r = s.Do("PUT", "Patient?"+nhsQuery("9000000068"), patient("9000000068", `"gender":"female"`)).Want(t, 200)
	if r.Str("id") != id || r.Header.Get("ETag") != `W/"2"` {
		t.Errorf("conditional update of one match: %v %s", r.Header, r.Raw)
	}
	// One match but a different id in the body: 400.
	wantOutcome(t, s.Do("PUT", "Patient?"+nhsQuery("9000000068"), patient("9000000068", `"id":"someone-else"`)), 400, "Patient.id")
	// Several matches: 412, nothing changed.
	create(t, s, "Patient", patient("", `"name":[{"family":"Dupe"}]`))
	create(t, s, "Patient", patient("", `"name":[{"family":"Dupe"}]`))
	wantOutcome(t, s.Do("PUT", "Patient?family:exact=Dupe", patient("", `"name":[{"family":"Dupe"}]`, `"gender":"male"`)), 412, "")
	if n := total(t, s, "Patient?family:exact=Dupe&gender=male"); n != 0 {
		t.Errorf("412 changed %d resources", n)
	}
	// No criteria at all is not a conditional update.
	wantOutcome(t, s.Do("PUT", "Patient", patient("")), 405, "")
}

func testPatch(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000076", `"gender":"male"`, `"name":[{"family":"Patchy"}]`))
	jp := "Content-Type: application/json-patch+json"
	cases := []struct {
		name    string
		path    string
		body    string
		headers []string
		status  int
		expr    string
	}{
		{"replace", "Patient/" + id, `[{"op":"replace","path":"/gender","value":"female"}]`, []string{jp}, 200, ""},
		{"add birthDate", "Patient/" + id, `[{"op":"add","path":"/birthDate","value":"1990-05-06"}]`, []string{jp, `If-Match: W/"2"`}, 200, ""},
		{"stale if-match", "Patient/" + id, `[{"op":"replace","path":"/gender","value":"other"}]`, []string{jp, `If-Match: W/"1"`}, 412, ""},
		{"not a patch", "Patient/" + id, `{"op":"replace"}`, []string{jp}, 400, ""},
		{"test op fails", "Patient/" + id, `[{"op":"test","path":"/gender","value":"male"}]`, []string{jp}, 422, ""},
		{"remove missing path", "Patient/" + id, `[{"op":"remove","path":"/deceasedBoolean"}]`, []string{jp}, 422, ""},
		{"wrong content type", "Patient/" + id, `[{"op":"replace","path":"/gender","value":"other"}]`, []string{"Content-Type: application/fhir+json"}, 415, ""},
		{"result has bad code", "Patient/" + id, `[{"op":"replace","path":"/gender","value":"banana"}]`, []string{jp}, 422, "gender"},
		{"result has unknown element", "Patient/" + id, `[{"op":"add","path":"/foo","value":1}]`, []string{jp}, 422, "Patient.foo"},
		{"change id", "Patient/" + id, `[{"op":"replace","path":"/id","value":"x"}]`, []string{jp}, 422, ""},
		{"unknown resource", "Patient/nobody", `[{"op":"replace","path":"/gender","value":"other"}]`, []string{jp}, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Do("PATCH", c.path, c.body, c.headers...)
			if c.status >= 400 {
				wantOutcome(t, r, c.status, c.expr)
				return
			}
			r.Want(t, c.status)
		})
	}
	cur := s.Do("GET", "Patient/"+id, nil).Want(t, 200)
	if cur.Str("gender") != "female" || cur.Str("birthDate") != "1990-05-06" || cur.Str("meta.versionId") != "3" {
		t.Errorf("after patches: %s", cur.Raw)
	}
	// Conditional patch.
	s.Do("PATCH", "Patient?"+nhsQuery("9000000076"), `[{"op":"replace","path":"/gender","value":"other"}]`, jp).Want(t, 200)
	if g := s.Do("GET", "Patient/"+id, nil).Str("gender"); g != "other" {
		t.Errorf("conditional patch: gender %q", g)
	}
	wantOutcome(t, s.Do("PATCH", "Patient?"+nhsQuery("0000000000"), `[]`, jp), 404, "")
	create(t, s, "Patient", patient("", `"name":[{"family":"Patchtwin"}]`))
	create(t, s, "Patient", patient("", `"name":[{"family":"Patchtwin"}]`))
	wantOutcome(t, s.Do("PATCH", "Patient?family:exact=Patchtwin", `[{"op":"add","path":"/active","value":true}]`, jp), 412, "")
	if n := total(t, s, "Patient?family:exact=Patchtwin&active=true"); n != 0 {
		t.Errorf("the 412 patched %d resources", n)
	}
	// Patching a deleted resource: 410.
	s.Do("DELETE", "Patient/"+id, nil).Want(t, 204)
	wantOutcome(t, s.Do("PATCH", "Patient/"+id, `[{"op":"replace","path":"/gender","value":"male"}]`, jp), 410, "")
}

func testDelete(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000084"))
	r := s.Do("DELETE", "Patient/"+id, nil).Want(t, 204)
	if len(r.Raw) != 0 {
		t.Errorf("204 with a body: %s", r.Raw)
	}
	if r.Header.Get("ETag") != `W/"2"` {
		t.Errorf("delete ETag %q", r.Header.Get("ETag"))
	}
	wantOutcome(t, s.Do("GET", "Patient/"+id, nil), 410, "")
	s.Do("DELETE", "Patient/"+id, nil).Want(t, 204) // deleting twice is fine
	if v := s.Do("GET", "Patient/"+id+"/_history", nil).Want(t, 200).Total(); v != 2 {
		t.Errorf("history after two deletes has %d versions, want 2", v)
	}
	wantOutcome(t, s.Do("DELETE", "Patient/never-existed", nil), 404, "")
	if n := total(t, s, "Patient?"+nhsQuery("9000000084")); n != 0 {
		t.Errorf("deleted resource still found by search (%d)", n)
	}
	// If-Match on delete.
	id2 := create(t, s, "Patient", patient("9000000092"))
	wantOutcome(t, s.Do("DELETE", "Patient/"+id2, nil, `If-Match: W/"5"`), 412, "")
	s.Do("DELETE", "Patient/"+id2, nil, `If-Match: W/"1"`).Want(t, 204)
	// Prefer: return=OperationOutcome gives a body.
	id3 := create(t, s, "Patient", patient("9000000106"))
	r = s.Do("DELETE", "Patient/"+id3, nil, "Prefer: return=OperationOutcome").Want(t, 200)
	if r.Str("resourceType") != "OperationOutcome" || r.Str("issue.0.severity") != "information" {
		t.Errorf("delete with return=OperationOutcome: %s", r.Raw)
	}
}

func testConditionalDelete(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000114"))
	s.Do("DELETE", "Patient?"+nhsQuery("9000000114"), nil).Want(t, 204)
	wantOutcome(t, s.Do("GET", "Patient/"+id, nil), 410, "")
	// No match: success, nothing happens.
	s.Do("DELETE", "Patient?"+nhsQuery("9000000114"), nil).Want(t, 204)
	// Several matches: 412 (single conditional delete only), nothing deleted.
	create(t, s, "Patient", patient("", `"name":[{"family":"Gemini"}]`))
	create(t, s, "Patient", patient("", `"name":[{"family":"Gemini"}]`))
	wantOutcome(t, s.Do("DELETE", "Patient?family:exact=Gemini", nil), 412, "")
	if n := total(t, s, "Patient?family:exact=Gemini"); n != 2 {
		t.Errorf("%d Gemini left, want 2", n)
	}
	wantOutcome(t, s.Do("DELETE", "Patient", nil), 405, "")
	wantOutcome(t, s.Do("DELETE", "Patient?bogus=1", nil), 400, "bogus")
}

func TestHistory(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		shipped := versions(t, s) // the L&D resources every node loads at start
		a := create(t, s, "Patient", patient("9000000122"))
		for _, g := range []string{"male", "female", "other"} {
			s.Do("PUT", "Patient/"+a, patient("9000000122", `"id":"`+a+`"`, `"gender":"`+g+`"`)).Want(t, 200)
		}
		s.Do("DELETE", "Patient/"+a, nil).Want(t, 204)
		b := create(t, s, "Patient", patient("9000000130"))
		obs := create(t, s, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"pulse"},"subject":{"reference":"Patient/`+b+`"}}`)

		inst := s.Do("GET", "Patient/"+a+"/_history", nil).Want(t, 200)
		if inst.Str("type") != "history" || inst.Total() != 5 || len(inst.Entries()) != 5 {
			t.Fatalf("instance history: %s", inst.Raw)
		}
		// Newest first: the delete, then versions 4..1.
		if apptest.Get(inst.JSON, "entry.0.request.method") != "DELETE" || apptest.Get(inst.JSON, "entry.0.resource") != nil {
			t.Errorf("entry 0 should be the delete without a resource: %v", inst.Entries()[0])
		}
		for i, want := range []string{`W/"5"`, `W/"4"`, `W/"3"`, `W/"2"`, `W/"1"`} {
			if got := apptest.Get(inst.JSON, "entry."+itoa(i)+".response.etag"); got != want {
				t.Errorf("entry %d etag %v, want %s", i, got, want)
			}
		}
		if apptest.Get(inst.JSON, "entry.4.request.method") != "POST" || apptest.Get(inst.JSON, "entry.4.response.status") != "201 Created" {
			t.Errorf("first version entry: %v", inst.Entries()[4])
		}
		wantOutcome(t, s.Do("GET", "Patient/nobody/_history", nil), 404, "")

		if n := s.Do("GET", "Patient/_history", nil).Want(t, 200).Total(); n != 6 {
			t.Errorf("type history total %d, want 6", n)
		}
		if n := s.Do("GET", "Observation/_history", nil).Want(t, 200).Total(); n != 1 {
			t.Errorf("Observation history total %d, want 1", n)
		}
		sys := s.Do("GET", "_history", nil).Want(t, 200)
		if sys.Total() != 7+shipped || entryIDs(sys, "")[0] != "Observation/"+obs {
			t.Errorf("system history: total %d, first %v", sys.Total(), entryIDs(sys, ""))
		}

		// Paging: 2 per page over the instance's 5 versions, stable under a new write.
		p1 := s.Do("GET", "Patient/_history?_count=2", nil).Want(t, 200)
		if len(p1.Entries()) != 2 || link(p1, "next") == "" {
			t.Fatalf("page 1: %s", p1.Raw)
		}
		var seen []string
		collect := func(r *apptest.Result) {
			for _, e := range r.Entries() {
				seen = append(seen, apptest.Get(e, "fullUrl").(string)+" "+apptest.Get(e, "response.etag").(string))
			}
		}
		collect(p1)
		create(t, s, "Patient", patient("9000000149")) // written after page 1
		next := link(p1, "next")
		for pages := 0; next != "" && pages < 10; pages++ {
			p := s.Do("GET", next, nil).Want(t, 200)
			if link(p, "previous") == "" {
				t.Errorf("later page lacks a previous link")
			}
			collect(p)
			next = link(p, "next")
		}
		if len(seen) != 6 {
			t.Errorf("paged history saw %d entries, want the original 6: %v", len(seen), seen)
		}
		if len(dedupe(seen)) != len(seen) {
			t.Errorf("paged history repeated entries: %v", seen)
		}
		wantOutcome(t, s.Do("GET", "Patient/_history?_count=abc", nil), 400, "_count")
		wantOutcome(t, s.Do("GET", "Patient/_history?_since=notadate", nil), 400, "_since")
		if n := s.Do("GET", "Patient/_history?_since=2999-01-01", nil).Want(t, 200).Total(); n != 0 {
			t.Errorf("_since in the future: total %d", n)
		}
	})
}

func dedupe(in []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range in {
		m[s] = true
	}
	return m
}

func testConditionalRead(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000157"))
	r := s.Do("GET", "Patient/"+id, nil, `If-None-Match: W/"1"`).Want(t, 304)
	if len(r.Raw) != 0 || r.Header.Get("ETag") != `W/"1"` {
		t.Errorf("304: %v %s", r.Header, r.Raw)
	}
	s.Do("GET", "Patient/"+id, nil, `If-None-Match: W/"7"`).Want(t, 200)
	s.Do("GET", "Patient/"+id, nil, "If-Modified-Since: "+time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)).Want(t, 304)
	s.Do("GET", "Patient/"+id, nil, "If-Modified-Since: "+time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)).Want(t, 200)
	s.Do("GET", "Patient/"+id+"/_history/1", nil, `If-None-Match: W/"1"`).Want(t, 304)
}

func testPreferReturn(t *testing.T, s *apptest.Server) {
	cases := []struct {
		prefer   string
		wantType string // "" means an empty body
	}{
		{"return=minimal", ""},
		{"return=representation", "Patient"},
		{"return=OperationOutcome", "OperationOutcome"},
		{"", "Patient"},
	}
	for _, c := range cases {
		t.Run(c.prefer, func(t *testing.T) {
			var h []string
			if c.prefer != "" {
				h = append(h, "Prefer: "+c.prefer)
			}
			r := s.Do("POST", "Patient", patient("9000000165"), h...).Want(t, 201)
			if r.Header.Get("Location") == "" || r.Header.Get("ETag") != `W/"1"` {
				t.Errorf("headers missing: %v", r.Header)
			}
			if got := r.Str("resourceType"); got != c.wantType || (c.wantType == "" && len(r.Raw) != 0) {
				t.Errorf("create body %q, want %q: %s", got, c.wantType, r.Raw)
			}
			id := strings.Split(strings.TrimPrefix(r.Header.Get("Location"), s.Base+"/Patient/"), "/")[0]
			u := s.Do("PUT", "Patient/"+id, patient("9000000165", `"id":"`+id+`"`), h...).Want(t, 200)
			if got := u.Str("resourceType"); got != c.wantType {
				t.Errorf("update body %q, want %q", got, c.wantType)
			}
			p := s.Do("PATCH", "Patient/"+id, `[{"op":"add","path":"/active","value":true}]`, append(h, "Content-Type: application/json-patch+json")...).Want(t, 200)
			if got := p.Str("resourceType"); got != c.wantType || p.Header.Get("ETag") != `W/"3"` {
				t.Errorf("patch body %q (want %q), ETag %q", got, c.wantType, p.Header.Get("ETag"))
			}
			tx := s.Do("POST", "", bundle("transaction", ent("", "POST", "Patient", raw(t, patient("9000000165")))), h...).Want(t, 200)
			switch c.wantType {
			case "":
				if apptest.Get(tx.JSON, "entry.0.resource") != nil || apptest.Get(tx.JSON, "entry.0.response.outcome") != nil {
					t.Errorf("transaction entry with return=minimal: %v", tx.Entries())
				}
			case "OperationOutcome":
				if apptest.Get(tx.JSON, "entry.0.response.outcome.resourceType") != "OperationOutcome" {
					t.Errorf("transaction entry with return=OperationOutcome: %v", tx.Entries())
				}
			default:
				if apptest.Get(tx.JSON, "entry.0.resource.resourceType") != "Patient" {
					t.Errorf("transaction entry with return=representation: %v", tx.Entries())
				}
			}
		})
	}
}

func testHead(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000173"))
	r := s.Do("HEAD", "Patient/"+id, nil).Want(t, 200)
	if len(r.Raw) != 0 || r.Header.Get("ETag") != `W/"1"` {
		t.Errorf("HEAD: %v %q", r.Header, r.Raw)
	}
	s.Do("HEAD", "Patient/nobody", nil).Want(t, 404)
	s.Do("HEAD", "Patient/"+id+"/_history/1", nil).Want(t, 200)
	for _, path := range []string{"Patient?_id=" + id, "metadata", "Patient/" + id + "/_history", "_history"} {
		if r := s.Do("HEAD", path, nil).Want(t, 200); len(r.Raw) != 0 {
			t.Errorf("HEAD %s has a body", path)
		}
	}
}

func testMethodNotAllowed(t *testing.T, s *apptest.Server) {
	id := create(t, s, "Patient", patient("9000000181"))
	cases := []struct{ method, path string }{
		{"POST", "Patient/" + id},
		{"DELETE", "metadata"},
		{"PUT", "_history"},
		{"DELETE", "Patient/_history"},
		{"POST", "Patient/" + id + "/_history"},
		{"PUT", "Patient/" + id + "/_history/1"},
		{"GET", "Patient/_search"},
		{"PUT", ""},
		{"DELETE", ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			var body any
			if c.method == "POST" || c.method == "PUT" {
				body = patient("")
			}
			wantOutcome(t, s.Do(c.method, c.path, body), 405, "")
		})
	}
	if v := s.Do("GET", "Patient/"+id, nil).Want(t, 200).Str("meta.versionId"); v != "1" {
		t.Errorf("405s changed the resource: version %s", v)
	}
}
