package fhirpath

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

const testPatient = `{
  "resourceType": "Patient",
  "id": "p1",
  "identifier": [
    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
    {"system": "urn:local", "value": "A1"}
  ],
  "active": true,
  "name": [
    {"use": "official", "family": "Smith", "given": ["Anna", null, "May"],
     "_given": [null, {"extension": [{"url": "http://example.org/absent", "valueCode": "masked"}]}, null]}
  ],
  "gender": "female",
  "birthDate": "1980-02-29",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1980-02-29T10:15:00+00:00"}]},
  "contact": [{"name": {"family": "Smith"}, "telecom": [{"system": "phone", "value": "0123"}]}],
  "generalPractitioner": [{"reference": "#gp"}, {"reference": "Organization/org1"}],
  "contained": [{"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Jones"}]}]
}`

const testPractitioner = `{"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Jones", "given": ["Bob"]}]}`

const testObservation = `{
  "resourceType": "Observation",
  "id": "o1",
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
  "subject": {"reference": "Patient/p1"},
  "performer": [{"reference": "Practitioner/pr1"}, {"reference": "Organization/org1"}],
  "effectiveDateTime": "2024-03-01T09:30:00+01:00",
  "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
  "component": [
    {"code": {"text": "note"}, "valueString": "fasting"},
    {"code": {"text": "flag"}, "valueBoolean": true}
  ]
}`

// newTestEngine builds an engine over the R4 model; each test builds its own, as callers do.
func newTestEngine(tb testing.TB) *Engine {
	tb.Helper()
	return NewEngine(r4model.Load())
}

func eval(t *testing.T, e *Engine, expr, resource string, opts ...Option) Collection {
	t.Helper()
	x, err := e.Compile(expr)
	if err != nil {
		t.Fatalf("compile %q: %v", expr, err)
	}
	var input any
	if resource != "" {
		input = decodeJSON(t, resource)
	}
	out, err := x.Evaluate(input, opts...)
	if err != nil {
		t.Fatalf("evaluate %q: %v", expr, err)
	}
	return out
}

// render shows a result as "type:value" items for compact assertions.
func render(c Collection) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = v.Type() + ":" + v.String()
	}
	return strings.Join(parts, " ")
}

