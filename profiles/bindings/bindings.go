// Package bindings holds the FHIR R4 (4.0.1) base specification's required bindings on coded
// elements that are not of type code (CodeableConcept, Coding), with the value sets they bind
// to, as data (r4.json) for the validator to enforce with its binding check.
//
// Elements of type code need no entry here: their required bindings are part of the R4 model
// (the structural check rejects a code outside them). Base R4 binds few CodeableConcepts with
// required strength, and their value sets are small, fixed and included whole, with their code
// systems' codes as published in R4 4.0.1 (the bindings are to version 4.0.1):
//
//   - AllergyIntolerance.clinicalStatus     allergyintolerance-clinical
//   - AllergyIntolerance.verificationStatus allergyintolerance-verification
//   - Condition.clinicalStatus              condition-clinical
//   - Condition.verificationStatus          condition-ver-status
//   - Measure.improvementNotation           measure-improvement-notation
//   - MeasureReport.improvementNotation     measure-improvement-notation
//
// Deliberately left out, because their value sets cannot be listed offline:
//
//   - Quantity-typed elements restricted to UCUM (the Age, Count, Distance and Duration types):
//     UCUM is a grammar, not a list. The R4 invariants on those types (age-1, cnt-3, dis-1,
//     drt-1) already require the UCUM system where a code is given.
//   - Maximum value set bindings to all-languages (Patient.communication.language and other
//     language elements bound preferred with a required maximum): BCP-47 is a grammar too.
//
// Later additions to these code systems (condition-clinical "unknown", added in HL7
// Terminology after R4) are not R4 4.0.1 codes and are not accepted.
//
// The package imports nothing from the validator, so that the validator can import it.
package bindings

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed r4.json
var r4JSON []byte

// Binding is one required binding of the base specification.
type Binding struct {
	// Path is the element bound, from its resource or data type: "Condition.clinicalStatus",
	// or a backbone element's type name and element ("Condition.stage.type").
	Path string `json:"path"`
	// ValueSet is the canonical URL of the value set, without version.
	ValueSet string `json:"valueSet"`
}

// ValueSet is an enumerated value set. Its JSON form matches the validator's ValueSet.
type ValueSet struct {
	URL     string    `json:"url"`
	Version string    `json:"version,omitempty"`
	Name    string    `json:"name,omitempty"`
	Include []Include `json:"include"`
}

// Include lists the codes one code system contributes.
type Include struct {
	System string    `json:"system"`
	Codes  []Concept `json:"codes"`
}

// Concept is one code with its display.
type Concept struct {
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Set is the bindings with the value sets they need.
type Set struct {
	Bindings  []Binding  `json:"bindings"`
	ValueSets []ValueSet `json:"valueSets"`
}

// R4 returns a fresh copy of the R4 required bindings. Every binding's value set is in the
// set and lists its codes: a value set that could only be accepted wholesale has no place here.
func R4() (*Set, error) {
	dec := json.NewDecoder(bytes.NewReader(r4JSON))
	dec.DisallowUnknownFields()
	var s Set
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("bindings: decoding r4.json: %w", err)
	}
	vsets := map[string]bool{}
	for _, vs := range s.ValueSets {
		if vs.URL == "" || len(vs.Include) == 0 {
			return nil, fmt.Errorf("bindings: r4.json: value set %q has no url or no include", vs.URL)
		}
		for _, in := range vs.Include {
			if in.System == "" || len(in.Codes) == 0 {
				return nil, fmt.Errorf("bindings: r4.json: value set %s includes %q without listing codes", vs.URL, in.System)
			}
		}
		vsets[vs.URL] = true
	}
	for _, b := range s.Bindings {
		if b.Path == "" || !vsets[b.ValueSet] {
			return nil, fmt.Errorf("bindings: r4.json: binding %q names value set %q, which is not in the file", b.Path, b.ValueSet)
		}
	}
	return &s, nil
}
