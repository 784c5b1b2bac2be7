// Package r4model is the FHIR R4 type model: every resource, data type, primitive and backbone
// element with its elements, cardinality, choice types and bindings. It is derived by reflection
// from the google/fhir R4 protocol buffer descriptors, so it follows the published
// StructureDefinitions without hand-written tables. The FHIRPath engine, the validator and the
// search indexer share it.
//
// A Model is immutable once built and safe for concurrent use.
package r4model

import (
	"sort"
	"strings"
)

// Kind says what sort of FHIR type a Type is.
type Kind uint8

// The kinds of FHIR types.
const (
	// Primitive types hold a single JSON value (string, integer, date, ...).
	Primitive Kind = iota + 1
	// Complex types are the reusable data types (HumanName, Quantity, Reference, ...).
	Complex
	// Resource types, including the abstract Resource and DomainResource.
	Resource
	// Backbone types are the anonymous element groups declared inside a resource or data
	// type (Patient.contact, Observation.component, Timing.repeat).
	Backbone
)

func (k Kind) String() string {
	switch k {
	case Primitive:
		return "primitive"
	case Complex:
		return "complex"
	case Resource:
		return "resource"
	case Backbone:
		return "backbone"
	}
	return "unknown"
}

// Type is one FHIR type.
type Type struct {
	// Name is the FHIR type name ("Patient", "HumanName", "dateTime"); backbone types are
	// named by the path that declares them ("Patient.contact").
	Name string
	Kind Kind
	// Abstract is set for Resource, DomainResource, Element and BackboneElement.
	Abstract bool
	// BaseName is the type this one specialises ("DomainResource", "Element", "Quantity",
	// "string"); empty for the roots Resource and Element.
	BaseName string
	// URL is the StructureDefinition canonical URL; empty for backbone types.
	URL string
	// Profile is set for constraint profiles generated as types of their own
	// (SimpleQuantity, MoneyQuantity): instances carry BaseName as their type.
	Profile bool
	// Elements are the type's elements in definition order, inherited ones included.
	Elements []*Element

	base   *Type
	byName map[string]*Element
	byJSON map[string]Match
}

// Base returns the type this one specialises, or nil for a root type.
func (t *Type) Base() *Type { return t.base }

// Element returns the element with the given FHIR name. For a choice element the name is the
// one without the type suffix ("value" for Observation.value[x]).
func (t *Type) Element(name string) (*Element, bool) {
	e, ok := t.byName[name]
	return e, ok
}

// Lookup resolves a JSON property name, including the type-suffixed names of choice elements
// ("valueQuantity"), to the element and the type it carries.
func (t *Type) Lookup(jsonName string) (Match, bool) {
	m, ok := t.byJSON[jsonName]
	return m, ok
}

// IsPrimitive reports whether t is a FHIR primitive type.
func (t *Type) IsPrimitive() bool { return t.Kind == Primitive }

// Is reports whether t is the type named name or specialises it.
func (t *Type) Is(name string) bool {
	for x := t; x != nil; x = x.base {
		if x.Name == name {
			return true
		}
	}
	return false
}

// SystemType is the FHIRPath System type a primitive maps to ("String", "Integer",
// "Decimal", "Boolean", "Date", "DateTime", "Time"); empty for non-primitives.
func (t *Type) SystemType() string {
	if t.Kind != Primitive {
		return ""
	}
	return systemTypeOf(t.primitiveRoot())
}

func (t *Type) primitiveRoot() string {
	x := t
	for x.base != nil && x.base.Kind == Primitive {
		x = x.base
	}
	return x.Name
}

// Element is one element of a type.
type Element struct {
	// Name is the JSON property name; for a choice element the stem without the type suffix.
	Name string
	// Path is the FHIR element path, e.g. "Patient.birthDate" or "Observation.value[x]".
	Path string
	// Types are the allowed types; more than one only for choice elements.
	Types []TypeRef
	// Choice is set for [x] elements, whose JSON name is Name + the TypeRef's Suffix.
	Choice bool
	// List is set when the element repeats (max cardinality "*").
	List bool
	// Min is the minimum cardinality (0 or 1).
	Min int
	// Binding is the value set URL a coded element is bound to, if any.
	Binding string
	// TargetTypes lists the resource types a Reference element may point to.
	TargetTypes []string
}

