package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/testscript"
)

// sampleRun has one suite with a passing script (one test with a warning), a script with
// one failing and one erroring test, and an invalid script.
func sampleRun() *Run {
	failing := testscript.ActionResult{
		Path: "TestScript.test[0].action[1].assert", Kind: "assert", Label: "201 Created", Status: testscript.Fail,
		Message: "HTTP status is 200, expected created (201)", Expected: "created (201)", Actual: "200",
		Exchange: &testscript.Exchange{Method: "POST", URL: "http://srv/fhir/Patient",
			RequestHeader: http.Header{"Authorization": {"Bearer top-secret-token"}, "Content-Type": {"application/fhir+json"}},
			RequestBody:   []byte(`{"resourceType":"Patient"}`), Status: 200,
			ResponseHeader: http.Header{"Content-Type": {"text/html"}},
			ResponseBody:   []byte(`<script>alert("pwned")</script>`)},
	}
	return &Run{
		Target: "http://srv/fhir", Started: time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC), Duration: 1500 * time.Millisecond,
		Suites: []*suite.Result{{
			Suite: "demo", Description: "A demo suite", Started: time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC),
			Scripts: []*testscript.ScriptResult{
				{Name: "ok", Title: "All fine", File: "ok.json", Tests: []testscript.TestResult{
					{Name: "read", Status: testscript.Pass, Duration: 5 * time.Millisecond},
					{Name: "warns", Status: testscript.Pass, Actions: []testscript.ActionResult{
						{Path: "TestScript.test[1].action[0].assert", Status: testscript.Warning, Label: "soft", Message: "soft check failed"}}},
				}},
				{Name: "bad", File: "bad.json", Tests: []testscript.TestResult{
					{Name: "create", Status: testscript.Fail, Message: failing.Path + " (201 Created): " + failing.Message,
						Actions: []testscript.ActionResult{{Path: "TestScript.test[0].action[0].operation", Status: testscript.Pass}, failing}},
					{Name: "offline", Status: testscript.Errored, Message: "connection refused",
						Actions: []testscript.ActionResult{{Path: "TestScript.test[1].action[0].operation", Status: testscript.Errored, Message: "connection refused"}}},
				}},
				{Name: "broken", File: "broken.json", Invalid: []testscript.Problem{{Path: "TestScript.test[1].action[0].assert.operator", Message: `"like" is not an assert operator`}}},
			},
		}},
	}
}

func TestTotals(t *testing.T) {
	got := sampleRun().Totals()
	want := Totals{Suites: 1, Scripts: 3, InvalidScripts: 1, Tests: 5, Passed: 2, Failed: 1, Errors: 2, Warnings: 1}
	if got != want {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	if sampleRun().Passed() {
		t.Fatal("a run with failures passed")
	}
}

func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJUnit(&b, sampleRun()); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, b.String())
	}
	if doc.Tests != 5 || doc.Failures != 1 || doc.Errors != 2 || len(doc.Suites) != 3 {
		t.Fatalf("tests %d failures %d errors %d suites %d", doc.Tests, doc.Failures, doc.Errors, len(doc.Suites))
	}
	counts := map[string][3]int{}
	for _, s := range doc.Suites {
		counts[s.Name] = [3]int{s.Tests, s.Failures, s.Errors}
	}
	want := map[string][3]int{"demo/ok.json": {2, 0, 0}, "demo/bad.json": {2, 1, 1}, "demo/broken.json": {1, 0, 1}}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: %v, want %v", k, counts[k], v)
		}
	}
	bad := doc.Suites[1].Cases[0]
	if bad.Failure == nil || !strings.Contains(bad.Failure.Message, "TestScript.test[0].action[1].assert") ||
		!strings.Contains(bad.Failure.Text, `<script>alert("pwned")</script>`) {
		t.Errorf("failure %+v", bad.Failure)
	}
	if inv := doc.Suites[2].Cases[0]; inv.Error == nil || !strings.Contains(inv.Error.Text, "TestScript.test[1].action[0].assert.operator") {
		t.Errorf("invalid script case %+v", inv)
	}
	if strings.Contains(b.String(), "top-secret-token") {
		t.Error("the token is in the JUnit report")
	}
}

func TestJSONSummary(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleRun()); err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(b.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Passed || s.Totals.Tests != 5 || s.Totals.Failed != 1 || len(s.Suites) != 1 || len(s.Suites[0].Scripts) != 3 {
		t.Fatalf("summary %+v", s)
	}
	f := s.Suites[0].Scripts[1].Tests[0].Failure
	if f == nil || f.Path != "TestScript.test[0].action[1].assert" || f.Expected != "created (201)" || f.Actual != "200" || f.Status != 200 || f.Method != "POST" {
		t.Errorf("failure %+v", f)
	}
	if w := s.Suites[0].Scripts[0].Tests[1].Warnings; len(w) != 1 {
		t.Errorf("warnings %v", w)
	}
	if inv := s.Suites[0].Scripts[2].Invalid; len(inv) != 1 || inv[0].Path != "TestScript.test[1].action[0].assert.operator" {
		t.Errorf("invalid %v", inv)
	}
	if strings.Contains(b.String(), "top-secret-token") {
		t.Error("the token is in the summary")
	}
}

func TestHTML(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, sampleRun()); err != nil {
		t.Fatal(err)
	}
	h := b.String()
	for _, want := range []string{
		"<!DOCTYPE html>", "Suite demo", "All fine", "1 failed, 2 errors, 2 passed of 5 tests",
		"TestScript.test[0].action[1].assert", "created (201)", "HTTP status is 200, expected created (201)",
		"POST http://srv/fhir/Patient", "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;", "Authorization: (redacted)",
		"Invalid TestScript", "TestScript.test[1].action[0].assert.operator", "soft check failed",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{`<script>alert`, "top-secret-token", "<link", "src="} {
		if strings.Contains(h, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := WriteDir(dir, sampleRun()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{JUnitFile, JSONFile, HTMLFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestExcerptCutsOnRunes(t *testing.T) {
	got := excerpt([]byte("ééé"), 3)
	if !strings.HasPrefix(got, "é\n…") {
		t.Fatalf("excerpt %q", got)
	}
}
