package capability

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hjbroker/hjbroker/conformance/testscript"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

const script = `{
  "resourceType": "TestScript", "url": "https://example.org/ts", "name": "caps", "status": "active",
  "fixture": [
    {"id": "patient", "autocreate": false, "autodelete": false, "resource": {"reference": "patient.json"}},
    {"id": "obs", "autocreate": true, "autodelete": true, "resource": {"reference": "obs.json"}},
    {"id": "bundle", "autocreate": false, "autodelete": false, "resource": {"reference": "bundle.json"}}
  ],
  "variable": [{"name": "pid", "expression": "id", "sourceId": "created"}],
  "test": [{"name": "all", "action": [
    {"operation": {"type": {"code": "create"}, "sourceId": "patient", "responseId": "created", "encodeRequestUrl": false,
      "requestHeader": [{"field": "If-None-Exist", "value": "identifier=x|1"}]}},
    {"operation": {"type": {"code": "read"}, "targetId": "created", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "vread"}, "targetId": "created", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "history"}, "targetId": "created", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "search"}, "resource": "Observation", "params": "?subject=Patient/${pid}&code:text=bp&_include=Observation:subject&_count=5&_sort=-date", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "search"}, "resource": "Patient", "params": "?_id=${pid}&_revinclude=Observation:subject", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "transaction"}, "sourceId": "bundle", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "everything"}, "targetId": "created", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "deleteCondMultiple"}, "resource": "Patient", "params": "?identifier=x|1", "encodeRequestUrl": false}},
    {"operation": {"method": "get", "url": "Encounter?status=finished", "encodeRequestUrl": false}},
    {"operation": {"method": "post", "url": "$process-message", "sourceId": "bundle", "encodeRequestUrl": false}},
    {"operation": {"method": "get", "url": "NotAType/1", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "search"}, "params": "?_type=Patient,Encounter&_id=1", "encodeRequestUrl": false}},
    {"operation": {"type": {"code": "search"}, "resource": "Patient", "params": "?bogus=1", "encodeRequestUrl": false}},
    {"assert": {"response": "bad", "warningOnly": false}},
    {"operation": {"type": {"code": "search"}, "resource": "Patient", "params": "?birthdate=x", "encodeRequestUrl": false}},
    {"assert": {"responseCode": "400,422", "operator": "in", "warningOnly": false}}
  ]}]
}`

func load(t *testing.T) []*testscript.Script {
	t.Helper()
	fsys := fstest.MapFS{
		"caps.json":    {Data: []byte(script)},
		"patient.json": {Data: []byte(`{"resourceType": "Patient"}`)},
		"obs.json":     {Data: []byte(`{"resourceType": "Observation"}`)},
		"bundle.json":  {Data: []byte(`{"resourceType": "Bundle", "type": "transaction"}`)},
	}
	s, err := testscript.Load(fsys, "caps.json")
	if err != nil {
		t.Fatal(err)
	}
	return []*testscript.Script{s}
}

func names(reqs []Requirement) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.String())
	}
	sort.Strings(out)
	return out
}

