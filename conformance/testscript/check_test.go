package testscript

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// tools are built once: the R4 model and checker are large.
var testEngine = fhirpath.NewEngine(r4model.Load())

func testChecker(t testing.TB) *resource.Checker {
	t.Helper()
	c, err := resource.NewChecker(64)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// validScript is a small valid TestScript using most elements; each invalid case below
// breaks one thing in it.
const validScript = `{
  "resourceType": "TestScript",
  "url": "https://example.org/TestScript/check",
  "name": "check",
  "status": "active",
  "contained": [{"resourceType": "Patient", "id": "p1", "gender": "female"}],
  "fixture": [
    {"id": "patient", "autocreate": false, "autodelete": false, "resource": {"reference": "#p1"}},
    {"id": "file-patient", "autocreate": false, "autodelete": false, "resource": {"reference": "fixtures/patient.json"}}
  ],
  "profile": [{"id": "core", "reference": "http://hl7.org/fhir/StructureDefinition/Patient"}],
  "variable": [
    {"name": "createdId", "expression": "id", "sourceId": "created"},
    {"name": "family", "defaultValue": "Smith"}
  ],
  "setup": {"action": [
    {"operation": {"type": {"system": "http://terminology.hl7.org/CodeSystem/testscript-operation-codes", "code": "create"}, "sourceId": "patient", "responseId": "created", "encodeRequestUrl": false}},
    {"assert": {"response": "created", "warningOnly": false}}
  ]},
  "test": [
    {"name": "read", "action": [
      {"operation": {"type": {"system": "http://terminology.hl7.org/CodeSystem/testscript-operation-codes", "code": "read"}, "targetId": "created", "encodeRequestUrl": false}},
      {"assert": {"expression": "gender", "operator": "equals", "value": "female", "warningOnly": false}}
    ]},
    {"name": "search", "action": [
      {"operation": {"type": {"system": "http://terminology.hl7.org/CodeSystem/testscript-operation-codes", "code": "search"}, "resource": "Patient", "params": "?family=${family}", "encodeRequestUrl": true}},
      {"assert": {"resource": "Bundle", "warningOnly": false}}
    ]}
  ],
  "teardown": {"action": [
    {"operation": {"type": {"system": "http://terminology.hl7.org/CodeSystem/testscript-operation-codes", "code": "delete"}, "targetId": "created", "encodeRequestUrl": false}}
  ]}
}`

var testFS = fstest.MapFS{
	"fixtures/patient.json": {Data: []byte(`{"resourceType": "Patient", "gender": "male"}`)},
	"fixtures/broken.json":  {Data: []byte(`{"resourceType": `)},
}

// mutated returns validScript changed by f, on the decoded JSON.
func mutated(t *testing.T, f func(ts map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(validScript), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// at walks the decoded script: at(m, "test", 1, "action", 0, "assert").
func at(v any, path ...any) map[string]any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

func parseInFS(t *testing.T, raw []byte) *Script {
	t.Helper()
	s, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s.File, s.FS = "script.json", testFS
	return s
}

func TestCheckAcceptsValidScript(t *testing.T) {
	s := parseInFS(t, []byte(validScript))
	if err := Check(s, CheckOptions{FHIRPath: testEngine, Structure: testChecker(t)}); err != nil {
		t.Fatalf("valid script rejected: %v", err)
	}
}

func TestCheckRejectsInvalidScripts(t *testing.T) {
	op := func(m map[string]any, test, action int) map[string]any {
		return at(m, "test", test, "action", action, "operation")
	}
	as := func(m map[string]any, test, action int) map[string]any {
		return at(m, "test", test, "action", action, "assert")
	}
	cases := []struct {
		name, path, msg string
		mutate          func(m map[string]any)
	}{
		{"no url", "TestScript.url", "is required", func(m map[string]any) { delete(m, "url") }},
		{"no name", "TestScript.name", "is required", func(m map[string]any) { delete(m, "name") }},
		{"bad status", "TestScript.status", "not a publication status", func(m map[string]any) { m["status"] = "bogus" }},
		{"unknown operator", "TestScript.test[1].action[1].assert.operator", `"like" is not an assert operator`,
			func(m map[string]any) { as(m, 1, 1)["operator"] = "like" }},
		{"unknown operation type", "TestScript.test[0].action[0].operation.type.code", `"frobnicate" is not a TestScript operation type`,
			func(m map[string]any) { op(m, 0, 0)["type"].(map[string]any)["code"] = "frobnicate" }},
		{"foreign operation system", "TestScript.test[0].action[0].operation.type.system", "operation types come from",
			func(m map[string]any) { op(m, 0, 0)["type"].(map[string]any)["system"] = "http://example.org/ops" }},
		{"contained fixture missing", "TestScript.fixture[0].resource.reference", `no contained resource has id "nope"`,
			func(m map[string]any) { at(m, "fixture", 0, "resource")["reference"] = "#nope" }},
		{"fixture file missing", "TestScript.fixture[1].resource.reference", `fixture file "fixtures/absent.json"`,
			func(m map[string]any) { at(m, "fixture", 1, "resource")["reference"] = "fixtures/absent.json" }},
		{"fixture file not JSON", "TestScript.fixture[1].resource.reference", "is not JSON",
			func(m map[string]any) { at(m, "fixture", 1, "resource")["reference"] = "fixtures/broken.json" }},
		{"fixture outside folder", "TestScript.fixture[1].resource.reference", "outside the script's folder",
			func(m map[string]any) { at(m, "fixture", 1, "resource")["reference"] = "../secret.json" }},
		{"duplicate fixture id", "TestScript.fixture[1].id", "used by another fixture",
			func(m map[string]any) { at(m, "fixture", 1)["id"] = "patient" }},
		{"fixture without autocreate", "TestScript.fixture[0].autocreate", "is required",
			func(m map[string]any) { delete(at(m, "fixture", 0), "autocreate") }},
		{"unknown sourceId", "TestScript.setup.action[0].operation.sourceId", `"ghost" is neither a fixture nor a responseId`,
			func(m map[string]any) { at(m, "setup", "action", 0, "operation")["sourceId"] = "ghost" }},
		{"unknown targetId", "TestScript.test[0].action[0].operation.targetId", `"ghost"`,
			func(m map[string]any) { op(m, 0, 0)["targetId"] = "ghost" }},
		{"assert without subject", "TestScript.test[1].action[1].assert", "has no subject",
			func(m map[string]any) { delete(as(m, 1, 1), "resource") }},
		{"assert with two subjects", "TestScript.test[1].action[1].assert", "more than one subject (expression, resource)",
			func(m map[string]any) { as(m, 1, 1)["expression"] = "total > 0" }},
		{"assert without warningOnly", "TestScript.test[0].action[1].assert.warningOnly", "is required",
			func(m map[string]any) { delete(as(m, 0, 1), "warningOnly") }},
		{"operation without encodeRequestUrl", "TestScript.test[1].action[0].operation.encodeRequestUrl", "is required",
			func(m map[string]any) { delete(op(m, 1, 0), "encodeRequestUrl") }},
		{"undefined variable", "TestScript.test[1].action[0].operation.params", "${surname}, which is not a variable",
			func(m map[string]any) { op(m, 1, 0)["params"] = "?family=${surname}" }},
		{"undefined variable in a header", "TestScript.test[1].action[0].operation.requestHeader[0].value", "${etag}",
			func(m map[string]any) {
				op(m, 1, 0)["requestHeader"] = []any{map[string]any{"field": "If-Match", "value": "${etag}"}}
			}},
		{"variable source unknown", "TestScript.variable[0].sourceId", `"ghost"`,
			func(m map[string]any) { at(m, "variable", 0)["sourceId"] = "ghost" }},
		{"variable with two sources", "TestScript.variable[0]", "only one of expression, headerField and path",
			func(m map[string]any) { at(m, "variable", 0)["headerField"] = "ETag" }},
		{"unknown profile", "TestScript.test[0].action[1].assert.validateProfileId", `"ukcore" is not the id of a TestScript.profile`,
			func(m map[string]any) {
				a := as(m, 0, 1)
				delete(a, "expression")
				delete(a, "operator")
				delete(a, "value")
				a["validateProfileId"] = "ukcore"
			}},
		{"unknown minimumId", "TestScript.test[1].action[1].assert.minimumId", `"ghost" is not a fixture`,
			func(m map[string]any) { a := as(m, 1, 1); delete(a, "resource"); a["minimumId"] = "ghost" }},
		{"compareToSourceId without expression", "TestScript.test[0].action[1].assert.compareToSourceExpression", "is required with compareToSourceId",
			func(m map[string]any) { a := as(m, 0, 1); delete(a, "value"); a["compareToSourceId"] = "patient" }},
		{"compare expression without source", "TestScript.test[0].action[1].assert.compareToSourceId", "is required with compareToSourceExpression",
			func(m map[string]any) { as(m, 0, 1)["compareToSourceExpression"] = "gender" }},
		{"equals without value", "TestScript.test[0].action[1].assert.value", "is required with operator equals",
			func(m map[string]any) { delete(as(m, 0, 1), "value") }},
		{"bad FHIRPath", "TestScript.test[0].action[1].assert.expression", "is not a valid FHIRPath expression",
			func(m map[string]any) { as(m, 0, 1)["expression"] = "gender.where(" }},
		{"path too complex", "TestScript.test[0].action[1].assert.path", "only simple paths",
			func(m map[string]any) {
				a := as(m, 0, 1)
				delete(a, "expression")
				a["path"] = "fhir:Patient/fhir:name[fhir:use='x']"
			}},
		{"unknown response code", "TestScript.setup.action[1].assert.response", `"fine" is not an assert response code`,
			func(m map[string]any) { at(m, "setup", "action", 1, "assert")["response"] = "fine" }},
		{"bad direction", "TestScript.test[0].action[1].assert.direction", "neither request nor response",
			func(m map[string]any) { as(m, 0, 1)["direction"] = "sideways" }},
		{"operation and assert in one action", "TestScript.test[0].action[0]", "both an operation and an assert",
			func(m map[string]any) {
				at(m, "test", 0, "action", 0)["assert"] = map[string]any{"response": "okay", "warningOnly": false}
			}},
		{"empty action", "TestScript.test[0].action[0]", "neither an operation nor an assert",
			func(m map[string]any) { at(m, "test", 0)["action"].([]any)[0] = map[string]any{} }},
		{"teardown assert", "TestScript.teardown.action[0].operation", "teardown actions are operations",
			func(m map[string]any) { m["teardown"] = map[string]any{"action": []any{map[string]any{}}} }},
		{"read without target", "TestScript.test[0].action[0].operation", "needs a sourceId, or exactly one of targetId, url and params",
			func(m map[string]any) { delete(op(m, 0, 0), "targetId"); op(m, 0, 0)["resource"] = "Patient" }},
		{"create without body", "TestScript.setup.action[0].operation.sourceId", "a create sends the sourceId fixture",
			func(m map[string]any) {
				o := at(m, "setup", "action", 0, "operation")
				delete(o, "sourceId")
				o["resource"] = "Patient"
				o["params"] = "?x=1"
			}},
		{"unknown resource type", "TestScript.test[1].action[0].operation.resource", `"Pateint" is not an R4 resource type`,
			func(m map[string]any) { op(m, 1, 0)["resource"] = "Pateint" }},
		{"bad method", "TestScript.test[1].action[0].operation.method", `"fetch" is not an HTTP operation`,
			func(m map[string]any) { op(m, 1, 0)["method"] = "fetch" }},
		{"unknown destination", "TestScript.test[1].action[0].operation.destination", "not the index of a TestScript.destination",
			func(m map[string]any) { op(m, 1, 0)["destination"] = 2 }},
		{"unknown element", "TestScript.test[0]", "",
			func(m map[string]any) { at(m, "test", 0)["colour"] = "blue" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := parseInFS(t, mutated(t, c.mutate))
			err := Check(s, CheckOptions{FHIRPath: testEngine, Structure: testChecker(t)})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want an invalid-TestScript error, got %v", err)
			}
			found := false
			for _, p := range ce.Problems {
				if strings.HasPrefix(p.Path, c.path) && strings.Contains(p.Message, c.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem at %s saying %q; got:\n%v", c.path, c.msg, err)
			}
			if !strings.Contains(err.Error(), c.path) {
				t.Errorf("error text does not name %s: %v", c.path, err)
			}
		})
	}
}

func TestInvalidScriptRunsNothing(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	r, err := New(Config{Base: srv.URL, FHIRPath: testEngine})
	if err != nil {
		t.Fatal(err)
	}
	s := parseInFS(t, mutated(t, func(m map[string]any) { at(m, "test", 1, "action", 1, "assert")["operator"] = "like" }))
	res := r.Run(context.Background(), s)
	if len(res.Invalid) == 0 || res.Invalid[0].Path != "TestScript.test[1].action[1].assert.operator" {
		t.Fatalf("invalid = %v", res.Invalid)
	}
	if hits.Load() != 0 || len(res.Tests) != 0 {
		t.Fatalf("an invalid script sent %d requests and ran %d tests", hits.Load(), len(res.Tests))
	}
	if res.Passed() {
		t.Fatal("an invalid script passed")
	}
}

func TestParseRejectsOtherResources(t *testing.T) {
	_, err := Parse([]byte(`{"resourceType": "Patient"}`))
	var ce *Error
	if !errors.As(err, &ce) || ce.Problems[0].Path != "resourceType" {
		t.Fatalf("err = %v", err)
	}
	if _, err := Parse([]byte(`{`)); err == nil {
		t.Fatal("broken JSON accepted")
	}
}