func TestEvaluate(t *testing.T) {
	e := newTestEngine(t)
	tests := []struct {
		name, resource, expr, want string
	}{
		// choice elements
		{"choice stem finds the typed property", testObservation, "Observation.value", `Quantity:{"code":"kg","system":"http://unitsofmeasure.org","unit":"kg","value":72.50}`},
		{"choice ofType", testObservation, "Observation.value.ofType(Quantity).value", "decimal:72.50"},
		{"choice as operator", testObservation, "(Observation.value as Quantity).code", "code:kg"},
		{"choice as function", testObservation, "Observation.value.as(Quantity).unit", "string:kg"},
		{"choice of another type is empty", testObservation, "Observation.value.as(string)", ""},
		{"choice inside backbone", testObservation, "Observation.component.value.ofType(string)", "string:fasting"},
		{"choice is", testObservation, "Observation.component.value.select($this is boolean)", "Boolean:false Boolean:true"},
		{"choice value compared with a quantity", testObservation, "Observation.value > 70 'kg'", "Boolean:true"},
		{"choice value with unit conversion", testObservation, "Observation.value = 72500 'g'", "Boolean:true"},
		{"dateTime choice", testObservation, "Observation.effective", "dateTime:2024-03-01T09:30:00+01:00"},
		// unions across resource types (search parameter style)
		{"union on patient", testPatient, "Patient.name.family | Practitioner.name.family", "string:Smith"},
		{"union on practitioner", testPractitioner, "Patient.name.family | Practitioner.name.family", "string:Jones"},
		{"type name of a base", testPatient, "Resource.id | DomainResource.id", "id:p1"},
		{"wrong type name", testPatient, "Observation.status", ""},
		// references
		{"resolve stub by type", testObservation, "Observation.subject.where(resolve() is Patient).reference", "string:Patient/p1"},
		{"resolve filters other types", testObservation, "Observation.performer.where(resolve() is Practitioner).reference", "string:Practitioner/pr1"},
		{"resolve contained", testPatient, "Patient.generalPractitioner.resolve().name.family", "string:Jones"},
		{"resolve contained type", testPatient, "Patient.generalPractitioner.where(resolve() is Practitioner).reference", "string:#gp"},
		// existence and filtering
		{"exists with criteria", testPatient, "Patient.identifier.exists(system = 'urn:local')", "Boolean:true"},
		{"exists false", testPatient, "Patient.identifier.exists(system = 'urn:other')", "Boolean:false"},
		{"where select", testPatient, "Patient.identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value", "string:9000000009"},
		{"empty path", testPatient, "Patient.deceased.exists()", "Boolean:false"},
		{"backbone element type", testPatient, "Patient.contact.type().name", "String:BackboneElement"},
		{"backbone navigation", testPatient, "Patient.contact.telecom.value", "string:0123"},
		// primitives with extensions
		{"primitive extension", testPatient, "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", "dateTime:1980-02-29T10:15:00+00:00"},
		{"extension-only primitive is in the list", testPatient, "Patient.name.given.count()", "Integer:3"},
		{"hasValue", testPatient, "Patient.name.given.select(hasValue())", "Boolean:true Boolean:false Boolean:true"},
		{"value-less primitive extension", testPatient, "Patient.name.given.extension.value", "code:masked"},
		// operators and types
		{"date arithmetic", testPatient, "Patient.birthDate + 1 year", "Date:1981-02-28"},
		{"date comparison with precision", testPatient, "Patient.birthDate = @1980-02", ""},
		{"FHIR primitive types", testPatient, "Patient.active.is(boolean) and Patient.active.is(Boolean).not() and Patient.gender.is(code)", "Boolean:true"},
		{"code as string is empty", testPatient, "Patient.gender.as(string)", ""},
		{"getValue gives System type", testPatient, "Patient.gender.getValue().type().namespace", "String:System"},
		{"three-valued and", "", "(true and {}).empty() and (false and {}) = false", "Boolean:true"},
		{"decimal exactness", "", "0.1 + 0.2 = 0.3", "Boolean:true"},
		{"integer division", "", "7 div 2 | 7 mod 2", "Integer:3 Integer:1"},
		{"string concatenation with empty", "", "'a' & {} & 'b'", "String:ab"},
		{"quantity arithmetic", "", "(2 'cm' * 3 'cm') = 6 'cm2'", "Boolean:true"},
		{"calendar duration", "", "@2024-01-31 + 1 month", "Date:2024-02-29"},
		{"descendants", testObservation, "Observation.descendants().ofType(Coding).code", "code:29463-7"},
		{"children order follows the model", testObservation, "Observation.component.first().children().type().name", "String:CodeableConcept String:string"},
		{"variables", testPatient, "%resource.id & '/' & %context.gender", "String:p1/female"},
		{"builtin value set variable", "", "%`vs-administrative-gender`", "String:http://hl7.org/fhir/ValueSet/administrative-gender"},
		{"dom-3 style invariant", testPatient, "contained.where(('#'+id in %resource.descendants().reference).not()).empty()", "Boolean:true"},
		{"aggregate", "", "(1 | 2 | 3).aggregate($this + $total, 0)", "Integer:6"},
		{"sort descending", "", "(2 | 3 | 1).sort(-$this)", "Integer:3 Integer:2 Integer:1"},
		{"htmlChecks", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>ok</p></div>"}}`, "text.div.htmlChecks()", "Boolean:true"},
		{"htmlChecks rejects script", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x()</script></div>"}}`, "text.div.htmlChecks()", "Boolean:false"},
		{"conformsTo core", testPatient, "conformsTo('http://hl7.org/fhir/StructureDefinition/DomainResource')", "Boolean:true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := render(eval(t, e, tc.expr, tc.resource)); got != tc.want {
				t.Errorf("%s\n got: %s\nwant: %s", tc.expr, got, tc.want)
			}
		})
	}
}

