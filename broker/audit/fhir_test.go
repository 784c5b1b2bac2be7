package audit_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/resource"
)

func checker(t *testing.T) *resource.Checker {
	t.Helper()
	c, err := resource.NewChecker(0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustCheck(t *testing.T, c *resource.Checker, res map[string]any) {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if oe := c.Check(b); oe != nil {
		t.Fatalf("not valid R4: %v\n%s", oe.Issues, b)
	}
}

// roundTrip gives the resource as a JSON reader would see it.
func roundTrip(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

var when = time.Date(2025, 3, 4, 10, 11, 12, 123456000, time.UTC)

func fullEvent() audit.Event {
	return audit.Event{
		Time: when, Action: audit.ActionSearch, Outcome: audit.OutcomeSuccess, Status: 200,
		ClientID: "ld-team", AgencyID: "ld-north", AgencyODS: "RX4", Purpose: "TREAT",
		Patients:  []string{"Patient/p2", "p1", "Patient/p1"},
		Resources: []audit.Ref{{Type: "Observation", ID: "o1", Version: "3"}, {Type: "Condition", ID: "c1"}},
		Query:     "patient=Patient/p1&_include=Observation:subject",
		RequestID: "4c0b6f2e-9a55-4c1b-8f5e-0d8f1f7a1b2c", Source: "10.0.0.7:51234", Node: "node-a",
	}
}

func TestAuditEventIsValidR4ForEveryAction(t *testing.T) {
	c := checker(t)
	actions := []audit.Action{audit.ActionRead, audit.ActionVRead, audit.ActionSearch, audit.ActionHistory,
		audit.ActionCreate, audit.ActionUpdate, audit.ActionPatch, audit.ActionDelete, audit.ActionTransaction,
		audit.ActionDisclosure, audit.ActionDelivery, audit.ActionDenial, audit.ActionBreakGlass, audit.ActionLogin}
	outcomes := []struct {
		o      audit.Outcome
		status int
	}{{audit.OutcomeSuccess, 200}, {audit.OutcomeDenied, 403}, {audit.OutcomeError, 500}}
	for _, a := range actions {
		for _, o := range outcomes {
			e := fullEvent()
			e.Action, e.Outcome, e.Status = a, o.o, o.status
			ae := audit.ToAuditEvent(e)
			if ae == nil {
				t.Fatalf("%s: nil AuditEvent", a)
			}
			ae["id"] = "x1"
			mustCheck(t, c, ae)
		}
	}
	// A minimal event (an unauthenticated 401) is valid too.
	mustCheck(t, c, audit.ToAuditEvent(audit.Event{Time: when, Action: audit.ActionRead, Outcome: audit.OutcomeDenied, Status: 401}))
}

func TestCheckerRejectsAnAuditEventWithoutAgent(t *testing.T) {
	// Guards the validity test above: the checker must see a missing required element.
	ae := audit.ToAuditEvent(fullEvent())
	delete(ae, "agent")
	b, _ := json.Marshal(ae)
	if checker(t).Check(b) == nil {
		t.Fatal("an AuditEvent without agent passed the R4 check")
	}
}

func TestAuditEventContent(t *testing.T) {
	ae := roundTrip(t, audit.ToAuditEvent(fullEvent()))
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				v = v.(map[string]any)[k]
			case int:
				v = v.([]any)[k]
			}
		}
		return v
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"type", get(ae, "type", "code"), "rest"},
		{"subtype", get(ae, "subtype", 0, "code"), "search"},
		{"subtype system", get(ae, "subtype", 0, "system"), "http://hl7.org/fhir/restful-interaction"},
		{"broker action", get(ae, "subtype", 1, "code"), "search"},
		{"action", ae["action"], "E"},
		{"recorded", ae["recorded"], "2025-03-04T10:11:12.123456Z"},
		{"outcome", ae["outcome"], "0"},
		{"requestor", get(ae, "agent", 0, "requestor"), true},
		{"client", get(ae, "agent", 0, "who", "identifier", "value"), "ld-team"},
		{"purpose", get(ae, "agent", 0, "purposeOfUse", 0, "coding", 0, "code"), "TREAT"},
		{"network", get(ae, "agent", 0, "network", "address"), "10.0.0.7"},
		{"network type", get(ae, "agent", 0, "network", "type"), "2"},
		{"agency ODS", get(ae, "agent", 1, "who", "identifier", "value"), "RX4"},
		{"agency ODS system", get(ae, "agent", 1, "who", "identifier", "system"), "https://fhir.nhs.uk/Id/ods-organization-code"},
		{"agency", get(ae, "agent", 1, "name"), "ld-north"},
		{"source type", get(ae, "source", "type", 0, "code"), "4"},
		{"observer", get(ae, "source", "observer", "identifier", "value"), "node-a"},
		{"patient 1", get(ae, "entity", 0, "what", "reference"), "Patient/p1"},
		{"patient role", get(ae, "entity", 0, "role", "code"), "1"},
		{"patient 2", get(ae, "entity", 1, "what", "reference"), "Patient/p2"},
		{"versioned resource", get(ae, "entity", 2, "what", "reference"), "Observation/o1/_history/3"},
		{"resource", get(ae, "entity", 3, "what", "reference"), "Condition/c1"},
		{"query role", get(ae, "entity", 4, "role", "code"), "24"},
		{"query", get(ae, "entity", 4, "query"), base64.StdEncoding.EncodeToString([]byte("patient=Patient/p1&_include=Observation:subject"))},
		{"request id", get(ae, "entity", 5, "what", "identifier", "value"), "4c0b6f2e-9a55-4c1b-8f5e-0d8f1f7a1b2c"},
		{"no purposeOfEvent", ae["purposeOfEvent"], nil},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if n := len(ae["entity"].([]any)); n != 6 {
		t.Errorf("%d entities, want 6 (duplicate patient dropped)", n)
	}
}

