// Package searchparam holds the search parameters the broker supports, defined as data:
// each has a code, the resource types it applies to, a type and a FHIRPath expression that
// extracts the indexed values. Custom SearchParameter resources are added at run time.
package searchparam

// Type is a FHIR search parameter type.
type Type string

// The R4 search parameter types.
const (
	Number    Type = "number"
	Date      Type = "date"
	String    Type = "string"
	Token     Type = "token"
	Reference Type = "reference"
	Composite Type = "composite"
	Quantity  Type = "quantity"
	URI       Type = "uri"
	Special   Type = "special"
)

// Param is one search parameter definition.
type Param struct {
	// URL is the canonical URL of the SearchParameter, when it has one.
	URL string `json:"url,omitempty"`
	// Code is the name used in the query string, e.g. "identifier".
	Code string `json:"code"`
	// Base lists the resource types the parameter applies to; "Resource" means all.
	Base []string `json:"base"`
	Type Type     `json:"type"`
	// Expression is the FHIRPath expression that selects the values to index. It may span
	// several base types joined by "|"; the indexer evaluates it against each resource.
	Expression string `json:"expression,omitempty"`
	// Target lists the resource types a reference parameter may point to.
	Target []string `json:"target,omitempty"`
	// Description is shown in the CapabilityStatement.
	Description string `json:"description,omitempty"`
	// Components lists the parts of a composite parameter.
	Components []Component `json:"component,omitempty"`

	// perType caches ExpressionFor for each base, filled before the Param is shared.
	perType map[string]string
}

// Component is one part of a composite search parameter: the parameter that defines its
// type and the expression, relative to the composite's own expression, that selects it.
type Component struct {
	Definition string `json:"definition"`
	Expression string `json:"expression"`
}
