package validate

import (
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// TestBaseBindings checks each base R4 required binding: a code from its value set passes
// (alone or beside codes of other systems); a code outside it, a code of another system, a
// code without a system and a CodeableConcept with text but no coding fail, at the element,
// with code-invalid.
func TestBaseBindings(t *testing.T) {
	v := testValidator(t)
	const (
		condClinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
		condVer      = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
		aiClinical   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
		aiVer        = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
		improvement  = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
	)
	bindings := []struct {
		typ, elem, head string // head: the other elements the resource needs
		system, good    string
		other           string // a system whose codes look alike but are not in the value set
	}{
		{"Condition", "clinicalStatus", `"subject":{"reference":"Patient/p"}`, condClinical, "remission", aiClinical},
		{"Condition", "verificationStatus", `"subject":{"reference":"Patient/p"}`, condVer, "differential", aiVer},
		{"AllergyIntolerance", "clinicalStatus", `"patient":{"reference":"Patient/p"}`, aiClinical, "resolved", condClinical},
		{"AllergyIntolerance", "verificationStatus", `"patient":{"reference":"Patient/p"}`, aiVer, "refuted", condVer},
		{"Measure", "improvementNotation", `"status":"draft"`, improvement, "decrease", condClinical},
		{"MeasureReport", "improvementNotation", `"status":"complete","type":"summary","measure":"http://example.org/Measure/m","period":{"start":"2026-01-01"}`, improvement, "increase", aiVer},
	}
	for _, b := range bindings {
		coding := func(system, code string) string {
			s := `{"code":"` + code + `"}`
			if system != "" {
				s = `{"system":"` + system + `","code":"` + code + `"}`
			}
			return s
		}
		cases := []struct {
			name  string
			value string
			ok    bool
		}{
			{"code in the value set", `{"coding":[` + coding(b.system, b.good) + `]}`, true},
			{"beside a code of another system", `{"coding":[` + coding("http://snomed.info/sct", "55561003") + `,` + coding(b.system, b.good) + `],"text":"x"}`, true},
			{"code outside the value set", `{"coding":[` + coding(b.system, "suspended") + `]}`, false},
			{"code of another system", `{"coding":[` + coding(b.other, b.good) + `]}`, false},
			{"code of SNOMED CT", `{"coding":[` + coding("http://snomed.info/sct", "55561003") + `]}`, false},
			{"code without a system", `{"coding":[` + coding("", b.good) + `]}`, false},
			{"system without a code", `{"coding":[{"system":"` + b.system + `"}]}`, false},
			{"text only", `{"text":"` + b.good + `"}`, false},
		}
		for _, c := range cases {
			t.Run(b.typ+"."+b.elem+"/"+c.name, func(t *testing.T) {
				res := decode(t, `{"resourceType":"`+b.typ+`",`+b.head+`,"`+b.elem+`":`+c.value+`}`)
				r := v.Validate(res, Options{BaseOnly: true})
				at := b.typ + "." + b.elem
				var errs int
				for _, is := range r.Issues {
					if len(is.Expression) == 1 && is.Expression[0] == at && is.Severity == "error" {
						errs++
						if is.Code != "code-invalid" {
							t.Errorf("issue code %q, want code-invalid: %s", is.Code, is.Diagnostics)
						}
						if !strings.Contains(is.Diagnostics, "ValueSet/") {
							t.Errorf("diagnostics do not name the value set: %s", is.Diagnostics)
						}
					}
				}
				want := 1
				if c.ok {
					want = 0
				}
				if errs != want || r.BindingErrors != want {
					t.Errorf("%d errors at %s (BindingErrors %d), want %d:\n%s", errs, at, r.BindingErrors, want, dump(r.Issues))
				}
			})
		}
	}
}

// TestBaseBindingsNested checks that the bindings hold inside Bundle entries and contained
// resources, with the expression naming the element there, and whatever the profiles.
func TestBaseBindingsNested(t *testing.T) {
	v := testValidator(t)
	bad := `"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"current"}]}`
	cases := []struct {
		name, res, at string
		opts          Options
	}{
		{"root, UK Core default profile", `{"resourceType":"Condition","subject":{"reference":"Patient/p"},` + bad + `}`, "Condition.clinicalStatus", Options{}},
		{"bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:0b8e7d7e-0000-4000-8000-000000000001","resource":{"resourceType":"Patient"}},{"fullUrl":"urn:uuid:0b8e7d7e-0000-4000-8000-000000000002","resource":{"resourceType":"Condition","subject":{"reference":"urn:uuid:0b8e7d7e-0000-4000-8000-000000000001"},` + bad + `}}]}`,
			"Bundle.entry[1].resource.clinicalStatus", Options{BaseOnly: true}},
		{"contained", `{"resourceType":"List","status":"current","mode":"snapshot","entry":[{"item":{"reference":"#c"}}],"contained":[{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},` + bad + `}]}`,
			"List.contained[0].clinicalStatus", Options{BaseOnly: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := v.Validate(decode(t, c.res), c.opts)
			found := false
			for _, is := range r.Issues {
				if is.Code == "code-invalid" && is.Severity == "error" && len(is.Expression) == 1 && is.Expression[0] == c.at {
					found = true
				}
			}
			if !found || r.BindingErrors != 1 || r.Valid() {
				t.Errorf("want one code-invalid error at %s (BindingErrors %d):\n%s", c.at, r.BindingErrors, dump(r.Issues))
			}
		})
	}
	// Profile bindings are not base bindings: an extensible UK Core miss is no binding error.
	r := v.Validate(decode(t, `{"resourceType":"Condition","subject":{"reference":"Patient/p"},"category":[{"coding":[{"system":"http://snomed.info/sct","code":"55561003"}]}]}`), Options{})
	if r.BindingErrors != 0 {
		t.Errorf("BindingErrors %d for a UK Core extensible binding:\n%s", r.BindingErrors, dump(r.Issues))
	}
}

// TestBaseBindingsConfig checks that a base binding that could not be checked is refused
// when the validator is built.
func TestBaseBindingsConfig(t *testing.T) {
	listed := ValueSet{URL: "http://example.org/vs", Include: []Include{{System: "http://example.org/cs", Codes: []Concept{{Code: "a"}}}}}
	whole := ValueSet{URL: "http://example.org/whole", Include: []Include{{System: "http://example.org/cs"}}}
	for _, c := range []struct {
		name string
		b    BaseBinding
		want string
	}{
		{"code element", BaseBinding{Path: "Patient.gender", ValueSet: listed.URL}, "not CodeableConcept or Coding"},
		{"no such element", BaseBinding{Path: "Condition.colour", ValueSet: listed.URL}, "names no R4 element"},
		{"unknown value set", BaseBinding{Path: "Condition.clinicalStatus", ValueSet: "http://example.org/none"}, "not loaded"},
		{"whole code system", BaseBinding{Path: "Condition.clinicalStatus", ValueSet: whole.URL}, "not loaded with its codes listed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(Config{FHIRPath: fhirpath.NewEngine(r4model.Load()), Bindings: []BaseBinding{c.b}, ValueSets: []ValueSet{listed, whole}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want one containing %q", err, c.want)
			}
		})
	}
}
