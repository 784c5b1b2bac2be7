// Package mappingtest supports the mapping packages' tests: golden files (rewritten with
// `go test -update`), test inputs under testdata, and the broker's UK Core validator with
// checks that fail a test on any error issue, naming the element.
package mappingtest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// update is the test binary's -update flag; every mapping test that imports this package
// gets it.
var update = flag.Bool("update", false, "rewrite the golden files")

// Golden compares got with the golden file at path, byte for byte; under -update it writes
// got to path instead.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run go test -update and review the diff):\n%s", path, got)
	}
}

// JSON encodes v as the golden files hold it: indented by two spaces, with a final newline.
func JSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(raw, '\n')
}

// GoldenJSON compares v, encoded by JSON, with the golden file at path.
func GoldenJSON(t testing.TB, path string, v any) {
	t.Helper()
	Golden(t, path, JSON(t, v))
}

// GoldenList is GoldenJSON for a list that is often empty (a mapping's warnings): the golden
// file exists exactly when the list has items.
func GoldenList[T any](t testing.TB, path string, items []T) {
	t.Helper()
	if len(items) > 0 {
		GoldenJSON(t, path, items)
	} else if _, err := os.Stat(path); err == nil {
		t.Errorf("%s exists but the list is empty", path)
	}
}

// ReadJSON reads the JSON object in the file at path.
func ReadJSON(t testing.TB, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// Cases lists the names of the files in testdata ending in suffix, without the suffix
// (testdata/minimal.input.json is "minimal" for ".input.json"), failing when there are none.
func Cases(t testing.TB, suffix string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no testdata/*%s", suffix)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), suffix)
	}
	return names
}

// Validator builds the broker's UK Core validator as the node does (app.NewValidator with
// the R4 structure checker).
func Validator(t testing.TB) *validate.Validator {
	t.Helper()
	checker, err := resource.NewChecker(64)
	if err != nil {
		t.Fatal(err)
	}
	v, err := app.NewValidator(fhirpath.NewEngine(r4model.Load()), checker)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Valid validates res and fails the test for every error or fatal issue, naming what (a
// label for res), the issue code, its diagnostics and the element path. The result is
// returned for further checks.
func Valid(t testing.TB, v *validate.Validator, what string, res map[string]any, opts validate.Options) validate.Result {
	t.Helper()
	r := v.Validate(res, opts)
	for _, is := range r.Issues {
		if is.Severity == "error" || is.Severity == "fatal" {
			t.Errorf("%s: %s %s at %v", what, is.Code, is.Diagnostics, is.Expression)
		}
	}
	return r
}

// ValidBundle validates the Bundle b and then every entry's resource on its own, references
// to other entries resolving by fullUrl, failing the test on any error issue.
func ValidBundle(t testing.TB, v *validate.Validator, b map[string]any) {
	t.Helper()
	Valid(t, v, "Bundle", b, validate.Options{})
	index := map[string]map[string]any{}
	entries := Entries(b)
	for i, e := range b["entry"].([]any) {
		if u, ok := e.(map[string]any)["fullUrl"].(string); ok {
			index[u] = entries[i]
		}
	}
	resolve := func(ref string) (map[string]any, bool) { r, ok := index[ref]; return r, ok }
	for i, res := range entries {
		Valid(t, v, fmt.Sprintf("entry %d (%s/%v)", i, res["resourceType"], res["id"]), res, validate.Options{Resolve: resolve})
	}
}

// Entries returns the resources of the Bundle b's entries, in order.
func Entries(b map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range b["entry"].([]any) {
		out = append(out, e.(map[string]any)["resource"].(map[string]any))
	}
	return out
}

// UKCoreProfiles fails the test for every entry of the Bundle b that does not declare
// exactly one profile, a UK Core one, in meta.profile.
func UKCoreProfiles(t testing.TB, b map[string]any) {
	t.Helper()
	for i, res := range Entries(b) {
		meta, _ := res["meta"].(map[string]any)
		prof, _ := meta["profile"].([]any)
		if len(prof) != 1 || !strings.HasPrefix(fmt.Sprint(prof[0]), "https://fhir.hl7.org.uk/StructureDefinition/UKCore-") {
			t.Errorf("entry %d (%s): meta.profile %v, want one UK Core profile", i, res["resourceType"], prof)
		}
	}
}

// BundleGoldens is the golden test of a mapping to a Bundle with warnings: for every
// testdata/NAME.input.json, in a subtest NAME, mapInput maps the file at path and the
// Bundle is compared with testdata/NAME.golden.json, the warnings with
// testdata/NAME.warnings.golden.json (which exists exactly when there are warnings).
func BundleGoldens[W any](t *testing.T, mapInput func(t *testing.T, path string) (bundle map[string]any, warnings []W)) {
	t.Helper()
	for _, name := range Cases(t, ".input.json") {
		t.Run(name, func(t *testing.T) {
			b, ws := mapInput(t, filepath.Join("testdata", name+".input.json"))
			GoldenJSON(t, filepath.Join("testdata", name+".golden.json"), b)
			GoldenList(t, filepath.Join("testdata", name+".warnings.golden.json"), ws)
		})
	}
}

// ValidGoldenBundles checks every golden Bundle of BundleGoldens (testdata/*.golden.json
// but the warnings), as read back from the file, with ValidBundle and UKCoreProfiles.
func ValidGoldenBundles(t *testing.T) {
	t.Helper()
	v := Validator(t)
	for _, name := range Cases(t, ".golden.json") {
		if strings.HasSuffix(name, ".warnings") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			b := ReadJSON(t, filepath.Join("testdata", name+".golden.json"))
			ValidBundle(t, v, b)
			UKCoreProfiles(t, b)
		})
	}
}
