package searchparam

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitUnion(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"Patient.name", []string{"Patient.name"}},
		{"A.x | B.y", []string{"A.x", "B.y"}},
		{"(Observation.value as Quantity) | (Observation.value as SampledData)",
			[]string{"(Observation.value as Quantity)", "(Observation.value as SampledData)"}},
		{"Observation.value.as(Quantity) | Observation.component.value.as(Quantity)",
			[]string{"Observation.value.as(Quantity)", "Observation.component.value.as(Quantity)"}},
		// "|" inside a function argument, an indexer or a string literal is not a union.
		{"Patient.name.where(given = 'a' | 'b') | Person.name",
			[]string{"Patient.name.where(given = 'a' | 'b')", "Person.name"}},
		{"Patient.telecom.where(value = 'x|y')", []string{"Patient.telecom.where(value = 'x|y')"}},
		{"Bundle.entry[0 | 1].resource | Bundle.identifier",
			[]string{"Bundle.entry[0 | 1].resource", "Bundle.identifier"}},
		{"Patient.`weird|name` | Patient.id", []string{"Patient.`weird|name`", "Patient.id"}},
		{"Patient.name.where(family = 'O\\'Neil|x') | Patient.id",
			[]string{"Patient.name.where(family = 'O\\'Neil|x')", "Patient.id"}},
	}
	for _, tc := range tests {
		if got := splitUnion(tc.expr); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitUnion(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestExpressionFor(t *testing.T) {
	const clinicalCode = "AllergyIntolerance.code | AllergyIntolerance.reaction.substance | Condition.code | " +
		"(DeviceRequest.code as CodeableConcept) | (MedicationStatement.medication as CodeableConcept) | Observation.code"
	tests := []struct {
		name, expr, rt, want string
	}{
		{"single branch is returned whole", "Patient.name", "Patient", "Patient.name"},
		{"single branch of another type is still whole", "Resource.meta.tag", "Patient", "Resource.meta.tag"},
		{"several branches for one type", clinicalCode, "AllergyIntolerance",
			"AllergyIntolerance.code | AllergyIntolerance.reaction.substance"},
		{"parenthesised branch", clinicalCode, "MedicationStatement",
			"(MedicationStatement.medication as CodeableConcept)"},
		{"no branch for the type", clinicalCode, "Patient", ""},
		{"prefix of a longer type name does not match", "MedicationStatement.status | Medication.status",
			"Medication", "Medication.status"},
		{"same type in every branch", "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)",
			"AuditEvent", "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)"},
		{"not split by type", "value.as(Quantity) | value.as(Range)", "Observation", "value.as(Quantity) | value.as(Range)"},
		{"Resource branch applies to any type", "Resource.id | Patient.link.other", "Patient", "Resource.id | Patient.link.other"},
		{"composite root and component", "Observation | Observation.component", "Observation", "Observation | Observation.component"},
		{"value-string with trailing path", "(Observation.value as string) | (Observation.value as CodeableConcept).text",
			"Observation", "(Observation.value as string) | (Observation.value as CodeableConcept).text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &Param{Expression: tc.expr}
			if got := p.ExpressionFor(tc.rt); got != tc.want {
				t.Errorf("ExpressionFor(%q) = %q, want %q", tc.rt, got, tc.want)
			}
		})
	}
}

func TestCheckExpression(t *testing.T) {
	tests := []struct {
		expr    string
		wantErr string
	}{
		{"Patient.name", ""},
		{"(Observation.value as Quantity) | (Observation.value as SampledData)", ""},
		{"Patient.telecom.where(system='phone')", ""},
		{"Patient.name.where(text = 'a)b')", ""},
		{"", "empty"},
		{"   ", "empty"},
		{"Patient.name.where(use='official'", "unclosed"},
		{"Patient.name)", "unbalanced"},
		{"Bundle.entry[0).resource", "unbalanced"},
		{"Patient.name.where(use='official)", "unterminated"},
		{"Patient.name | ", "empty branch"},
	}
	for _, tc := range tests {
		err := checkExpression(tc.expr)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkExpression(%q) = %v, want nil", tc.expr, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkExpression(%q) = %v, want error containing %q", tc.expr, err, tc.wantErr)
		}
	}
}
