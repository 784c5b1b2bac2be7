package validate

// This file defines the profile format: a compact, JSON-serialisable subset of a FHIR
// StructureDefinition differential that the validator interprets. Profile data (UK Core) lives
// in profiles/ukcore as JSON files in this format.

// Profile constrains one resource type.
type Profile struct {
	// URL is the canonical URL, e.g. https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient.
	URL     string `json:"url"`
	Version string `json:"version"`
	Name    string `json:"name"`
	// Type is the resource type constrained, e.g. "Patient".
	Type string `json:"type"`
	// Base is the URL of the profile this one derives from (its rules apply too), or "" for a
	// profile on the base resource.
	Base string `json:"base,omitempty"`
	// Status is the publication status: active or draft.
	Status string `json:"status,omitempty"`
	// Elements constrain elements by FHIRPath-like dotted path from the resource type
	// ("Patient.identifier", "Observation.code.coding"). Choice elements use the stem
	// ("Observation.value"); a type restriction goes in Types.
	Elements []Element `json:"elements,omitempty"`
	// Invariants are FHIRPath rules evaluated on the resource.
	Invariants []Invariant `json:"invariants,omitempty"`
}

// Element constrains one element path.
type Element struct {
	Path string `json:"path"`
	// Min and Max override cardinality; Max "" means unchanged, "*" unbounded, "0" prohibited.
	Min *int   `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
	// Types restricts a choice element to these type codes ("Quantity", "CodeableConcept").
	Types []string `json:"types,omitempty"`
	// Fixed requires the value to equal this JSON value exactly; Pattern requires it to
	// contain this JSON value (FHIR pattern semantics: every element present in Pattern
	// must be present with the same value; arrays match when each pattern item matches some
	// item).
	Fixed   any `json:"fixed,omitempty"`
	Pattern any `json:"pattern,omitempty"`
	// Binding binds a coded element to a value set.
	Binding *Binding `json:"binding,omitempty"`
	// MustSupport elements are reported as information when absent.
	MustSupport bool `json:"mustSupport,omitempty"`
	// TargetProfiles restricts a Reference to resource types ("Patient", "Organization").
	TargetTypes []string `json:"targetTypes,omitempty"`
	// Slices partition a repeating element. Items that match no slice are allowed (open
	// slicing) unless Closed.
	Slices []Slice `json:"slices,omitempty"`
	Closed bool    `json:"closed,omitempty"`
	// Extensions constrain the extensions (by URL) allowed on this element.
	Extensions []ExtensionRule `json:"extensions,omitempty"`
	// Rules names built-in checks applied to each value: "nhs-number" (modulus 11 on
	// Identifier.value or a string), "ods-code" (ODS organisation/site code format).
	Rules []string `json:"rules,omitempty"`
}

// Slice is one named slice of a repeating element.
type Slice struct {
	Name string `json:"name"`
	// Discriminator selects the items of the slice: each entry is a relative path and the
	// value it must equal ("system": "https://fhir.nhs.uk/Id/nhs-number"), or, with an empty
	// value, a path that must exist.
	Discriminator map[string]string `json:"discriminator"`
	Min           int               `json:"min"`
	Max           string            `json:"max"`
	// Elements constrain the slice's items; paths are relative to the item ("value").
	Elements []Element `json:"elements,omitempty"`
	// MustSupport is reported as information when the slice has no item.
	MustSupport bool `json:"mustSupport,omitempty"`
}

// ExtensionRule constrains extensions with one URL on the element that carries them.
type ExtensionRule struct {
	URL string `json:"url"`
	Min int    `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
	// ValueTypes lists the allowed value[x] type codes ("CodeableConcept", "dateTime"); empty
	// for complex extensions checked by their Sub rules.
	ValueTypes []string `json:"valueTypes,omitempty"`
	// Binding binds the value to a value set.
	Binding *Binding `json:"binding,omitempty"`
	// Sub lists the sub-extensions of a complex extension.
	Sub []ExtensionRule `json:"sub,omitempty"`
	// Status "retired" marks an extension that is still accepted with a warning.
	Status string `json:"status,omitempty"`
}

// Binding binds a coded element to a value set.
type Binding struct {
	// Strength: required (not in the value set = error), extensible (warning), preferred and
	// example (not checked).
	Strength string `json:"strength"`
	ValueSet string `json:"valueSet"`
}

// Invariant is a FHIRPath rule with its key, as in the specification.
type Invariant struct {
	Key      string `json:"key"`
	Severity string `json:"severity"` // error or warning
	Human    string `json:"human"`
	// Path is the element the rule is on ("Observation", "Patient.contact"); the expression
	// is evaluated once per item at that path.
	Path       string `json:"path"`
	Expression string `json:"expression"`
}

// ValueSet is an offline value set: an explicit list of codes per system, or whole systems.
type ValueSet struct {
	URL     string `json:"url"`
	Version string `json:"version,omitempty"`
	Name    string `json:"name,omitempty"`
	// Include lists the concepts; an entry without Codes includes its whole code system
	// (every code of that system is accepted, e.g. SNOMED CT subsets this server cannot
	// expand offline).
	Include []Include `json:"include"`
	// Status "retired" values sets are still accepted with a warning.
	Status string `json:"status,omitempty"`
}

// Include is one system's part of a value set.
type Include struct {
	System string    `json:"system"`
	Codes  []Concept `json:"codes,omitempty"`
}

// Concept is one code with its display.
type Concept struct {
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}