// TestRequirements also shows that types that do not exist and parameters the script expects
// to be refused (a 4xx assert right after) are not requirements.
func TestRequirements(t *testing.T) {
	got := names(Requirements(load(t), r4model.Load().IsResource))
	want := []string{
		"_include=Observation:subject on Observation",
		"_revinclude=Observation:subject on Patient",
		"conditionalCreate on Patient",
		"deleteCondMultiple on Patient",
		"interaction create on Observation",
		"interaction create on Patient",
		"interaction delete on Observation",
		"interaction delete on Patient",
		"interaction history-instance on Patient",
		"interaction read on Patient",
		"interaction search-system on system",
		"interaction search-type on Encounter",
		"interaction search-type on Observation",
		"interaction search-type on Patient",
		"interaction transaction on system",
		"interaction vread on Patient",
		"operation $everything on Patient",
		"operation $process-message on system",
		"resource type Encounter",
		"resource type Observation",
		"resource type Patient",
		"search parameter _id on Encounter",
		"search parameter _id on Patient",
		"search parameter code on Observation",
		"search parameter status on Encounter",
		"search parameter subject on Observation",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requirements:\n%s\n\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// fullCapability declares everything the script needs.
const fullCapability = `{
  "resourceType": "CapabilityStatement",
  "rest": [{
    "mode": "server",
    "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"}],
    "searchParam": [{"name": "_id", "type": "token"}],
    "operation": [{"name": "process-message", "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"}],
    "resource": [
      {"type": "Patient", "conditionalCreate": true, "conditionalDelete": "multiple",
       "interaction": [{"code": "create"}, {"code": "read"}, {"code": "vread"}, {"code": "delete"}, {"code": "history-instance"}, {"code": "search-type"}],
       "searchRevInclude": ["Observation:subject"],
       "operation": [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]},
      {"type": "Observation", "interaction": [{"code": "create"}, {"code": "delete"}, {"code": "search-type"}],
       "searchParam": [{"name": "subject", "type": "reference"}, {"name": "code", "type": "token"}],
       "searchInclude": ["*"]},
      {"type": "Encounter", "interaction": [{"code": "search-type"}], "searchParam": [{"name": "status", "type": "token"}, {"name": "_id", "type": "token"}]}
    ]
  }]
}`

func TestMissing(t *testing.T) {
	reqs := Requirements(load(t), r4model.Load().IsResource)
	var full map[string]any
	if err := json.Unmarshal([]byte(fullCapability), &full); err != nil {
		t.Fatal(err)
	}
	if m := Missing(full, reqs); len(m) != 0 {
		t.Fatalf("missing from the full statement: %v", names(m))
	}
	cases := []struct {
		name   string
		change func(cs map[string]any)
		want   []string
	}{
		{"no Encounter", func(cs map[string]any) { drop(cs, "Encounter") }, []string{
			"interaction search-type on Encounter", "resource type Encounter", "search parameter _id on Encounter", "search parameter status on Encounter"}},
		{"no vread, no revinclude", func(cs map[string]any) {
			p := res(cs, "Patient")
			p["interaction"] = p["interaction"].([]any)[:2]
			delete(p, "searchRevInclude")
		}, []string{"_revinclude=Observation:subject on Patient", "interaction delete on Patient", "interaction history-instance on Patient",
			"interaction search-type on Patient", "interaction vread on Patient"}},
		{"single conditional delete, no conditional create", func(cs map[string]any) {
			p := res(cs, "Patient")
			p["conditionalDelete"] = "single"
			p["conditionalCreate"] = false
		}, []string{"conditionalCreate on Patient", "deleteCondMultiple on Patient"}},
		{"no system operations or transaction", func(cs map[string]any) {
			rest := cs["rest"].([]any)[0].(map[string]any)
			delete(rest, "operation")
			rest["interaction"] = []any{map[string]any{"code": "batch"}}
		}, []string{"interaction search-system on system", "interaction transaction on system", "operation $process-message on system"}},
		{"search parameter and include", func(cs map[string]any) {
			o := res(cs, "Observation")
			o["searchParam"] = o["searchParam"].([]any)[:1]
			o["searchInclude"] = []any{"Observation:patient"}
		}, []string{"_include=Observation:subject on Observation", "search parameter code on Observation"}},
		{"a client statement declares nothing", func(cs map[string]any) {
			cs["rest"].([]any)[0].(map[string]any)["mode"] = "client"
		}, names(reqs)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cs map[string]any
			_ = json.Unmarshal([]byte(fullCapability), &cs)
			c.change(cs)
			got := names(Missing(cs, reqs))
			sort.Strings(c.want)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("missing:\n%s\n\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func res(cs map[string]any, typ string) map[string]any {
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if m := r.(map[string]any); m["type"] == typ {
			return m
		}
	}
	return nil
}

func drop(cs map[string]any, typ string) {
	rest := cs["rest"].([]any)[0].(map[string]any)
	var keep []any
	for _, r := range rest["resource"].([]any) {
		if r.(map[string]any)["type"] != typ {
			keep = append(keep, r)
		}
	}
	rest["resource"] = keep
}
