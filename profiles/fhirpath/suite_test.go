package fhirpath

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// The official FHIRPath R4 test suite lives outside the module (HL7, Apache-2.0); see
// /work/shared/fhirpath-tests/README.md. Tests that do not pass are listed with a reason in
// testdata/skip.txt, and a listed test that starts passing fails the run so the list stays
// accurate.

type suiteFile struct {
	Groups []suiteGroup `xml:"group"`
}

type suiteGroup struct {
	Name  string      `xml:"name,attr"`
	Tests []suiteTest `xml:"test"`
}

type suiteTest struct {
	Name       string        `xml:"name,attr"`
	InputFile  string        `xml:"inputfile,attr"`
	Predicate  string        `xml:"predicate,attr"`
	Mode       string        `xml:"mode,attr"`
	Ordered    string        `xml:"ordered,attr"`
	Expression suiteExpr     `xml:"expression"`
	Outputs    []suiteOutput `xml:"output"`
}

type suiteExpr struct {
	Text    string `xml:",chardata"`
	Invalid string `xml:"invalid,attr"`
	Mode    string `xml:"mode,attr"`
}

type suiteOutput struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

func suiteDir(t *testing.T) string {
	if d := os.Getenv("HJB_FHIRPATH_TESTS"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "fhirpath-tests"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readSkipList(t *testing.T) map[string]string {
	f, err := os.Open(filepath.Join("testdata", "skip.txt"))
	if err != nil {
		t.Fatalf("open skip list: %v", err)
	}
	defer f.Close()
	skip := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, ok := strings.Cut(line, "\t")
		if !ok || strings.TrimSpace(reason) == "" {
			t.Fatalf("skip.txt: line %q needs a name, a tab and a reason", line)
		}
		skip[name] = reason
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return skip
}

func TestOfficialSuite(t *testing.T) {
	e := NewEngine(r4model.Load())
	dir := suiteDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "tests-fhir-r4.xml"))
	if os.IsNotExist(err) {
		t.Skipf("FHIRPath test suite not found in %s (set HJB_FHIRPATH_TESTS to its directory)", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	var suite suiteFile
	if err := xml.Unmarshal(raw, &suite); err != nil {
		t.Fatalf("parse suite: %v", err)
	}
	skip := readSkipList(t)
	inputs := map[string]any{}
	loadInput := func(name string) any {
		if name == "" {
			return nil
		}
		stem := strings.TrimSuffix(strings.TrimSuffix(name, ".xml"), ".json")
		if v, ok := inputs[stem]; ok {
			return v
		}
		b, err := os.ReadFile(filepath.Join(dir, "inputs", stem+".json"))
		if err != nil {
			t.Fatalf("input %s: %v", name, err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("input %s: %v", name, err)
		}
		inputs[stem] = v
		return v
	}

	total, passed := 0, 0
	seen := map[string]bool{}
	var unexpected, stale []string
	for _, g := range suite.Groups {
		for _, tc := range g.Tests {
			name := tc.Name
			for i := 2; seen[name]; i++ {
				name = fmt.Sprintf("%s#%d", tc.Name, i)
			}
			seen[name] = true
			total++
			failure := runSuiteTest(e, tc, loadInput(tc.InputFile))
			reason, skipped := skip[name]
			switch {
			case failure == "":
				passed++
				if skipped {
					stale = append(stale, fmt.Sprintf("%s passes but is listed in skip.txt (%s)", name, reason))
				}
			case !skipped:
				unexpected = append(unexpected, fmt.Sprintf("%s: %s\n    expression: %s", name, failure, strings.TrimSpace(tc.Expression.Text)))
			}
		}
	}
	for name := range skip {
		if !seen[name] {
			stale = append(stale, name+" is listed in skip.txt but is not in the suite")
		}
	}
	sort.Strings(stale)
	for _, s := range unexpected {
		t.Errorf("failing test not in skip.txt: %s", s)
	}
	for _, s := range stale {
		t.Error(s)
	}
	rate := float64(passed) / float64(total) * 100
	t.Logf("official FHIRPath suite: %d/%d passed (%.1f%%)", passed, total, rate)
	if rate < 90 {
		t.Errorf("pass rate %.1f%% is below 90%%", rate)
	}
}

// runSuiteTest returns "" when the test passes, or what went wrong.
func runSuiteTest(e *Engine, tc suiteTest, input any) (failure string) {
	defer func() {
		if r := recover(); r != nil {
			failure = fmt.Sprintf("panic: %v", r)
		}
	}()
	invalid := tc.Expression.Invalid
	expr, err := e.Compile(tc.Expression.Text)
	if err != nil {
		if invalid == "" {
			return "compile error: " + err.Error()
		}
		if invalid == "syntax" {
			if _, ok := err.(*SyntaxError); !ok {
				return "expected a syntax error, got " + err.Error()
			}
		}
		return ""
	}
	if invalid == "syntax" {
		return "expected a syntax error, compiled fine"
	}
	var opts []Option
	if tc.Mode == "strict" || tc.Expression.Mode == "strict" {
		opts = append(opts, Strict())
	}
	got, err := expr.Evaluate(input, opts...)
	if err != nil {
		if invalid != "" {
			return ""
		}
		return "evaluation error: " + err.Error()
	}
	if invalid != "" {
		return fmt.Sprintf("expected a %s error, got %s", invalid, renderCollection(got))
	}
	if tc.Predicate == "true" {
		got = Collection{{t: e.st[sysBoolean], node: len(got) > 0}}
	}
	if len(got) != len(tc.Outputs) {
		return fmt.Sprintf("expected %d results %v, got %s", len(tc.Outputs), tc.Outputs, renderCollection(got))
	}
	matched := make([]bool, len(got))
	for i, want := range tc.Outputs {
		if tc.Ordered != "false" {
			if msg := compareOutput(got[i], want); msg != "" {
				return fmt.Sprintf("result %d: %s", i, msg)
			}
			continue
		}
		ok := false
		for j := range got {
			if !matched[j] && compareOutput(got[j], want) == "" {
				matched[j], ok = true, true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("no result matches %v in %s", want, renderCollection(got))
		}
	}
	return ""
}

func renderCollection(c Collection) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = v.Type() + ":" + v.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// suiteTypeName maps a value's type to the names the suite uses (System types in lower
// camel case, FHIR types as they are).
func suiteTypeName(v Value) string {
	if v.Namespace() == NamespaceSystem && v.Type() != "Quantity" {
		n := v.Type()
		return strings.ToLower(n[:1]) + n[1:]
	}
	return v.Type()
}

func compareOutput(v Value, want suiteOutput) string {
	if want.Type != "" && suiteTypeName(v) != want.Type {
		return fmt.Sprintf("type %s, want %s", suiteTypeName(v), want.Type)
	}
	exp := strings.TrimSpace(want.Value)
	got := v.String()
	switch v.t.sys {
	case sysDate, sysDateTime:
		exp = strings.TrimPrefix(exp, "@")
	case sysTime:
		exp = strings.TrimPrefix(strings.TrimPrefix(exp, "@"), "T")
	case sysDecimal:
		if want.Type != "" {
			a, ok1 := parseDecimal(exp)
			b, ok2 := decimalOf(v)
			if ok1 && ok2 && a.cmp(b) == 0 {
				return ""
			}
		}
	}
	if got != exp {
		return fmt.Sprintf("value %q, want %q", got, exp)
	}
	return ""
}
