package pds_test

import (
	"path/filepath"
	"testing"

	"github.com/hjbroker/hjbroker/mappings/mappingtest"
	"github.com/hjbroker/hjbroker/mappings/pds"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// TestGolden maps every testdata/*.pds.json, compares the Patient with its .ukcore.json
// golden file and checks it under the broker's UK Core validator.
func TestGolden(t *testing.T) {
	v := mappingtest.Validator(t)
	for _, name := range mappingtest.Cases(t, ".pds.json") {
		t.Run(name, func(t *testing.T) {
			got, err := pds.Patient(mappingtest.ReadJSON(t, filepath.Join("testdata", name+".pds.json")))
			if err != nil {
				t.Fatal(err)
			}
			mappingtest.GoldenJSON(t, filepath.Join("testdata", name+".ukcore.json"), got)
			mappingtest.Valid(t, v, "Patient", got, validate.Options{})
		})
	}
}

func TestRestrictedNeverCarriesLocation(t *testing.T) {
	in := map[string]any{"resourceType": "Patient", "id": "9000000017",
		"meta":                map[string]any{"security": []any{map[string]any{"system": pds.SystemConfidentiality, "code": "R"}}},
		"address":             []any{map[string]any{"line": []any{"x"}}},
		"telecom":             []any{map[string]any{"system": "phone", "value": "1"}},
		"contact":             []any{map[string]any{"address": map[string]any{"line": []any{"y"}}}},
		"generalPractitioner": []any{map[string]any{"identifier": map[string]any{"system": pds.SystemODS, "value": "Y12345"}}}}
	out, err := pds.Patient(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"address", "telecom", "contact", "generalPractitioner"} {
		if out[k] != nil {
			t.Errorf("restricted Patient kept %s", k)
		}
	}
	label := out["meta"].(map[string]any)["security"].([]any)[0].(map[string]any)["code"]
	if label != "R" {
		t.Errorf("label %v, want R kept", label)
	}
}

func TestRejects(t *testing.T) {
	for _, in := range []map[string]any{
		{"resourceType": "Practitioner", "id": "1"},
		{"resourceType": "Patient"},
	} {
		if _, err := pds.Patient(in); err == nil {
			t.Errorf("%v: no error", in)
		}
	}
}
