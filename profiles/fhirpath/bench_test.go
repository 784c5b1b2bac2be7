package fhirpath

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

const benchPatient = `{
  "resourceType": "Patient",
  "id": "example",
  "identifier": [
    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
    {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}
  ],
  "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
  "gender": "male",
  "birthDate": "1974-12-25",
  "generalPractitioner": [{"reference": "Organization/1"}]
}`

const benchObservation = `{
  "resourceType": "Observation",
  "id": "bp",
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
  "subject": {"reference": "Patient/example"},
  "effectiveDateTime": "2016-03-28T09:30:10+01:00",
  "valueQuantity": {"value": 67.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
}`

func decodeJSON(tb testing.TB, s string) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func BenchmarkEvaluate(b *testing.B) {
	pat := decodeJSON(b, benchPatient)
	obs := decodeJSON(b, benchObservation)
	cases := []struct {
		name, expr string
		input      map[string]any
	}{
		{"simple-path", "Patient.identifier", pat},
		{"primitive-list", "Patient.name.given", pat},
		{"token-where", "Patient.identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value", pat},
		{"union", "Patient.name | Practitioner.name", pat},
		{"choice-as", "(Observation.value as Quantity)", obs},
		{"reference-resolve", "Observation.subject.where(resolve() is Patient)", obs},
		{"invariant", "birthDate.empty() or birthDate <= today()", pat},
	}
	e := NewEngine(r4model.Load())
	for _, c := range cases {
		x := e.MustCompile(c.expr)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := x.Evaluate(c.input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
