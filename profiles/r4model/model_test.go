package r4model

import (
	"slices"
	"testing"
)

func loadModel(t *testing.T) *Model {
	t.Helper()
	return Load()
}

func TestResourceTypes(t *testing.T) {
	m := loadModel(t)
	rts := m.ResourceTypes()
	if len(rts) < 140 {
		t.Fatalf("only %d resource types", len(rts))
	}
	if !slices.IsSorted(rts) {
		t.Error("resource types are not sorted")
	}
	for _, want := range []string{"Patient", "Observation", "Bundle", "QuestionnaireResponse", "ServiceRequest", "Task", "Parameters", "Binary"} {
		if !slices.Contains(rts, want) || !m.IsResource(want) {
			t.Errorf("%s missing", want)
		}
	}
	for _, not := range []string{"Resource", "DomainResource", "HumanName", "string", "Patient.contact", "Nope"} {
		if m.IsResource(not) {
			t.Errorf("IsResource(%q) = true", not)
		}
	}
	rts[0] = "changed"
	if m.ResourceTypes()[0] == "changed" {
		t.Error("ResourceTypes exposes internal state")
	}
}

func TestElements(t *testing.T) {
	m := loadModel(t)
	tests := []struct {
		typ, name string
		codes     []string
		list      bool
		choice    bool
		primitive bool // of the first type
		min       int
	}{
		{"Patient", "birthDate", []string{"date"}, false, false, true, 0},
		{"Patient", "identifier", []string{"Identifier"}, true, false, false, 0},
		{"Patient", "deceased", []string{"boolean", "dateTime"}, false, true, true, 0},
		{"Patient", "contact", []string{"BackboneElement"}, true, false, false, 0},
		{"Patient", "contained", []string{"Resource"}, true, false, false, 0},
		{"HumanName", "family", []string{"string"}, false, false, true, 0},
		{"HumanName", "given", []string{"string"}, true, false, true, 0},
		{"Observation", "status", []string{"code"}, false, false, true, 1},
		{"Observation", "subject", []string{"Reference"}, false, false, false, 0},
		{"Observation", "effective", []string{"dateTime", "Period", "Timing", "instant"}, false, true, true, 0},
		{"Reference", "reference", []string{"string"}, false, false, true, 0},
		{"Extension", "url", []string{"uri"}, false, false, true, 1},
		{"Bundle.entry", "resource", []string{"Resource"}, false, false, false, 0},
		{"Timing.repeat", "bounds", []string{"Duration", "Range", "Period"}, false, true, false, 0},
		{"Encounter", "class", []string{"Coding"}, false, false, false, 1},
		{"Task", "for", []string{"Reference"}, false, false, false, 0},
		{"Resource", "id", []string{"id"}, false, false, true, 0},
		{"DomainResource", "text", []string{"Narrative"}, false, false, false, 0},
		{"Narrative", "div", []string{"xhtml"}, false, false, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"."+tc.name, func(t *testing.T) {
			e, ok := m.Element(tc.typ, tc.name)
			if !ok {
				t.Fatal("not found")
			}
			var codes []string
			for _, r := range e.Types {
				codes = append(codes, r.Code)
				if r.Type == nil {
					t.Errorf("type %s unresolved", r.Code)
				}
			}
			if !slices.Equal(codes, tc.codes) {
				t.Errorf("codes %v, want %v", codes, tc.codes)
			}
			if e.List != tc.list || e.Choice != tc.choice || e.Min != tc.min {
				t.Errorf("list=%v choice=%v min=%d, want %v %v %d", e.List, e.Choice, e.Min, tc.list, tc.choice, tc.min)
			}
			if got := e.Types[0].Type.IsPrimitive(); got != tc.primitive {
				t.Errorf("primitive = %v", got)
			}
		})
	}
	if _, ok := m.Element("Patient", "deceasedBoolean"); ok {
		t.Error("Element should not accept suffixed choice names")
	}
}

func TestLookupJSONNames(t *testing.T) {
	m := loadModel(t)
	tests := []struct {
		typ, key, element, code, suffix string
	}{
		{"Observation", "valueQuantity", "value", "Quantity", "Quantity"},
		{"Observation", "valueString", "value", "string", "String"},
		{"Observation", "valueDateTime", "value", "dateTime", "DateTime"},
		{"Observation", "code", "code", "CodeableConcept", ""},
		{"Extension", "valueBase64Binary", "value", "base64Binary", "Base64Binary"},
		{"MolecularSequence.quality", "truthTP", "truthTP", "decimal", ""},
	}
	for _, tc := range tests {
		mt, ok := m.Lookup(tc.typ, tc.key)
		if !ok {
			t.Errorf("%s.%s not found", tc.typ, tc.key)
			continue
		}
		if mt.Element.Name != tc.element || mt.Type.Code != tc.code || mt.Type.Suffix != tc.suffix {
			t.Errorf("%s.%s = %s/%s/%s", tc.typ, tc.key, mt.Element.Name, mt.Type.Code, mt.Type.Suffix)
		}
		if mt.Element.JSONName(mt.Type) != tc.key {
			t.Errorf("JSONName = %s", mt.Element.JSONName(mt.Type))
		}
	}
	for _, bad := range []string{"valueFoo", "value", "fullUrl"} {
		if _, ok := m.Lookup("Observation", bad); ok {
			t.Errorf("Lookup(Observation, %s) succeeded", bad)
		}
	}
}

