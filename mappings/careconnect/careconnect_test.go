package careconnect_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/mappings/careconnect"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
)

func options() careconnect.Options {
	n := 0
	return careconnect.Options{
		AgencyODS: "XCUST01", Source: "custody-hcp",
		Recorded: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		NewID: func() string {
			n++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
		},
	}
}

func mapper(t *testing.T) *careconnect.Mapper {
	t.Helper()
	m, err := careconnect.New()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGolden converts every testdata/*.input.json and compares Bundle and warnings with
// the golden files.
func TestGolden(t *testing.T) {
	m := mapper(t)
	mappingtest.BundleGoldens(t, func(t *testing.T, path string) (map[string]any, []careconnect.Warning) {
		res, err := m.Map(mappingtest.ReadJSON(t, path), options())
		if err != nil {
			t.Fatalf("mapping: %v", err)
		}
		return res.Bundle, res.Warnings
	})
}

// TestGoldenValid checks every golden Bundle and each resource in it under the broker's UK
// Core validator: no errors, and every resource names its UK Core profile.
func TestGoldenValid(t *testing.T) { mappingtest.ValidGoldenBundles(t) }

// TestBadInput: unsupported or malformed STU3 content is refused with an issue naming the
// element.
func TestBadInput(t *testing.T) {
	m := mapper(t)
	record := func() map[string]any { return mappingtest.ReadJSON(t, "testdata/structured-record.input.json") }
	res := func(b map[string]any, i int) map[string]any {
		return b["entry"].([]any)[i].(map[string]any)["resource"].(map[string]any)
	}
	for _, tc := range []struct {
		name   string
		edit   func(b map[string]any)
		status int
		expr   string
	}{
		{"not a Bundle", func(b map[string]any) { b["resourceType"] = "Patient" }, 400, "Bundle.resourceType"},
		{"not a collection", func(b map[string]any) { b["type"] = "searchset" }, 400, "Bundle.type"},
		{"other profile", func(b map[string]any) { b["meta"] = map[string]any{"profile": []any{"http://example.org/x"}} }, 400, "Bundle.meta.profile"},
		{"no patient", func(b map[string]any) { b["entry"] = b["entry"].([]any)[1:] }, 400, "Bundle.entry"},
		{"unsupported resource type", func(b map[string]any) {
			b["entry"] = append(b["entry"].([]any), map[string]any{"resource": map[string]any{"resourceType": "Immunization", "id": "i1"}})
		}, 422, "Bundle.entry[14].resource.resourceType"},
		{"unknown element", func(b map[string]any) { res(b, 5)["reasonForAllergy"] = "x" }, 422, "Bundle.entry[5].resource.reasonForAllergy"},
		{"bad STU3 clinicalStatus", func(b map[string]any) { res(b, 7)["clinicalStatus"] = "current" }, 422, "Bundle.entry[7].resource.clinicalStatus"},
		{"clinicalStatus already a CodeableConcept", func(b map[string]any) {
			res(b, 5)["clinicalStatus"] = map[string]any{"coding": []any{map[string]any{"code": "active"}}}
		}, 400, "Bundle.entry[5].resource.clinicalStatus"},
		{"unknown extension", func(b map[string]any) {
			res(b, 7)["extension"] = []any{map[string]any{"url": "http://example.org/ext", "valueString": "x"}}
		}, 422, "Bundle.entry[7].resource.extension[0]"},
		{"modifier extension", func(b map[string]any) {
			res(b, 8)["modifierExtension"] = []any{map[string]any{"url": "http://example.org/ext", "valueBoolean": true}}
		}, 422, "Bundle.entry[8].resource.modifierExtension"},
		{"dangling reference", func(b map[string]any) { res(b, 7)["asserter"] = map[string]any{"reference": "Practitioner/404"} }, 422, "Bundle.entry[7].resource.asserter.reference"},
		{"bad list warning", func(b map[string]any) {
			res(b, 4)["extension"].([]any)[0].(map[string]any)["valueCode"] = "secret"
		}, 422, "Bundle.entry[4].resource.extension[0].valueCode"},
		{"bad verification status", func(b map[string]any) {
			id := res(b, 0)["identifier"].([]any)[0].(map[string]any)
			id["extension"].([]any)[0].(map[string]any)["valueCodeableConcept"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] = "99"
		}, 422, "Bundle.entry[0].resource.identifier[0].extension[0].valueCodeableConcept.coding[0]"},
		{"unsupported dosage element", func(b map[string]any) {
			res(b, 10)["dosage"].([]any)[0].(map[string]any)["doseFrequency"] = 3
		}, 422, "Bundle.entry[10].resource.dosage[0].doseFrequency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := record()
			tc.edit(b)
			_, err := m.Map(b, options())
			var oe *outcome.Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v, want an OperationOutcome error", err)
			}
			found := false
			for _, is := range oe.Issues {
				if len(is.Expression) > 0 && is.Expression[0] == tc.expr {
					found = true
				}
			}
			if !found || oe.Status != tc.status {
				t.Errorf("status %d, issues %+v; want %d at %s", oe.Status, oe.Issues, tc.status, tc.expr)
			}
		})
	}
}
