package routetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

var engine = fhirpath.NewEngine(r4model.Load())

func run(t *testing.T, path string) (string, bool) {
	t.Helper()
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	r, err := routing.New(cfg, engine)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	ok := Report(&out, s, s.Run(r))
	return out.String(), ok
}

// TestDemoRouteTests runs the route tests shipped for the demo configuration.
func TestDemoRouteTests(t *testing.T) {
	files, _ := filepath.Glob("../../../docs/routes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no route test files in docs/routes")
	}
	for _, f := range files {
		out, ok := run(t, f)
		if !ok {
			t.Errorf("%s:\n%s", f, out)
		}
		if strings.Count(out, "PASS  ") < 10 {
			t.Errorf("%s: fewer cases than expected:\n%s", f, out)
		}
	}
}

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFailuresShowTheDifference(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "t.yaml", `config: builtin:demo
cases:
  - name: right
    event: {kind: create, sourceAgency: custody-hcp, resource: {"resourceType": "Flag", "id": "f1"}}
    expect: [{route: custody-clinical-to-ld, destination: ld-team-fhir, purpose: TREAT}]
  - name: wrong purpose and an extra expectation
    event: {kind: create, sourceAgency: custody-hcp, resource: {"resourceType": "Flag", "id": "f1"}}
    expect:
      - {route: custody-clinical-to-ld, destination: ld-team-fhir, purpose: COC}
      - {route: custody-discharge-to-gp, destination: gp-fhir, purpose: COC}
  - name: expected nothing
    event: {kind: create, sourceAgency: custody-hcp, resource: {"resourceType": "Flag", "id": "f1"}}
    expect: []
`)
	out, ok := run(t, p)
	if ok {
		t.Fatalf("failing suite passed:\n%s", out)
	}
	for _, want := range []string{
		"PASS  right\n",
		"FAIL  wrong purpose and an extra expectation (" + p + ":6)\n" +
			"      - missing:    {route: custody-clinical-to-ld, destination: ld-team-fhir, purpose: COC}\n" +
			"      - missing:    {route: custody-discharge-to-gp, destination: gp-fhir, purpose: COC}\n" +
			"      + unexpected: {route: custody-clinical-to-ld, destination: ld-team-fhir, purpose: TREAT}\n",
		"FAIL  expected nothing (" + p + ":11)\n      + unexpected: {route: custody-clinical-to-ld, destination: ld-team-fhir, purpose: TREAT}\n",
		"1 passed, 2 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestLoadResources(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "obs.json", `{"resourceType": "Observation", "id": "from-file", "valueQuantity": {"value": 72.50}}`)
	p := write(t, dir, "t.yaml", `config: builtin:demo
cases:
  - name: file
    event: {kind: update, sourceAgency: custody-hcp, resource: obs.json}
    expect: []
  - name: yaml
    event:
      kind: create
      resource:
        resourceType: Patient
        id: p1
        birthDate: 2001-02-03
        active: true
        multipleBirthInteger: 2
        extension: [{url: "http://example.org/x", valueDecimal: 1.50}]
    expect: []
  - name: delete
    event: {kind: delete, resourceType: Condition, id: c1, version: 4}
    expect: []
`)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if ev := s.Cases[0].Event; ev.ResourceType != "Observation" || ev.ID != "from-file" || ev.Version != 1 {
		t.Errorf("file event %+v", ev)
	}
	b, _ := json.Marshal(s.Cases[1].Event.Resource)
	if want := `{"active":true,"birthDate":"2001-02-03","extension":[{"url":"http://example.org/x","valueDecimal":1.50}],"id":"p1","multipleBirthInteger":2,"resourceType":"Patient"}`; string(b) != want {
		t.Errorf("yaml resource\n got %s\nwant %s", b, want)
	}
	if ev := s.Cases[2].Event; ev.Kind != routing.Delete || ev.ResourceType != "Condition" || ev.Version != 4 || ev.Resource != nil {
		t.Errorf("delete event %+v", ev)
	}
	if s.Cases[0].Event.Resource["valueQuantity"].(map[string]any)["value"] != json.Number("72.50") {
		t.Errorf("file numbers are not exact: %v", s.Cases[0].Event.Resource)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"no config", "cases: []\n", "no config"},
		{"unknown key", "config: builtin:demo\ncolour: red\n", "colour"},
		{"no expect", "config: builtin:demo\ncases:\n  - name: a\n    event: {kind: delete, resourceType: Flag}\n", ":3: case \"a\": no expect"},
		{"bad kind", "config: builtin:demo\ncases:\n  - name: a\n    event: {kind: upsert, resourceType: Flag}\n    expect: []\n", `event kind "upsert"`},
		{"no resource", "config: builtin:demo\ncases:\n  - name: a\n    event: {kind: create}\n    expect: []\n", "no resource"},
		{"missing file", "config: builtin:demo\ncases:\n  - name: a\n    event: {kind: create, resource: nothere.json}\n    expect: []\n", "nothere.json"},
		{"message without event code", "config: builtin:demo\ncases:\n  - name: a\n    event: {kind: message, resource: {resourceType: Bundle}}\n    expect: []\n", "messageEvent"},
		{"duplicate name", "config: builtin:demo\ncases:\n  - name: a\n    event: {kind: delete, resourceType: Flag}\n    expect: []\n  - name: a\n    event: {kind: delete, resourceType: Flag}\n    expect: []\n", ":6: each case needs a name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, t.TempDir(), "t.yaml", tc.text)
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
