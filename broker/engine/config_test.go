package engine_test

import (
	"context"
	"testing"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/index"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/searchparam"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// testConfig is the smallest working engine configuration: a SQLite store in a temporary
// directory (closed at cleanup), the R4 search parameters, model and structure checker.
// Tests add the hooks they exercise.
func testConfig(t *testing.T) engine.Config {
	t.Helper()
	st, err := store.Open(context.Background(), "", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params, err := searchparam.NewR4()
	if err != nil {
		t.Fatal(err)
	}
	model := r4model.Load()
	checker, err := resource.NewChecker(64)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Config{Store: st, Checker: checker, Indexer: index.New(params, fhirpath.NewEngine(model)), Params: params, Types: model}
}