func TestReferenceAndBinding(t *testing.T) {
	m := loadModel(t)
	e, _ := m.Element("Observation", "subject")
	if !slices.Contains(e.TargetTypes, "Patient") || !slices.Contains(e.TargetTypes, "Group") {
		t.Errorf("subject targets %v", e.TargetTypes)
	}
	g, _ := m.Element("Patient", "gender")
	if g.Binding != "http://hl7.org/fhir/ValueSet/administrative-gender" || g.Types[0].Code != "code" {
		t.Errorf("gender binding %q type %s", g.Binding, g.Types[0].Code)
	}
	r, _ := m.Type("Reference")
	var names []string
	for _, el := range r.Elements {
		names = append(names, el.Name)
	}
	if !slices.Equal(names, []string{"id", "extension", "type", "reference", "identifier", "display"}) {
		t.Errorf("Reference elements %v", names)
	}
}

func TestBackboneTypes(t *testing.T) {
	m := loadModel(t)
	c, _ := m.Element("Patient", "contact")
	bt := c.Types[0].Type
	if bt.Name != "Patient.contact" || bt.Kind != Backbone || bt.BaseName != "BackboneElement" {
		t.Fatalf("contact type %s kind %v base %s", bt.Name, bt.Kind, bt.BaseName)
	}
	if _, ok := bt.Element("relationship"); !ok {
		t.Error("Patient.contact.relationship missing")
	}
	if t2, ok := m.Type("Patient.contact"); !ok || t2 != bt {
		t.Error("backbone type not found by path")
	}
	// Questionnaire.item.item reuses the item definition.
	item, _ := m.Element("Questionnaire", "item")
	sub, _ := item.Types[0].Type.Element("item")
	if sub.Types[0].Type != item.Types[0].Type {
		t.Error("Questionnaire.item.item is not Questionnaire.item")
	}
}

func TestInheritance(t *testing.T) {
	m := loadModel(t)
	tests := []struct {
		typ, base string
		want      bool
	}{
		{"Patient", "DomainResource", true},
		{"Patient", "Resource", true},
		{"Bundle", "DomainResource", false},
		{"Bundle", "Resource", true},
		{"Age", "Quantity", true},
		{"Duration", "Quantity", true},
		{"SimpleQuantity", "Quantity", true},
		{"Quantity", "Age", false},
		{"code", "string", true},
		{"id", "string", true},
		{"uuid", "uri", true},
		{"url", "string", false},
		{"positiveInt", "integer", true},
		{"Timing", "BackboneElement", true},
		{"HumanName", "Element", true},
		{"HumanName", "BackboneElement", false},
		{"Patient.contact", "BackboneElement", true},
		{"Timing.repeat", "Element", true},
	}
	for _, tc := range tests {
		if got := m.IsSubtype(tc.typ, tc.base); got != tc.want {
			t.Errorf("IsSubtype(%s, %s) = %v", tc.typ, tc.base, got)
		}
	}
}

func TestPrimitives(t *testing.T) {
	m := loadModel(t)
	want := map[string]string{
		"boolean": "Boolean", "integer": "Integer", "decimal": "Decimal", "string": "String", "uri": "String",
		"url": "String", "canonical": "String", "code": "String", "id": "String", "markdown": "String",
		"date": "Date", "dateTime": "DateTime", "instant": "DateTime", "time": "Time", "oid": "String",
		"uuid": "String", "positiveInt": "Integer", "unsignedInt": "Integer", "base64Binary": "String",
	}
	for name, sys := range want {
		ty, ok := m.Type(name)
		if !ok || !m.IsPrimitive(name) {
			t.Errorf("%s is not a primitive", name)
			continue
		}
		if ty.SystemType() != sys {
			t.Errorf("%s maps to %s, want %s", name, ty.SystemType(), sys)
		}
		if _, ok := ty.Element("extension"); !ok {
			t.Errorf("%s has no extension element", name)
		}
	}
	if m.IsPrimitive("Quantity") {
		t.Error("Quantity is not primitive")
	}
}
