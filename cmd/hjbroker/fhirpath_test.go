package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cliObservation = `{"resourceType": "Observation", "id": "o1", "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
  "subject": {"reference": "Patient/p1"},
  "effectiveDateTime": "2024-03-01T09:30:00+01:00",
  "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}`

func runFHIRPath(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newFHIRPathCmd()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return strings.TrimSpace(out.String()), err
}

func TestFHIRPathCommand(t *testing.T) {
	tests := []struct {
		expr, want string
	}{
		{"Observation.status", `["final"]`},
		{"Observation.value", `[{"code":"kg","system":"http://unitsofmeasure.org","unit":"kg","value":72.50}]`},
		{"Observation.value.value * 2", `[145.00]`},
		{"Observation.effective", `["2024-03-01T09:30:00+01:00"]`},
		{"@2024-01-31 + 1 month", `["2024-02-29"]`},
		{"Observation.value.value > 70 'kg'.value", `[true]`},
		{"5 'mg'", `[{"code":"mg","system":"http://unitsofmeasure.org","unit":"mg","value":5}]`},
		{"Observation.code.coding.count()", `[1]`},
		{"Observation.subject.where(resolve() is Patient).reference", `["Patient/p1"]`},
		{"Observation.note", `[]`},
	}
	for _, tc := range tests {
		got, err := runFHIRPath(t, cliObservation, tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.expr, got, tc.want)
		}
	}
}

func TestFHIRPathCommandFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obs.json")
	if err := os.WriteFile(path, []byte(cliObservation), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := runFHIRPath(t, "", "--file", path, "Observation.id")
	if err != nil || got != `["o1"]` {
		t.Errorf("got %s, %v", got, err)
	}
	if _, err := runFHIRPath(t, "", "--file", filepath.Join(t.TempDir(), "missing.json"), "id"); err == nil {
		t.Error("want an error for a missing file")
	}
}

func TestFHIRPathCommandErrors(t *testing.T) {
	tests := []struct {
		name, stdin string
		args        []string
		contains    string
	}{
		{"syntax", cliObservation, []string{"Observation.status ="}, "column 21"},
		{"unknown element", cliObservation, []string{"Observation.nope"}, "'nope' is not an element of Observation"},
		{"evaluation", cliObservation, []string{"Observation.code.coding.code.single() + 1"}, "cannot be applied"},
		{"bad json", "{", []string{"id"}, "read resource from stdin"},
		{"no input", "", []string{"id"}, "no JSON input"},
		{"no expression", cliObservation, nil, "accepts 1 arg"},
	}
	for _, tc := range tests {
		_, err := runFHIRPath(t, tc.stdin, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: error %v, want it to mention %q", tc.name, err, tc.contains)
		}
	}
}
