package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// consequenceEngine is an engine whose Tasks that move to completed complete the Task their
// focus names, or, moved to failed, make it invalid. It records every write OnWrite sees as
// "Type/id/version<Cause".
func consequenceEngine(t *testing.T, seen *[]string) *engine.Engine {
	t.Helper()
	cfg := testConfig(t)
	code := func(m map[string]any) string {
		s, _ := m["status"].(string)
		return s
	}
	cfg.OnWrite = func(_ context.Context, _ store.Tx, ev engine.WriteEvent) error {
		s := fmt.Sprintf("%s/%s/%d", ev.Stored.Type, ev.Stored.ID, ev.Stored.Version)
		if ev.Cause != nil {
			s += fmt.Sprintf("<%s/%s/%d", ev.Cause.Type, ev.Cause.ID, ev.Cause.Version)
		}
		*seen = append(*seen, s)
		return nil
	}
	cfg.Consequences = map[string]func(map[string]any, map[string]any) []engine.Consequence{"Task": func(prev, next map[string]any) []engine.Consequence {
		focus, _ := next["focus"].(map[string]any)
		ref, _ := focus["reference"].(string)
		target, ok := strings.CutPrefix(ref, "Task/")
		if !ok || code(prev) == code(next) {
			return nil
		}
		switch code(next) {
		case "completed":
			return []engine.Consequence{{Type: "Task", ID: target, Reason: "its part is done", Change: func(res map[string]any) bool {
				if code(res) == "completed" {
					return false
				}
				res["status"] = "completed"
				return true
			}}}
		case "failed":
			return []engine.Consequence{{Type: "Task", ID: target, Change: func(res map[string]any) bool {
				res["status"] = 5
				return true
			}}}
		}
		return nil
	}}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func part(id, status, focus string) string {
	return `{"resourceType":"Task","id":"` + id + `","status":"` + status + `","intent":"order","focus":{"reference":"` + focus + `"}}`
}

func TestConsequencesWriteInTheSameTransaction(t *testing.T) {
	var seen []string
	e := consequenceEngine(t, &seen)
	put := func(id, status, focus string, want int) {
		t.Helper()
		if resp, body := do(t, e, http.MethodPut, "Task/"+id, part(id, status, focus)); resp.Status != want {
			t.Fatalf("PUT Task/%s %s: %d, want %d: %v", id, status, resp.Status, want, body)
		}
	}
	put("whole", "requested", "Patient/p1", http.StatusCreated)
	put("p1", "requested", "Task/whole", http.StatusCreated)
	put("p1", "completed", "Task/whole", http.StatusOK)

	resp, whole := do(t, e, http.MethodGet, "Task/whole", "")
	if resp.Status != http.StatusOK || whole["status"] != "completed" || whole["meta"].(map[string]any)["versionId"] != "2" {
		t.Fatalf("Task/whole after its part was done: %d %v", resp.Status, whole)
	}
	// Indexed: the new version is found by its status.
	if _, b := do(t, e, http.MethodGet, "Task", "", "status", "completed", "_id", "whole"); entries(b) != 1 {
		t.Errorf("Task?status=completed&_id=whole found %d", entries(b))
	}
	// Recorded with a Provenance naming the causing version.
	_, provs := do(t, e, http.MethodGet, "Provenance", "")
	if entries(provs) != 1 {
		t.Fatalf("%d Provenances, want 1: %v", entries(provs), provs)
	}
	prov, err := resource.Decode([]byte(mustJSON(provs["entry"].([]any)[0].(map[string]any)["resource"])), resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{
		"target":   "Task/whole/_history/2",
		"entity":   "Task/p1/_history/2",
		"reason":   "its part is done",
		"activity": "UPDATE",
		"agent":    "hjbroker",
	} {
		var got any
		switch path {
		case "target":
			got = prov["target"].([]any)[0].(map[string]any)["reference"]
		case "entity":
			got = prov["entity"].([]any)[0].(map[string]any)["what"].(map[string]any)["reference"]
		case "reason":
			got = prov["reason"].([]any)[0].(map[string]any)["text"]
		case "activity":
			got = prov["activity"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
		case "agent":
			got = prov["agent"].([]any)[0].(map[string]any)["who"].(map[string]any)["display"]
		}
		if got != want {
			t.Errorf("Provenance %s = %v, want %v", path, got, want)
		}
	}
	// Routed: OnWrite saw the consequence with its cause, after the causing write.
	if got := strings.Join(seen, " "); !strings.Contains(got, "Task/p1/2 Task/whole/2<Task/p1/2") {
		t.Errorf("OnWrite saw %q", got)
	}

	// A target already as it should be is not written again.
	put("p2", "requested", "Task/whole", http.StatusCreated)
	put("p2", "completed", "Task/whole", http.StatusOK)
	if _, h := do(t, e, http.MethodGet, "Task/whole/_history", ""); entries(h) != 2 {
		t.Errorf("Task/whole has %d versions, want 2", entries(h))
	}
	// A missing target is nothing to change.
	put("p3", "requested", "Task/missing", http.StatusCreated)
	put("p3", "completed", "Task/missing", http.StatusOK)

	// A consequence that cannot be stored rolls the causing write back.
	put("other", "requested", "Patient/p1", http.StatusCreated)
	put("p4", "requested", "Task/other", http.StatusCreated)
	resp, body := do(t, e, http.MethodPut, "Task/p4", part("p4", "failed", "Task/other"))
	if resp.Status < 400 {
		t.Fatalf("a consequence that breaks its target: %d %v", resp.Status, body)
	}
	if _, p4 := do(t, e, http.MethodGet, "Task/p4", ""); p4["status"] != "requested" {
		t.Errorf("Task/p4 after the rolled-back write: %v", p4)
	}
	if _, other := do(t, e, http.MethodGet, "Task/other", ""); other["meta"].(map[string]any)["versionId"] != "1" {
		t.Errorf("Task/other after the rolled-back write: %v", other)
	}
}
