package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	sp "github.com/hjbroker/hjbroker/broker/searchparam"
)

// fakeParams is a small registry: params by type, with "Resource" ones visible on every type.
type fakeParams map[string]map[string]*sp.Param

func (f fakeParams) Lookup(typ, code string) (*sp.Param, bool) {
	if p, ok := f[typ][code]; ok {
		return p, true
	}
	p, ok := f["Resource"][code]
	return p, ok
}

func (f fakeParams) add(typ string, p sp.Param) {
	if f[typ] == nil {
		f[typ] = map[string]*sp.Param{}
	}
	p.Base = []string{typ}
	f[typ][p.Code] = &p
}

func testParams() fakeParams {
	f := fakeParams{}
	f.add("Patient", sp.Param{Code: "name", Type: sp.String, Expression: "Patient.name"})
	f.add("Patient", sp.Param{Code: "family", Type: sp.String, Expression: "Patient.name.family"})
	f.add("Patient", sp.Param{Code: "birthdate", Type: sp.Date, Expression: "Patient.birthDate"})
	f.add("Patient", sp.Param{Code: "identifier", Type: sp.Token, Expression: "Patient.identifier"})
	f.add("Patient", sp.Param{Code: "gender", Type: sp.Token, Expression: "Patient.gender"})
	f.add("Patient", sp.Param{Code: "organization", Type: sp.Reference, Expression: "Patient.managingOrganization", Target: []string{"Organization"}})
	f.add("Patient", sp.Param{Code: "general-practitioner", Type: sp.Reference, Expression: "Patient.generalPractitioner", Target: []string{"Organization", "Practitioner", "PractitionerRole"}})
	f.add("Patient", sp.Param{Code: "link", Type: sp.Reference, Expression: "Patient.link.other", Target: []string{"Patient", "RelatedPerson"}})
	f.add("Organization", sp.Param{Code: "name", Type: sp.String, Expression: "Organization.name"})
	f.add("Organization", sp.Param{Code: "identifier", Type: sp.Token, Expression: "Organization.identifier"})
	f.add("Organization", sp.Param{Code: "partof", Type: sp.Reference, Expression: "Organization.partOf", Target: []string{"Organization"}})
	f.add("Practitioner", sp.Param{Code: "name", Type: sp.String, Expression: "Practitioner.name"})
	f.add("Practitioner", sp.Param{Code: "identifier", Type: sp.Token, Expression: "Practitioner.identifier"})
	f.add("Location", sp.Param{Code: "name", Type: sp.String, Expression: "Location.name"})
	f.add("Location", sp.Param{Code: "near", Type: sp.Special, Expression: "Location.position"})
	f.add("Observation", sp.Param{Code: "code", Type: sp.Token, Expression: "Observation.code"})
	f.add("Observation", sp.Param{Code: "date", Type: sp.Date, Expression: "Observation.effective"})
	f.add("Observation", sp.Param{Code: "value-quantity", Type: sp.Quantity, Expression: "Observation.value.as(Quantity)"})
	f.add("Observation", sp.Param{Code: "subject", Type: sp.Reference, Expression: "Observation.subject", Target: []string{"Patient", "Group", "Device", "Location"}})
	f.add("Observation", sp.Param{Code: "patient", Type: sp.Reference, Expression: "Observation.subject.where(resolve() is Patient)", Target: []string{"Patient"}})
	f.add("Observation", sp.Param{Code: "focus", Type: sp.Reference, Expression: "Observation.focus"})
	f.add("Observation", sp.Param{Code: "code-value-quantity", Type: sp.Composite})
	f.add("RiskAssessment", sp.Param{Code: "probability", Type: sp.Number, Expression: "RiskAssessment.prediction.probability"})
	f.add("Questionnaire", sp.Param{Code: "url", Type: sp.URI, Expression: "Questionnaire.url"})
	f.add("Encounter", sp.Param{Code: "patient", Type: sp.Reference, Expression: "Encounter.subject", Target: []string{"Patient"}})
	f.add("Encounter", sp.Param{Code: "status", Type: sp.Token, Expression: "Encounter.status"})
	f.add("Provenance", sp.Param{Code: "target", Type: sp.Reference, Expression: "Provenance.target"})
	f.add("Provenance", sp.Param{Code: "agent", Type: sp.Reference, Expression: "Provenance.agent.who", Target: []string{"Practitioner", "Organization"}})
	f.add("AuditEvent", sp.Param{Code: "entity", Type: sp.Reference, Expression: "AuditEvent.entity.what"})
	f.add("AuditEvent", sp.Param{Code: "action", Type: sp.Token, Expression: "AuditEvent.action"})
	return f
}

var testNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func mustParse(t *testing.T, typ, query string, opts Options) *Query {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("bad test query %q: %v", query, err)
	}
	if opts.Now.IsZero() {
		opts.Now = testNow
	}
	q, err := Parse(typ, vals, testParams(), opts)
	if err != nil {
		t.Fatalf("Parse(%s?%s): %v", typ, query, err)
	}
	return q
}

// only returns the single clause of q.
func only(t *testing.T, q *Query) Clause {
	t.Helper()
	if len(q.Clauses) != 1 {
		t.Fatalf("got %d clauses, want 1: %+v", len(q.Clauses), q.Clauses)
	}
	return q.Clauses[0]
}

func tokenOf(t *testing.T, v Value) Token {
	t.Helper()
	if v.Token == nil {
		t.Fatalf("value %q has no token", v.Raw)
	}
	return *v.Token
}

func TestParseToken(t *testing.T) {
	tests := []struct {
		query string
		mod   Modifier
		want  []Token
	}{
		{"identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", ModNone,
			[]Token{{System: "https://fhir.nhs.uk/Id/nhs-number", Code: "9000000009"}}},
		{"identifier=|9000000009", ModNone, []Token{{Code: "9000000009"}}},
		{"identifier=https://fhir.nhs.uk/Id/nhs-number|", ModNone, []Token{{System: "https://fhir.nhs.uk/Id/nhs-number"}}},
		{"identifier=9000000009", ModNone, []Token{{AnySystem: true, Code: "9000000009"}}},
		{"gender=male,female", ModNone, []Token{{AnySystem: true, Code: "male"}, {AnySystem: true, Code: "female"}}},
		{"gender:not=male", ModNot, []Token{{AnySystem: true, Code: "male"}}},
		{`identifier=urn:sys|a\|b\,c`, ModNone, []Token{{System: "urn:sys", Code: "a|b,c"}}},
		{`identifier=a\\|b`, ModNone, []Token{{System: `a\`, Code: "b"}}},
		{"_id=abc-123.x", ModNone, []Token{{AnySystem: true, Code: "abc-123.x"}}},
		{"_tag=http://example.org/tags|urgent", ModNone, []Token{{System: "http://example.org/tags", Code: "urgent"}}},
		{"_security=|R", ModNone, []Token{{Code: "R"}}},
	}
	for _, tt := range tests {
		c := only(t, mustParse(t, "Patient", tt.query, Options{}))
		if c.Modifier != tt.mod {
			t.Errorf("%s: modifier %q, want %q", tt.query, c.Modifier, tt.mod)
		}
		if len(c.Values) != len(tt.want) {
			t.Errorf("%s: %d values, want %d", tt.query, len(c.Values), len(tt.want))
			continue
		}
		for i, w := range tt.want {
			if got := tokenOf(t, c.Values[i]); got != w {
				t.Errorf("%s: value %d = %+v, want %+v", tt.query, i, got, w)
			}
		}
	}
}

func TestParseTokenModifiers(t *testing.T) {
	c := only(t, mustParse(t, "Observation", "code:text=Blood%20Pr%C3%89SSURE", Options{}))
	if c.Modifier != ModText || c.Values[0].Text != "blood pressure" {
		t.Errorf(":text = %q %q", c.Modifier, c.Values[0].Text)
	}
	c = only(t, mustParse(t, "Observation", "code:in=http://example.org/vs/bp", Options{}))
	if c.Modifier != ModIn || c.Values[0].URI != "http://example.org/vs/bp" {
		t.Errorf(":in = %q %q", c.Modifier, c.Values[0].URI)
	}
	c = only(t, mustParse(t, "Observation", "code:not-in=http://example.org/vs/bp", Options{}))
	if c.Modifier != ModNotIn || c.Values[0].URI != "http://example.org/vs/bp" {
		t.Errorf(":not-in = %q %q", c.Modifier, c.Values[0].URI)
	}
	c = only(t, mustParse(t, "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053", Options{}))
	if c.Modifier != ModOfType || tokenOf(t, c.Values[0]) != (Token{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "MR"}) || c.Values[0].OfTypeValue != "446053" {
		t.Errorf(":of-type = %+v %+v", c, c.Values[0])
	}
	c = only(t, mustParse(t, "Patient", "gender:missing=true", Options{}))
	if c.Modifier != ModMissing || !c.Values[0].Missing {
		t.Errorf(":missing=true = %+v", c)
	}
	c = only(t, mustParse(t, "Patient", "gender:missing=false", Options{}))
	if c.Modifier != ModMissing || c.Values[0].Missing {
		t.Errorf(":missing=false = %+v", c)
	}
}

func TestParseString(t *testing.T) {
	tests := []struct {
		query      string
		mod        Modifier
		str, text  string
		nValues    int
		secondText string
	}{
		{"name=Zo%C3%AB", ModNone, "Zoë", "zoe", 1, ""},
		{"name:exact=Zo%C3%AB", ModExact, "Zoë", "zoe", 1, ""},
		{"name:contains=%20ANN%20%20Marie", ModContains, " ANN  Marie", "ann marie", 1, ""},
		{`name=Smith\,%20John,Jones`, ModNone, "Smith, John", "smith, john", 2, "jones"},
		{`family=a\$b`, ModNone, "a$b", "a$b", 1, ""},
	}
	for _, tt := range tests {
		c := only(t, mustParse(t, "Patient", tt.query, Options{}))
		if c.Modifier != tt.mod || len(c.Values) != tt.nValues {
			t.Errorf("%s: modifier %q with %d values", tt.query, c.Modifier, len(c.Values))
			continue
		}
		v := c.Values[0]
		if v.String != tt.str || v.Text != tt.text {
			t.Errorf("%s: String %q Text %q, want %q %q", tt.query, v.String, v.Text, tt.str, tt.text)
		}
		if tt.nValues > 1 && c.Values[1].Text != tt.secondText {
			t.Errorf("%s: second value %q, want %q", tt.query, c.Values[1].Text, tt.secondText)
		}
	}
}

func TestParseDateParam(t *testing.T) {
	q := mustParse(t, "Patient", "birthdate=ge1990&birthdate=lt2000-06", Options{})
	if len(q.Clauses) != 2 {
		t.Fatalf("want 2 AND-ed clauses, got %d", len(q.Clauses))
	}
	var ge, lt *Date
	for _, c := range q.Clauses {
		d := c.Values[0].Date
		switch d.Prefix {
		case PrefixGe:
			ge = d
		case PrefixLt:
			lt = d
		}
	}
	if ge == nil || ge.Range != rng("1990-01-01T00:00:00Z", "1991-01-01T00:00:00Z") {
		t.Errorf("ge1990 = %+v", ge)
	}
	if lt == nil || lt.Range != rng("2000-06-01T00:00:00Z", "2000-07-01T00:00:00Z") {
		t.Errorf("lt2000-06 = %+v", lt)
	}
	// "+" arriving unencoded is read as a space by form decoding; it still means +01:00.
	c := only(t, mustParse(t, "Observation", "date=2024-03-05T10:30:00+01:00", Options{}))
	if c.Values[0].Date.Range != rng("2024-03-05T09:30:00Z", "2024-03-05T09:30:01Z") {
		t.Errorf("unencoded + offset: %+v", c.Values[0].Date)
	}
	c = only(t, mustParse(t, "Patient", "_lastUpdated=gt2024-01-01T12:00:00Z", Options{}))
	if c.Param.Code != "_lastUpdated" || c.Values[0].Date.Prefix != PrefixGt {
		t.Errorf("_lastUpdated = %+v", c)
	}
	c = only(t, mustParse(t, "Patient", "birthdate=1990,2000", Options{}))
	if len(c.Values) != 2 || c.Values[1].Date.Range != rng("2000-01-01T00:00:00Z", "2001-01-01T00:00:00Z") {
		t.Errorf("OR dates = %+v", c.Values)
	}
}

func TestParseNumberAndQuantityParams(t *testing.T) {
	c := only(t, mustParse(t, "RiskAssessment", "probability=gt0.8", Options{}))
	if n := c.Values[0].Number; n == nil || n.Prefix != PrefixGt || n.Value != 0.8 {
		t.Errorf("probability = %+v", c.Values[0])
	}
	c = only(t, mustParse(t, "Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg", Options{}))
	if qv := c.Values[0].Quantity; qv == nil || qv.Number.Prefix != PrefixLe || qv.System != "http://unitsofmeasure.org" || qv.Code != "mg" {
		t.Errorf("value-quantity = %+v", c.Values[0].Quantity)
	}
	c = only(t, mustParse(t, "Observation", "value-quantity=5.4||mg", Options{}))
	if qv := c.Values[0].Quantity; qv.System != "" || qv.Code != "mg" || !near(qv.Number.Low, 5.35) || !near(qv.Number.High, 5.45) {
		t.Errorf("value-quantity ||mg = %+v", qv)
	}
}

func TestParseReference(t *testing.T) {
	opts := Options{BaseURL: "https://broker.example/fhir/"}
	tests := []struct {
		typ, query string
		want       Reference
		mod        Modifier
	}{
		{"Observation", "subject=Patient/123", Reference{Type: "Patient", ID: "123"}, ModNone},
		{"Observation", "subject=123", Reference{ID: "123"}, ModNone},
		{"Observation", "subject:Patient=123", Reference{Type: "Patient", ID: "123"}, ModNone},
		{"Observation", "patient=123", Reference{Type: "Patient", ID: "123"}, ModNone}, // only target
		{"Observation", "subject=Patient/123/_history/2", Reference{Type: "Patient", ID: "123", Version: "2"}, ModNone},
		{"Observation", "subject=https://broker.example/fhir/Patient/9", Reference{Type: "Patient", ID: "9"}, ModNone},
		{"Observation", "subject=https://other.example/fhir/Patient/9", Reference{URL: "https://other.example/fhir/Patient/9"}, ModNone},
		{"Observation", "focus=urn:uuid:1c3e1a2b-0000-4000-8000-000000000001", Reference{URL: "urn:uuid:1c3e1a2b-0000-4000-8000-000000000001"}, ModNone},
		{"Provenance", "target=Encounter/e1", Reference{Type: "Encounter", ID: "e1"}, ModNone},
	}
	for _, tt := range tests {
		c := only(t, mustParse(t, tt.typ, tt.query, opts))
		if c.Modifier != tt.mod || c.Values[0].Reference == nil || *c.Values[0].Reference != tt.want {
			t.Errorf("%s?%s: %q %+v, want %+v", tt.typ, tt.query, c.Modifier, c.Values[0].Reference, tt.want)
		}
	}
	c := only(t, mustParse(t, "Observation", "subject:identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", opts))
	if c.Modifier != ModIdentifier || tokenOf(t, c.Values[0]) != (Token{System: "https://fhir.nhs.uk/Id/nhs-number", Code: "9000000009"}) {
		t.Errorf(":identifier = %+v", c)
	}
	c = only(t, mustParse(t, "Observation", "subject:missing=true", opts))
	if c.Modifier != ModMissing || !c.Values[0].Missing {
		t.Errorf(":missing = %+v", c)
	}
}

func TestParseURI(t *testing.T) {
	for _, tt := range []struct {
		query string
		mod   Modifier
		uri   string
	}{
		{"url=http://example.org/Questionnaire/ld-screening", ModNone, "http://example.org/Questionnaire/ld-screening"},
		{"url:below=http://example.org/Questionnaire/", ModBelow, "http://example.org/Questionnaire/"},
		{"url:above=http://example.org/Questionnaire/ld/v2", ModAbove, "http://example.org/Questionnaire/ld/v2"},
		{"_profile=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient", ModNone, "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"},
		{"_source=urn:custody:suite-1", ModNone, "urn:custody:suite-1"},
	} {
		c := only(t, mustParse(t, "Questionnaire", tt.query, Options{}))
		if c.Modifier != tt.mod || c.Values[0].URI != tt.uri {
			t.Errorf("%s: %q %q", tt.query, c.Modifier, c.Values[0].URI)
		}
	}
	c := only(t, mustParse(t, "Questionnaire", "url:missing=false", Options{}))
	if c.Modifier != ModMissing || c.Values[0].Missing {
		t.Errorf("url:missing = %+v", c)
	}
}

func TestParseChains(t *testing.T) {
	type link struct {
		rev        bool
		typ, param string
	}
	tests := []struct {
		typ, query string
		links      []link
		final      string
		mod        Modifier
	}{
		{"Observation", "subject:Patient.name=peter", []link{{false, "Patient", "subject"}}, "name", ModNone},
		// Only Patient among subject's targets has birthdate, so the chain is not ambiguous.
		{"Observation", "subject.birthdate=1990", []link{{false, "Patient", "subject"}}, "birthdate", ModNone},
		{"Observation", "patient.name:exact=Peter", []link{{false, "Patient", "patient"}}, "name", ModExact},
		{"Observation", "subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", []link{{false, "Patient", "subject"}}, "identifier", ModNone},
		{"Observation", "patient.organization.name=HMP", []link{{false, "Patient", "patient"}, {false, "Organization", "organization"}}, "name", ModNone},
		{"Patient", "_has:Observation:patient:code=1234-5", []link{{true, "Observation", "patient"}}, "code", ModNone},
		{"Patient", "_has:Observation:subject:code:text=blood", []link{{true, "Observation", "subject"}}, "code", ModText},
		{"Patient", "_has:Observation:patient:_has:AuditEvent:entity:action=R",
			[]link{{true, "Observation", "patient"}, {true, "AuditEvent", "entity"}}, "action", ModNone},
		{"Encounter", "patient._has:Observation:patient:code=1234-5",
			[]link{{false, "Patient", "patient"}, {true, "Observation", "patient"}}, "code", ModNone},
		{"Patient", "_has:Observation:patient:subject:Patient.name=x",
			[]link{{true, "Observation", "patient"}, {false, "Patient", "subject"}}, "name", ModNone},
	}
	for _, tt := range tests {
		c := only(t, mustParse(t, tt.typ, tt.query, Options{}))
		if len(c.Chain) != len(tt.links) {
			t.Errorf("%s: chain %+v, want %d links", tt.query, c.Chain, len(tt.links))
			continue
		}
		for i, l := range tt.links {
			got := c.Chain[i]
			if got.Reverse != l.rev || got.Type != l.typ || got.Param.Code != l.param {
				t.Errorf("%s: link %d = {%v %s %s}, want %+v", tt.query, i, got.Reverse, got.Type, got.Param.Code, l)
			}
		}
		if c.Param.Code != tt.final || c.Modifier != tt.mod || c.Key != strings.SplitN(tt.query, "=", 2)[0] {
			t.Errorf("%s: final %s:%s key %q", tt.query, c.Param.Code, c.Modifier, c.Key)
		}
	}
}

func TestParseResultParams(t *testing.T) {
	q := mustParse(t, "Patient", "_count=50&_offset=100&_sort=-birthdate,name,_id&_total=accurate&_summary=data&_elements=name,birthDate&_elements=identifier&_format=json&_pretty=true", Options{})
	if q.Count != 50 || q.Offset != 100 || q.Total != TotalAccurate || q.Summary != SummaryData {
		t.Errorf("count/offset/total/summary = %d %d %q %q", q.Count, q.Offset, q.Total, q.Summary)
	}
	if len(q.Sort) != 3 || q.Sort[0].Param.Code != "birthdate" || !q.Sort[0].Desc ||
		q.Sort[1].Param.Code != "name" || q.Sort[1].Desc || q.Sort[2].Param.Code != "_id" {
		t.Errorf("sort = %+v", q.Sort)
	}
	if strings.Join(q.Elements, ",") != "name,birthDate,identifier" {
		t.Errorf("elements = %q", q.Elements)
	}
	if len(q.Clauses) != 0 || len(q.Warnings) != 0 {
		t.Errorf("result params produced clauses %+v or warnings %v", q.Clauses, q.Warnings)
	}

	tests := []struct {
		query string
		count int
		warn  bool
	}{
		{"", DefaultPageSize, false},
		{"_count=0", 0, false},
		{"_count=5000", MaxPageSize, true},
		{"_summary=count", 0, false},
	}
	for _, tt := range tests {
		q := mustParse(t, "Patient", tt.query, Options{})
		if q.Count != tt.count || (len(q.Warnings) > 0) != tt.warn {
			t.Errorf("%q: count %d warnings %v, want %d warn=%v", tt.query, q.Count, q.Warnings, tt.count, tt.warn)
		}
	}
	q = mustParse(t, "Patient", "", Options{DefaultCount: 10, MaxCount: 30})
	if q.Count != 10 {
		t.Errorf("default count = %d, want 10", q.Count)
	}
	q = mustParse(t, "Patient", "_count=31", Options{DefaultCount: 10, MaxCount: 30})
	if q.Count != 30 || len(q.Warnings) != 1 || q.Warnings[0].Code != CodeInformation {
		t.Errorf("capped count = %d %v", q.Count, q.Warnings)
	}
	q = mustParse(t, "Patient", "_sort=_lastUpdated", Options{})
	if len(q.Sort) != 1 || q.Sort[0].Param.Type != sp.Date {
		t.Errorf("_sort=_lastUpdated = %+v", q.Sort)
	}
}

func TestParseIncludes(t *testing.T) {
	q := mustParse(t, "Observation", "_include=Observation:subject&_include=Observation:subject:Patient&_include:iterate=Patient:organization&_include:recurse=Organization:partof&_revinclude=Provenance:target&_revinclude=AuditEvent:*&_include=*", Options{})
	var got []string
	for _, inc := range q.Includes {
		s := inc.String()
		if inc.Iterate {
			s += "+iterate"
		}
		got = append(got, s)
	}
	want := "Observation:subject,Observation:subject:Patient,*,Patient:organization+iterate,Organization:partof+iterate"
	if strings.Join(got, ",") != want {
		t.Errorf("includes = %s\nwant       %s", strings.Join(got, ","), want)
	}
	if len(q.RevIncludes) != 2 || q.RevIncludes[0].Param.Code != "target" ||
		q.RevIncludes[1].Type != "AuditEvent" || !q.RevIncludes[1].Wildcard {
		t.Errorf("revincludes = %+v", q.RevIncludes)
	}
	if q.Includes[1].TargetType != "Patient" || q.Includes[0].Param.Type != sp.Reference {
		t.Errorf("include detail = %+v", q.Includes[:2])
	}
}

func TestSystemSearch(t *testing.T) {
	q := mustParse(t, "", "_type=Patient,Practitioner&identifier=abc&_lastUpdated=gt2024", Options{})
	if strings.Join(q.Types, ",") != "Patient,Practitioner" || len(q.Clauses) != 2 {
		t.Errorf("types %v clauses %d", q.Types, len(q.Clauses))
	}
	q = mustParse(t, "", "_id=abc", Options{})
	if q.Types != nil || only(t, q).Param.Code != "_id" {
		t.Errorf("all-types search = %+v", q)
	}
	// name is a string on both types; birthdate only on Patient.
	q = mustParse(t, "", "_type=Patient,Practitioner&birthdate=2000", Options{})
	if len(q.Clauses) != 0 || len(q.Warnings) != 1 {
		t.Errorf("param missing on one type: clauses %+v warnings %v", q.Clauses, q.Warnings)
	}
	q = mustParse(t, "Patient", "_type=Patient&name=x", Options{})
	if len(q.Types) != 1 || len(q.Clauses) != 1 {
		t.Errorf("_type equal to the searched type = %+v", q)
	}
}

func TestEmptyValuesIgnored(t *testing.T) {
	q := mustParse(t, "Patient", "name=&gender=,male,&_count=", Options{Strict: true})
	c := only(t, q)
	if c.Param.Code != "gender" || len(c.Values) != 1 || q.Count != DefaultPageSize {
		t.Errorf("got %+v count %d", c, q.Count)
	}
}

func TestLenientAndStrict(t *testing.T) {
	tests := []struct {
		typ, query string
		code       string // issue code of the warning / error
	}{
		{"Patient", "foo=bar", CodeNotSupported},
		{"Patient", "foo:exact=bar", CodeNotSupported},
		{"Patient", "_text=cough", CodeNotSupported},
		{"Patient", "_content=cough", CodeNotSupported},
		{"Patient", "_filter=name eq x", CodeNotSupported},
		{"Patient", "_list=l1", CodeNotSupported},
		{"Observation", "code-value-quantity=x$5", CodeNotSupported},
		{"Location", "near=1|2|3|km", CodeNotSupported},
		{"Observation", "subject:Patient.shoesize=12", CodeNotSupported},
		{"Observation", "subject.shoesize=12", CodeNotSupported},
		{"Patient", "_has:Basic:subject:code=x", CodeNotSupported},
		{"Patient", "_sort=shoesize", CodeNotSupported},
		{"Patient", "_include=Patient:shoes", CodeNotSupported},
	}
	for _, tt := range tests {
		vals, _ := url.ParseQuery(tt.query + "&_id=kept")
		q, err := Parse(tt.typ, vals, testParams(), Options{Now: testNow})
		if err != nil {
			t.Errorf("lenient %s?%s: %v", tt.typ, tt.query, err)
			continue
		}
		if len(q.Warnings) != 1 || q.Warnings[0].Code != tt.code {
			t.Errorf("lenient %s?%s: warnings %v", tt.typ, tt.query, q.Warnings)
		}
		for _, c := range q.Clauses {
			if c.Param.Code != "_id" {
				t.Errorf("lenient %s?%s: ignored parameter still produced clause %q", tt.typ, tt.query, c.Key)
			}
		}
		_, err = Parse(tt.typ, vals, testParams(), Options{Strict: true, Now: testNow})
		var se *Error
		if !errors.As(err, &se) || se.Code != tt.code {
			t.Errorf("strict %s?%s: error %v, want code %s", tt.typ, tt.query, err, tt.code)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		typ, query string
		param      string
		code       string
		msg        string // substring of Error()
	}{
		{"Patient", "birthdate=2024-13", "birthdate", CodeValue, `search parameter "birthdate": "2024-13" is not a valid date`},
		{"Patient", "birthdate=xx2024", "birthdate", CodeValue, `unknown prefix "xx"`},
		{"Patient", "birthdate=2024-02-30", "birthdate", CodeValue, "day out of range"},
		{"Patient", "birthdate:exact=2024", "birthdate:exact", CodeInvalid, "modifier :exact is not valid for date parameter"},
		{"Patient", "name:text=x", "name:text", CodeInvalid, "modifier :text is not valid for string"},
		{"Patient", "name:missing=maybe", "name:missing", CodeValue, "expected true or false"},
		{"Patient", "gender:above=x", "gender:above", CodeNotSupported, ":above"},
		{"Patient", "gender:below=x", "gender:below", CodeNotSupported, ":below"},
		{"Patient", "gender:of-type=a|b|c", "gender:of-type", CodeInvalid, "identifier parameters"},
		{"Patient", "identifier:of-type=a|b", "identifier:of-type", CodeValue, "type-system|type-code|value"},
		{"Patient", "identifier=a|b|c", "identifier", CodeValue, "not a valid token"},
		{"Patient", "identifier=|", "identifier", CodeValue, "needs a system or a code"},
		{"Patient", "_id=a/b", "_id", CodeValue, "not a valid resource id"},
		{"Patient", "_id:missing=true", "_id:missing", CodeInvalid, "not valid"},
		{"RiskAssessment", "probability=high", "probability", CodeValue, `"high" is not a valid number`},
		{"RiskAssessment", "probability=zz5", "probability", CodeValue, "unknown prefix"},
		{"Observation", "value-quantity=5|mg", "value-quantity", CodeValue, "not a valid quantity"},
		{"Observation", "subject=Medication/1", "subject", CodeValue, "cannot refer to a Medication"},
		{"Observation", "subject:Patient=Group/1", "subject:Patient", CodeValue, "does not refer to a Patient"},
		{"Observation", "subject:Medication=1", "subject:Medication", CodeInvalid, "cannot refer to a Medication"},
		{"Observation", "subject=a/b/c", "subject", CodeValue, "not a valid reference"},
		{"Observation", "subject=Patient/", "subject", CodeValue, "not a valid id"},
		{"Observation", "subject:above=x", "subject:above", CodeNotSupported, ":above"},
		{"Observation", "subject.name=peter", "subject.name", CodeInvalid, "ambiguous chain: subject can refer to Patient, Location"},
		{"Observation", "focus.name=x", "focus.name", CodeInvalid, "can refer to any type"},
		{"Observation", "code.name=x", "code.name", CodeInvalid, "not a reference, so it cannot be chained"},
		{"Observation", "subject:exact.name=x", "subject:exact.name", CodeInvalid, "cannot be used in a chain"},
		{"Observation", "subject:Patient.=x", "subject:Patient.", CodeInvalid, "nothing follows"},
		{"Observation", "patient.link.link.link.link.name=x", "patient.link.link.link.link.name", CodeNotSupported, "longer than 4"},
		{"Patient", "_has:Observation:patient=x", "_has:Observation:patient", CodeInvalid, "_has:Type:reference:parameter"},
		{"Patient", "_has:Observation:code:code=x", "_has:Observation:code:code", CodeInvalid, "not a reference"},
		{"Patient", "_has:Encounter:patient:status=x&_has:Provenance:agent:x=1", "_has:Provenance:agent:x", CodeInvalid, "cannot refer to a Patient"},
		{"Patient", "_count=ten", "_count", CodeValue, `"ten" is not a non-negative whole number`},
		{"Patient", "_count=-1", "_count", CodeValue, "non-negative"},
		{"Patient", "_count=1&_count=2", "_count", CodeInvalid, "only once"},
		{"Patient", "_count:x=1", "_count:x", CodeInvalid, "no modifier"},
		{"Patient", "_offset=x", "_offset", CodeValue, "non-negative"},
		{"Patient", "_total=all", "_total", CodeValue, "none, estimate or accurate"},
		{"Patient", "_summary=yes", "_summary", CodeValue, "true, text, data, count or false"},
		{"Patient", "_elements=name,1bad", "_elements", CodeValue, `"1bad" is not an element name`},
		{"Patient", "_sort=name:exact", "_sort", CodeInvalid, "not allowed in _sort"},
		{"Patient", "_include=Observation:subject", "_include", CodeInvalid, "not a searched type"},
		{"Patient", "_include=Patient:name", "_include", CodeInvalid, "not a reference"},
		{"Patient", "_include=Patient:organization:Patient", "_include", CodeInvalid, "cannot refer to a Patient"},
		{"Patient", "_include=patient", "_include", CodeValue, "expected Type:parameter"},
		{"Patient", "_include:deep=Patient:organization", "_include:deep", CodeInvalid, "expected :iterate"},
		{"Patient", "_revinclude=Provenance:agent", "_revinclude", CodeInvalid, "cannot refer to Patient"},
		{"Patient", "_type=Observation", "_type", CodeInvalid, "system-level"},
		{"", "_type=patient", "_type", CodeValue, `"patient" is not a resource type`},
		{"", "_type=Patient&_type=Group", "_type", CodeInvalid, "only once"},
		{"Patient", "_contained=true", "_contained", CodeNotSupported, "contained resources"},
		{"Patient", "_containedType=contained", "_containedType", CodeNotSupported, "contained resources"},
	}
	for _, tt := range tests {
		vals, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		// Lenient handling must not hide these: they are errors either way.
		q, err := Parse(tt.typ, vals, testParams(), Options{Now: testNow})
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%s?%s: got %v (query %+v), want *Error", tt.typ, tt.query, err, q)
			continue
		}
		if se.Param != tt.param || se.Code != tt.code || !strings.Contains(se.Error(), tt.msg) {
			t.Errorf("%s?%s:\n got  %s %q %q\n want %s %q containing %q", tt.typ, tt.query, se.Code, se.Param, se.Error(), tt.code, tt.param, tt.msg)
		}
	}
}

func TestParseSortEdges(t *testing.T) {
	q := mustParse(t, "Patient", "_sort=name,-name,%20birthdate%20,,", Options{})
	if len(q.Sort) != 2 || q.Sort[0].Param.Code != "name" || q.Sort[0].Desc || q.Sort[1].Param.Code != "birthdate" {
		t.Errorf("sort = %+v", q.Sort)
	}
	q = mustParse(t, "Observation", "_sort=code-value-quantity,date", Options{})
	if len(q.Sort) != 1 || q.Sort[0].Param.Code != "date" || len(q.Warnings) != 1 || q.Warnings[0].Code != CodeNotSupported {
		t.Errorf("composite sort: %+v %v", q.Sort, q.Warnings)
	}
	vals, _ := url.ParseQuery("_sort=code-value-quantity")
	if _, err := Parse("Observation", vals, testParams(), Options{Strict: true}); err == nil {
		t.Error("strict: sorting on a composite parameter should fail")
	}
}

func TestParseChainEdges(t *testing.T) {
	for _, tt := range []struct{ typ, query, msg string }{
		// subject has several targets and _has does not narrow them.
		{"Observation", "subject._has:Encounter:patient:status=x", "ambiguous chain: subject can refer to Patient, Group, Device, Location"},
		{"Patient", "_has:observation:patient:code=x", `"observation" is not a resource type`},
		{"", "_type=Patient,Practitioner&_has:Observation:patient:code=x", "only supported when searching one resource type"},
		{"", "_type=Patient,Practitioner&organization.name=x", "only supported when searching one resource type"},
	} {
		vals, _ := url.ParseQuery(tt.query)
		_, err := Parse(tt.typ, vals, testParams(), Options{Strict: true})
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s?%s: error %v, want one containing %q", tt.typ, tt.query, err, tt.msg)
		}
	}
}
