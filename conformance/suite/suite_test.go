package suite

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hjbroker/hjbroker/conformance/testscript"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

const metadataScript = `{"resourceType": "TestScript", "url": "https://example.org/%s", "name": "%s", "status": "active",
  "test": [{"name": "meta", "action": [
    {"operation": {"type": {"code": "capabilities"}, "encodeRequestUrl": false}},
    {"assert": {"headerField": "X-Suite", "value": "from-manifest", "direction": "request", "warningOnly": false}}]}]}`

func script(name string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(strings.ReplaceAll(metadataScript, "%s", name))}
}

func TestLoadAll(t *testing.T) {
	fsys := fstest.MapFS{
		"beta/suite.json":        {Data: []byte(`{"name": "beta", "description": "Second", "scripts": ["z.json", "a.json"]}`)},
		"beta/a.json":            script("a"),
		"beta/z.json":            script("z"),
		"alpha/suite.json":       {Data: []byte(`{"name": "alpha", "description": "First", "client": "gp", "headers": {"X-Suite": "from-manifest"}}`)},
		"alpha/2.json":           script("two"),
		"alpha/1.json":           script("one"),
		"alpha/fixtures/p.json":  {Data: []byte(`{"resourceType": "Patient"}`)},
		"not-a-suite/readme.txt": {Data: []byte("no manifest here")},
		"stray.json":             {Data: []byte(`{}`)},
	}
	all, err := LoadAll(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "alpha" || all[1].Name != "beta" {
		t.Fatalf("suites %v", all)
	}
	if got := strings.Join(all[0].Scripts, ","); got != "1.json,2.json" {
		t.Errorf("alpha scripts %s: want every top-level JSON file in order", got)
	}
	if got := strings.Join(all[1].Scripts, ","); got != "z.json,a.json" {
		t.Errorf("beta scripts %s: want the manifest's order", got)
	}
	if all[0].Client != "gp" {
		t.Errorf("client %q", all[0].Client)
	}
	got, err := Find(all, []string{"beta"})
	if err != nil || len(got) != 1 || got[0].Name != "beta" {
		t.Fatalf("find: %v %v", got, err)
	}
	if _, err := Find(all, []string{"gamma"}); err == nil || !strings.Contains(err.Error(), "suites: alpha, beta") {
		t.Errorf("find unknown: %v", err)
	}
}

func TestLoadRejectsBadManifests(t *testing.T) {
	cases := []struct {
		name, manifest, want string
	}{
		{"no name", `{"description": "d"}`, "name is required"},
		{"name is not the folder", `{"name": "other", "description": "d"}`, `must be the folder's name "s"`},
		{"no description", `{"name": "s"}`, "description is required"},
		{"unknown field", `{"name": "s", "description": "d", "color": "red"}`, `unknown field "color"`},
		{"listed script missing", `{"name": "s", "description": "d", "scripts": ["gone.json"]}`, "lists gone.json"},
		{"not JSON", `{`, "suite.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{"s/suite.json": {Data: []byte(c.manifest)}, "s/a.json": script("a")}
			_, err := LoadAll(fsys)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	if _, err := Load(fstest.MapFS{"s/suite.json": {Data: []byte(`{"name": "s", "description": "d"}`)}}, "s"); err == nil || !strings.Contains(err.Error(), "no TestScripts") {
		t.Errorf("empty suite: %v", err)
	}
}

func TestRunAppliesManifestHeadersAndReportsUnreadableScripts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType": "CapabilityStatement"}`))
	}))
	defer srv.Close()
	fsys := fstest.MapFS{
		"s/suite.json": {Data: []byte(`{"name": "s", "description": "d", "headers": {"X-Suite": "from-manifest"}}`)},
		"s/a.json":     script("a"),
		"s/b.json":     {Data: []byte(`{"resourceType": "Patient"}`)},
	}
	s, err := Load(fsys, "s")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background(), testscript.Config{Base: srv.URL + "/fhir", FHIRPath: fhirpath.NewEngine(r4model.Load())})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Scripts) != 2 {
		t.Fatalf("%d scripts", len(res.Scripts))
	}
	if a := res.Scripts[0]; !a.Passed() {
		t.Errorf("a.json: %+v", a.Tests)
	}
	if b := res.Scripts[1]; len(b.Invalid) != 1 || b.Invalid[0].Path != "resourceType" {
		t.Errorf("b.json: %+v", b.Invalid)
	}
	if res.Passed() {
		t.Error("a suite with an invalid script passed")
	}
}

func TestTokenVariables(t *testing.T) {
	s := &Suite{Manifest: Manifest{Name: "s", Clients: []string{"court", "gp"}}}
	var asked []string
	vars, err := s.TokenVariables(func(c string) (string, error) { asked = append(asked, c); return "tok-" + c, nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 2 || vars["token-court"] != "tok-court" || vars["token-gp"] != "tok-gp" || strings.Join(asked, ",") != "court,gp" {
		t.Fatalf("vars %v, asked %v", vars, asked)
	}
	if _, err := s.TokenVariables(func(c string) (string, error) { return "", errors.New("no such client") }); err == nil ||
		!strings.Contains(err.Error(), "token for court: no such client") {
		t.Fatalf("err %v", err)
	}
}
