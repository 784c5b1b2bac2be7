package engine

import (
	"context"
	"testing"
)

func TestServedOperationsMatchDefinitions(t *testing.T) {
	op := func(context.Context, *Request, string, string) (*Response, error) { return nil, nil }
	defs := []map[string]any{
		{"resourceType": "OperationDefinition", "id": "Resource-validate", "url": "u/Resource-validate", "code": "validate",
			"type": true, "instance": true, "resource": []any{"Resource"}},
		{"resourceType": "OperationDefinition", "id": "Patient-summary", "url": "u/Patient-summary", "code": "summary",
			"instance": true, "resource": []any{"Patient"}},
		// A type-level definition does not define an instance operation of the same name.
		{"resourceType": "OperationDefinition", "id": "Encounter-handback", "url": "u/Encounter-handback", "code": "handback",
			"type": true, "resource": []any{"Encounter"}},
		{"resourceType": "OperationDefinition", "id": "ingest", "url": "u/ingest", "code": "ingest", "system": true},
	}
	cfg := Config{Capability: CapabilityConfig{OperationDefinitions: defs}, Operations: map[string]Operation{
		OperationKey("Patient", true, "summary"):     op,
		OperationKey("Encounter", true, "handback"):  op,
		OperationKey("", false, "ingest"):            op,
		OperationKey("Observation", false, "ingest"): op, // a system definition is not a type one
	}}
	want := map[string]string{
		"Patient/{id}/$everything": "",
		"Resource/$validate":       "u/Resource-validate",
		"Resource/{id}/$validate":  "u/Resource-validate",
		"Patient/{id}/$summary":    "u/Patient-summary",
		"Encounter/{id}/$handback": "",
		"$ingest":                  "u/ingest",
		"Observation/$ingest":      "",
	}
	got := servedOperations(cfg)
	if len(got) != len(want) {
		t.Fatalf("got %d operations, want %d: %+v", len(got), len(want), got)
	}
	for _, o := range got {
		def, ok := want[o.Key()]
		if !ok {
			t.Errorf("unexpected operation %s", o.Key())
			continue
		}
		if o.Definition != def {
			t.Errorf("%s: definition %q, want %q", o.Key(), o.Definition, def)
		}
	}
}

func TestIndexDefinitionsRejectsDuplicates(t *testing.T) {
	d := map[string]any{"resourceType": "OperationDefinition", "id": "a", "url": "u/a", "code": "a", "system": true}
	if _, err := indexDefinitions([]map[string]any{d, d}); err == nil {
		t.Error("a definition given twice was accepted")
	}
	if _, err := indexDefinitions([]map[string]any{{"resourceType": "OperationDefinition", "id": "a b", "url": "x"}}); err == nil {
		t.Error("a bad id was accepted")
	}
}
