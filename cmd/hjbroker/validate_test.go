package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/engine"
)

func runValidate(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newValidateCmd()
	var out, errb bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var validateFixtures = map[string]string{
	"good/patient.json":   `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`,
	"bad/patient.json":    `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000000"}],"birthDate":"1990-13-01"}`,
	"bad/bundle.json":     `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1b5d7c1e-2f7e-4a49-9d3c-0d6b8b0d2a11","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:1b5d7c1e-2f7e-4a49-9d3c-0d6b8b0d2a12"},"valueString":"a","dataAbsentReason":{"text":"y"}}},{"fullUrl":"urn:uuid:1b5d7c1e-2f7e-4a49-9d3c-0d6b8b0d2a12","resource":{"resourceType":"Patient"}}]}`,
	"bad/broken.json":     `{"resourceType":`,
	"good/notes.txt":      `not json, not read`,
	"good/condition.json": `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"code":{"text":"low mood"}}`,
}

func TestValidateCommandJSON(t *testing.T) {
	dir := writeFiles(t, validateFixtures)
	stdout, stderr, err := runValidate(t, "--format", "json", dir)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	type line struct {
		File    string         `json:"file"`
		Valid   bool           `json:"valid"`
		Outcome map[string]any `json:"outcome"`
	}
	got := map[string]line{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not one JSON object per line: %v\n%s", err, sc.Text())
		}
		rel, _ := filepath.Rel(dir, l.File)
		got[rel] = l
	}
	want := map[string]bool{"good/patient.json": true, "good/condition.json": true, "bad/patient.json": false, "bad/bundle.json": false, "bad/broken.json": false}
	if len(got) != len(want) {
		t.Fatalf("files reported: %v", got)
	}
	for f, valid := range want {
		if got[f].Valid != valid || got[f].Outcome["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: valid=%v, want %v: %v", f, got[f].Valid, valid, got[f].Outcome)
		}
	}
	if s := mustMarshal(got["bad/bundle.json"].Outcome); !strings.Contains(s, "Bundle.entry[0].resource") || !strings.Contains(s, "obs-6") {
		t.Errorf("bundle entry issue missing: %s", s)
	}
	if !strings.Contains(stderr, "5 files: 2 valid, 3 invalid") {
		t.Errorf("summary: %q", stderr)
	}
}

func TestValidateCommandText(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.json": validateFixtures["good/patient.json"]})
	stdout, _, err := runValidate(t, filepath.Join(dir, "p.json"))
	if err != nil {
		t.Fatalf("valid file: %v", err)
	}
	if !strings.Contains(stdout, "p.json: valid") || !strings.Contains(stdout, "1 files: 1 valid, 0 invalid") {
		t.Errorf("text output: %s", stdout)
	}
	stdout, _, err = runValidate(t, "--profile", "https://example.org/Nope", filepath.Join(dir, "p.json"))
	if err == nil || !strings.Contains(stdout, "not-supported") {
		t.Errorf("unknown profile: %v\n%s", err, stdout)
	}
	if _, _, err := runValidate(t, "--format", "xml", dir); err == nil {
		t.Error("bad format accepted")
	}
}

// TestValidateCommandMatchesHTTP: the CLI and POST /fhir/{Type}/$validate give the same
// OperationOutcome for the same input.
func TestValidateCommandMatchesHTTP(t *testing.T) {
	node, err := app.New(context.Background(), app.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	dir := writeFiles(t, validateFixtures)
	for _, f := range []string{"good/patient.json", "bad/patient.json", "bad/bundle.json", "good/condition.json"} {
		p := filepath.Join(dir, f)
		stdout, _, _ := runValidate(t, "--format", "json", p)
		var l struct {
			Outcome map[string]any `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(strings.SplitN(stdout, "\n", 2)[0]), &l); err != nil {
			t.Fatal(err)
		}
		body, _ := os.ReadFile(p)
		var typ struct{ ResourceType string }
		json.Unmarshal(body, &typ) //nolint:errcheck // fixtures are JSON
		resp := node.Engine.Handle(context.Background(), &engine.Request{Method: http.MethodPost, Path: typ.ResourceType + "/$validate",
			Header: http.Header{"Content-Type": {"application/fhir+json"}}, Body: body, Base: "http://x/fhir"})
		if resp.Status != 200 {
			t.Fatalf("%s: $validate %d", f, resp.Status)
		}
		if a, b := mustMarshal(l.Outcome), mustMarshal(resp.Resource); a != b {
			t.Errorf("%s: CLI and HTTP differ\ncli:  %s\nhttp: %s", f, a, b)
		}
	}
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
