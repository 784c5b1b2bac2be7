package invariants

import (
	"sort"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	_ "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// expectedKeys is, per type, every invariant R4 (4.0.1) defines on that type and its backbone
// elements. Types with none are listed too, so that a rule added under them is noticed.
var expectedKeys = map[string][]string{
	// Base types.
	"Element":        {"ele-1"},
	"Extension":      {"ext-1"},
	"DomainResource": {"dom-2", "dom-3", "dom-4", "dom-5", "dom-6"},
	// Data types.
	"Reference":       {"ref-1"},
	"Identifier":      nil,
	"HumanName":       nil,
	"Address":         nil,
	"CodeableConcept": nil,
	"Coding":          nil,
	"Period":          {"per-1"},
	"Quantity":        {"qty-3"},
	"SimpleQuantity":  {"sqty-1"},
	"Age":             {"age-1"},
	"Count":           {"cnt-3"},
	"Distance":        {"dis-1"},
	"Duration":        {"drt-1"},
	"MoneyQuantity":   {"mqty-1"},
	"Range":           {"rng-2"},
	"Ratio":           {"rat-1"},
	"Attachment":      {"att-1"},
	"ContactPoint":    {"cpt-2"},
	"Timing":          {"tim-1", "tim-2", "tim-4", "tim-5", "tim-6", "tim-7", "tim-8", "tim-9", "tim-10"},
	"SampledData":     nil,
	"Narrative":       {"txt-1", "txt-2"},
	"Annotation":      nil,
	"Meta":            nil,
	"Dosage":          nil,
	// Resources.
	"Patient":               {"pat-1"},
	"Practitioner":          nil,
	"PractitionerRole":      nil,
	"Organization":          {"org-1", "org-2", "org-3"},
	"Location":              nil,
	"Encounter":             nil,
	"Observation":           {"obs-3", "obs-6", "obs-7"},
	"Condition":             {"con-1", "con-2", "con-3", "con-4", "con-5"},
	"AllergyIntolerance":    {"ait-1", "ait-2"},
	"MedicationStatement":   nil,
	"Medication":            nil,
	"Questionnaire":         {"que-0", "que-1", "que-2", "que-3", "que-4", "que-5", "que-6", "que-7", "que-8", "que-9", "que-10", "que-11", "que-12", "que-13"},
	"QuestionnaireResponse": {"qrs-1", "qrs-2"},
	"ServiceRequest":        {"prr-1"},
	"Task":                  {"inv-1"},
	"Consent":               {"ppc-1", "ppc-2", "ppc-3", "ppc-4", "ppc-5"},
	"Flag":                  nil,
	"CarePlan":              {"cpl-3"},
	"Composition":           {"cmp-1", "cmp-2"},
	"DocumentReference":     nil,
	"Provenance":            nil,
	"AuditEvent":            {"sev-1"},
	"MessageHeader":         nil,
	"Bundle":                {"bdl-1", "bdl-2", "bdl-3", "bdl-4", "bdl-5", "bdl-7", "bdl-8", "bdl-9", "bdl-10", "bdl-11", "bdl-12"},
	"Endpoint":              nil,
	"HealthcareService":     nil,
	"Subscription":          nil,
}

// notInProtos lists the invariants the google/fhir v0.7.4 protos do not carry. Those protos
// annotate only error-severity rules, only on the concrete type that declares them, and leave
// out a few error rules as well; each expression here was checked against the published R4
// definitions instead.
var notInProtos = map[string]string{
	"ele-1": "declared on Element, which the protos do not annotate",
	"ext-1": "declared on Extension, which the protos do not annotate",
	"dom-2": "declared on DomainResource, not repeated per resource in the protos",
	"dom-3": "declared on DomainResource, not repeated per resource in the protos",
	"dom-4": "declared on DomainResource, not repeated per resource in the protos",
	"dom-5": "declared on DomainResource, not repeated per resource in the protos",
	"dom-6": "warning; the protos carry error rules only",
	"con-3": "warning; the protos carry error rules only",
	"que-0": "warning; the protos carry error rules only",
	"ref-1": "error rule the protos leave out (uses %rootResource)",
	"qrs-2": "error rule the protos leave out (uses repeat())",
	"bdl-8": "error rule the protos leave out",
	"que-7": "R4 publishes 'answer is Boolean', which is never true of a FHIR boolean (the FHIRPath suite pins FHIR primitives to their FHIR types); the R4B correction 'answer is boolean' is used",
}

// corrections maps published R4 expressions to the corrected ones the data uses.
var corrections = map[string]string{
	"operator = 'exists' implies (answer is Boolean)": "operator = 'exists' implies (answer is boolean)",
}

// compileGaps lists invariants the project's FHIRPath engine cannot compile, with the reason.
// The validator has to skip these (and say so) until the engine supports them.
var compileGaps = map[string]string{}

// quantityProfiles are constrained Quantity types: the protos repeat qty-3 on each of them,
// while the data keeps it once, on Quantity.
var quantityProfiles = map[string]bool{
	"Age": true, "Count": true, "Distance": true, "Duration": true, "MoneyQuantity": true, "SimpleQuantity": true,
}

func load(t *testing.T) []Invariant {
	t.Helper()
	invs, err := R4()
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) == 0 {
		t.Fatal("R4 returned no invariants")
	}
	return invs
}

