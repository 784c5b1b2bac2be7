package summary

import (
	"slices"
	"strings"
	"testing"
)

func mustLoad(t *testing.T) *Set {
	t.Helper()
	s, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func TestLoadCoversAllR4ResourceTypes(t *testing.T) {
	s := mustLoad(t)
	// R4 4.0.1 defines 146 concrete resource types.
	if got := len(s.Types()); got != 146 {
		t.Fatalf("len(Types()) = %d, want 146", got)
	}
	if !slices.IsSorted(s.Types()) {
		t.Error("Types() is not sorted")
	}
}

func TestRequiredTypesPresent(t *testing.T) {
	s := mustLoad(t)
	for _, rt := range []string{
		"Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Encounter",
		"Observation", "Condition", "AllergyIntolerance", "MedicationStatement", "Medication",
		"MedicationRequest", "Questionnaire", "QuestionnaireResponse", "ServiceRequest", "Task",
		"Consent", "Flag", "CarePlan", "Composition", "DocumentReference", "Provenance",
		"AuditEvent", "MessageHeader", "Bundle", "Endpoint", "HealthcareService", "Subscription",
		"OperationOutcome", "Binary", "Parameters", "SearchParameter", "CapabilityStatement",
		"List", "Device", "RelatedPerson", "CareTeam", "EpisodeOfCare", "Appointment", "Schedule",
		"Slot", "ValueSet", "CodeSystem", "StructureDefinition",
	} {
		if s.SummaryElements(rt) == nil {
			t.Errorf("%s missing from table", rt)
		}
	}
}

// Every value below was checked against the R4 element definitions.
func TestSpotChecks(t *testing.T) {
	s := mustLoad(t)
	tests := []struct {
		resourceType string
		summary      []string
		notSummary   []string
	}{
		{
			resourceType: "Patient",
			summary: []string{"identifier", "active", "name", "telecom", "gender", "birthDate",
				"deceased", "address", "managingOrganization", "link"},
			notSummary: []string{"photo", "contact", "communication", "maritalStatus",
				"multipleBirth", "generalPractitioner"},
		},
		{
			resourceType: "Observation",
			summary:      []string{"status", "code", "subject", "encounter", "effective", "issued", "value", "component"},
			notSummary:   []string{"category", "interpretation", "dataAbsentReason", "note", "referenceRange", "bodySite"},
		},
		{
			resourceType: "Encounter",
			summary:      []string{"identifier", "status", "class", "type", "subject", "participant"},
			notSummary:   []string{"period", "hospitalization", "location", "serviceProvider"},
		},
		{
			resourceType: "Task",
			summary:      []string{"status", "intent", "code", "for", "owner", "lastModified"},
			notSummary:   []string{"priority", "authoredOn", "input", "output"},
		},
		{
			resourceType: "Questionnaire",
			summary:      []string{"url", "status", "subjectType", "code"},
			notSummary:   []string{"item", "description", "derivedFrom"},
		},
		{
			resourceType: "List",
			summary:      []string{"status", "mode", "code", "subject"},
			notSummary:   []string{"identifier", "entry"},
		},
		{
			resourceType: "Provenance",
			summary:      []string{"target", "recorded"},
			notSummary:   []string{"agent", "entity", "signature"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.resourceType, func(t *testing.T) {
			for _, e := range tc.summary {
				if !s.IsSummary(tc.resourceType, e) {
					t.Errorf("%s.%s should be summary", tc.resourceType, e)
				}
			}
			for _, e := range tc.notSummary {
				if s.IsSummary(tc.resourceType, e) {
					t.Errorf("%s.%s should not be summary", tc.resourceType, e)
				}
			}
		})
	}
}

// Resource.id, meta and implicitRules are summary; Resource.language and all
// DomainResource elements are not.
func TestInheritedElements(t *testing.T) {
	s := mustLoad(t)
	for _, rt := range s.Types() {
		for _, e := range []string{"id", "meta", "implicitRules"} {
			if !s.IsSummary(rt, e) {
				t.Errorf("%s: inherited %s missing", rt, e)
			}
		}
		for _, e := range []string{"language", "text", "contained", "extension", "modifierExtension"} {
			if s.IsSummary(rt, e) {
				t.Errorf("%s: %s must not be summary", rt, e)
			}
		}
	}
}

func TestElementNamesAreBare(t *testing.T) {
	s := mustLoad(t)
	for _, rt := range s.Types() {
		for _, e := range s.SummaryElements(rt) {
			if strings.ContainsAny(e, "[].") {
				t.Errorf("%s: element %q is not a bare JSON name", rt, e)
			}
		}
	}
}

func TestUnknownType(t *testing.T) {
	s := mustLoad(t)
	if got := s.SummaryElements("NotAResource"); got != nil {
		t.Errorf("SummaryElements(unknown) = %v, want nil", got)
	}
	if s.IsSummary("NotAResource", "id") {
		t.Error("IsSummary(unknown, id) = true")
	}
}

func TestReturnedSlicesAreCopies(t *testing.T) {
	s := mustLoad(t)
	got := s.SummaryElements("Patient")
	got[0] = "mutated"
	if s.SummaryElements("Patient")[0] == "mutated" {
		t.Error("SummaryElements exposes internal state")
	}
	types := s.Types()
	types[0] = "mutated"
	if s.Types()[0] == "mutated" {
		t.Error("Types exposes internal state")
	}
}

func TestParseRejectsBadTables(t *testing.T) {
	tests := map[string]string{
		"malformed":      `{`,
		"wrong version":  `{"fhirVersion":"5.0.0","resources":{"Patient":["id"]}}`,
		"empty":          `{"fhirVersion":"4.0.1","resources":{}}`,
		"choice suffix":  `{"fhirVersion":"4.0.1","resources":{"Observation":["value[x]"]}}`,
		"path":           `{"fhirVersion":"4.0.1","resources":{"Patient":["name.given"]}}`,
		"duplicate name": `{"fhirVersion":"4.0.1","resources":{"Patient":["id","id"]}}`,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parse([]byte(data)); err == nil {
				t.Error("parse accepted a bad table")
			}
		})
	}
}
