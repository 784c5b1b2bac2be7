package testscript

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/hjbroker/hjbroker/broker/app"
)

// fakeServer answers like a tiny FHIR server and records every request.
type fakeServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, URL, ContentType, Accept string
	Header                           http.Header
	Body                             string
}

func newFake(t *testing.T) *fakeServer {
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) base() string { return f.URL + "/fhir" }

func (f *fakeServer) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{Method: r.Method, URL: r.URL.RequestURI(), ContentType: r.Header.Get("Content-Type"),
		Accept: r.Header.Get("Accept"), Header: r.Header.Clone(), Body: string(body)})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	base := "http://" + r.Host + "/fhir"
	write := func(status int, v any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	p := strings.TrimPrefix(r.URL.Path, "/fhir")
	switch {
	case r.Method == "POST" && p == "/Observation":
		write(500, map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "error", "code": "exception"}}})
	case r.Method == "POST" && p == "/Patient":
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		if m == nil {
			m = map[string]any{"resourceType": "Patient"}
		}
		m["id"], m["meta"] = "p1", map[string]any{"versionId": "1"}
		w.Header().Set("Location", base+"/Patient/p1/_history/1")
		w.Header().Set("ETag", `W/"1"`)
		write(201, m)
	case r.Method == "GET" && p == "/Patient/p1":
		w.Header().Set("ETag", `W/"2"`)
		write(200, map[string]any{"resourceType": "Patient", "id": "p1", "meta": map[string]any{"versionId": "2"},
			"name": []any{map[string]any{"family": "Smith", "given": []any{"Ann"}}}, "birthDate": "1980-01-01"})
	case r.Method == "GET" && p == "/Patient" && r.URL.Query().Get("page") != "":
		b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 2,
			"link":  []any{map[string]any{"relation": "self", "url": base + "/Patient?" + r.URL.RawQuery}},
			"entry": []any{map[string]any{"resource": map[string]any{"resourceType": "Patient", "id": "p" + r.URL.Query().Get("page")}, "search": map[string]any{"mode": "match"}}}}
		switch r.URL.Query().Get("page") {
		case "1":
			b["link"] = append(b["link"].([]any), map[string]any{"relation": "next", "url": base + "/Patient?page=2"})
		case "broken":
			b["link"] = append(b["link"].([]any), map[string]any{"relation": "next", "url": base + "/Nowhere"})
		}
		write(200, b)
	case r.Method == "GET" && p == "/metadata":
		write(200, map[string]any{"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1"})
	case r.Method == "DELETE":
		w.WriteHeader(204)
	case r.Method == "GET" && p == "/Nowhere":
		write(404, map[string]any{"resourceType": "OperationOutcome"})
	case r.Method == "GET":
		write(200, map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 0})
	default:
		write(200, map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "information", "code": "informational"}}})
	}
}

// Builders for scripts written in tests.

func operation(code string, kv ...any) map[string]any {
	o := map[string]any{"encodeRequestUrl": false}
	if code != "" {
		o["type"] = map[string]any{"system": OperationSystem, "code": code}
	}
	for i := 0; i < len(kv); i += 2 {
		o[kv[i].(string)] = kv[i+1]
	}
	return map[string]any{"operation": o}
}

func assertion(kv ...any) map[string]any {
	a := map[string]any{"warningOnly": false}
	for i := 0; i < len(kv); i += 2 {
		a[kv[i].(string)] = kv[i+1]
	}
	return map[string]any{"assert": a}
}

type scriptParts struct {
	fixtures  []any
	variables []any
	setup     []any
	tests     [][]any
	teardown  []any
}

