package engine_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
)

// transitionEngine is an engine whose only Transitions hook forbids a Basic's code going
// back from "done" and records what it was shown.
func transitionEngine(t *testing.T, seen *[]string) *engine.Engine {
	t.Helper()
	code := func(m map[string]any) string {
		if m == nil {
			return "-"
		}
		return m["code"].(map[string]any)["text"].(string)
	}
	cfg := testConfig(t)
	cfg.Transitions = map[string]func(*engine.Access, map[string]any, map[string]any) error{"Basic": func(a *engine.Access, prev, next map[string]any) error {
		if a != nil {
			return outcome.New(http.StatusInternalServerError, "exception", "the test's writes are the broker's own")
		}
		*seen = append(*seen, code(prev)+">"+code(next))
		if prev != nil && code(prev) == "done" && code(next) != "done" {
			return outcome.At(http.StatusConflict, "business-rule", "Basic.code", "done is final")
		}
		return nil
	}}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func basic(id, code string) string {
	return `{"resourceType":"Basic","id":"` + id + `","code":{"text":"` + code + `"}}`
}

func TestTransitionsSeePreviousVersion(t *testing.T) {
	var seen []string
	e := transitionEngine(t, &seen)
	for _, step := range []struct {
		code string
		want int
	}{{"open", http.StatusCreated}, {"done", http.StatusOK}, {"open", http.StatusConflict}, {"done", http.StatusOK}} {
		resp, body := do(t, e, http.MethodPut, "Basic/b1", basic("b1", step.code))
		if resp.Status != step.want {
			t.Fatalf("PUT %s: %d, want %d: %v", step.code, resp.Status, step.want, body)
		}
		if step.want == http.StatusConflict && issuesAt(body, "Basic.code") == nil {
			t.Errorf("the refusal names no Basic.code: %v", body)
		}
	}
	// The refused version was not stored: version 3 is the second "done", and the last.
	resp, body := do(t, e, http.MethodGet, "Basic/b1/_history/3", "")
	if resp.Status != http.StatusOK || body["code"].(map[string]any)["text"] != "done" {
		t.Errorf("version 3: %d %v", resp.Status, body)
	}
	if resp, _ := do(t, e, http.MethodGet, "Basic/b1/_history/4", ""); resp.Status != http.StatusNotFound {
		t.Errorf("version 4 exists: %d", resp.Status)
	}
	if got := strings.Join(seen, " "); got != "->open open>done done>open done>done" {
		t.Errorf("transitions seen %q", got)
	}
	// Inside a transaction Bundle the hook runs too, and rolls the whole Bundle back.
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"resource":` + basic("b2", "new") + `,"request":{"method":"PUT","url":"Basic/b2"}},` +
		`{"resource":` + basic("b1", "reopened") + `,"request":{"method":"PUT","url":"Basic/b1"}}]}`
	resp, body = do(t, e, http.MethodPost, "", bundle)
	if resp.Status != http.StatusConflict {
		t.Fatalf("transaction: %d %v", resp.Status, body)
	}
	if resp, _ := do(t, e, http.MethodGet, "Basic/b2", ""); resp.Status != http.StatusNotFound {
		t.Errorf("Basic/b2 after the rolled-back transaction: %d", resp.Status)
	}
}