// JSONName returns the JSON property name used when the element carries type r.
func (e *Element) JSONName(r TypeRef) string {
	if e.Choice {
		return e.Name + r.Suffix
	}
	return e.Name
}

// TypeRef is one allowed type of an element.
type TypeRef struct {
	// Code is the FHIR type code: "string", "Quantity", "Reference", "Resource" (for
	// contained resources) or "BackboneElement".
	Code string
	// Suffix is the choice-type JSON suffix ("Quantity", "DateTime"); empty otherwise.
	Suffix string
	// Type is the resolved definition; for BackboneElement it is the backbone type itself.
	Type *Type
}

// Match is the result of resolving a JSON property name.
type Match struct {
	Element *Element
	Type    TypeRef
}

// Model is the set of FHIR R4 types.
type Model struct {
	types     map[string]*Type
	resources []string
}

// Type returns the named type. Backbone types are found by their path ("Patient.contact").
func (m *Model) Type(name string) (*Type, bool) {
	t, ok := m.types[name]
	return t, ok
}

// ResourceTypes returns the concrete resource type names in alphabetical order.
func (m *Model) ResourceTypes() []string {
	out := make([]string, len(m.resources))
	copy(out, m.resources)
	return out
}

// IsResource reports whether name is a concrete resource type.
func (m *Model) IsResource(name string) bool {
	t, ok := m.types[name]
	return ok && t.Kind == Resource && !t.Abstract
}

// IsPrimitive reports whether name is a FHIR primitive type.
func (m *Model) IsPrimitive(name string) bool {
	t, ok := m.types[name]
	return ok && t.Kind == Primitive
}

// IsSubtype reports whether the type named name is base or specialises it.
func (m *Model) IsSubtype(name, base string) bool {
	t, ok := m.types[name]
	return ok && t.Is(base)
}

// Element returns the element of typeName with the given name (choice stem, no suffix).
func (m *Model) Element(typeName, name string) (*Element, bool) {
	t, ok := m.types[typeName]
	if !ok {
		return nil, false
	}
	return t.Element(name)
}

// Lookup resolves a JSON property name of typeName, including suffixed choice names.
func (m *Model) Lookup(typeName, jsonName string) (Match, bool) {
	t, ok := m.types[typeName]
	if !ok {
		return Match{}, false
	}
	return t.Lookup(jsonName)
}

// TypeNames returns every type name in the model, backbone paths included, sorted.
func (m *Model) TypeNames() []string {
	out := make([]string, 0, len(m.types))
	for n := range m.types {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// systemTypeOf maps a root FHIR primitive to its FHIRPath System type (FHIRPath "Models":
// FHIR primitives are implicitly convertible to these).
func systemTypeOf(primitive string) string {
	switch primitive {
	case "boolean":
		return "Boolean"
	case "string", "uri", "base64Binary", "xhtml":
		return "String"
	case "integer":
		return "Integer"
	case "decimal":
		return "Decimal"
	case "date":
		return "Date"
	case "dateTime", "instant":
		return "DateTime"
	case "time":
		return "Time"
	}
	return ""
}

// primitiveBase says which R4 primitives are declared as specialisations of another (their
// StructureDefinition baseDefinition). The protos carry no inheritance, and the value
// representation alone cannot tell a code from a string.
func primitiveBase(name string) string {
	switch name {
	case "code", "id", "markdown":
		return "string"
	case "url", "canonical", "oid", "uuid":
		return "uri"
	case "positiveInt", "unsignedInt":
		return "integer"
	}
	return "Element"
}

// ChoiceSuffix returns the JSON suffix a type code takes in a choice element name.
func ChoiceSuffix(code string) string {
	if code == "" {
		return ""
	}
	return strings.ToUpper(code[:1]) + code[1:]
}
