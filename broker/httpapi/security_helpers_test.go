package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// Code systems the security scenarios write.
const (
	secAgencyKindSystem = "https://hjbroker.dev/fhir/CodeSystem/agency-kind"
	secActReasonSystem  = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	secNHSSystem        = "https://fhir.nhs.uk/Id/nhs-number"
)

// secForEach starts a node with cfg on every backend.
func secForEach(t *testing.T, cfg app.Config, fn func(t *testing.T, s *apptest.Server)) {
	t.Helper()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, apptest.Start(t, b, cfg))
		})
	}
}

// secConfigFile writes the demo configuration, changed by edit, to a file in a temporary
// directory and returns its path. edit gets the YAML decoded as plain maps and slices.
func secConfigFile(t *testing.T, edit func(cfg map[string]any), files map[string][]byte) string {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(config.DemoYAML(), &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "hjbroker.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// secAddClient adds a client to the agency with id agency in a decoded configuration.
func secAddClient(t *testing.T, cfg map[string]any, agency string, client map[string]any) {
	t.Helper()
	for _, a := range cfg["agencies"].([]any) {
		am := a.(map[string]any)
		if am["id"] == agency {
			cl, _ := am["clients"].([]any)
			am["clients"] = append(cl, client)
			return
		}
	}
	t.Fatalf("no agency %s in the demo configuration", agency)
}

// secWant fails unless r has status want, showing what was asked.
func secWant(t *testing.T, r *apptest.Result, want int, what string) *apptest.Result {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d; body: %s", what, r.Status, want, r.Raw)
	}
	return r
}

// secCreateAs creates body as client and returns the new id.
func secCreateAs(t *testing.T, s *apptest.Server, client, typ, body string) string {
	t.Helper()
	r := secWant(t, s.DoAs(client, "POST", typ, body), 201, client+" creating "+typ)
	id := r.Str("id")
	if id == "" {
		t.Fatalf("create %s: no id in %s", typ, r.Raw)
	}
	return id
}

// secIDs lists "Type/id" of a Bundle's entries (every search mode).
func secIDs(r *apptest.Result) []string {
	var out []string
	for _, e := range r.Entries() {
		typ, _ := apptest.Get(e, "resource.resourceType").(string)
		id, _ := apptest.Get(e, "resource.id").(string)
		out = append(out, typ+"/"+id)
	}
	return out
}

// secHasType reports whether any Bundle entry is a resource of type typ.
func secHasType(r *apptest.Result, typ string) bool {
	return slices.ContainsFunc(secIDs(r), func(s string) bool { return strings.HasPrefix(s, typ+"/") })
}

func secPatient(nhs, family string, extra ...string) string {
	fields := append([]string{
		`"resourceType":"Patient"`,
		fmt.Sprintf(`"identifier":[{"system":%q,"value":%q}]`, secNHSSystem, nhs),
		fmt.Sprintf(`"name":[{"family":%q,"given":["Alex"]}]`, family),
	}, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

func secObservation(patientID string) string {
	return `{"resourceType":"Observation","status":"final",` +
		`"code":{"coding":[{"system":"http://snomed.info/sct","code":"271649006","display":"Systolic blood pressure"}]},` +
		`"subject":{"reference":"Patient/` + patientID + `"},"effectiveDateTime":"2025-03-01T10:00:00Z",` +
		`"valueQuantity":{"value":128,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`
}

// secCourtReport is an L&D court report Composition whose section cites entry (a reference,
// or "" for none).
func secCourtReport(patientID, entry string) string {
	section := `{"title":"Health needs","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Needs</div>"}}`
	if entry != "" {
		section = `{"title":"Health needs","entry":[{"reference":"` + entry + `"}]}`
	}
	return `{"resourceType":"Composition","status":"final",` +
		`"type":{"coding":[{"system":"https://hjbroker.dev/fhir/CodeSystem/document-type","code":"court-report"}]},` +
		`"subject":{"reference":"Patient/` + patientID + `"},"date":"2025-03-02T09:00:00Z",` +
		`"author":[{"display":"L&D practitioner"}],"title":"Court report","section":[` + section + `]}`
}

// secConsent is an active patient-privacy Consent of the patient whose root provision has type
// provType and applies to agencies of kind actorKind (an agency id doubles as the Organization
// reference) for purposes (none: any).
func secConsent(patientID, policy, provType, actorKind, actorOrg string, purposes ...string) map[string]any {
	prov := map[string]any{
		"type": provType,
		"actor": []any{map[string]any{
			"role":      map[string]any{"coding": []any{map[string]any{"system": secAgencyKindSystem, "code": actorKind}}},
			"reference": map[string]any{"reference": "Organization/" + actorOrg},
		}},
	}
	if len(purposes) > 0 {
		var ps []any
		for _, p := range purposes {
			ps = append(ps, map[string]any{"system": secActReasonSystem, "code": p})
		}
		prov["purpose"] = ps
	}
	return map[string]any{
		"resourceType": "Consent",
		"status":       "active",
		"scope":        map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "59284-0"}}}},
		"patient":      map[string]any{"reference": "Patient/" + patientID},
		"dateTime":     "2025-03-01T09:00:00Z",
		"policyRule":   map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": policy}}},
		"provision":    prov,
	}
}

// secJSON round-trips a value to a JSON string.
func secJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// secAuditEvents polls the audit trail (as operator) until the search returns at least min
// events, since ordinary accesses are written in batches.
func secAuditEvents(t *testing.T, s *apptest.Server, query string, min int) *apptest.Result {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := secWant(t, s.Do("GET", "AuditEvent?"+query, nil), 200, "AuditEvent?"+query)
		if r.Total() >= min || time.Now().After(deadline) {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// secVerify runs the audit trail's verification.
func secVerify(t *testing.T, s *apptest.Server) (ok bool, brk string, seq int64) {
	t.Helper()
	rep, err := s.Node.Audit.Verify(context.Background())
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if rep.Break != nil {
		return rep.OK, rep.Break.String(), rep.Break.Seq
	}
	return rep.OK, "", 0
}
