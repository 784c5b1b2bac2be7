package conformancetest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/testscript"
)

func TestProxyAppliesFaultsAndRewritesLinks(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host + "/fhir"
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Location", base+"/Patient/1/_history/1")
		w.Header().Set("ETag", `W/"1"`)
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"resourceType":"Bundle","link":[{"relation":"next","url":"%s/Patient?page=2"}],"gender":"male"}`, base)
	}))
	defer up.Close()
	p := NewProxy(t, up.URL+"/fhir",
		Fault{Name: "status", Method: "POST", Path: regexp.MustCompile(`^Patient$`), Request: "broken", SetStatus: 200,
			DropHeaders: []string{"ETag"}, SetHeaders: map[string]string{"Content-Type": "text/html"}},
		Fault{Name: "rewrite", Method: "GET", Query: "page=1", Rewrite: func(m map[string]any) map[string]any { m["gender"] = "robot"; return m }},
		Fault{Name: "never", Method: "DELETE"},
	)
	post := func(body string) *http.Response {
		resp, err := http.Post(p.Base+"/Patient", "application/fhir+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r := post(`{"x":"broken"}`)
	if r.StatusCode != 200 || r.Header.Get("ETag") != "" || r.Header.Get("Content-Type") != "text/html" {
		t.Errorf("fault not applied: %d %v", r.StatusCode, r.Header)
	}
	r = post(`{"x":"fine"}`)
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 201 || r.Header.Get("ETag") == "" {
		t.Errorf("a request the fault does not match was changed: %d %v", r.StatusCode, r.Header)
	}
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, p.URL+"/fhir/Patient/1") {
		t.Errorf("Location %q not rewritten to the proxy", loc)
	}
	if !strings.Contains(string(body), p.URL+"/fhir/Patient?page=2") {
		t.Errorf("links not rewritten to the proxy: %s", body)
	}
	g, err := http.Get(p.Base + "/Patient?page=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(g.Body)
	if !strings.Contains(string(body), `"gender":"robot"`) {
		t.Errorf("body not rewritten: %s", body)
	}
	if u := p.Unused(); len(u) != 1 || u[0] != "never" {
		t.Errorf("unused %v", u)
	}
}

// recorder is a testing.TB that keeps the errors ExpectFailures reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}
func (r *recorder) Failed() bool        { return len(r.errors) > 0 }
func (r *recorder) Logf(string, ...any) {}

func TestExpectFailures(t *testing.T) {
	res := &suite.Result{Scripts: []*testscript.ScriptResult{
		{File: "a.json", Tests: []testscript.TestResult{
			{Name: "one", Status: testscript.Pass},
			{Name: "two", Status: testscript.Fail, Message: "status was 200"},
			{Name: "three", Status: testscript.Errored, Message: "no connection"},
		}},
		{File: "b.json", Invalid: []testscript.Problem{{Path: "TestScript.url", Message: "is required"}}},
	}}
	if got := strings.Join(Failed(res), ","); got != "a.json/three,a.json/two,b.json/TestScript" {
		t.Fatalf("failed %s", got)
	}
	cases := []struct {
		name string
		want []string
		errs []string
	}{
		{"exact", []string{"a.json/two", "a.json/three", "b.json/TestScript"}, nil},
		{"unexpected", []string{"a.json/two", "b.json/TestScript"}, []string{"unexpected failure a.json/three: no connection"}},
		{"passed instead", []string{"a.json/one", "a.json/two", "a.json/three", "b.json/TestScript"}, []string{"a.json/one passed, but it should have failed"}},
		{"invalid script", []string{"a.json/two", "a.json/three"}, []string{"b.json is invalid: TestScript.url: is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			ExpectFailures(r, res, nil, c.want...)
			if strings.Join(r.errors, "\n") != strings.Join(c.errs, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(r.errors, "\n"), strings.Join(c.errs, "\n"))
			}
		})
	}
}
