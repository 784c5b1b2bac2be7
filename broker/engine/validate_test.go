package engine_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/resource"
)

const (
	verifExt  = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
	retiredCS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
	englandCS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
)

func newNode(t *testing.T, mode string, allowed ...string) *engine.Engine {
	t.Helper()
	node, err := app.New(context.Background(), app.Config{DataDir: t.TempDir(), Validation: mode, AllowedProfiles: allowed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node.Engine
}

func do(t *testing.T, e *engine.Engine, method, path, body string, query ...string) (*engine.Response, map[string]any) {
	t.Helper()
	q := url.Values{}
	for i := 0; i+1 < len(query); i += 2 {
		q.Add(query[i], query[i+1])
	}
	h := http.Header{"Content-Type": {"application/fhir+json"}}
	if method == http.MethodPatch {
		h.Set("Content-Type", "application/json-patch+json")
	}
	resp := e.Handle(context.Background(), &engine.Request{Method: method, Path: path, Query: q, Header: h, Body: []byte(body), Base: "http://test/fhir"})
	m := resp.Resource
	if m == nil && len(resp.Body) > 0 {
		var err error
		if m, err = resource.Decode(resp.Body, resource.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	return resp, m
}

func patientJSON(nhs, verification string) string {
	ext := ""
	if verification != "" {
		ext = `"extension":[{"url":"` + verifExt + `","valueCodeableConcept":{"coding":[` + verification + `]}}],`
	}
	return `{"resourceType":"Patient","identifier":[{` + ext + `"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}],"name":[{"family":"Smith"}]}`
}

// issuesAt lists "severity code" of the issues whose expression is at.
func issuesAt(oo map[string]any, at string) []string {
	var out []string
	list, _ := oo["issue"].([]any)
	for _, x := range list {
		is := x.(map[string]any)
		ex, _ := is["expression"].([]any)
		if len(ex) > 0 && ex[0] == at {
			out = append(out, is["severity"].(string)+" "+is["code"].(string))
		}
	}
	return out
}

func entries(bundle map[string]any) int {
	list, _ := bundle["entry"].([]any)
	return len(list)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestValidateOperation(t *testing.T) {
	e := newNode(t, "reject")
	bad := patientJSON("9000000000", "")
	for _, tc := range []struct {
		name, method, path, body string
		query                    []string
		status                   int
		at, want                 string
	}{
		{"type level", "POST", "Patient/$validate", bad, nil, 200, "Patient.identifier[0].value", "error value"},
		{"valid", "POST", "Patient/$validate", patientJSON("9000000009", ""), nil, 200, "", ""},
		{"parameters", "POST", "Patient/$validate", `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + bad + `},{"name":"profile","valueUri":"https://example.org/Nope"}]}`, nil, 200, "Patient", "error not-supported"},
		{"profile query", "POST", "Patient/$validate", patientJSON("9000000009", ""), []string{"profile", "https://example.org/Nope"}, 200, "Patient", "error not-supported"},
		{"core profile is base only", "POST", "Patient/$validate", bad, []string{"profile", "http://hl7.org/fhir/StructureDefinition/Patient"}, 200, "", ""},
		{"type mismatch", "POST", "Observation/$validate", bad, nil, 200, "resourceType", "error invalid"},
		{"structure", "POST", "Patient/$validate", `{"resourceType":"Patient","birthDate":"soon"}`, nil, 200, "Patient.birthDate", "error value"},
		{"unparseable", "POST", "Patient/$validate", `{"resourceType":`, nil, 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, oo := do(t, e, tc.method, tc.path, tc.body, tc.query...)
			if resp.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.Status, tc.status, mustJSON(oo))
			}
			if oo["resourceType"] != "OperationOutcome" {
				t.Fatalf("not an OperationOutcome: %s", mustJSON(oo))
			}
			if tc.status != 200 {
				return
			}
			if tc.at == "" {
				if strings.Contains(mustJSON(oo), `"severity":"error"`) {
					t.Fatalf("want no error: %s", mustJSON(oo))
				}
				return
			}
			if got := issuesAt(oo, tc.at); !contains(got, tc.want) {
				t.Fatalf("issues at %s = %v, want %q: %s", tc.at, got, tc.want, mustJSON(oo))
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestValidateInstance(t *testing.T) {
	e := newNode(t, "tag")
	resp, _ := do(t, e, "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000000"}]}`)
	if resp.Status != http.StatusCreated {
		t.Fatalf("tag mode PUT: %d", resp.Status)
	}
	for _, m := range []string{"GET", "POST"} {
		resp, oo := do(t, e, m, "Patient/p1/$validate", "")
		if resp.Status != 200 || !contains(issuesAt(oo, "Patient.identifier[0].value"), "error value") {
			t.Fatalf("%s instance $validate: %d %s", m, resp.Status, mustJSON(oo))
		}
	}
	if resp, _ := do(t, e, "GET", "Patient/nope/$validate", ""); resp.Status != 404 {
		t.Fatalf("unknown instance: %d", resp.Status)
	}
}

func TestWriteModes(t *testing.T) {
	bad := patientJSON("9000000000", "")
	t.Run("reject", func(t *testing.T) {
		e := newNode(t, "")
		resp, oo := do(t, e, "POST", "Patient", bad)
		if resp.Status != 422 || !contains(issuesAt(oo, "Patient.identifier[0].value"), "error value") {
			t.Fatalf("%d %s", resp.Status, mustJSON(oo))
		}
		if resp, _ := do(t, e, "POST", "Patient", patientJSON("9000000009", "")); resp.Status != 201 {
			t.Fatalf("valid create: %d", resp.Status)
		}
		// PATCH results are validated.
		resp, _ = do(t, e, "PUT", "Patient/p2", `{"resourceType":"Patient","id":"p2","name":[{"family":"X"}]}`)
		if resp.Status != 201 {
			t.Fatalf("put: %d", resp.Status)
		}
		resp, oo = do(t, e, "PATCH", "Patient/p2", `[{"op":"add","path":"/identifier","value":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"123"}]}]`)
		if resp.Status != 422 || !contains(issuesAt(oo, "Patient.identifier[0].value"), "error value") {
			t.Fatalf("patch: %d %s", resp.Status, mustJSON(oo))
		}
		// Transaction entries are validated, with the entry in the expression.
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:9d0e5d57-6a58-4f0f-8d43-6b1f7f6f7a01","resource":` + patientJSON("9000000009", "") + `,"request":{"method":"POST","url":"Patient"}},{"resource":` + bad + `,"request":{"method":"POST","url":"Patient"}}]}`
		resp, oo = do(t, e, "POST", "", tx)
		if resp.Status != 422 || !contains(issuesAt(oo, "Bundle.entry[1].resource.identifier[0].value"), "error value") {
			t.Fatalf("transaction: %d %s", resp.Status, mustJSON(oo))
		}
		_, sb := do(t, e, "GET", "Patient", "", "identifier", "https://fhir.nhs.uk/Id/nhs-number|9000000009")
		if n := entries(sb); n != 1 {
			t.Fatalf("transaction was not rolled back: %d patients", n)
		}
	})
	t.Run("off", func(t *testing.T) {
		e := newNode(t, "off")
		if resp, _ := do(t, e, "POST", "Patient", bad); resp.Status != 201 {
			t.Fatalf("off: %d", resp.Status)
		}
		// Structure is still checked.
		if resp, _ := do(t, e, "POST", "Patient", `{"resourceType":"Patient","gender":"x"}`); resp.Status != 400 {
			t.Fatalf("off, bad structure: %d", resp.Status)
		}
	})
	t.Run("tag", func(t *testing.T) {
		e := newNode(t, "tag")
		resp, body := do(t, e, "PUT", "Patient/t1", strings.Replace(bad, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"t1",`, 1))
		if resp.Status != 201 {
			t.Fatalf("tag: %d", resp.Status)
		}
		if !strings.Contains(mustJSON(body["meta"]), engine.ValidationCodeSystem) {
			t.Fatalf("no tag: %s", mustJSON(body))
		}
		// A corrected version loses the tag.
		resp, body = do(t, e, "PUT", "Patient/t1", `{"resourceType":"Patient","id":"t1","meta":{"tag":[{"system":"`+engine.ValidationCodeSystem+`","code":"invalid"}]},"name":[{"family":"Smith"}]}`)
		if resp.Status != 200 || strings.Contains(mustJSON(body), engine.ValidationCodeSystem) {
			t.Fatalf("corrected version: %d %s", resp.Status, mustJSON(body))
		}
	})
	t.Run("quarantine", func(t *testing.T) {
		e := newNode(t, "quarantine")
		resp, oo := do(t, e, "POST", "Patient", bad)
		if resp.Status != http.StatusAccepted || !contains(issuesAt(oo, "Patient.identifier[0].value"), "error value") {
			t.Fatalf("quarantine: %d %s", resp.Status, mustJSON(oo))
		}
		loc := resp.Header.Get("Content-Location")
		if !strings.Contains(loc, "/Basic/") {
			t.Fatalf("Content-Location %q", loc)
		}
		_, sb := do(t, e, "GET", "Patient", "")
		if n := entries(sb); n != 0 {
			t.Fatalf("quarantined resource is searchable as Patient (%d)", n)
		}
		_, basic := do(t, e, "GET", loc[strings.Index(loc, "Basic/"):], "")
		exts := basic["extension"].([]any)
		data := exts[0].(map[string]any)["valueAttachment"].(map[string]any)["data"].(string)
		raw, _ := base64.StdEncoding.DecodeString(data)
		if !strings.Contains(string(raw), "9000000000") {
			t.Fatalf("quarantine does not hold the resource: %s", raw)
		}
		_, sb = do(t, e, "GET", "Basic", "")
		if entries(sb) != 1 {
			t.Fatalf("quarantine not searchable as Basic: %s", mustJSON(sb))
		}
		if resp, _ := do(t, e, "POST", "Patient", patientJSON("9000000009", "")); resp.Status != 201 {
			t.Fatalf("valid create in quarantine mode: %d", resp.Status)
		}
	})
	t.Run("normalise", func(t *testing.T) {
		e := newNode(t, "reject")
		resp, body := do(t, e, "POST", "Patient", patientJSON("9000000009", `{"system":"`+retiredCS+`","code":"number-present-and-verified"}`))
		if resp.Status != 201 {
			t.Fatalf("%d %s", resp.Status, mustJSON(body))
		}
		s := mustJSON(body)
		if !strings.Contains(s, englandCS) || strings.Contains(s, "number-present-and-verified") {
			t.Fatalf("stored form not normalised: %s", s)
		}
	})
	t.Run("allowed profiles", func(t *testing.T) {
		e := newNode(t, "off", "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient")
		p := `{"resourceType":"Patient","meta":{"profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Practitioner"]}}`
		resp, oo := do(t, e, "POST", "Patient", p)
		if resp.Status != 422 || !contains(issuesAt(oo, "Patient.meta.profile[0]"), "error business-rule") {
			t.Fatalf("%d %s", resp.Status, mustJSON(oo))
		}
		p = `{"resourceType":"Patient","meta":{"profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]}}`
		if resp, _ := do(t, e, "POST", "Patient", p); resp.Status != 201 {
			t.Fatalf("allowed profile: %d", resp.Status)
		}
	})
	t.Run("unknown profile rejected", func(t *testing.T) {
		e := newNode(t, "reject")
		resp, oo := do(t, e, "POST", "Patient", `{"resourceType":"Patient","meta":{"profile":["https://example.org/Nope"]}}`)
		if resp.Status != 422 || !contains(issuesAt(oo, "Patient.meta.profile[0]"), "error not-supported") {
			t.Fatalf("%d %s", resp.Status, mustJSON(oo))
		}
	})
}
