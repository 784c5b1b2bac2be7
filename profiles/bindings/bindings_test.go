package bindings

import (
	"strings"
	"testing"
)

func TestR4(t *testing.T) {
	s, err := R4()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"AllergyIntolerance.clinicalStatus":     "http://hl7.org/fhir/ValueSet/allergyintolerance-clinical",
		"AllergyIntolerance.verificationStatus": "http://hl7.org/fhir/ValueSet/allergyintolerance-verification",
		"Condition.clinicalStatus":              "http://hl7.org/fhir/ValueSet/condition-clinical",
		"Condition.verificationStatus":          "http://hl7.org/fhir/ValueSet/condition-ver-status",
		"Measure.improvementNotation":           "http://hl7.org/fhir/ValueSet/measure-improvement-notation",
		"MeasureReport.improvementNotation":     "http://hl7.org/fhir/ValueSet/measure-improvement-notation",
	}
	got := map[string]string{}
	for _, b := range s.Bindings {
		if _, dup := got[b.Path]; dup {
			t.Errorf("%s is bound twice", b.Path)
		}
		got[b.Path] = b.ValueSet
	}
	if len(got) != len(want) {
		t.Errorf("%d bindings, want %d: %v", len(got), len(want), got)
	}
	for p, vs := range want {
		if got[p] != vs {
			t.Errorf("%s: bound to %q, want %q", p, got[p], vs)
		}
	}
	// Each value set draws on the code system of the same name, as R4 defines them.
	for _, vs := range s.ValueSets {
		id := vs.URL[strings.LastIndexByte(vs.URL, '/')+1:]
		if len(vs.Include) != 1 || vs.Include[0].System != "http://terminology.hl7.org/CodeSystem/"+id {
			t.Errorf("%s: includes %+v, want the one code system %s", vs.URL, vs.Include, id)
		}
	}
}
