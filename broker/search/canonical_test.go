package search

import (
	"net/url"
	"testing"
)

func TestCriteriaKeyEquivalentSpellings(t *testing.T) {
	tests := []struct {
		typ  string
		a, b string
	}{
		{"Patient", "name=a&gender=male", "gender=male&name=a"},
		{"Patient", "gender=male,female", "gender=female,male"},
		{"Patient", "gender=male&gender=male", "gender=male"},
		{"Patient", "birthdate=eq2000", "birthdate=2000"},
		{"Observation", "subject:Patient=1", "subject=Patient/1"},
		{"Observation", "patient=1", "patient=Patient/1"},
		{"Observation", "subject.birthdate=2000", "subject:Patient.birthdate=2000"},
		{"Observation", "value-quantity=eq5||mg", "value-quantity=5||mg"},
		{"Patient", "name=a&_count=5&_sort=name&_format=json", "name=a"},
		{"", "_type=Practitioner,Patient&identifier=x", "_type=Patient,Practitioner&identifier=x"},
	}
	for _, tt := range tests {
		ka := mustParse(t, tt.typ, tt.a, Options{}).CriteriaKey()
		kb := mustParse(t, tt.typ, tt.b, Options{}).CriteriaKey()
		if ka != kb {
			t.Errorf("%s: %q and %q give different keys:\n %s\n %s", tt.typ, tt.a, tt.b, ka, kb)
		}
	}
	for _, tt := range []struct{ typ, a, b string }{
		{"Patient", "gender=male", "gender:not=male"},
		{"Patient", "gender=male&gender=female", "gender=male,female"},
		{"Patient", "birthdate=ge2000", "birthdate=2000"},
		{"Observation", "subject=Patient/1", "subject=Group/1"},
		{"Patient", "name=a", "family=a"},
	} {
		if mustParse(t, tt.typ, tt.a, Options{}).CriteriaKey() == mustParse(t, tt.typ, tt.b, Options{}).CriteriaKey() {
			t.Errorf("%q and %q should differ", tt.a, tt.b)
		}
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		typ, query string
		criteria   string
		encoded    string
	}{
		{"Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009&birthdate=ge2000",
			"Patient?birthdate=ge2000&identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009",
			"birthdate=ge2000&identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009&_count=20"},
		{"Patient", `name=Smith\,%20J%26o+x&_sort=-birthdate,name&_count=5&_offset=10&_total=accurate&_summary=data&_elements=name,id`,
			`Patient?name=Smith%5C,%20J%26o%20x`,
			`name=Smith%5C,%20J%26o%20x&_count=5&_offset=10&_sort=-birthdate,name&_total=accurate&_summary=data&_elements=id,name`},
		{"Observation", "_revinclude=Provenance:target&_include:iterate=Patient:organization&_include=Observation:subject:Patient&code=1234-5",
			"Observation?code=1234-5",
			"code=1234-5&_count=20&_include:iterate=Patient:organization&_include=Observation:subject:Patient&_revinclude=Provenance:target"},
		{"Patient", "_has:Observation:patient:code=1234-5&gender:missing=true",
			"Patient?_has:Observation:patient:code=1234-5&gender:missing=true", ""},
		{"Observation", "date=2024-03-05T10:30:00%2B01:00",
			"Observation?date=2024-03-05T10:30:00%2B01:00", ""},
		{"", "_type=Patient&_id=a", "?_id=a&_type=Patient", ""},
	}
	for _, tt := range tests {
		q := mustParse(t, tt.typ, tt.query, Options{})
		if got := q.CriteriaKey(); got != tt.criteria {
			t.Errorf("CriteriaKey(%s?%s)\n got  %s\n want %s", tt.typ, tt.query, got, tt.criteria)
		}
		if tt.encoded != "" {
			if got := q.Encode(); got != tt.encoded {
				t.Errorf("Encode(%s?%s)\n got  %s\n want %s", tt.typ, tt.query, got, tt.encoded)
			}
		}
		// The encoding must parse back to the same query.
		vals, err := url.ParseQuery(q.Encode())
		if err != nil {
			t.Errorf("Encode(%s?%s) does not parse: %v", tt.typ, tt.query, err)
			continue
		}
		back, err := Parse(tt.typ, vals, testParams(), Options{Now: testNow})
		if err != nil {
			t.Errorf("re-parsing %s: %v", q.Encode(), err)
			continue
		}
		if back.Encode() != q.Encode() {
			t.Errorf("round trip changed the query:\n %s\n %s", q.Encode(), back.Encode())
		}
	}
}

func TestSelfLink(t *testing.T) {
	q := mustParse(t, "Patient", "name=a", Options{})
	if got, want := q.SelfLink("https://broker.example/fhir/"), "https://broker.example/fhir/Patient?name=a&_count=20"; got != want {
		t.Errorf("SelfLink = %s, want %s", got, want)
	}
	q = mustParse(t, "", "_type=Patient", Options{})
	if got, want := q.SelfLink("https://broker.example/fhir"), "https://broker.example/fhir?_type=Patient&_count=20"; got != want {
		t.Errorf("SelfLink = %s, want %s", got, want)
	}
}

func TestCanonicalValues(t *testing.T) {
	opts := Options{BaseURL: "https://broker.example/fhir"}
	tests := []struct{ typ, query, want string }{
		{"Observation", "subject=https://other.example/Patient/1", "Observation?subject=https://other.example/Patient/1"},
		{"Observation", "subject=https://broker.example/fhir/Patient/1", "Observation?subject=Patient/1"},
		{"Observation", "subject=Patient/1/_history/3", "Observation?subject=Patient/1/_history/3"},
		{"Observation", "subject=1", "Observation?subject=1"},
		{"Observation", "subject:identifier=sys|1", "Observation?subject:identifier=sys|1"},
		{"Observation", "date=2024-03-05T10:30:00+01:00", "Observation?date=2024-03-05T10:30:00%2B01:00"},
		{"Observation", "date=ge2024-03-05T10:30:00+01:00", "Observation?date=ge2024-03-05T10:30:00%2B01:00"},
		{"Observation", "subject:Patient.name:contains=ann", "Observation?subject:Patient.name:contains=ann"},
	}
	for _, tt := range tests {
		if got := mustParse(t, tt.typ, tt.query, opts).CriteriaKey(); got != tt.want {
			t.Errorf("CriteriaKey(%s?%s)\n got  %s\n want %s", tt.typ, tt.query, got, tt.want)
		}
	}
}