func rootType(path string) string {
	root, _, _ := strings.Cut(path, ".")
	return root
}

func normalise(expr string) string { return strings.Join(strings.Fields(expr), " ") }

func TestKeysUnique(t *testing.T) {
	seen := map[string]string{}
	for _, inv := range load(t) {
		if prev, ok := seen[inv.Key]; ok {
			t.Errorf("key %s on %s is also on %s", inv.Key, inv.Path, prev)
		}
		seen[inv.Key] = inv.Path
	}
}

func TestFieldsFilled(t *testing.T) {
	for _, inv := range load(t) {
		if strings.TrimSpace(inv.Human) == "" {
			t.Errorf("%s has no human description", inv.Key)
		}
		if inv.Expression != strings.TrimSpace(inv.Expression) {
			t.Errorf("%s: expression has surrounding space", inv.Key)
		}
	}
}

// TestSeverities pins the specification's best-practice (warning) rules.
func TestSeverities(t *testing.T) {
	warnings := map[string]bool{"dom-6": true, "con-3": true, "que-0": true}
	for _, inv := range load(t) {
		want := "error"
		if warnings[inv.Key] {
			want = "warning"
		}
		if inv.Severity != want {
			t.Errorf("%s: severity %q, want %q", inv.Key, inv.Severity, want)
		}
	}
}

func TestCoverage(t *testing.T) {
	got := map[string][]string{}
	for _, inv := range load(t) {
		root := rootType(inv.Path)
		if _, ok := expectedKeys[root]; !ok {
			t.Errorf("%s is on %s, a type not in expectedKeys", inv.Key, inv.Path)
		}
		got[root] = append(got[root], inv.Key)
	}
	for typ, want := range expectedKeys {
		have := append([]string(nil), got[typ]...)
		want = append([]string(nil), want...)
		sort.Strings(have)
		sort.Strings(want)
		if strings.Join(have, ",") != strings.Join(want, ",") {
			t.Errorf("%s: keys %v, want %v", typ, have, want)
		}
	}
}

// TestPathsResolve checks every path against the R4 type model: a type name (resources, data
// types and backbone types such as "Timing.repeat"), or a type followed by element names.
func TestPathsResolve(t *testing.T) {
	m := r4model.Load()
	for _, inv := range load(t) {
		if _, ok := m.Type(inv.Path); ok {
			continue
		}
		segs := strings.Split(inv.Path, ".")
		typ, ok := m.Type(segs[0])
		if !ok {
			t.Errorf("%s: path %s: no type %s", inv.Key, inv.Path, segs[0])
			continue
		}
		for _, name := range segs[1:] {
			el, ok := typ.Element(name)
			if !ok || len(el.Types) != 1 || el.Types[0].Type == nil {
				t.Errorf("%s: path %s: %s has no single-typed element %s", inv.Key, inv.Path, typ.Name, name)
				break
			}
			typ = el.Types[0].Type
		}
	}
}

func TestExpressionsCompile(t *testing.T) {
	eng := fhirpath.NewEngine(r4model.Load())
	for _, inv := range load(t) {
		_, err := eng.Compile(inv.Expression)
		reason, gap := compileGaps[inv.Key]
		switch {
		case err != nil && !gap:
			t.Errorf("%s does not compile: %v\n%s", inv.Key, err, inv.Expression)
		case err == nil && gap:
			t.Errorf("%s compiles now; remove it from compileGaps (%s)", inv.Key, reason)
		}
	}
}

