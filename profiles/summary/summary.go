// Package summary holds, for every FHIR R4 (4.0.1) resource type, the
// top-level elements whose definition is marked isSummary, so a server can
// answer _summary=true without loading the full StructureDefinitions.
//
// Element names are JSON names with any choice suffix removed ("value" for
// Observation.value[x]); a caller pruning a resource must match every
// "value*" variant itself. The lists include the summary elements inherited
// from Resource (id, meta, implicitRules) but nothing from DomainResource,
// none of whose elements are summary in R4. Mandatory elements that are not
// summary are not listed: the caller adds them.
package summary

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
)

//go:embed r4.json
var r4JSON []byte

// FHIRVersion is the specification version the embedded data describes.
const FHIRVersion = "4.0.1"

// elementName accepts a bare JSON element name: no path, no "[x]".
var elementName = regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`)

// Set answers which top-level elements of a resource type are summary
// elements. It is read-only after Load and safe for concurrent use.
type Set struct {
	byType map[string][]string
	lookup map[string]map[string]struct{}
	types  []string
}

type document struct {
	FHIRVersion string              `json:"fhirVersion"`
	Resources   map[string][]string `json:"resources"`
}

// Load parses the embedded R4 summary table.
func Load() (*Set, error) {
	return parse(r4JSON)
}

func parse(data []byte) (*Set, error) {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("summary: decoding table: %w", err)
	}
	if doc.FHIRVersion != FHIRVersion {
		return nil, fmt.Errorf("summary: table is for FHIR %q, want %q", doc.FHIRVersion, FHIRVersion)
	}
	if len(doc.Resources) == 0 {
		return nil, fmt.Errorf("summary: table has no resource types")
	}
	s := &Set{
		byType: make(map[string][]string, len(doc.Resources)),
		lookup: make(map[string]map[string]struct{}, len(doc.Resources)),
		types:  make([]string, 0, len(doc.Resources)),
	}
	for rt, elems := range doc.Resources {
		seen := make(map[string]struct{}, len(elems))
		for _, e := range elems {
			if !elementName.MatchString(e) {
				return nil, fmt.Errorf("summary: %s: invalid element name %q", rt, e)
			}
			if _, dup := seen[e]; dup {
				return nil, fmt.Errorf("summary: %s: duplicate element %q", rt, e)
			}
			seen[e] = struct{}{}
		}
		s.byType[rt] = slices.Clone(elems)
		s.lookup[rt] = seen
		s.types = append(s.types, rt)
	}
	slices.Sort(s.types)
	return s, nil
}

// SummaryElements returns the summary element names of resourceType in
// definition order, or nil if the type is unknown. The slice is a copy.
func (s *Set) SummaryElements(resourceType string) []string {
	elems, ok := s.byType[resourceType]
	if !ok {
		return nil
	}
	return slices.Clone(elems)
}

// IsSummary reports whether element (a JSON name without choice suffix) is a
// summary element of resourceType.
func (s *Set) IsSummary(resourceType, element string) bool {
	_, ok := s.lookup[resourceType][element]
	return ok
}

// Types returns every resource type in the table, sorted.
func (s *Set) Types() []string {
	return slices.Clone(s.types)
}