var runFS = fstest.MapFS{
	"fixtures/patient.json":    {Data: []byte(`{"resourceType": "Patient", "name": [{"family": "${family}"}]}`)},
	"fixtures/smith.json":      {Data: []byte(`{"resourceType": "Patient", "name": [{"family": "Smith"}], "birthDate": "1980-01-01"}`)},
	"fixtures/jones.json":      {Data: []byte(`{"resourceType": "Patient", "name": [{"family": "Jones"}]}`)},
	"fixtures/fixed.json":      {Data: []byte(`{"resourceType": "Patient", "id": "fixed-id"}`)},
	"fixtures/bad.json":        {Data: []byte(`{"resourceType": "Patient", "gender": "robot"}`)},
	"fixtures/patch.json":      {Data: []byte(`[{"op": "replace", "path": "/gender", "value": "female"}]`)},
	"fixtures/bundle.json":     {Data: []byte(`{"resourceType": "Bundle", "type": "transaction", "entry": []}`)},
	"fixtures/obs.json":        {Data: []byte(`{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}`)},
	"fixtures/auto.json":       {Data: []byte(`{"resourceType": "Patient", "name": [{"family": "Auto"}]}`)},
	"fixtures/parameters.json": {Data: []byte(`{"resourceType": "Parameters"}`)},
}

func fx(id, file string, auto bool) map[string]any {
	return map[string]any{"id": id, "autocreate": auto, "autodelete": auto, "resource": map[string]any{"reference": "fixtures/" + file}}
}

