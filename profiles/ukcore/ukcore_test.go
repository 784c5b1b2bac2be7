package ukcore

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"path"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

const (
	sdBase   = "https://fhir.hl7.org.uk/StructureDefinition/"
	vsBase   = "https://fhir.hl7.org.uk/ValueSet/"
	englandV = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
	retiredV = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
)

// decodeStrict decodes exactly one JSON value, rejecting unknown fields and trailing data.
func decodeStrict(t *testing.T, name string, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s: trailing data after the JSON value", name)
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := fs.ReadDir(FS(), dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".json" {
			t.Errorf("%s/%s: unexpected entry", dir, e.Name())
			continue
		}
		b, err := fs.ReadFile(FS(), dir+"/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func loadProfiles(t *testing.T) map[string]validate.Profile {
	t.Helper()
	out := map[string]validate.Profile{}
	for name, b := range readDir(t, "profiles") {
		var p validate.Profile
		decodeStrict(t, name, b, &p)
		out[strings.TrimSuffix(name, ".json")] = p
	}
	return out
}

func loadValueSets(t *testing.T) map[string]validate.ValueSet {
	t.Helper()
	out := map[string]validate.ValueSet{}
	for name, b := range readDir(t, "valuesets") {
		var v validate.ValueSet
		decodeStrict(t, name, b, &v)
		if path.Base(v.URL)+".json" != name {
			t.Errorf("%s: url %q does not match the file name", name, v.URL)
		}
		if _, dup := out[v.URL]; dup {
			t.Errorf("%s: duplicate value set url %q", name, v.URL)
		}
		out[v.URL] = v
	}
	return out
}

// TestProfilesListed checks that every UK Core profile in the domain facts is present with
// the version and publication status given there.
func TestProfilesListed(t *testing.T) {
	want := map[string]struct{ typ, version, status string }{
		"UKCore-Patient":                        {"Patient", "2.6.1", "active"},
		"UKCore-Practitioner":                   {"Practitioner", "2.4.0", "active"},
		"UKCore-PractitionerRole":               {"PractitionerRole", "2.4.0", "active"},
		"UKCore-Organization":                   {"Organization", "2.5.1", "active"},
		"UKCore-Location":                       {"Location", "2.3.0", "active"},
		"UKCore-Encounter":                      {"Encounter", "2.5.0", "active"},
		"UKCore-Observation":                    {"Observation", "2.5.0", "active"},
		"UKCore-Observation-VitalSigns":         {"Observation", "1.1.1", ""},
		"UKCore-Observation-AlcoholConsumption": {"Observation", "1.0.0", ""},
		"UKCore-Observation-TobaccoConsumption": {"Observation", "1.0.0", ""},
		"UKCore-Condition":                      {"Condition", "2.6.0", "active"},
		"UKCore-AllergyIntolerance":             {"AllergyIntolerance", "2.5.0", "active"},
		"UKCore-MedicationStatement":            {"MedicationStatement", "2.5.0", "active"},
		"UKCore-Medication":                     {"Medication", "2.3.0", "active"},
		"UKCore-Questionnaire":                  {"Questionnaire", "1.3.0", "draft"},
		"UKCore-QuestionnaireResponse":          {"QuestionnaireResponse", "1.2.0", "draft"},
		"UKCore-ServiceRequest":                 {"ServiceRequest", "2.5.1", "active"},
		"UKCore-Task":                           {"Task", "1.2.0", "draft"},
		"UKCore-Consent":                        {"Consent", "2.4.0", "draft"},
		"UKCore-Flag":                           {"Flag", "1.2.0", "draft"},
		"UKCore-Composition":                    {"Composition", "2.4.0", "active"},
		"UKCore-DocumentReference":              {"DocumentReference", "2.2.0", "draft"},
		"UKCore-Bundle":                         {"Bundle", "2.2.0", "draft"},
		"UKCore-MessageHeader":                  {"MessageHeader", "2.4.0", "draft"},
		"UKCore-AuditEvent":                     {"AuditEvent", "1.2.0", "draft"},
		"UKCore-Provenance":                     {"Provenance", "1.2.0", "draft"},
		"UKCore-OperationOutcome":               {"OperationOutcome", "1.3.0", "draft"},
		"UKCore-List":                           {"List", "2.2.0", "active"},
		"UKCore-MedicationRequest":              {"MedicationRequest", "2.1.0", "draft"},
		"UKCore-MedicationAdministration":       {"MedicationAdministration", "2.2.0", "active"},
	}
	got := loadProfiles(t)
	for id, w := range want {
		p, ok := got[id]
		if !ok {
			t.Errorf("%s: missing", id)
			continue
		}
		if p.Type != w.typ || p.Version != w.version || p.Status != w.status {
			t.Errorf("%s: type/version/status = %s/%s/%q, want %s/%s/%q",
				id, p.Type, p.Version, p.Status, w.typ, w.version, w.status)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: not in the expected list; add it here with its facts", id)
		}
	}
}

// TestProfilesConsistent checks every profile against the R4 type model and the value sets.
func TestProfilesConsistent(t *testing.T) {
	m := r4model.Load()
	engine := fhirpath.NewEngine(m)
	profiles := loadProfiles(t)
	valueSets := loadValueSets(t)
	semver := regexp.MustCompile(`^\d+\.\d+\.\d+$`)

	for id, p := range profiles {
		if p.URL != sdBase+id {
			t.Errorf("%s: url %q does not match the file name", id, p.URL)
		}
		if p.Name == "" || !semver.MatchString(p.Version) {
			t.Errorf("%s: name %q / version %q", id, p.Name, p.Version)
		}
		if !m.IsResource(p.Type) {
			t.Errorf("%s: %q is not an R4 resource type", id, p.Type)
		}
		if !strings.HasPrefix(id, "UKCore-"+p.Type) {
			t.Errorf("%s: type %s does not match the profile id", id, p.Type)
		}
		switch p.Status {
		case "", "active", "draft":
		default:
			t.Errorf("%s: status %q", id, p.Status)
		}
		if p.Base != "" {
			parent, ok := profiles[strings.TrimPrefix(p.Base, sdBase)]
			if !ok || parent.URL != p.Base || parent.Type != p.Type {
				t.Errorf("%s: base %q is not a UK Core profile on %s", id, p.Base, p.Type)
			}
		}
		c := checker{t: t, m: m, vs: valueSets, profile: id}
		seen := map[string]bool{}
		for _, e := range p.Elements {
			if seen[e.Path] {
				t.Errorf("%s: element %s listed twice", id, e.Path)
			}
			seen[e.Path] = true
			if e.Path != p.Type && !strings.HasPrefix(e.Path, p.Type+".") {
				t.Errorf("%s: path %s does not start with %s", id, e.Path, p.Type)
				continue
			}
			c.element(p.Type, strings.TrimPrefix(strings.TrimPrefix(e.Path, p.Type), "."), e)
		}
		for _, inv := range p.Invariants {
			if inv.Key == "" || inv.Human == "" || (inv.Severity != "error" && inv.Severity != "warning") {
				t.Errorf("%s: invariant %+v", id, inv)
			}
			if _, ok := c.resolve(p.Type, strings.TrimPrefix(strings.TrimPrefix(inv.Path, p.Type), ".")); !ok || !strings.HasPrefix(inv.Path, p.Type) {
				t.Errorf("%s: invariant %s path %q", id, inv.Key, inv.Path)
			}
			if _, err := engine.Compile(inv.Expression); err != nil {
				t.Errorf("%s: invariant %s: %v", id, inv.Key, err)
			}
		}
	}
}

type checker struct {
	t       *testing.T
	m       *r4model.Model
	vs      map[string]validate.ValueSet
	profile string
}

// resolve walks a dotted element path from typ and returns the last element.
func (c checker) resolve(typ, rel string) (*r4model.Element, bool) {
	if rel == "" {
		return nil, true
	}
	var e *r4model.Element
	cur := typ
	for i, name := range strings.Split(rel, ".") {
		if i > 0 {
			if e.Choice {
				return nil, false
			}
			cur = e.Types[0].Type.Name
		}
		var ok bool
		if e, ok = c.m.Element(cur, name); !ok {
			return nil, false
		}
	}
	return e, true
}

// typeOf is the type an element's items carry (the backbone type for backbone elements).
func typeOf(e *r4model.Element) string {
	if e.Choice {
		return ""
	}
	return e.Types[0].Type.Name
}

func (c checker) element(typ, rel string, el validate.Element) {
	t := c.t
	where := c.profile + ": " + typ
	if rel != "" {
		where += "." + rel
	}
	e, ok := c.resolve(typ, rel)
	if !ok {
		t.Errorf("%s: no such R4 element", where)
		return
	}
	if e == nil { // the resource or slice item itself
		if el.Min != nil || el.Max != "" || len(el.Types) > 0 || len(el.Slices) > 0 {
			t.Errorf("%s: cardinality, types or slices on the item itself", where)
		}
	} else {
		if el.Min != nil && *el.Min <= e.Min {
			t.Errorf("%s: min %d restates the base minimum %d", where, *el.Min, e.Min)
		}
		switch el.Max {
		case "", "0", "1":
		case "*":
			if !e.List {
				t.Errorf("%s: max * on a non-repeating element", where)
			}
		default:
			t.Errorf("%s: max %q", where, el.Max)
		}
		if el.Max == "1" && !e.List {
			t.Errorf("%s: max 1 restates the base maximum", where)
		}
		for _, ty := range el.Types {
			found := false
			for _, r := range e.Types {
				found = found || r.Code == ty
			}
			if !e.Choice || !found {
				t.Errorf("%s: type %s is not a choice of this element", where, ty)
			}
		}
		if el.Binding != nil && !coded(e) {
			t.Errorf("%s: binding on a non-coded element", where)
		}
		if len(el.Slices) > 0 && !e.List {
			t.Errorf("%s: slices on a non-repeating element", where)
		}
	}
	c.binding(where, el.Binding)
	for _, r := range el.Rules {
		if r != "nhs-number" && r != "ods-code" {
			t.Errorf("%s: unknown rule %q", where, r)
		}
	}
	for _, x := range el.Extensions {
		c.extension(where, x, false)
	}
	itemType := typ
	if e != nil {
		itemType = typeOf(e)
	}
	for _, s := range el.Slices {
		sw := where + ":" + s.Name
		if s.Name == "" || len(s.Discriminator) == 0 {
			t.Errorf("%s: slice needs a name and a discriminator", sw)
		}
		if s.Max != "*" && (s.Max != "1" || s.Min > 1) {
			t.Errorf("%s: slice cardinality %d..%s", sw, s.Min, s.Max)
		}
		for p := range s.Discriminator {
			if d, ok := c.resolve(itemType, p); !ok || d == nil {
				t.Errorf("%s: discriminator path %q", sw, p)
			}
		}
		for _, se := range s.Elements {
			rel := se.Path
			if strings.HasPrefix(rel, itemType+".") || strings.HasPrefix(rel, "$") {
				t.Errorf("%s: slice element path %q must be relative to the item", sw, se.Path)
				continue
			}
			if rel == "" && se.Binding != nil && !isCodedType(itemType) {
				t.Errorf("%s: binding on non-coded slice item %s", sw, itemType)
			}
			c.element(itemType, rel, se)
		}
	}
}

func isCodedType(name string) bool {
	return name == "CodeableConcept" || name == "Coding" || name == "code"
}

func coded(e *r4model.Element) bool {
	for _, r := range e.Types {
		if isCodedType(r.Code) {
			return true
		}
	}
	return false
}

func (c checker) binding(where string, b *validate.Binding) {
	if b == nil {
		return
	}
	switch b.Strength {
	case "required", "extensible":
		if _, ok := c.vs[b.ValueSet]; !ok {
			c.t.Errorf("%s: %s binding to %s, which is not in valuesets/", where, b.Strength, b.ValueSet)
		}
	case "preferred", "example":
	default:
		c.t.Errorf("%s: binding strength %q", where, b.Strength)
	}
	if !strings.HasPrefix(b.ValueSet, "http") {
		c.t.Errorf("%s: value set %q is not a canonical URL", where, b.ValueSet)
	}
}

func (c checker) extension(where string, x validate.ExtensionRule, sub bool) {
	t := c.t
	w := where + " extension " + x.URL
	if sub == strings.HasPrefix(x.URL, "http") {
		t.Errorf("%s: top-level extensions need an absolute URL, sub-extensions a name", w)
	}
	if (len(x.ValueTypes) == 0) == (len(x.Sub) == 0) {
		t.Errorf("%s: needs either value types or sub-extensions", w)
	}
	for _, vt := range x.ValueTypes {
		ty, ok := c.m.Type(vt)
		if !ok || (ty.Kind != r4model.Primitive && ty.Kind != r4model.Complex) {
			t.Errorf("%s: value type %q", w, vt)
		}
	}
	if x.Max != "" && x.Max != "1" && x.Max != "*" {
		t.Errorf("%s: max %q", w, x.Max)
	}
	if x.Status != "" && x.Status != "retired" {
		t.Errorf("%s: status %q", w, x.Status)
	}
	c.binding(w, x.Binding)
	for _, s := range x.Sub {
		c.extension(w, s, true)
	}
}

func TestValueSets(t *testing.T) {
	for url, v := range loadValueSets(t) {
		if len(v.Include) == 0 || v.Name == "" {
			t.Errorf("%s: needs a name and at least one include", url)
		}
		if v.Status != "" && v.Status != "retired" {
			t.Errorf("%s: status %q", url, v.Status)
		}
		systems := map[string]bool{}
		for _, inc := range v.Include {
			if !strings.Contains(inc.System, ":") || systems[inc.System] {
				t.Errorf("%s: system %q missing, relative or repeated", url, inc.System)
			}
			systems[inc.System] = true
			codes := map[string]bool{}
			for _, c := range inc.Codes {
				if c.Code == "" || codes[c.Code] {
					t.Errorf("%s: empty or repeated code %q in %s", url, c.Code, inc.System)
				}
				codes[c.Code] = true
			}
		}
	}
}

func findElement(t *testing.T, p validate.Profile, path string) validate.Element {
	t.Helper()
	for _, e := range p.Elements {
		if e.Path == path {
			return e
		}
	}
	t.Fatalf("%s: no element %s", p.URL, path)
	return validate.Element{}
}

func findSlice(t *testing.T, e validate.Element, name string) validate.Slice {
	t.Helper()
	for _, s := range e.Slices {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s: no slice %s", e.Path, name)
	return validate.Slice{}
}

func sliceElement(t *testing.T, s validate.Slice, path string) validate.Element {
	t.Helper()
	for _, e := range s.Elements {
		if e.Path == path {
			return e
		}
	}
	t.Fatalf("slice %s: no element %s", s.Name, path)
	return validate.Element{}
}

func codesOf(v validate.ValueSet, system string) []string {
	var out []string
	for _, inc := range v.Include {
		if inc.System == system {
			for _, c := range inc.Codes {
				out = append(out, c.Code)
			}
		}
	}
	return out
}

func TestFacts(t *testing.T) {
	ps := loadProfiles(t)
	vs := loadValueSets(t)

	t.Run("UK Core raised minimums", func(t *testing.T) {
		for _, tc := range []struct{ profile, path string }{
			{"UKCore-AllergyIntolerance", "AllergyIntolerance.code"},
			{"UKCore-Medication", "Medication.code"},
			{"UKCore-MedicationStatement", "MedicationStatement.identifier.system"},
			{"UKCore-MedicationStatement", "MedicationStatement.identifier.value"},
			{"UKCore-Observation-VitalSigns", "Observation.subject"},
			{"UKCore-Observation-VitalSigns", "Observation.effective"},
		} {
			if e := findElement(t, ps[tc.profile], tc.path); e.Min == nil || *e.Min != 1 {
				t.Errorf("%s %s: min %v, want 1", tc.profile, tc.path, e.Min)
			}
		}
	})

	t.Run("Patient NHS number slice", func(t *testing.T) {
		id := findElement(t, ps["UKCore-Patient"], "Patient.identifier")
		s := findSlice(t, id, "nhsNumber")
		if !reflect.DeepEqual(s.Discriminator, map[string]string{"system": "https://fhir.nhs.uk/Id/nhs-number"}) ||
			s.Min != 0 || s.Max != "1" {
			t.Errorf("nhsNumber slice = %+v", s)
		}
		if v := sliceElement(t, s, "value"); !reflect.DeepEqual(v.Rules, []string{"nhs-number"}) || v.Min == nil || *v.Min != 1 {
			t.Errorf("nhsNumber value = %+v", v)
		}
		self := sliceElement(t, s, "")
		if len(self.Extensions) != 1 {
			t.Fatalf("nhsNumber extensions = %+v", self.Extensions)
		}
		x := self.Extensions[0]
		if x.URL != sdBase+"Extension-UKCore-NHSNumberVerificationStatus" || x.Max != "1" ||
			!reflect.DeepEqual(x.ValueTypes, []string{"CodeableConcept"}) ||
			x.Binding == nil || *x.Binding != (validate.Binding{Strength: "required", ValueSet: vsBase + "UKCore-NHSNumberVerificationStatus"}) {
			t.Errorf("verification status extension = %+v", x)
		}
		got := codesOf(vs[vsBase+"UKCore-NHSNumberVerificationStatus"], englandV)
		if want := []string{"01", "02", "03", "04", "05", "06", "07", "08"}; !reflect.DeepEqual(got, want) {
			t.Errorf("England verification codes = %v", got)
		}
	})

	t.Run("ODS slices", func(t *testing.T) {
		for _, tc := range []struct{ profile, path, slice, system string }{
			{"UKCore-Organization", "Organization.identifier", "odsOrganisationCode", "https://fhir.nhs.uk/Id/ods-organization-code"},
			{"UKCore-Organization", "Organization.identifier", "odsSiteCode", "https://fhir.nhs.uk/Id/ods-site-code"},
			{"UKCore-Location", "Location.identifier", "odsSiteCode", "https://fhir.nhs.uk/Id/ods-site-code"},
		} {
			s := findSlice(t, findElement(t, ps[tc.profile], tc.path), tc.slice)
			if s.Discriminator["system"] != tc.system || s.Max != "1" {
				t.Errorf("%s %s = %+v", tc.profile, tc.slice, s)
			}
			if v := sliceElement(t, s, "value"); !reflect.DeepEqual(v.Rules, []string{"ods-code"}) {
				t.Errorf("%s %s value rules = %v", tc.profile, tc.slice, v.Rules)
			}
		}
	})

	t.Run("VitalSigns", func(t *testing.T) {
		p := ps["UKCore-Observation-VitalSigns"]
		if p.Base != sdBase+"UKCore-Observation" {
			t.Errorf("base = %q", p.Base)
		}
		if e := findElement(t, p, "Observation.status"); e.Fixed != "final" {
			t.Errorf("status fixed = %v", e.Fixed)
		}
		cat := findElement(t, p, "Observation.category")
		want := map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}
		if cat.Min == nil || *cat.Min != 1 || cat.Max != "1" || !reflect.DeepEqual(cat.Pattern, want) {
			t.Errorf("category = %+v", cat)
		}
		coding := findElement(t, p, "Observation.code.coding")
		loinc := findSlice(t, coding, "loinc")
		if loinc.Discriminator["system"] != "http://loinc.org" || loinc.Min != 1 || loinc.Max != "1" {
			t.Errorf("loinc slice = %+v", loinc)
		}
		if b := sliceElement(t, loinc, "").Binding; b == nil || b.Strength != "extensible" ||
			b.ValueSet != "http://hl7.org/fhir/ValueSet/observation-vitalsignresult" {
			t.Errorf("loinc binding = %+v", b)
		}
		if len(codesOf(vs["http://hl7.org/fhir/ValueSet/observation-vitalsignresult"], "http://loinc.org")) != 12 {
			t.Error("observation-vitalsignresult should list the 12 R4 LOINC codes")
		}
		sct := findSlice(t, coding, "snomedCT")
		if sct.Discriminator["system"] != "http://snomed.info/sct" || sct.Min != 1 || sct.Max != "*" {
			t.Errorf("snomedCT slice = %+v", sct)
		}
	})

	t.Run("VitalSigns LOINC invariant", func(t *testing.T) {
		var inv validate.Invariant
		for _, i := range ps["UKCore-Observation-VitalSigns"].Invariants {
			if i.Key == "ukcore-obs-vs-001" {
				inv = i
			}
		}
		x, err := fhirpath.NewEngine(r4model.Load()).Compile(inv.Expression)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			codings string
			want    bool
		}{
			{`[{"system":"http://loinc.org","code":"8867-4"},{"system":"http://snomed.info/sct","code":"364075005"}]`, true},
			{`[{"system":"http://snomed.info/sct","code":"364075005"}]`, false},
		} {
			obs := decodeJSON(t, `{"resourceType":"Observation","status":"final","code":{"coding":`+tc.codings+`}}`)
			got, err := x.EvaluateBool(obs)
			if err != nil || got != tc.want {
				t.Errorf("%s: got %v, %v; want %v", tc.codings, got, err, tc.want)
			}
		}
	})

	t.Run("retired extensions", func(t *testing.T) {
		x := findElement(t, ps["UKCore-MessageHeader"], "MessageHeader").Extensions
		if len(x) != 1 || x[0].URL != sdBase+"Extension-UKCore-MessageHeaderInstruction" || x[0].Status != "retired" {
			t.Errorf("MessageHeader extensions = %+v", x)
		}
	})
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNHSNumberVerificationMap(t *testing.T) {
	b, err := fs.ReadFile(FS(), "nhs-number-verification.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf validate.Verification
	decodeStrict(t, "nhs-number-verification.json", b, &vf)
	if vf.Extension != sdBase+"Extension-UKCore-NHSNumberVerificationStatus" || vf.System != englandV || vf.RetiredSystem != retiredV {
		t.Fatalf("verification = %+v", vf)
	}
	vs := loadValueSets(t)[vsBase+"UKCore-NHSNumberVerificationStatus"]
	inVS := map[string]bool{}
	systems := map[string]bool{}
	for _, inc := range vs.Include {
		systems[inc.System] = true
		for _, c := range inc.Codes {
			inVS[inc.System+"|"+c.Code] = true
		}
	}
	if systems[retiredV] {
		t.Error("the retired code system must not be part of the current value set")
	}
	for _, s := range vf.Accepted {
		if !systems[s] {
			t.Errorf("accepted system %s is not in the value set", s)
		}
	}
	for code, to := range vf.RetiredCodes {
		if !strings.Contains(to, "|") {
			to = englandV + "|" + to
		}
		if !inVS[to] {
			t.Errorf("%s maps to %s, which is not in the current value set", code, to)
		}
	}
	for code, d := range vf.Displays {
		if !inVS[englandV+"|"+code] || d == "" {
			t.Errorf("display for %s: %q", code, d)
		}
	}
	// BaRS sends the retired string codes; PDS sends the retired URI with current codes,
	// which need no mapping because they are England codes.
	for code, want := range map[string]string{
		"number-present-and-verified": "01",
		"trace-postponed":             "08",
	} {
		if vf.RetiredCodes[code] != want {
			t.Errorf("%s -> %q, want %q", code, vf.RetiredCodes[code], want)
		}
	}
	if len(vf.Displays) != 8 {
		t.Errorf("England displays: %d, want 8", len(vf.Displays))
	}
}
