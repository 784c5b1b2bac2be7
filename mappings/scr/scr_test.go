package scr_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/mappings/mappingtest"
	"github.com/hjbroker/hjbroker/mappings/scr"
)

type input struct {
	DocumentID string         `json:"documentId"`
	Base       string         `json:"base"`
	Retrieved  time.Time      `json:"retrieved"`
	Patient    map[string]any `json:"patient"`
	Bundle     map[string]any `json:"bundle"`
}

func load(t *testing.T, path string) scr.Input {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	return scr.Input{Bundle: in.Bundle, DocumentID: in.DocumentID, Patient: in.Patient, Base: in.Base, Retrieved: in.Retrieved}
}

// TestGolden maps every testdata/*.scr.json, compares the document with its .ukcore.json
// golden file and checks it, and every entry on its own, under the broker's UK Core
// validator; every entry names its UK Core profile.
func TestGolden(t *testing.T) {
	v := mappingtest.Validator(t)
	for _, name := range mappingtest.Cases(t, ".scr.json") {
		t.Run(name, func(t *testing.T) {
			got, err := scr.Summary(load(t, filepath.Join("testdata", name+".scr.json")))
			if err != nil {
				t.Fatal(err)
			}
			mappingtest.GoldenJSON(t, filepath.Join("testdata", name+".ukcore.json"), got)
			mappingtest.ValidBundle(t, v, got)
			mappingtest.UKCoreProfiles(t, got)
		})
	}
}

// TestNarrativeKept checks what the goldens show, so a careless -update cannot hide it: the
// sections' XHTML is kept byte for byte, codes get a system, no allergy or medication
// resource is invented, and references point into the document.
func TestNarrativeKept(t *testing.T) {
	in := load(t, "testdata/gp-summary.scr.json")
	got, err := scr.Summary(in)
	if err != nil {
		t.Fatal(err)
	}
	src := in.Bundle["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["section"].([]any)
	entries := got["entry"].([]any)
	comp := entries[0].(map[string]any)["resource"].(map[string]any)
	if comp["resourceType"] != "Composition" || got["type"] != "document" {
		t.Fatalf("first entry %v of a %v Bundle", comp["resourceType"], got["type"])
	}
	out := comp["section"].([]any)
	if len(out) != len(src) {
		t.Fatalf("%d sections, want %d", len(out), len(src))
	}
	urls := map[string]bool{}
	for _, e := range entries {
		urls[e.(map[string]any)["fullUrl"].(string)] = true
		switch typ := e.(map[string]any)["resource"].(map[string]any)["resourceType"]; typ {
		case "AllergyIntolerance", "MedicationStatement", "MedicationRequest":
			t.Errorf("a %s was invented from narrative", typ)
		}
	}
	for i, s := range out {
		sm := s.(map[string]any)
		want := src[i].(map[string]any)["text"].(map[string]any)["div"]
		if sm["text"].(map[string]any)["div"] != want {
			t.Errorf("section %d narrative changed", i)
		}
		coding := sm["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)
		if coding["system"] != scr.SectionSystem {
			t.Errorf("section %d code %v has no system", i, coding)
		}
		for _, r := range listOf(sm["entry"]) {
			if ref := r.(map[string]any)["reference"].(string); !urls[ref] {
				t.Errorf("section %d entry %s is not in the document", i, ref)
			}
		}
	}
	if ref := comp["subject"].(map[string]any)["reference"]; ref != "Patient/pat-1" {
		t.Errorf("subject %v, want the broker's Patient", ref)
	}
	prov := entries[len(entries)-1].(map[string]any)["resource"].(map[string]any)
	if prov["resourceType"] != "Provenance" || !strings.Contains(mustJSON(prov), in.DocumentID) || !strings.Contains(mustJSON(prov), scr.SourceSystem) {
		t.Errorf("the last entry does not name the Spine SCR as source: %s", mustJSON(prov))
	}
}

func TestNoRecord(t *testing.T) {
	in := load(t, "testdata/gp-summary.scr.json")
	in.Bundle = map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 0}
	if _, err := scr.Summary(in); !errors.Is(err, scr.ErrNoRecord) {
		t.Errorf("empty SCR Bundle: %v, want ErrNoRecord", err)
	}
	in = load(t, "testdata/gp-summary.scr.json")
	delete(in.Patient, "id")
	if _, err := scr.Summary(in); err == nil {
		t.Error("a Patient without id was accepted")
	}
}

func listOf(v any) []any { l, _ := v.([]any); return l }

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
