package delivery

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hjbroker/hjbroker/broker/routing"
)

// transformFunc is a Transforms of one function.
type transformFunc func(routing.TransformInput) (map[string]any, error)

func (f transformFunc) Transform(_ context.Context, in routing.TransformInput) (map[string]any, error) {
	return f(in)
}

// A transform may withhold a delivery (no recipient may have it): it is recorded as
// withheld with the transform's reason, neither sent nor dead-lettered; and a transform that
// sends another resource than the one routed sends it under its own type and id.
func TestTransformWithholdsOrReplaces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		withhold bool
	}{{"withheld", true}, {"replaced", false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{mutate: func(o *Options) {
				o.Transforms = transformFunc(func(in routing.TransformInput) (map[string]any, error) {
					if tc.withhold {
						return nil, &routing.WithheldError{Reason: "no GP is known for " + in.Delivery.Patient}
					}
					return map[string]any{"resourceType": "Bundle", "id": "doc-" + in.Delivery.ResourceID, "type": "document"}, nil
				})
			}})
			h.st.setConsents("Patient/a", consent("Patient/a", "active"))
			h.st.put(observation("o1", "Patient/a", 1), 1)
			d := routing.Delivery{ID: "d1", Route: "r1", Destination: "court-ep", Agency: "court", Purpose: "HLEGAL", Event: "create",
				ResourceType: "Observation", ResourceID: "o1", Version: 1, Patient: "Patient/a", Transform: "doc"}
			h.enqueueDelivery(t, d)
			h.drain(t, 0)
			rs := h.rc.received()
			if tc.withhold {
				if len(rs) != 0 {
					t.Fatalf("%d sent, want none", len(rs))
				}
				logs := h.logs.FilterMessage("delivery withheld").All()
				if len(logs) != 1 || logs[0].ContextMap()["reason"] != "no GP is known for Patient/a" {
					t.Fatalf("withheld log %v", logs)
				}
				if dl, _ := h.q.DeadLetters(context.Background(), "court-ep", 10); len(dl) != 0 {
					t.Errorf("dead-lettered: %+v", dl)
				}
				return
			}
			if len(rs) != 1 {
				t.Fatalf("%d sent, want 1", len(rs))
			}
			e := obj(list(rs[0].JSON["entry"])[0])
			if req := obj(e["request"]); req["url"] != "Bundle/doc-o1" || obj(e["resource"])["type"] != "document" {
				t.Errorf("entry %v, want a PUT of Bundle/doc-o1", e)
			}
		})
	}
}

func (h *harness) enqueueDelivery(t *testing.T, d routing.Delivery) {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Enqueue(context.Background(), queueMessage(d, b)); err != nil {
		t.Fatal(err)
	}
}