func TestAuditEventCodes(t *testing.T) {
	tests := []struct {
		action             audit.Action
		outcome            audit.Outcome
		status             int
		typeCode, act, out string
	}{
		{audit.ActionRead, audit.OutcomeSuccess, 200, "rest", "R", "0"},
		{audit.ActionCreate, audit.OutcomeSuccess, 201, "rest", "C", "0"},
		{audit.ActionUpdate, audit.OutcomeError, 409, "rest", "U", "4"},
		{audit.ActionPatch, audit.OutcomeSuccess, 200, "rest", "U", "0"},
		{audit.ActionDelete, audit.OutcomeError, 503, "rest", "D", "8"},
		{audit.ActionRead, audit.OutcomeDenied, 403, "rest", "R", "4"},
		{audit.ActionDisclosure, audit.OutcomeSuccess, 0, "110106", "R", "0"},
		{audit.ActionDelivery, audit.OutcomeError, 0, "110106", "E", "8"},
		{audit.ActionDenial, audit.OutcomeDenied, 403, "110113", "E", "4"},
		{audit.ActionBreakGlass, audit.OutcomeSuccess, 200, "110110", "R", "0"},
		{audit.ActionLogin, audit.OutcomeDenied, 401, "110114", "E", "4"},
	}
	for _, tc := range tests {
		ae := audit.ToAuditEvent(audit.Event{Time: when, Action: tc.action, Outcome: tc.outcome, Status: tc.status, ClientID: "c"})
		typ := ae["type"].(map[string]any)["code"]
		if typ != tc.typeCode || ae["action"] != tc.act || ae["outcome"] != tc.out {
			t.Errorf("%s/%s: type %v action %v outcome %v, want %s %s %s", tc.action, tc.outcome, typ, ae["action"], ae["outcome"], tc.typeCode, tc.act, tc.out)
		}
	}
	if audit.ToAuditEvent(audit.Event{Action: "peek", Outcome: audit.OutcomeSuccess}) != nil {
		t.Error("an unknown action gave an AuditEvent")
	}
}

func TestBreakGlassIsMarked(t *testing.T) {
	c := checker(t)
	for _, e := range []audit.Event{
		{Time: when, Action: audit.ActionBreakGlass, Outcome: audit.OutcomeSuccess, ClientID: "custody-hcp", Purpose: "BTG", BreakGlassReason: "unconscious in cell, allergy check"},
		{Time: when, Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, ClientID: "custody-hcp", Purpose: "BTG", BreakGlassReason: "unconscious in cell, allergy check", Patients: []string{"Patient/p1"}},
	} {
		ae := audit.ToAuditEvent(e)
		mustCheck(t, c, ae)
		ae = roundTrip(t, ae)
		poe := ae["purposeOfEvent"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)
		if poe["code"] != "BTG" || poe["system"] != audit.SystemActReason {
			t.Errorf("%s: purposeOfEvent %v", e.Action, poe)
		}
		tag := ae["meta"].(map[string]any)["tag"].([]any)[0].(map[string]any)
		if tag["code"] != "break-glass" {
			t.Errorf("%s: marker tag %v", e.Action, tag)
		}
		found := false
		for _, en := range ae["entity"].([]any) {
			if en.(map[string]any)["description"] == e.BreakGlassReason {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: reason not recorded: %v", e.Action, ae["entity"])
		}
	}
	plain := audit.ToAuditEvent(audit.Event{Time: when, Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Purpose: "TREAT"})
	if plain["purposeOfEvent"] != nil || plain["meta"].(map[string]any)["tag"] != nil {
		t.Error("an ordinary read is marked as break-glass")
	}
}

func TestProvenanceFor(t *testing.T) {
	c := checker(t)
	p := audit.ProvenanceFor([]string{"Observation/o1/_history/1", "Patient/p1"}, "systmone-custody-17", "RX4", "clinical-entries", "transform", when)
	mustCheck(t, c, p)
	p = roundTrip(t, p)
	if got := p["target"].([]any)[0].(map[string]any)["reference"]; got != "Observation/o1/_history/1" {
		t.Errorf("target %v", got)
	}
	if got := p["policy"].([]any)[0]; got != audit.MappingBase+"clinical-entries" {
		t.Errorf("policy %v", got)
	}
	agency := p["agent"].([]any)[1].(map[string]any)["who"].(map[string]any)["identifier"].(map[string]any)
	if agency["value"] != "RX4" || agency["system"] != audit.SystemODS {
		t.Errorf("agency %v", agency)
	}
	src := p["entity"].([]any)[0].(map[string]any)
	if src["role"] != "source" || src["what"].(map[string]any)["identifier"].(map[string]any)["value"] != "systmone-custody-17" {
		t.Errorf("source entity %v", src)
	}
	if p["recorded"] != "2025-03-04T10:11:12.123456Z" {
		t.Errorf("recorded %v", p["recorded"])
	}
	// Without optional parts it is still valid.
	mustCheck(t, c, audit.ProvenanceFor([]string{"Patient/p1"}, "", "", "", "", when))
}
