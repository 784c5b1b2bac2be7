// Package invariants holds the FHIR R4 (4.0.1) core invariants (the constraint keys such as
// ele-1, dom-3, pat-1, bdl-7) as data, for the validator to evaluate with the FHIRPath engine.
//
// The set covers the base types every element and resource inherits (Element, Extension,
// DomainResource), the common data types, and the resources this broker handles; see r4.json.
// It deliberately imports nothing from the validator so that the validator can import it.
package invariants

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed r4.json
var r4JSON []byte

// Invariant is one FHIRPath rule from the specification. Its JSON form matches the
// validator's profile format.
type Invariant struct {
	// Key is the specification's constraint key, e.g. "obs-6".
	Key string `json:"key"`
	// Severity is "error" or "warning" (the specification's best-practice guidelines).
	Severity string `json:"severity"`
	// Human is the specification's description of the rule.
	Human string `json:"human"`
	// Path is where the rule sits, and so what the expression is evaluated on, once per item:
	//   - a resource type ("Observation") or the abstract "DomainResource" (every resource
	//     that is not Bundle, Binary or Parameters);
	//   - a data type ("Period", "Quantity", "Timing.repeat") or "Element" (every element),
	//     applying wherever a value of that type occurs;
	//   - an element path from a type ("Patient.contact", "Organization.address",
	//     "Narrative.div"), which for a repeating element means each repetition.
	// Backbone paths are also the type names the r4model package gives backbone types.
	Path string `json:"path"`
	// Expression is the FHIRPath expression exactly as published.
	Expression string `json:"expression"`
}

// R4 returns a fresh copy of the R4 invariants, in the order of r4.json: base types, data
// types, then resources.
func R4() ([]Invariant, error) {
	dec := json.NewDecoder(bytes.NewReader(r4JSON))
	dec.DisallowUnknownFields()
	var out []Invariant
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("invariants: decoding r4.json: %w", err)
	}
	for i, inv := range out {
		if inv.Key == "" || inv.Path == "" || inv.Expression == "" {
			return nil, fmt.Errorf("invariants: r4.json entry %d (%q) lacks key, path or expression", i, inv.Key)
		}
		if inv.Severity != "error" && inv.Severity != "warning" {
			return nil, fmt.Errorf("invariants: %s: severity %q is not error or warning", inv.Key, inv.Severity)
		}
	}
	return out, nil
}
