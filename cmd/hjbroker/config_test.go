package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/config"
)

func runConfig(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newConfigCmd()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestConfigLint(t *testing.T) {
	dir := t.TempDir()
	demo := writeFile(t, dir, "demo.yaml", string(config.DemoYAML()))
	out, err := runConfig(t, "lint", demo)
	if err != nil || out != demo+": OK\n" {
		t.Fatalf("demo: %q %v", out, err)
	}

	bad := writeFile(t, dir, "bad.yaml", `version: 1
agencies:
  - id: gp
    ods: XG1
    name: GP
    kind: gp
    endpoints:
      - {id: gp-ep, type: fhir-rest, url: "http://127.0.0.1:9/fhir"}
routes:
  - id: a
    on: {event: create, resource: Observation}
    criteria: status = = 'final'
    transform: hl7v2
    to: [gp]
    purpose: COC
`)
	out, err = runConfig(t, "lint", bad)
	if exitCode(err) != 1 {
		t.Fatalf("exit %v; output %q", err, out)
	}
	for _, want := range []string{bad + ":12: routes[0].criteria: FHIRPath", bad + `:13: routes[0].transform: unknown transform "hl7v2"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	schema := writeFile(t, dir, "schema.yaml", "version: 1\nagencies:\n  - id: gp\n    ods: XG1\n    name: GP\n    kind: surgery\n")
	out, err = runConfig(t, "lint", schema)
	if exitCode(err) != 1 || !strings.Contains(out, schema+":6: agencies[0].kind: ") {
		t.Fatalf("schema problem: %v %q", err, out)
	}

	if _, err := runConfig(t, "lint", filepath.Join(dir, "missing.yaml")); exitCode(err) != -1 {
		t.Fatalf("missing file: %v", err)
	}
}

func TestConfigTest(t *testing.T) {
	out, err := runConfig(t, "test", "../../docs/routes/demo-tests.yaml")
	if err != nil || strings.Contains(out, "FAIL") || !strings.Contains(out, " 0 failed") {
		t.Fatalf("demo route tests: %v\n%s", err, out)
	}

	dir := t.TempDir()
	failing := writeFile(t, dir, "failing.yaml", `config: builtin:demo
cases:
  - name: flag to the gp
    event: {kind: create, sourceAgency: custody-hcp, resource: {"resourceType": "Flag", "id": "f1"}}
    expect: [{route: custody-clinical-to-ld, destination: gp-fhir, purpose: TREAT}]
`)
	out, err = runConfig(t, "test", "../../docs/routes/demo-tests.yaml", failing)
	if exitCode(err) != 1 {
		t.Fatalf("exit %v\n%s", err, out)
	}
	for _, want := range []string{
		"FAIL  flag to the gp (" + failing + ":3)",
		"- missing:    {route: custody-clinical-to-ld, destination: gp-fhir, purpose: TREAT}",
		"+ unexpected: {route: custody-clinical-to-ld, destination: ld-team-fhir, purpose: TREAT}",
		failing + ": 0 passed, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A test file whose configuration has problems reports them and runs nothing.
	cfg := writeFile(t, dir, "cfg.yaml", "version: 1\nagencies:\n  - id: gp\n    ods: XG1\n    name: GP\n    kind: gp\nroutes:\n  - id: a\n    on: {event: create, resource: Flag}\n    to: [gp]\n    purpose: COC\n")
	suite := writeFile(t, dir, "suite.yaml", "config: cfg.yaml\ncases:\n  - name: a\n    event: {kind: delete, resourceType: Flag}\n    expect: []\n")
	out, err = runConfig(t, "test", suite)
	if exitCode(err) != 1 || !strings.Contains(out, cfg+":10: routes[0].to: no endpoint") || strings.Contains(out, "PASS") {
		t.Fatalf("exit %v\n%s", err, out)
	}
}
