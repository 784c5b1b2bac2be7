package config

import (
	"errors"
	"strings"
	"testing"
)

func TestDemoParses(t *testing.T) {
	c, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"custody-hcp", "ld-team", "court", "probation", "gp", "operator"} {
		if _, _, ok := c.Client(id); !ok {
			t.Errorf("demo has no client %q", id)
		}
	}
	cl, ag, _ := c.Client("operator")
	if ag.Kind != KindBroker || cl.Scopes[0] != "system/*.cruds" {
		t.Errorf("operator client: %+v in %+v", cl, ag)
	}
}

func TestErrorsNameThePathAndLine(t *testing.T) {
	cases := []struct {
		name, yaml, path string
		line             int
	}{
		{"bad kind", "version: 1\nagencies:\n  - id: a\n    ods: X1A\n    name: A\n    kind: police\n", "agencies[0].kind", 6},
		{"bad scope", "version: 1\nagencies:\n  - id: a\n    ods: X1A\n    name: A\n    kind: gp\n    clients:\n      - id: c\n        scopes: [system/Patient.rx]\n", "agencies[0].clients[0].scopes[0]", 9},
		{"duplicate agency", "version: 1\nagencies:\n  - id: a\n    ods: X1A\n    name: A\n    kind: gp\n  - id: a\n    ods: X1B\n    name: B\n    kind: court\n", "agencies[1].id", 7},
		{"unknown key", "version: 1\nagencies:\n  - id: a\n    ods: X1A\n    name: A\n    kind: gp\n    colour: red\n", "agencies[0]", 3},
		{"unknown agency in sharing", "version: 1\nagencies:\n  - id: a\n    ods: X1A\n    name: A\n    kind: gp\nsharing:\n  - id: s\n    agencies: [b]\n    purposes: [TREAT]\n    allow: {types: ['*']}\n", "sharing[0].agencies[0]", 9},
		{"missing agencies", "version: 1\n", "(root)", 1},
		{"not yaml", "version: [1\n", "(file)", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "test.yaml")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			found := false
			for _, p := range ce.Problems {
				if p.Path == tc.path && (tc.line == 0 || p.Line == tc.line) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no problem at %s line %d in:\n%v", tc.path, tc.line, err)
			}
			if !strings.Contains(err.Error(), "test.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}
