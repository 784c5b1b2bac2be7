package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/resource"
)

// The statement names the base it was asked for, also for more bases than are cached.
func TestCapabilityStatementPerBase(t *testing.T) {
	e := newNode(t, "")
	get := func(base, path string) map[string]any {
		t.Helper()
		resp := e.Handle(context.Background(), &engine.Request{Method: http.MethodGet, Path: path, Base: base})
		if resp.Status != http.StatusOK {
			t.Fatalf("GET %s at %s: %d", path, base, resp.Status)
		}
		m, err := resource.Decode(resp.Body, resource.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for i := range 20 {
		for range 2 {
			base := fmt.Sprintf("http://host-%d.example/fhir", i)
			for _, path := range []string{"metadata", "CapabilityStatement/hjbroker"} {
				cs := get(base, path)
				impl, _ := cs["implementation"].(map[string]any)
				if impl["url"] != base || cs["id"] != "hjbroker" {
					t.Fatalf("%s at %s: implementation %v, id %v", path, base, impl, cs["id"])
				}
			}
		}
	}
}