func (p scriptParts) build(t *testing.T) *Script {
	t.Helper()
	m := map[string]any{"resourceType": "TestScript", "url": "https://example.org/TestScript/t", "name": "t", "status": "active",
		"profile": []any{map[string]any{"id": "core", "reference": "http://hl7.org/fhir/StructureDefinition/Patient"}}}
	fixtures := append([]any{fx("patient", "patient.json", false), fx("smith", "smith.json", false), fx("jones", "jones.json", false),
		fx("fixed", "fixed.json", false), fx("bad", "bad.json", false), fx("patch", "patch.json", false),
		fx("bundle", "bundle.json", false), fx("obs", "obs.json", false), fx("parameters", "parameters.json", false)}, p.fixtures...)
	m["fixture"] = fixtures
	m["variable"] = append([]any{map[string]any{"name": "family", "defaultValue": "Smith"}}, p.variables...)
	if p.setup != nil {
		m["setup"] = map[string]any{"action": p.setup}
	}
	var tests []any
	for i, acts := range p.tests {
		tests = append(tests, map[string]any{"name": fmt.Sprintf("t%d", i), "action": acts})
	}
	m["test"] = tests
	if p.teardown != nil {
		m["teardown"] = map[string]any{"action": p.teardown}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s.File, s.FS = "t.json", runFS
	return s
}

var sharedValidator Validator

func runner(t *testing.T, base string) *Runner {
	t.Helper()
	if sharedValidator == nil {
		v, err := app.NewValidator(testEngine, nil)
		if err != nil {
			t.Fatal(err)
		}
		sharedValidator = v
	}
	r, err := New(Config{Base: base, FHIRPath: testEngine, Validator: sharedValidator, Structure: testChecker(t),
		Header: http.Header{"Authorization": {"Bearer secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRun(t *testing.T, r *Runner, s *Script) *ScriptResult {
	t.Helper()
	res := r.Run(context.Background(), s)
	if len(res.Invalid) > 0 {
		t.Fatalf("script invalid: %v", res.Invalid)
	}
	return res
}

var createPatient = operation("create", "sourceId", "patient", "responseId", "created")

func TestOperationsSendTheRightRequests(t *testing.T) {
	cases := []struct {
		name      string
		op        map[string]any
		method    string
		url       string
		check     func(t *testing.T, r recorded)
		variables []any
	}{
		{name: "read", op: operation("read", "targetId", "created"), method: "GET", url: "/fhir/Patient/p1"},
		{name: "read by params", op: operation("read", "resource", "Patient", "params", "/p9"), method: "GET", url: "/fhir/Patient/p9"},
		{name: "vread", op: operation("vread", "targetId", "created"), method: "GET", url: "/fhir/Patient/p1/_history/1"},
		{name: "update", op: operation("update", "sourceId", "smith", "targetId", "created"), method: "PUT", url: "/fhir/Patient/p1",
			check: func(t *testing.T, r recorded) {
				if !strings.Contains(r.Body, `"id":"p1"`) {
					t.Errorf("update body lacks the target id: %s", r.Body)
				}
			}},
		{name: "updateCreate", op: operation("updateCreate", "sourceId", "fixed"), method: "PUT", url: "/fhir/Patient/fixed-id"},
		{name: "patch", op: operation("patch", "sourceId", "patch", "targetId", "created"), method: "PATCH", url: "/fhir/Patient/p1",
			check: func(t *testing.T, r recorded) {
				if r.ContentType != "application/json-patch+json" {
					t.Errorf("content type %s", r.ContentType)
				}
			}},
		{name: "delete", op: operation("delete", "targetId", "created"), method: "DELETE", url: "/fhir/Patient/p1"},
		{name: "deleteCondMultiple", op: operation("deleteCondMultiple", "resource", "Patient", "params", "?identifier=x"), method: "DELETE", url: "/fhir/Patient?identifier=x"},
		{name: "deleteCondSingle", op: operation("deleteCondSingle", "resource", "Patient", "params", "?identifier=y"), method: "DELETE", url: "/fhir/Patient?identifier=y"},
		{name: "history instance", op: operation("history", "targetId", "created"), method: "GET", url: "/fhir/Patient/p1/_history"},
		{name: "history type", op: operation("history", "resource", "Patient"), method: "GET", url: "/fhir/Patient/_history"},
		{name: "history system", op: operation("history"), method: "GET", url: "/fhir/_history"},
		{name: "history type, paged", op: operation("history", "resource", "Patient", "params", "?_count=1"), method: "GET", url: "/fhir/Patient/_history?_count=1"},
		{name: "history system, paged", op: operation("history", "params", "?_since=2026-01-01"), method: "GET", url: "/fhir/_history?_since=2026-01-01"},
		{name: "history by params", op: operation("history", "resource", "Patient", "params", "/p7/_history"), method: "GET", url: "/fhir/Patient/p7/_history"},
		{name: "search type, encoded", op: operation("search", "resource", "Patient", "params", "?name=Ann Smith&identifier=a|b", "encodeRequestUrl", true),
			method: "GET", url: "/fhir/Patient?name=Ann+Smith&identifier=a%7Cb"},
		{name: "search system", op: operation("search", "params", "?_id=p1"), method: "GET", url: "/fhir?_id=p1"},
		{name: "search by POST", op: operation("search", "resource", "Patient", "method", "post", "params", "?family=Smith"), method: "POST", url: "/fhir/Patient/_search",
			check: func(t *testing.T, r recorded) {
				if r.Body != "family=Smith" || r.ContentType != "application/x-www-form-urlencoded" {
					t.Errorf("body %q, content type %s", r.Body, r.ContentType)
				}
			}},
		{name: "batch", op: operation("batch", "sourceId", "bundle"), method: "POST", url: "/fhir"},
		{name: "transaction", op: operation("transaction", "sourceId", "bundle"), method: "POST", url: "/fhir"},
		{name: "capabilities", op: operation("capabilities"), method: "GET", url: "/fhir/metadata"},
		{name: "validate", op: operation("validate", "resource", "Patient", "sourceId", "smith"), method: "POST", url: "/fhir/Patient/$validate"},
		{name: "everything", op: operation("everything", "targetId", "created"), method: "GET", url: "/fhir/Patient/p1/$everything"},
		{name: "operation with params", op: operation("process-message", "sourceId", "bundle", "params", "?async=false"), method: "POST", url: "/fhir/$process-message?async=false"},
		{name: "url and method", op: operation("", "method", "get", "url", "Patient?family=${family}"), method: "GET", url: "/fhir/Patient?family=Smith"},
		{name: "variables everywhere", op: operation("create", "sourceId", "patient", "contentType", "xml", "accept", "xml",
			"requestHeader", []any{map[string]any{"field": "If-None-Exist", "value": "identifier=${createdId}"}, map[string]any{"field": "Authorization", "value": "Bearer other"}}),
			variables: []any{map[string]any{"name": "createdId", "headerField": "Location", "sourceId": "created"}},
			method:    "POST", url: "/fhir/Patient",
			check: func(t *testing.T, r recorded) {
				if !strings.Contains(r.Body, `"family": "Smith"`) {
					t.Errorf("body not substituted: %s", r.Body)
				}
				if r.ContentType != "application/fhir+xml" || r.Accept != "application/fhir+xml" {
					t.Errorf("content type %s, accept %s", r.ContentType, r.Accept)
				}
				if got := r.Header.Get("If-None-Exist"); !strings.HasSuffix(got, "/fhir/Patient/p1/_history/1") {
					t.Errorf("If-None-Exist %q", got)
				}
				if got := r.Header.Get("Authorization"); got != "Bearer other" {
					t.Errorf("a requestHeader did not replace the runner's: %q", got)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t)
			s := scriptParts{setup: []any{createPatient}, tests: [][]any{{c.op}}, variables: c.variables}.build(t)
			res := mustRun(t, runner(t, f.base()), s)
			if res.Tests[0].Status != Pass {
				t.Fatalf("test %s: %s", res.Tests[0].Status, res.Tests[0].Message)
			}
			reqs := f.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want the create and one more", len(reqs))
			}
			r := reqs[1]
			if r.Method != c.method || r.URL != c.url {
				t.Errorf("sent %s %s, want %s %s", r.Method, r.URL, c.method, c.url)
			}
			if c.name != "variables everywhere" && r.Header.Get("Authorization") != "Bearer secret" {
				t.Errorf("the runner's header was not sent: %v", r.Header)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

func TestAssertsAndOperators(t *testing.T) {
	read := operation("read", "targetId", "created", "responseId", "read")
	cases := []struct {
		name   string
		assert map[string]any
		pass   bool
	}{
		{"response okay", assertion("response", "okay"), true},
		{"response created", assertion("response", "created"), false},
		{"response notEquals", assertion("response", "notFound", "operator", "notEquals"), true},
		{"responseCode equals", assertion("responseCode", "200"), true},
		{"responseCode in", assertion("responseCode", "200,201", "operator", "in"), true},
		{"responseCode in, absent", assertion("responseCode", "404,410", "operator", "in"), false},
		{"responseCode notIn", assertion("responseCode", "404,410", "operator", "notIn"), true},
		{"responseCode greaterThan", assertion("responseCode", "199", "operator", "greaterThan"), true},
		{"responseCode lessThan", assertion("responseCode", "200", "operator", "lessThan"), false},
		{"contentType json", assertion("contentType", "json"), true},
		{"contentType xml", assertion("contentType", "xml"), false},
		{"contentType contains", assertion("contentType", "json", "operator", "contains"), true},
		{"contentType notContains", assertion("contentType", "json", "operator", "notContains"), false},
		{"resource", assertion("resource", "Patient"), true},
		{"resource wrong", assertion("resource", "Bundle"), false},
		{"resource notEquals", assertion("resource", "Bundle", "operator", "notEquals"), true},
		{"header equals", assertion("headerField", "ETag", "value", `W/"2"`), true},
		{"header equals wrong", assertion("headerField", "ETag", "value", `W/"1"`), false},
		{"header notEmpty", assertion("headerField", "ETag", "operator", "notEmpty"), true},
		{"header empty", assertion("headerField", "ETag", "operator", "empty"), false},
		{"absent header empty", assertion("headerField", "X-Absent", "operator", "empty"), true},
		{"absent header equals", assertion("headerField", "X-Absent", "value", "x"), false},
		{"header contains", assertion("headerField", "ETag", "operator", "contains", "value", "2"), true},
		{"header notContains", assertion("headerField", "ETag", "operator", "notContains", "value", "2"), false},
		{"header in", assertion("headerField", "ETag", "operator", "in", "value", `W/"1",W/"2"`), true},
		{"header notIn", assertion("headerField", "ETag", "operator", "notIn", "value", `W/"1",W/"2"`), false},
		{"expression equals", assertion("expression", "name.family", "value", "Smith"), true},
		{"expression equals wrong", assertion("expression", "name.family", "value", "Jones"), false},
		{"expression notEquals", assertion("expression", "name.family", "operator", "notEquals", "value", "Smith"), false},
		{"expression in", assertion("expression", "name.family", "operator", "in", "value", "Jones,Smith"), true},
		{"expression notIn", assertion("expression", "name.family", "operator", "notIn", "value", "Jones,Smith"), false},
		{"expression contains", assertion("expression", "name.family", "operator", "contains", "value", "mit"), true},
		{"expression notContains", assertion("expression", "name.family", "operator", "notContains", "value", "mit"), false},
		{"expression empty", assertion("expression", "telecom", "operator", "empty"), true},
		{"expression notEmpty", assertion("expression", "telecom", "operator", "notEmpty"), false},
		{"expression greaterThan", assertion("expression", "meta.versionId", "operator", "greaterThan", "value", "1"), true},
		{"expression lessThan", assertion("expression", "meta.versionId", "operator", "lessThan", "value", "2"), false},
		{"date greaterThan", assertion("expression", "birthDate", "operator", "greaterThan", "value", "1979-12-31"), true},
		{"eval true", assertion("expression", "birthDate < @1990-01-01", "operator", "eval"), true},
		{"eval false", assertion("expression", "gender.exists()", "operator", "eval"), false},
		{"bare boolean expression", assertion("expression", "name.given = 'Ann'"), true},
		{"bare non-boolean expression", assertion("expression", "name.given"), false},
		{"variable in expression", assertion("expression", "name.family = '${family}'"), true},
		{"compareToSource equals", assertion("expression", "name.family", "compareToSourceId", "smith", "compareToSourceExpression", "name.family"), true},
		{"compareToSource differs", assertion("expression", "name.family", "compareToSourceId", "jones", "compareToSourceExpression", "name.family"), false},
		{"compareToSource notEquals", assertion("expression", "name.family", "operator", "notEquals", "compareToSourceId", "jones", "compareToSourceExpression", "name.family"), true},
		{"compareToSourcePath", assertion("path", "name.family", "compareToSourceId", "smith", "compareToSourcePath", "fhir:Patient/fhir:name/fhir:family/@value"), true},
		{"xpath path", assertion("path", "fhir:Patient/fhir:name[1]/fhir:family/@value", "value", "Smith"), true},
		{"json path", assertion("path", "$.name[0].family", "value", "Smith"), true},
		{"dotted path wrong", assertion("path", "name.family", "value", "Jones"), false},
		{"minimumId", assertion("minimumId", "smith"), true},
		{"minimumId differs", assertion("minimumId", "jones"), false},
		{"minimumId notEquals", assertion("minimumId", "jones", "operator", "notEquals"), true},
		{"requestMethod", assertion("requestMethod", "get"), true},
		{"requestMethod wrong", assertion("requestMethod", "post"), false},
		{"requestURL", assertion("requestURL", "Patient/p1"), true},
		{"requestURL contains", assertion("requestURL", "/p1", "operator", "contains"), true},
		{"requestURL wrong", assertion("requestURL", "Patient/p2"), false},
		{"validateProfileId", assertion("validateProfileId", "core"), true},
		{"validateProfileId invalid resource", assertion("validateProfileId", "core", "sourceId", "bad"), false},
		{"sourceId response", assertion("response", "created", "sourceId", "created"), true},
		{"sourceId fixture", assertion("expression", "name.family", "value", "Jones", "sourceId", "jones"), true},
		{"request direction", assertion("headerField", "Accept", "direction", "request", "value", "application/fhir+json"), true},
		{"request direction body", assertion("expression", "name.family", "value", "Smith", "direction", "request", "sourceId", "created"), true},
	}
	f := newFake(t)
	r := runner(t, f.base())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := scriptParts{setup: []any{createPatient}, tests: [][]any{{read, c.assert}}}.build(t)
			res := mustRun(t, r, s)
			tr := res.Tests[0]
			if got := tr.Status == Pass; got != c.pass {
				t.Fatalf("passed = %v, want %v (%s)", got, c.pass, tr.Message)
			}
			if !c.pass {
				a := tr.Actions[len(tr.Actions)-1]
				if a.Status != Fail || a.Message == "" || a.Path != "TestScript.test[0].action[1].assert" {
					t.Errorf("failure not described: %+v", a)
				}
			}
		})
	}
}

func TestWarningOnlyDoesNotFail(t *testing.T) {
	f := newFake(t)
	warn := assertion("response", "created", "warningOnly", true)
	s := scriptParts{setup: []any{createPatient}, tests: [][]any{{operation("read", "targetId", "created"), warn, assertion("response", "okay")}}}.build(t)
	res := mustRun(t, runner(t, f.base()), s)
	tr := res.Tests[0]
	if tr.Status != Pass || len(tr.Actions) != 3 || tr.Actions[1].Status != Warning {
		t.Fatalf("status %s, actions %+v", tr.Status, tr.Actions)
	}
}

func TestNavigationLinks(t *testing.T) {
	cases := []struct {
		page string
		want bool // the assert's navigationLinks
		pass bool
	}{
		{"1", true, true},       // a next link that answers a Bundle
		{"2", true, false},      // total 2, one entry, and no next link
		{"broken", true, false}, // the next link answers 404
		{"2", false, true},      // one page asked for: no next link
		{"1", false, false},     // one page asked for, but there is a next link
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("page %s links %v", c.page, c.want), func(t *testing.T) {
			f := newFake(t)
			s := scriptParts{tests: [][]any{{operation("search", "resource", "Patient", "params", "?page="+c.page),
				assertion("navigationLinks", c.want)}}}.build(t)
			res := mustRun(t, runner(t, f.base()), s)
			if got := res.Tests[0].Status == Pass; got != c.pass {
				t.Fatalf("passed = %v, want %v: %s", got, c.pass, res.Tests[0].Message)
			}
		})
	}
}

func TestSetupFailureFailsEveryTestAndTeardownRuns(t *testing.T) {
	f := newFake(t)
	s := scriptParts{
		fixtures: []any{fx("auto", "auto.json", true)},
		setup:    []any{createPatient, operation("create", "sourceId", "obs"), assertion("response", "created")},
		tests:    [][]any{{operation("read", "targetId", "created")}, {operation("capabilities")}},
		teardown: []any{operation("delete", "targetId", "created")},
	}.build(t)
	res := mustRun(t, runner(t, f.base()), s)
	for _, tr := range res.Tests {
		if tr.Status != Fail || !strings.Contains(tr.Message, "setup failed") || !strings.Contains(tr.Message, "TestScript.setup.action[2].assert") {
			t.Errorf("test %s: %s %q", tr.Name, tr.Status, tr.Message)
		}
		if f := tr.Failure(); f == nil || f.Path != "TestScript.setup.action[2].assert" || f.Actual != "500" || f.Exchange == nil {
			t.Errorf("test %s: failure %+v", tr.Name, f)
		}
	}
	var got []string
	for _, r := range f.requests() {
		got = append(got, r.Method+" "+r.URL)
	}
	want := []string{
		"POST /fhir/Patient",      // autocreate
		"POST /fhir/Patient",      // setup create
		"POST /fhir/Observation",  // fails
		"DELETE /fhir/Patient/p1", // teardown
		"DELETE /fhir/Patient/p1", // autodelete of the fixture
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Passed() {
		t.Error("script passed")
	}
}

func TestFailedAssertStopsItsTestOnly(t *testing.T) {
	f := newFake(t)
	s := scriptParts{tests: [][]any{
		{operation("capabilities"), assertion("response", "notFound"), operation("history")},
		{operation("capabilities"), assertion("expression", "fhirVersion", "value", "4.0.1")},
	}}.build(t)
	res := mustRun(t, runner(t, f.base()), s)
	if res.Tests[0].Status != Fail || res.Tests[1].Status != Pass {
		t.Fatalf("statuses %s %s", res.Tests[0].Status, res.Tests[1].Status)
	}
	for _, r := range f.requests() {
		if r.URL == "/fhir/_history" {
			t.Error("the action after a failed assert ran")
		}
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestVariables(t *testing.T) {
	f := newFake(t)
	vars := []any{
		map[string]any{"name": "etag", "headerField": "ETag", "sourceId": "created"},
		map[string]any{"name": "pid", "expression": "id", "sourceId": "created"},
		map[string]any{"name": "fam", "path": "fhir:Patient/fhir:name/fhir:family", "sourceId": "read"},
		map[string]any{"name": "later", "expression": "id", "sourceId": "never", "defaultValue": "fallback"},
		map[string]any{"name": "last", "expression": "(meta.versionId | total).first()"},
	}
	s := scriptParts{variables: vars, setup: []any{createPatient}, tests: [][]any{{
		operation("read", "resource", "Patient", "params", "/${pid}", "responseId", "read",
			"requestHeader", []any{map[string]any{"field": "If-None-Match", "value": "${etag}"}}),
		assertion("expression", "name.family", "value", "${fam}"),
		assertion("expression", "'${later}'", "value", "fallback"),
		assertion("expression", "'${last}'", "value", "2"),
		operation("", "method", "get", "url", "${later}/${pid}"),
	}, {
		operation("history"),
		assertion("expression", "'${last}'", "value", "0"),
	}}}
	sc := s.build(t)
	// "never" is a responseId no operation records, so add one the checker can see.
	sc.Test[1].Action = append(sc.Test[1].Action, Action{Operation: &Operation{Type: &Coding{System: OperationSystem, Code: "capabilities"}, ResponseID: "never", EncodeRequestURL: new(bool)}})
	res := mustRun(t, runner(t, f.base()), sc)
	for _, tr := range res.Tests {
		if tr.Status != Pass {
			t.Fatalf("%s: %s", tr.Name, tr.Message)
		}
	}
	reqs := f.requests()
	if reqs[1].URL != "/fhir/Patient/p1" || reqs[1].Header.Get("If-None-Match") != `W/"1"` {
		t.Errorf("read sent %s with If-None-Match %q", reqs[1].URL, reqs[1].Header.Get("If-None-Match"))
	}
	if reqs[2].URL != "/fhir/fallback/p1" {
		t.Errorf("url sent %s", reqs[2].URL)
	}
}

func TestAutocreateFailureFailsSetup(t *testing.T) {
	f := newFake(t)
	s := scriptParts{fixtures: []any{fx("auto-obs", "obs.json", true)}, tests: [][]any{{operation("capabilities")}}}.build(t)
	res := mustRun(t, runner(t, f.base()), s)
	if res.Tests[0].Status != Fail || !strings.Contains(res.Tests[0].Message, "autocreate auto-obs") {
		t.Fatalf("%s %q", res.Tests[0].Status, res.Tests[0].Message)
	}
	if len(f.requests()) != 1 {
		t.Errorf("%d requests, want only the failed autocreate", len(f.requests()))
	}
}

func TestUnreachableTargetIsAnError(t *testing.T) {
	f := newFake(t)
	base := f.base()
	f.Close()
	s := scriptParts{tests: [][]any{{operation("capabilities"), assertion("response", "okay")}}}.build(t)
	res := mustRun(t, runner(t, base), s)
	if res.Tests[0].Status != Errored {
		t.Fatalf("status %s: %s", res.Tests[0].Status, res.Tests[0].Message)
	}
}

func TestNewRejectsBadTargets(t *testing.T) {
	for _, base := range []string{"", "ftp://x/fhir", "not a url", "http://"} {
		if _, err := New(Config{Base: base, FHIRPath: testEngine}); err == nil {
			t.Errorf("target %q accepted", base)
		}
	}
	if _, err := New(Config{Base: "http://127.0.0.1/fhir"}); err == nil {
		t.Error("a runner without FHIRPath engine accepted")
	}
}

func TestGivenVariables(t *testing.T) {
	f := newFake(t)
	vars := []any{
		map[string]any{"name": "token-gp", "hint": "the gp client's token"},
		map[string]any{"name": "overridden", "defaultValue": "from-script"},
	}
	s := scriptParts{variables: vars, tests: [][]any{{
		operation("capabilities", "requestHeader", []any{map[string]any{"field": "Authorization", "value": "Bearer ${token-gp}"},
			map[string]any{"field": "X-Value", "value": "${overridden}"}}),
	}}}.build(t)
	r := runner(t, f.base())
	res := mustRun(t, r, s)
	if tr := res.Tests[0]; tr.Status != Errored || !strings.Contains(tr.Message, "token-gp: the runner was not given a value (the gp client's token)") {
		t.Fatalf("without the value: %s %q", tr.Status, tr.Message)
	}
	r.cfg.Variables = map[string]string{"token-gp": "gp-token", "overridden": "from-runner"}
	res = mustRun(t, r, s)
	if res.Tests[0].Status != Pass {
		t.Fatalf("with the value: %s", res.Tests[0].Message)
	}
	last := f.requests()[len(f.requests())-1]
	if last.Header.Get("Authorization") != "Bearer gp-token" || last.Header.Get("X-Value") != "from-runner" {
		t.Errorf("headers %v", last.Header)
	}
}

func TestAutocreatedFixtures(t *testing.T) {
	f := newFake(t)
	s := scriptParts{
		fixtures:  []any{fx("auto", "auto.json", true)},
		variables: []any{map[string]any{"name": "autoId", "expression": "id", "sourceId": "auto"}},
		tests: [][]any{{
			operation("read", "sourceId", "auto", "responseId", "r"),
			assertion("requestURL", "Patient/${autoId}"),
		}},
	}.build(t)
	res := mustRun(t, runner(t, f.base()), s)
	if res.Tests[0].Status != Pass {
		t.Fatalf("%s", res.Tests[0].Message)
	}
	reqs := f.requests()
	if reqs[1].Method != "GET" || reqs[1].URL != "/fhir/Patient/p1" {
		t.Errorf("a read of the autocreated fixture sent %s %s", reqs[1].Method, reqs[1].URL)
	}
	if last := reqs[len(reqs)-1]; last.Method != "DELETE" || last.URL != "/fhir/Patient/p1" {
		t.Errorf("autodelete sent %s %s", last.Method, last.URL)
	}
}

func TestCredentialsStayWithTheTarget(t *testing.T) {
	target, other := newFake(t), newFake(t)
	s := scriptParts{variables: []any{map[string]any{"name": "elsewhere", "defaultValue": other.base() + "/Patient?page=1"}},
		tests: [][]any{{
			operation("", "method", "get", "url", "${elsewhere}"),
			assertion("response", "okay"),
			assertion("navigationLinks", true),
		}}}.build(t)
	res := mustRun(t, runner(t, target.base()), s)
	if res.Tests[0].Status != Pass {
		t.Fatalf("%s", res.Tests[0].Message)
	}
	reqs := other.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests to the other server, want the url and its next link", len(reqs))
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("%s %s carried the runner's Authorization header", r.Method, r.URL)
		}
	}
}