// protoConstraints indexes the FHIRPath constraints annotated on the R4 core protos by FHIR
// path: messages by their type or backbone path ("Patient.contact"), fields by element path
// ("Organization.address").
func protoConstraints(t *testing.T) map[string][]string {
	t.Helper()
	const pkg = "google.fhir.r4.core."
	out := map[string][]string{}
	fhirPath := func(full protoreflect.FullName) string {
		segs := strings.Split(strings.TrimPrefix(string(full), pkg), ".")
		for i := 1; i < len(segs); i++ {
			r, n := utf8.DecodeRuneInString(segs[i])
			segs[i] = string(unicode.ToLower(r)) + segs[i][n:]
		}
		return strings.Join(segs, ".")
	}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		path := fhirPath(md.FullName())
		out[path] = append(out[path], proto.GetExtension(md.Options(), annotations_go_proto.E_FhirPathMessageConstraint).([]string)...)
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			exprs := proto.GetExtension(fd.Options(), annotations_go_proto.E_FhirPathConstraint).([]string)
			if len(exprs) > 0 {
				fp := path + "." + fd.JSONName()
				out[fp] = append(out[fp], exprs...)
			}
		}
		for i := 0; i < md.Messages().Len(); i++ {
			walk(md.Messages().Get(i))
		}
	}
	protoregistry.GlobalFiles.RangeFilesByPackage(protoreflect.FullName(strings.TrimSuffix(pkg, ".")), func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Messages().Len(); i++ {
			walk(fd.Messages().Get(i))
		}
		return true
	})
	for p, exprs := range out {
		for i := range exprs {
			exprs[i] = normalise(exprs[i])
		}
		out[p] = exprs
	}
	if len(out["Patient.contact"]) == 0 || len(out["Bundle"]) == 0 {
		t.Fatal("proto annotations not loaded; the R4 resource packages are not linked in")
	}
	return out
}

// TestMatchesProtos checks each expression against the one the protos carry at the same path,
// and, the other way round, that every proto constraint on a covered type is in the data.
func TestMatchesProtos(t *testing.T) {
	protos := protoConstraints(t)
	invs := load(t)

	ours := map[string][]string{}
	for _, inv := range invs {
		ours[inv.Path] = append(ours[inv.Path], normalise(inv.Expression))
		found := contains(protos[inv.Path], normalise(inv.Expression))
		reason, excepted := notInProtos[inv.Key]
		switch {
		case !found && !excepted:
			t.Errorf("%s on %s: expression not among the proto constraints %q\n%s", inv.Key, inv.Path, protos[inv.Path], inv.Expression)
		case found && excepted:
			t.Errorf("%s on %s matches the protos; remove it from notInProtos (%s)", inv.Key, inv.Path, reason)
		}
	}
	for key := range notInProtos {
		if _, ok := expectedKeys[rootOfKey(invs, key)]; !ok {
			t.Errorf("notInProtos lists %s, which is not in the data", key)
		}
	}

	for path, exprs := range protos {
		for i, expr := range exprs {
			if c, ok := corrections[expr]; ok {
				exprs[i] = c
			}
		}
		root := rootType(path)
		if _, covered := expectedKeys[root]; !covered {
			continue
		}
		for _, expr := range exprs {
			if contains(ours[path], expr) {
				continue
			}
			if quantityProfiles[path] && contains(ours["Quantity"], expr) {
				continue
			}
			t.Errorf("proto constraint on %s missing from the data: %s", path, expr)
		}
		if n, m := count(ours[path], exprs), len(exprs); n < m && !quantityProfiles[path] {
			t.Errorf("%s: the protos carry %d constraints, the data matches %d", path, m, n)
		}
	}
}

func rootOfKey(invs []Invariant, key string) string {
	for _, inv := range invs {
		if inv.Key == key {
			return rootType(inv.Path)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// count is how many items of want are matched by distinct items of have, so that repeated
// expressions (txt-1 and txt-2 are both htmlChecks()) are each accounted for.
func count(have, want []string) int {
	left := map[string]int{}
	for _, h := range have {
		left[h]++
	}
	n := 0
	for _, w := range want {
		if left[w] > 0 {
			left[w]--
			n++
		}
	}
	return n
}

// TestR4ReturnsFreshCopy guards against callers sharing (and mutating) one slice.
func TestR4ReturnsFreshCopy(t *testing.T) {
	a, b := load(t), load(t)
	a[0].Expression = "changed"
	if b[0].Expression == "changed" {
		t.Fatal("R4 returned shared data")
	}
}
