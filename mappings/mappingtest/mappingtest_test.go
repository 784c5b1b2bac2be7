package mappingtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps the failures it is told of; Fatalf ends the helper
// with a panic that check recovers.
type recorder struct {
	testing.TB
	failures []string
}

type fatal struct{}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(fatal{})
}

// check runs f on a recorder and returns its failures. It compares even under -update.
func check(t *testing.T, f func(tb testing.TB)) []string {
	saved := *update
	*update = false
	defer func() { *update = saved }()
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != any(fatal{}) {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.failures
}

func TestGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.golden.json")
	if err := os.WriteFile(path, JSON(t, map[string]any{"a": 1}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		got  any
		fail string
	}{
		{"same", path, map[string]any{"a": 1}, ""},
		{"different", path, map[string]any{"a": 2}, "differs from the output"},
		{"missing", path + ".none", map[string]any{"a": 1}, "run go test -update to create it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := check(t, func(tb testing.TB) { GoldenJSON(tb, tc.path, tc.got) })
			if tc.fail == "" && len(got) > 0 || tc.fail != "" && (len(got) != 1 || !strings.Contains(got[0], tc.fail)) {
				t.Errorf("failures %q, want one with %q", got, tc.fail)
			}
		})
	}
}

func TestGoldenList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.warnings.golden.json")
	if err := os.WriteFile(path, JSON(t, []string{"w"}), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := check(t, func(tb testing.TB) { GoldenList(tb, path, []string{"w"}) }); len(got) != 0 {
		t.Errorf("matching list: %q", got)
	}
	if got := check(t, func(tb testing.TB) { GoldenList(tb, path, []string(nil)) }); len(got) != 1 || !strings.Contains(got[0], "exists but the list is empty") {
		t.Errorf("empty list with a golden file: %q", got)
	}
	if got := check(t, func(tb testing.TB) { GoldenList(tb, path+".none", []string(nil)) }); len(got) != 0 {
		t.Errorf("empty list without a golden file: %q", got)
	}
}

func TestValidBundleAndProfiles(t *testing.T) {
	v := Validator(t)
	patient := func() map[string]any {
		return map[string]any{"resourceType": "Patient", "id": "p1",
			"meta": map[string]any{"profile": []any{"https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"}}}
	}
	bundle := func(p map[string]any) map[string]any {
		return map[string]any{"resourceType": "Bundle", "type": "collection",
			"entry": []any{map[string]any{"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "resource": p}}}
	}
	if got := check(t, func(tb testing.TB) { ValidBundle(tb, v, bundle(patient())); UKCoreProfiles(tb, bundle(patient())) }); len(got) != 0 {
		t.Errorf("a valid Bundle failed: %q", got)
	}
	bad := patient()
	bad["gender"] = "sometimes"
	got := check(t, func(tb testing.TB) { ValidBundle(tb, v, bundle(bad)) })
	if !strings.Contains(strings.Join(got, "\n"), "entry 0 (Patient/p1)") || !strings.Contains(strings.Join(got, "\n"), "gender") {
		t.Errorf("an invalid gender gave %q, want a failure naming the entry and Patient.gender", got)
	}
	other := patient()
	other["meta"] = map[string]any{"profile": []any{"http://example.org/Patient"}}
	if got := check(t, func(tb testing.TB) { UKCoreProfiles(tb, bundle(other)) }); len(got) != 1 {
		t.Errorf("a non-UK Core profile gave %q", got)
	}
}
