package routing

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
)

func TestFHIRMessageTransform(t *testing.T) {
	tr := NewTransforms()
	d := Delivery{ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Transform: TransformFHIRMessage, Event: "create",
		ResourceType: "ServiceRequest", ResourceID: "sr1", CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	in := TransformInput{
		Delivery: d,
		Resource: map[string]any{"resourceType": "ServiceRequest", "id": "sr1"},
		Endpoint: config.Endpoint{ID: "prob-ep", URL: "https://probation.example/fhir"},
		Agency:   config.Agency{ID: "prob", ODS: "XP1", Name: "Probation"},
		Source:   &config.Agency{ID: "ld", ODS: "XL1", Name: "L and D"},
		BaseURL:  "https://broker.example/fhir",
	}
	out, err := tr.Apply(in)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := tr.Apply(in)
	if !reflect.DeepEqual(out, again) {
		t.Error("two attempts of one delivery built different messages")
	}
	b, _ := json.Marshal(out)
	var got struct {
		ResourceType, ID, Type, Timestamp string
		Entry                             []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceType != "Bundle" || got.Type != "message" || got.ID != d.ID || got.Timestamp != "2025-01-02T03:04:05Z" || len(got.Entry) != 2 {
		t.Fatalf("bundle: %s", b)
	}
	h := got.Entry[0].Resource
	if h["resourceType"] != "MessageHeader" || got.Entry[1].FullURL != "https://broker.example/fhir/ServiceRequest/sr1" {
		t.Fatalf("entries: %s", b)
	}
	focus := h["focus"].([]any)[0].(map[string]any)["reference"]
	if focus != got.Entry[1].FullURL {
		t.Errorf("focus %v is not the resource entry", focus)
	}
	if ev := h["eventCoding"].(map[string]any); ev["system"] != SystemRoutingEvent || ev["code"] != "create" {
		t.Errorf("eventCoding %v", ev)
	}
	dest := h["destination"].([]any)[0].(map[string]any)
	if dest["endpoint"] != "https://probation.example/fhir" || dest["receiver"].(map[string]any)["identifier"].(map[string]any)["value"] != "XP1" {
		t.Errorf("destination %v", dest)
	}
	if h["sender"].(map[string]any)["identifier"].(map[string]any)["value"] != "XL1" {
		t.Errorf("sender %v", h["sender"])
	}

	// A delete has no resource: the header alone, without focus.
	in.Resource = nil
	out, _ = tr.Apply(in)
	entries := out["entry"].([]any)
	if len(entries) != 1 || entries[0].(map[string]any)["resource"].(map[string]any)["focus"] != nil {
		t.Errorf("delete message: %v", out)
	}
}

func TestTransformsRegistry(t *testing.T) {
	tr := NewTransforms()
	res := map[string]any{"resourceType": "Flag"}
	for _, name := range []string{"", TransformNone} {
		out, err := tr.Apply(TransformInput{Delivery: Delivery{Transform: name}, Resource: res})
		if err != nil || !reflect.DeepEqual(out, res) {
			t.Errorf("%q: %v %v", name, out, err)
		}
	}
	if _, err := tr.Apply(TransformInput{Delivery: Delivery{Transform: "gp2gp"}}); err == nil {
		t.Error("an unknown transform applied")
	}
	gp := func(in TransformInput) (map[string]any, error) { return map[string]any{"wrapped": in.Resource}, nil }
	if err := tr.Register("gp2gp", gp); err != nil {
		t.Fatal(err)
	}
	if err := tr.Register("gp2gp", gp); err == nil {
		t.Error("registered a name twice")
	}
	if err := tr.Register("GP 2 GP", gp); err == nil {
		t.Error("registered a malformed name")
	}
	if got := tr.Names(); !reflect.DeepEqual(got, []string{"fhir-message", "gp-handback", "gp2gp", "none"}) {
		t.Errorf("names %v", got)
	}
	// A node-only transform fails until a node provides it, once.
	if _, err := tr.Apply(TransformInput{Delivery: Delivery{Transform: TransformGPHandback}}); err == nil {
		t.Error("the gp-handback placeholder applied")
	}
	if err := tr.Register(TransformGPHandback, gp); err != nil {
		t.Fatal(err)
	}
	if out, err := tr.Apply(TransformInput{Delivery: Delivery{Transform: TransformGPHandback}, Resource: map[string]any{"x": 1}}); err != nil || out["wrapped"] == nil {
		t.Errorf("provided gp-handback: %v %v", out, err)
	}
	if err := tr.Register(TransformGPHandback, gp); err == nil {
		t.Error("provided gp-handback twice")
	}
	// A router accepts routes naming it once it is registered.
	cfg := parse(t, agenciesYAML+"routes:\n  - id: x\n    on: {event: create, resource: Flag}\n    to: [gp1]\n    transform: gp2gp\n    purpose: COC\n")
	if _, err := New(cfg, testEngine); err == nil {
		t.Error("default registry accepted gp2gp")
	}
	if _, err := New(cfg, testEngine, WithTransforms(tr)); err != nil {
		t.Error(err)
	}
}
