package pds_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/mappings/pds"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestGolden(t *testing.T) {
	v, err := app.NewValidator(fhirpath.NewEngine(r4model.Load()), nil)
	if err != nil {
		t.Fatal(err)
	}
	inputs, _ := filepath.Glob("testdata/*.pds.json")
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".pds.json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var src map[string]any
			if err := json.Unmarshal(raw, &src); err != nil {
				t.Fatal(err)
			}
			got, err := pds.Patient(src)
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := json.MarshalIndent(got, "", "  ")
			enc = append(enc, '\n')
			golden := filepath.Join("testdata", name+".ukcore.json")
			if *update {
				if err := os.WriteFile(golden, enc, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(enc, want) {
				t.Errorf("output differs from %s:\n%s", golden, enc)
			}
			res := v.Validate(got, validate.Options{})
			for _, is := range res.Issues {
				if is.Severity == "error" || is.Severity == "fatal" {
					t.Errorf("UK Core validation: %s at %v: %s", is.Code, is.Expression, is.Diagnostics)
				}
			}
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
