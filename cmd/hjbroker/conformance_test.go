package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/conformance/conformancetest"
)

func runConformance(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newConformanceCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
	default:
		t.Fatalf("conformance %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String(), code
}

func startBroker(t *testing.T) (*apptest.Server, storetest.Backend) {
	t.Helper()
	t.Setenv("HJB_STORE_URL", "")
	t.Setenv("HJB_PUBLIC_BASE", "")
	b := storetest.Backends(t)[0]
	return apptest.Start(t, b, app.Config{Spine: simulatedSpine(t)}), b // spine-lookup needs the Spine
}

func TestConformanceRunAgainstBroker(t *testing.T) {
	srv, b := startBroker(t)
	out := filepath.Join(t.TempDir(), "reports")
	_, stderr, code := runConformance(t, "run", "--target", srv.Base, "--data-dir", b.DataDir, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"suite broker-rest", "PASS  broker-rest/crud.json create", "0 failed, 0 errors; 0 invalid scripts", "reports in"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	raw, err := os.ReadFile(filepath.Join(out, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
	}
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests < 20 || doc.Failures != 0 || doc.Errors != 0 {
		t.Errorf("junit: %+v", doc)
	}
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Error(err)
	}
}

func TestConformanceRunReportsFailures(t *testing.T) {
	srv, _ := startBroker(t)
	proxy := conformancetest.NewProxy(t, srv.Base, conformancetest.Fault{Name: "metadata as HTML", Method: "GET",
		Path: regexp.MustCompile(`^metadata$`), SetHeaders: map[string]string{"Content-Type": "text/html"}})
	out := t.TempDir()
	_, stderr, code := runConformance(t, "run", "--target", proxy.Base, "--suite", "broker-rest",
		"--token", srv.Token("operator"), "--var", "token-court="+srv.Token("court"), "--header", "X-Correlation-ID: conformance-cli", "--out", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "FAIL  broker-rest/capabilities.json metadata") || !strings.Contains(stderr, "Content-Type is text/html") {
		t.Errorf("stderr:\n%s", stderr)
	}
	var sum struct {
		Passed bool `json:"passed"`
		Totals struct {
			Failed int `json:"failed"`
		} `json:"totals"`
	}
	raw, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Passed || sum.Totals.Failed != 1 {
		t.Errorf("summary: %s", raw)
	}
	html, _ := os.ReadFile(filepath.Join(out, "report.html"))
	if !strings.Contains(string(html), "Content-Type is text/html") || strings.Contains(string(html), srv.Token("operator")) {
		t.Error("the HTML report lacks the failure or shows the token")
	}
}

func TestConformanceRunSuiteFromDir(t *testing.T) {
	srv, _ := startBroker(t)
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("suite.json", `{"name": "local", "description": "A suite on disk"}`)
	write("a.json", `{"resourceType": "TestScript", "url": "https://example.org/a", "name": "a", "status": "draft",
	  "test": [{"name": "meta", "action": [
	    {"operation": {"type": {"code": "capabilities"}, "encodeRequestUrl": false}},
	    {"assert": {"response": "okay", "operator": "like", "warningOnly": false}}]}]}`)
	_, stderr, code := runConformance(t, "run", "--target", srv.Base, "--dir", dir)
	if code != 1 || !strings.Contains(stderr, "INVALID local/a.json") || !strings.Contains(stderr, "TestScript.test[0].action[1].assert.operator") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}

func TestConformanceUsageErrors(t *testing.T) {
	t.Setenv("HJB_STORE_URL", "")
	empty := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "--target is required"},
		{[]string{"run", "--target", "http://127.0.0.1:1/fhir", "--suite", "nope"}, `no suite "nope"`},
		{[]string{"run", "--target", "http://127.0.0.1:1/fhir", "--client", "gp"}, "--client needs --data-dir"},
		{[]string{"run", "--target", "http://127.0.0.1:1/fhir", "--token", "t", "--data-dir", "x"}, "not both"},
		{[]string{"run", "--target", "http://127.0.0.1:1/fhir", "--header", "no colon"}, `want "Name: value"`},
		{[]string{"run", "--target", "http://127.0.0.1:1/fhir", "--var", "novalue"}, "want NAME=VALUE"},
		{[]string{"run", "--target", "ftp://x/fhir"}, "not an http(s) URL"},
		{[]string{"check-capability", "--target", "http://127.0.0.1:1/fhir"}, "GET http://127.0.0.1:1/fhir/metadata"},
		// A directory without the target's store would mint tokens it refuses (401s).
		{[]string{"run", "--target", "http://127.0.0.1:1/fhir", "--client", "gp", "--data-dir", empty}, "no broker store in " + empty},
	}
	for _, c := range cases {
		_, stderr, code := runConformance(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

func TestConformanceList(t *testing.T) {
	out, _, code := runConformance(t, "list")
	if code != 0 || !strings.Contains(out, "broker-rest (6 scripts)") || !strings.Contains(out, "transaction atomicity") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestConformanceCheckCapability(t *testing.T) {
	srv, _ := startBroker(t)
	out, stderr, code := runConformance(t, "check-capability", "--target", srv.Base)
	if code != 0 || !strings.Contains(out, "broker-rest: the CapabilityStatement declares everything") {
		t.Fatalf("against the broker: exit %d\n%s%s", code, out, stderr)
	}

	// A server declaring only Patient read and search by name.
	cs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fhir/metadata" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType": "CapabilityStatement", "rest": [{"mode": "server",
		  "interaction": [{"code": "batch"}],
		  "resource": [{"type": "Patient", "interaction": [{"code": "read"}, {"code": "create"}],
		    "searchParam": [{"name": "name", "type": "string"}]}]}]}`))
	}))
	defer cs.Close()
	out, _, code = runConformance(t, "check-capability", "--target", cs.URL+"/fhir", "--suite", "broker-rest")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"interaction vread on Patient", "interaction patch on Patient", "search parameter family on Patient",
		"search parameter birthdate on Patient", "resource type Observation", "_include=Observation:subject on Observation",
		"interaction transaction on system", "conditionalCreate on Patient", "operation $validate on Patient",
		"used by crud.json TestScript.test[",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, notWant := range []string{"interaction read on Patient", "interaction batch on system", "search parameter name on Patient"} {
		if strings.Contains(out, notWant) {
			t.Errorf("output lists declared %q", notWant)
		}
	}
	js, _, code := runConformance(t, "check-capability", "--target", cs.URL+"/fhir", "--format", "json")
	var got []struct {
		Suite   string           `json:"suite"`
		Missing []map[string]any `json:"missing"`
	}
	if err := json.Unmarshal([]byte(js), &got); err != nil || code != 1 || len(got) == 0 || len(got[0].Missing) == 0 {
		t.Fatalf("json: exit %d, %v\n%s", code, err, js)
	}
}

func TestConformanceCheck(t *testing.T) {
	out, _, code := runConformance(t, "check")
	if code != 0 || !strings.Contains(out, "ok      broker-rest/crud.json") {
		t.Fatalf("shipped suites: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "suite.json"), []byte(`{"name": "x", "description": "d"}`), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"resourceType": "TestScript", "name": "a", "status": "draft",
	  "test": [{"name": "t", "action": [{"operation": {"type": {"code": "read"}, "resource": "Patient", "params": "/1", "encodeRequestUrl": false}}]}]}`), 0o644)
	out, _, code = runConformance(t, "check", "--dir", dir)
	if code != 1 || !strings.Contains(out, "INVALID x/a.json") || !strings.Contains(out, "TestScript.url: is required") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
