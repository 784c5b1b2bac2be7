package clinical_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/mappings/clinical"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

func options() clinical.Options {
	n := 0
	return clinical.Options{
		AgencyODS: "XCUST01",
		Source:    "custody-emr",
		Recorded:  time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC),
		NewID: func() string {
			n++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
		},
	}
}

func mapper(t *testing.T) *clinical.Mapper {
	t.Helper()
	m, err := clinical.New()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGolden maps every testdata/*.input.json and compares the Bundle (and the warnings,
// when there are any) with the golden files.
func TestGolden(t *testing.T) {
	m := mapper(t)
	mappingtest.BundleGoldens(t, func(t *testing.T, path string) (map[string]any, []clinical.Warning) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Map(raw, options())
		if err != nil {
			t.Fatalf("mapping: %v", err)
		}
		return res.Bundle, res.Warnings
	})
}

// TestGoldenValid checks that every golden Bundle, and every resource in it, has no errors
// under the broker's UK Core validator, and that every resource names its UK Core profile.
func TestGoldenValid(t *testing.T) { mappingtest.ValidGoldenBundles(t) }

// TestCodeMapWellFormed checks every entry of the starter map.
func TestCodeMapWellFormed(t *testing.T) {
	cm := mapper(t).Codes()
	if len(cm.Entries) < 20 || cm.Description == "" {
		t.Fatalf("code map has %d entries", len(cm.Entries))
	}
	readCode := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.]{4}$`)
	labels := map[string]bool{"ETHUD": true, "OPIOIDUD": true, "SUD": true, "ETH": true, "PSY": true, "MH": true, "BH": true}
	seen := map[string]bool{}
	for i, e := range cm.Entries {
		where := fmt.Sprintf("entry %d (%s|%s)", i, e.System, e.Code)
		if e.System != clinical.SystemReadV2 && e.System != clinical.SystemCTV3 {
			t.Errorf("%s: system must be Read v2 or CTV3", where)
		}
		if !readCode.MatchString(e.Code) {
			t.Errorf("%s: not a five-character Read code", where)
		}
		if seen[e.System+"|"+e.Code] {
			t.Errorf("%s: listed twice", where)
		}
		seen[e.System+"|"+e.Code] = true
		// A SNOMED CT concept id: 6 to 18 digits, no leading zero, partition identifier 00
		// (international concept) or 10 (extension concept) before the check digit.
		s := e.SNOMED
		if len(s) < 6 || len(s) > 18 || s[0] == '0' || strings.Trim(s, "0123456789") != "" {
			t.Errorf("%s: snomed %q is not an SCTID", where, s)
		} else if p := s[len(s)-3 : len(s)-1]; p != "00" && p != "10" {
			t.Errorf("%s: snomed %q has partition %s, not a concept id", where, s, p)
		}
		if strings.TrimSpace(e.Display) == "" || strings.TrimSpace(e.SNOMEDDisplay) == "" {
			t.Errorf("%s: displays must not be empty", where)
		}
		for _, l := range e.Labels {
			if !labels[l] {
				t.Errorf("%s: label %q is not a v3-ActCode sensitivity code used here", where, l)
			}
		}
		if got, ok := cm.Lookup(e.System, e.Code); !ok || got.SNOMED != e.SNOMED {
			t.Errorf("%s: Lookup does not find it", where)
		}
	}
}

// TestValidatorCatches makes sure the validity check above can fail: a vital-sign
// Observation without its LOINC code is an error.
func TestValidatorCatches(t *testing.T) {
	b := mappingtest.ReadJSON(t, "testdata/minimal.golden.json")
	for _, res := range mappingtest.Entries(b) {
		if res["resourceType"] != "Observation" {
			continue
		}
		code := res["code"].(map[string]any)
		code["coding"] = code["coding"].([]any)[1:]
		if mappingtest.Validator(t).Validate(res, validate.Options{}).Valid() {
			t.Fatal("a vital-sign Observation without LOINC passed validation")
		}
		return
	}
	t.Fatal("no Observation in the minimal golden")
}

// TestBadInput checks that bad input is refused with issues naming the JSON path.
func TestBadInput(t *testing.T) {
	m := mapper(t)
	base := func() map[string]any {
		return map[string]any{
			"format":  "hjbroker-clinical-entries/1",
			"patient": map[string]any{"nhsNumber": "9000000009"},
			"episode": map[string]any{"id": "EP-1", "custodySuite": "XCS01", "arrival": "2026-12-01T08:00:00Z"},
		}
	}
	obs := func(o map[string]any) []any {
		o["time"], o["author"] = "2026-12-01T09:00:00Z", map[string]any{"name": "Sam"}
		return []any{o}
	}
	for _, tc := range []struct {
		name   string
		edit   func(map[string]any)
		raw    string
		expr   string
		code   string
		inDiag string
	}{
		{name: "not JSON", raw: "{", code: "invalid"},
		{name: "not an object", raw: "[1]", code: "structure"},
		{name: "repeated property", raw: `{"format": "hjbroker-clinical-entries/1", "format": "x"}`, code: "structure", inDiag: "more than once"},
		{name: "wrong format", edit: func(d map[string]any) { d["format"] = "v0" }, expr: "format", code: "value"},
		{name: "unknown top-level field", edit: func(d map[string]any) { d["vitals"] = []any{} }, expr: "vitals", code: "structure"},
		{name: "unknown nested field", edit: func(d map[string]any) { d["episode"].(map[string]any)["cell"] = "4" }, expr: "episode.cell", code: "structure"},
		{name: "missing episode", edit: func(d map[string]any) { delete(d, "episode") }, expr: "episode", code: "required"},
		{name: "missing arrival", edit: func(d map[string]any) { delete(d["episode"].(map[string]any), "arrival") }, expr: "episode.arrival", code: "required"},
		{name: "bad arrival date", edit: func(d map[string]any) { d["episode"].(map[string]any)["arrival"] = "2026-13-01T08:00:00Z" }, expr: "episode.arrival", code: "value"},
		{name: "arrival without zone", edit: func(d map[string]any) { d["episode"].(map[string]any)["arrival"] = "2026-12-01T08:00:00" }, expr: "episode.arrival", code: "value"},
		{name: "release before arrival", edit: func(d map[string]any) { d["episode"].(map[string]any)["release"] = "2026-12-01T07:00:00Z" }, expr: "episode.release", code: "invariant"},
		{name: "custody suite not ODS", edit: func(d map[string]any) { d["episode"].(map[string]any)["custodySuite"] = "cell block 4" }, expr: "episode.custodySuite", code: "value", inDiag: "ODS"},
		{name: "NHS number check digit", edit: func(d map[string]any) { d["patient"].(map[string]any)["nhsNumber"] = "9000000000" }, expr: "patient.nhsNumber", code: "value", inDiag: "check digit"},
		{name: "NHS number shape", edit: func(d map[string]any) { d["patient"].(map[string]any)["nhsNumber"] = "900 000 0009" }, expr: "patient.nhsNumber", code: "value"},
		{name: "unknown verification status", edit: func(d map[string]any) {
			d["patient"].(map[string]any)["verificationStatus"] = map[string]any{"code": "99"}
		}, expr: "patient.verificationStatus", code: "code-invalid"},
		{name: "empty observation set", edit: func(d map[string]any) { d["observations"] = obs(map[string]any{}) }, expr: "observations[0]", inDiag: "at least one of"},
		{name: "heart rate out of range", edit: func(d map[string]any) { d["observations"] = obs(map[string]any{"heartRate": 900}) }, expr: "observations[0].heartRate", code: "value"},
		{name: "heart rate not a number", edit: func(d map[string]any) { d["observations"] = obs(map[string]any{"heartRate": "fast"}) }, expr: "observations[0].heartRate", code: "structure"},
		{name: "bad ACVPU", edit: func(d map[string]any) { d["observations"] = obs(map[string]any{"acvpu": "X"}) }, expr: "observations[0].acvpu", code: "value"},
		{name: "problem code system", edit: func(d map[string]any) {
			d["problems"] = []any{map[string]any{"code": map[string]any{"system": "icd", "code": "F10"}, "time": "2026-12-01T09:00:00Z", "author": map[string]any{"name": "Sam"}}}
		}, expr: "problems[0].code.system", inDiag: "absolute URI"},
		{name: "SNOMED code shape", edit: func(d map[string]any) {
			d["problems"] = []any{map[string]any{"code": map[string]any{"system": "snomed", "code": "E23.."}, "time": "2026-12-01T09:00:00Z", "author": map[string]any{"name": "Sam"}}}
		}, expr: "problems[0].code.code", code: "value"},
		{name: "bad onset", edit: func(d map[string]any) {
			d["problems"] = []any{map[string]any{"code": map[string]any{"system": "read2", "code": "E23.."}, "onset": "last year", "time": "2026-12-01T09:00:00Z", "author": map[string]any{"name": "Sam"}}}
		}, expr: "problems[0].onset", inDiag: "date"},
		{name: "medication without author", edit: func(d map[string]any) {
			d["medications"] = []any{map[string]any{"kind": "declared", "code": map[string]any{"system": "snomed", "code": "387286002"}, "time": "2026-12-01T09:00:00Z"}}
		}, expr: "medications[0].author", code: "required"},
		{name: "duplicate entry id", edit: func(d map[string]any) {
			a := map[string]any{"id": "A1", "code": map[string]any{"system": "read2", "code": "14L2."}, "time": "2026-12-01T09:00:00Z", "author": map[string]any{"name": "Sam"}}
			d["allergies"] = []any{a, a}
		}, expr: "allergies[1].id", code: "business-rule"},
		{name: "administered but stopped", edit: func(d map[string]any) {
			d["medications"] = []any{map[string]any{"kind": "administered", "status": "stopped", "code": map[string]any{"system": "snomed", "code": "387286002"}, "time": "2026-12-01T09:00:00Z", "author": map[string]any{"name": "Sam"}}}
		}, expr: "medications[0].status", code: "value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.edit != nil {
				d := base()
				tc.edit(d)
				raw, _ = json.Marshal(d)
			}
			_, err := m.Map(raw, options())
			if err == nil {
				t.Fatal("accepted")
			}
			var issues []map[string]any
			body, _ := json.Marshal(outcomeOf(t, err))
			_ = json.Unmarshal(body, &issues)
			found := false
			for _, is := range issues {
				exprs, _ := is["expression"].([]any)
				matches := tc.expr == "" || (len(exprs) > 0 && exprs[0] == tc.expr)
				if matches && (tc.code == "" || is["code"] == tc.code) && strings.Contains(fmt.Sprint(is["diagnostics"]), tc.inDiag) {
					found = true
				}
			}
			if !found {
				t.Errorf("no issue at %q with code %q containing %q in %s", tc.expr, tc.code, tc.inDiag, body)
			}
		})
	}
}

func outcomeOf(t *testing.T, err error) []outcome.Issue {
	t.Helper()
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v is not an OperationOutcome error", err)
	}
	if oe.Status != 400 {
		t.Errorf("status %d, want 400", oe.Status)
	}
	return oe.Issues
}

// TestDocumentedExample keeps docs/clinical-entries.md honest: its complete example maps
// without error and is the full golden input.
func TestDocumentedExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/clinical-entries.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Complete example")
	if !ok {
		t.Fatal("docs/clinical-entries.md has no complete example")
	}
	_, rest, ok = strings.Cut(rest, "```json\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the complete example has no json block")
	}
	if _, err := mapper(t).Map([]byte(block), options()); err != nil {
		t.Fatalf("the documented example does not map: %v", err)
	}
	var doced, input any
	raw, err := os.ReadFile("testdata/full.input.json")
	if err != nil {
		t.Fatal(err)
	}
	if json.Unmarshal([]byte(block), &doced) != nil || json.Unmarshal(raw, &input) != nil {
		t.Fatal("decoding")
	}
	if fmt.Sprint(doced) != fmt.Sprint(input) {
		t.Error("the documented example differs from testdata/full.input.json")
	}
}
