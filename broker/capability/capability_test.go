package capability

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
)

const twoClients = `
version: 1
agencies:
  - id: ld
    ods: XLD01
    name: L and D
    kind: liaison-diversion
    clients:
      - id: ld-reader
        purposes: [TREAT]
        scopes: [system/Observation.rs]
      - id: ld-writer
        purposes: [CAREMGT]
        scopes: [system/Task.cu]
  - id: ops
    ods: XOPS1
    name: Operators
    kind: broker
    clients:
      - id: op
        purposes: [HSYSADMIN]
        scopes: [system/*.cruds]
sharing:
  - id: care
    agencyKinds: [liaison-diversion]
    purposes: [TREAT]
    allow: {types: [Observation]}
    deny: {labels: [PSY]}
`

func statements(t *testing.T) *Statements {
	t.Helper()
	cfg, err := config.Parse([]byte(twoClients), "test")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := auth.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, reg, map[string]any{"description": "SMART."})
}

func TestAgencyIsTheUnionOfItsClients(t *testing.T) {
	s := statements(t)
	v, err := s.View(nil, "agency-ld")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ  string
		perm byte
		want bool
	}{{"Observation", 'r', true}, {"Observation", 'c', false}, {"Task", 'c', true}, {"Task", 'u', true}, {"Task", 'r', false}, {"Patient", 's', false}} {
		if got := v.Scopes.Allows(c.typ, c.perm); got != c.want {
			t.Errorf("agency %s.%c = %v, want %v", c.typ, c.perm, got, c.want)
		}
	}
	w, err := s.View(nil, "client-ld-writer")
	if err != nil {
		t.Fatal(err)
	}
	if w.Scopes.Allows("Observation", 'r') || !w.Scopes.Allows("Task", 'u') {
		t.Error("the client statement is not held to the client's own scopes")
	}
	sec := v.Security
	if !strings.HasPrefix(sec["description"].(string), "SMART.") || len(sec["extension"].([]any)) != 2 {
		t.Errorf("security %v: want the server's with two purposes", sec)
	}
	if d := v.TypeDocumentation("Observation"); !strings.Contains(d, "care (purposes TREAT), except PSY") {
		t.Errorf("Observation: %q", d)
	}
	if d := w.TypeDocumentation("Observation"); !strings.Contains(d, "No sharing rule") {
		t.Errorf("for CAREMGT only no rule applies: %q", d)
	}
	if d := v.TypeDocumentation("Task"); !strings.Contains(d, "No sharing rule") {
		t.Errorf("Task: %q", d)
	}
}

func TestWhoMayRead(t *testing.T) {
	s := statements(t)
	reader := &engine.Access{ClientID: "ld-reader", AgencyID: "ld", AgencyKind: config.KindLiaisonDiversion}
	op := &engine.Access{ClientID: "op", AgencyID: "ops", AgencyKind: config.KindBroker}
	for _, c := range []struct {
		who    *engine.Access
		id     string
		status int
	}{
		{reader, "agency-ld", 0}, {reader, "client-ld-reader", 0}, {reader, "client-ld-writer", http.StatusForbidden},
		{reader, "agency-ops", http.StatusForbidden}, {reader, "agency-none", http.StatusNotFound},
		{reader, "client-none", http.StatusNotFound}, {reader, "ld", http.StatusNotFound}, {op, "client-ld-writer", 0},
	} {
		_, err := s.View(c.who, c.id)
		status := 0
		if oe, ok := err.(*outcome.Error); ok {
			status = oe.Status
		} else if err != nil {
			status = -1
		}
		if status != c.status {
			t.Errorf("%s reading %s: %d (%v), want %d", c.who.ClientID, c.id, status, err, c.status)
		}
	}
	var ids []string
	for _, v := range s.Views(reader) {
		ids = append(ids, v.ID)
	}
	if !slices.Equal(ids, []string{"agency-ld", "client-ld-reader"}) {
		t.Errorf("reader lists %v", ids)
	}
	if n := len(s.Views(op)); n != 5 {
		t.Errorf("operator lists %d statements, want 5", n)
	}
}

func TestIdentifier(t *testing.T) {
	for in, want := range map[string]string{"custody-hcp": "CustodyHcp", "gp": "Gp", "a.b_c9": "ABC9"} {
		if got := identifier(in); got != want {
			t.Errorf("identifier(%q) = %q, want %q", in, got, want)
		}
	}
}
