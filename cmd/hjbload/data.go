package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// idSystem is the identifier system of every generated resource.
const idSystem = "https://hjbroker.example/Id/load"

// obsPerPatient Observations follow each Patient in a generated Bundle.
const obsPerPatient = 4

// generator builds resources whose identifier values are unique for the run.
type generator struct {
	run string // distinguishes runs against the same store
}

func (g generator) patient(tag string, i int) map[string]any {
	return map[string]any{
		"resourceType": "Patient",
		"identifier":   []any{map[string]any{"system": idSystem, "value": g.patientIdentifier(tag, i)}},
		"name":         []any{map[string]any{"family": "Load", "given": []any{fmt.Sprintf("P%d", i)}}},
		"gender":       []string{"male", "female"}[i%2],
		"birthDate":    fmt.Sprintf("19%02d-%02d-%02d", 40+i%60, 1+i%12, 1+i%28),
	}
}

func (g generator) patientIdentifier(tag string, i int) string {
	return fmt.Sprintf("%s-%s-p%d", g.run, tag, i)
}

func (g generator) observation(tag string, i int, subject string) map[string]any {
	return map[string]any{
		"resourceType": "Observation",
		"status":       "final",
		"identifier":   []any{map[string]any{"system": idSystem, "value": fmt.Sprintf("%s-%s-o%d", g.run, tag, i)}},
		"code": map[string]any{"coding": []any{map[string]any{
			"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}}},
		"subject":           map[string]any{"reference": subject},
		"effectiveDateTime": fmt.Sprintf("2025-%02d-%02dT10:%02d:00Z", 1+i%12, 1+i%28, i%60),
		"valueQuantity": map[string]any{"value": 60 + i%40, "unit": "beats/minute",
			"system": "http://unitsofmeasure.org", "code": "/min"},
	}
}

// bundle builds a transaction of n entries: Patients, each followed by obsPerPatient
// Observations that reference it by its urn:uuid fullUrl.
func (g generator) bundle(tag string, n int) []byte {
	entries := make([]any, 0, n)
	var patient string
	for i := 0; len(entries) < n; i++ {
		full := "urn:uuid:" + fakeUUID(g.run+tag, i)
		if i%(obsPerPatient+1) == 0 {
			patient = full
			entries = append(entries, map[string]any{"fullUrl": full, "resource": g.patient(tag, i),
				"request": map[string]any{"method": "POST", "url": "Patient"}})
			continue
		}
		entries = append(entries, map[string]any{"fullUrl": full, "resource": g.observation(tag, i, patient),
			"request": map[string]any{"method": "POST", "url": "Observation"}})
	}
	return mustJSON(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

// fakeUUID is a well-formed version-4 UUID, unique per (seed, i) within a Bundle.
func fakeUUID(seed string, i int) string {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(seed) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(h), uint16(h>>32), i>>12&0xfff, i&0xfff, h>>16&0xffffffffffff)
}

func mustJSON(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // only generated maps of strings and numbers are encoded
	}
	return raw
}

// runTag is a short random tag for identifier values.
func runTag() string { return fmt.Sprintf("r%08x", rand.Uint32()) }
