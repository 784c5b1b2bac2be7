package ukcore_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/ukcore"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// newValidator builds a validator from the embedded data only (no base invariants), so the
// results below come from the UK Core rules and the structural R4 check.
func newValidator(t *testing.T) *validate.Validator {
	t.Helper()
	d, err := validate.LoadFS(ukcore.FS())
	if err != nil {
		t.Fatal(err)
	}
	v, err := validate.New(validate.Config{
		FHIRPath:     fhirpath.NewEngine(r4model.Load()),
		Profiles:     d.Profiles,
		ValueSets:    d.ValueSets,
		Verification: d.Verification,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func resource(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	verifiedNHS    = `{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009","extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus","valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland","code":"01"}]}}]}`
	vitalsCategory = `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}]`
	vitalsProfile  = `"meta":{"profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation-VitalSigns"]}`
)

// TestValidatorOnData checks that the data compiles in the validator and that conformant
// resources raise no errors or warnings (no false alarms) while the UK Core rules still bite.
func TestValidatorOnData(t *testing.T) {
	v := newValidator(t)
	for _, tc := range []struct {
		name      string
		res       string
		wantError bool
		noWarning bool
	}{
		{"conformant patient", `{"resourceType":"Patient","identifier":[` + verifiedNHS + `],
			"extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory","valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland","code":"A"}]}}],
			"active":true,"name":[{"family":"Smith","given":["Jane"]}],"gender":"female","birthDate":"1980-01-01",
			"managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"Y12345"}}}`, false, true},
		{"NHS number failing the check digit", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000000"}]}`, true, false},
		{"verification status outside the value set", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009","extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus","valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland","code":"99"}]}}]}]}`, true, false},
		{"retired BaRS verification spelling", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009","extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus","valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus","code":"number-present-and-verified"}]}}]}]}`, false, false},
		{"organisation with ODS code", `{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RR8"}],"active":true,"name":"Leeds","type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/organization-type","code":"prov"}]}]}`, false, true},
		{"allergy without code", `{"resourceType":"AllergyIntolerance","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},"patient":{"reference":"Patient/1"}}`, true, false},
		{"allergy with code", `{"resourceType":"AllergyIntolerance","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"91936005"}]},"patient":{"reference":"Patient/1"}}`, false, true},
		{"medication statement identifier without system", `{"resourceType":"MedicationStatement","identifier":[{"value":"abc"}],"status":"active","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"}}`, true, false},
		{"conformant vital signs", `{"resourceType":"Observation",` + vitalsProfile + `,"status":"final",` + vitalsCategory + `,
			"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"},{"system":"http://snomed.info/sct","code":"364075005"}]},
			"subject":{"reference":"Patient/1"},"effectiveDateTime":"2024-01-01T10:00:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`, false, true},
		{"vital signs without LOINC", `{"resourceType":"Observation",` + vitalsProfile + `,"status":"final",` + vitalsCategory + `,
			"code":{"coding":[{"system":"http://snomed.info/sct","code":"364075005"}]},
			"subject":{"reference":"Patient/1"},"effectiveDateTime":"2024-01-01T10:00:00Z"}`, true, false},
		{"consent", `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
			"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/1"},
			"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMPLIED"}]},
			"provision":{"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}}`, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := v.Validate(resource(t, tc.res), validate.Options{})
			errs, warns, _ := r.Counts()
			if (errs > 0) != tc.wantError || (tc.noWarning && warns > 0) {
				t.Errorf("errors %d, warnings %d: %+v", errs, warns, r.Issues)
			}
		})
	}
}