func TestJSONRendering(t *testing.T) {
	e := newTestEngine(t)
	out := eval(t, e, "Patient.birthDate | @2020-01-02T03:04:05Z | 5 'mg' | 2.50 | Patient.name.given.first() | 1.0 / 4", testPatient)
	var got []any
	for _, v := range out {
		got = append(got, v.JSON())
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `["1980-02-29","2020-01-02T03:04:05Z",{"code":"mg","system":"http://unitsofmeasure.org","unit":"mg","value":5},2.50,"Anna",0.25]`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestCompileErrors(t *testing.T) {
	e := newTestEngine(t)
	tests := []struct {
		expr     string
		semantic bool
		contains string
	}{
		{"Patient.name.", false, "column 14"},
		{"1 + ", false, "expected an expression"},
		{"'unterminated", false, "unterminated string"},
		{"Patient.name.where(", false, "expected an expression"},
		{"@2020-13-01", false, "invalid date"},
		{"Patient.nmae", true, "'nmae' is not an element of Patient"},
		{"Observation.valueQuantity", true, "value.ofType(Quantity)"},
		{"(Observation.value as Period).unit", true, "'unit' is not an element of Period"},
		{"Patient.name.foo()", true, "unknown function foo()"},
		{"Patient.name.where()", true, "where() takes 1 argument"},
		{"Patient.gender.as(strin)", true, "unknown type strin"},
	}
	for _, tc := range tests {
		_, err := e.Compile(tc.expr)
		if err == nil {
			t.Errorf("%q compiled, want an error", tc.expr)
			continue
		}
		var se *SemanticError
		var sy *SyntaxError
		if tc.semantic && !errors.As(err, &se) {
			t.Errorf("%q: want a SemanticError, got %T %v", tc.expr, err, err)
		}
		if !tc.semantic && !errors.As(err, &sy) {
			t.Errorf("%q: want a SyntaxError, got %T %v", tc.expr, err, err)
		}
		if !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%q: error %q does not mention %q", tc.expr, err, tc.contains)
		}
	}
}

func TestEvaluationErrors(t *testing.T) {
	e := newTestEngine(t)
	for _, expr := range []string{
		"Patient.name.given.single()",
		"Patient.identifier.value + 1",
		"Patient.birthDate < 'x'",
		"Patient.identifier.startsWith('a')",
		"%undefined",
		"(1 | 2).not()",
	} {
		x := e.MustCompile(expr)
		if _, err := x.Evaluate(decodeJSON(t, testPatient)); err == nil {
			t.Errorf("%q: want an evaluation error", expr)
		}
	}
}

func TestStrict(t *testing.T) {
	e := newTestEngine(t)
	x := e.MustCompile("name.given1")
	p := decodeJSON(t, testPatient)
	if out, err := x.Evaluate(p); err != nil || len(out) != 0 {
		t.Errorf("lenient: got %v, %v; want empty", out, err)
	}
	if _, err := x.Evaluate(p, Strict()); err == nil {
		t.Error("strict: want an error for an unknown element")
	}
}

func TestOptions(t *testing.T) {
	e := newTestEngine(t)
	obs := decodeJSON(t, testObservation)

	t.Run("resolver", func(t *testing.T) {
		calls := 0
		resolver := func(ref string) (map[string]any, bool) {
			calls++
			if ref == "Patient/p1" {
				return decodeJSON(t, testPatient), true
			}
			return nil, false
		}
		out, err := e.MustCompile("Observation.subject.resolve().name.family").Evaluate(obs, WithResolver(resolver))
		if err != nil || render(out) != "string:Smith" || calls != 1 {
			t.Errorf("got %s, %v after %d calls", render(out), err, calls)
		}
	})

	t.Run("bundle entries resolve", func(t *testing.T) {
		bundle := `{"resourceType":"Bundle","type":"collection","entry":[
			{"fullUrl":"urn:uuid:1","resource":` + testObservation + `},
			{"fullUrl":"http://x/fhir/Patient/p1","resource":` + testPatient + `}]}`
		got := render(eval(t, e, "Bundle.entry.resource.ofType(Observation).subject.resolve().id", bundle))
		if got != "id:p1" {
			t.Errorf("got %s", got)
		}
	})

	t.Run("variables", func(t *testing.T) {
		out, err := e.MustCompile("%threshold < Observation.value.value and %name = 'x'").Evaluate(obs,
			WithVariables(map[string]any{"threshold": json.Number("70"), "name": "x"}))
		if err != nil || render(out) != "Boolean:true" {
			t.Errorf("got %s, %v", render(out), err)
		}
	})

	t.Run("value set checker", func(t *testing.T) {
		checker := func(system, code, vs string) (bool, bool) {
			if vs != "http://example.org/vs" {
				return false, false
			}
			return system == "http://loinc.org" && code == "29463-7", true
		}
		x := e.MustCompile("Observation.code.memberOf('http://example.org/vs') | Observation.code.memberOf('http://example.org/unknown').empty()")
		out, err := x.Evaluate(obs, WithValueSetChecker(checker))
		if err != nil || render(out) != "Boolean:true" {
			t.Errorf("got %s, %v", render(out), err)
		}
	})

	t.Run("now", func(t *testing.T) {
		fixed := time.Date(2024, 5, 6, 7, 8, 9, 10e6, time.FixedZone("", 3600))
		out, err := e.MustCompile("now() | today() | timeOfDay()").Evaluate(nil, WithNow(func() time.Time { return fixed }))
		if err != nil || render(out) != "DateTime:2024-05-06T07:08:09.010+01:00 Date:2024-05-06 Time:07:08:09.010" {
			t.Errorf("got %s, %v", render(out), err)
		}
	})

	t.Run("trace", func(t *testing.T) {
		var traced []string
		_, err := e.MustCompile("Observation.status.trace('s')").Evaluate(obs, WithTrace(func(name string, c Collection) {
			traced = append(traced, name+"="+render(c))
		}))
		if err != nil || !reflect.DeepEqual(traced, []string{"s=code:final"}) {
			t.Errorf("got %v, %v", traced, err)
		}
	})

	t.Run("element with its resource", func(t *testing.T) {
		p := decodeJSON(t, testPatient)
		gp := p["generalPractitioner"].([]any)[0]
		out, err := e.MustCompile("resolve().name.family | %resource.id | %context.reference").Evaluate(gp,
			WithRootType("Reference"), WithResource(p))
		if err != nil || render(out) != "string:Jones id:p1 string:#gp" {
			t.Errorf("got %s, %v", render(out), err)
		}
	})

	t.Run("root type", func(t *testing.T) {
		name := map[string]any{"family": "Smith", "given": []any{"Anna"}}
		out, err := e.MustCompile("family.is(string) and given.exists()").Evaluate(name, WithRootType("HumanName"))
		if err != nil || render(out) != "Boolean:true" {
			t.Errorf("got %s, %v", render(out), err)
		}
	})
}

func TestConcurrentEvaluation(t *testing.T) {
	e := newTestEngine(t)
	x := e.MustCompile("Patient.identifier.where(system = 'urn:local').value | Patient.name.given")
	p := decodeJSON(t, testPatient)
	// the second given name has only an extension, so it renders as null
	want := "string:A1 string:Anna string:null string:May"
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				out, err := x.Evaluate(p)
				if err != nil || render(out) != want {
					errs <- render(out)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("got %s, want %s", e, want)
	}
}

func TestExpressionString(t *testing.T) {
	e := newTestEngine(t)
	const src = "Patient.name.given"
	if got := e.MustCompile(src).String(); got != src {
		t.Errorf("String() = %q", got)
	}
}

// A FHIR primitive is of its FHIR type, not of the System type it maps to (the official suite's
// testType12 and testType14 check this), so R4's que-7, `answer is Boolean`, is false for every
// answerBoolean; R4B corrected it to `answer is boolean`.
func TestFHIRPrimitivesAgainstSystemTypes(t *testing.T) {
	e := newTestEngine(t)
	const enableWhen = `{"question":"a","operator":"exists","answerBoolean":true}`
	tests := []struct{ expr, want string }{
		{"operator = 'exists' implies (answer is boolean)", "Boolean:true"},
		{"operator = 'exists' implies (answer is Boolean)", "Boolean:false"},
		{"answer is FHIR.boolean", "Boolean:true"},
		{"answer is System.Boolean", "Boolean:false"},
		{"answer.ofType(Boolean).exists()", "Boolean:false"},
		{"answer.getValue() is Boolean", "Boolean:true"},
		{"answer.getValue() is System.Boolean", "Boolean:true"},
		{"(answer as boolean) = true", "Boolean:true"},
		{"true is Boolean", "Boolean:true"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			x := e.MustCompile(tc.expr)
			out, err := x.Evaluate(decodeJSON(t, enableWhen), WithRootType("Questionnaire.item.enableWhen"))
			if err != nil {
				t.Fatal(err)
			}
			if got := render(out); got != tc.want {
				t.Errorf("%s\n got: %s\nwant: %s", tc.expr, got, tc.want)
			}
		})
	}
}
