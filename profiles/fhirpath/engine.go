// Package fhirpath evaluates FHIRPath (N1 normative, plus the functions FHIR R4 adds) over
// FHIR resources decoded from JSON with encoding/json and UseNumber.
//
// Expressions are compiled once and are safe for concurrent evaluation. Nodes are typed from
// the root resource down using the r4model type model, so choice elements (Observation.value),
// ofType/is/as and the FHIR and System namespaces work as the specification describes.
//
// FHIR-specific functions: extension(url), hasValue(), getValue(), resolve(), memberOf(),
// htmlChecks(), conformsTo(), plus trace(). Some are deliberately minimal:
//   - resolve() finds contained resources ("#id"), Bundle entries (by fullUrl or Type/id)
//     and then asks the WithResolver function. A reference it cannot resolve but whose shape
//     is [base/]Type/id yields a stub {"resourceType": Type, "id": id}, so that
//     `where(resolve() is Patient)` works when indexing without a store.
//   - memberOf() asks the WithValueSetChecker function; without one the result is empty.
//   - htmlChecks() checks the narrative is well-formed XHTML with a div root and no
//     scripts, event handlers or forms.
//   - conformsTo() knows only the core StructureDefinition URLs (resource type and its
//     bases); other URLs are an error unless WithProfileChecker is given.
package fhirpath

import (
	"encoding/json"
	"time"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// Engine compiles expressions against one type model. It is immutable and safe for
// concurrent use.
type Engine struct {
	model *r4model.Model
	types map[string]*vtype // FHIR types by model name (backbones by path)
	sys   map[string]*vtype // System types
	st    [sysQuantity + 1]*vtype

	untyped  *vtype
	typeInfo *vtype
	resource *vtype

	trueColl, falseColl Collection
}

// NewEngine prepares navigation tables for every type of the model.
func NewEngine(m *r4model.Model) *Engine {
	e := &Engine{
		model: m,
		types: map[string]*vtype{},
		sys:   map[string]*vtype{},
	}
	for _, s := range []struct {
		name string
		k    sysKind
	}{{"Boolean", sysBoolean}, {"String", sysString}, {"Integer", sysInteger}, {"Decimal", sysDecimal},
		{"Date", sysDate}, {"DateTime", sysDateTime}, {"Time", sysTime}, {"Quantity", sysQuantity}} {
		e.sys[s.name] = &vtype{ns: NamespaceSystem, name: s.name, sys: s.k}
		e.st[s.k] = e.sys[s.name]
	}
	e.untyped = &vtype{ns: NamespaceFHIR, name: "Element", untyped: true}
	e.typeInfo = &vtype{ns: NamespaceSystem, name: "TypeInfo", untyped: true}

	names := m.TypeNames()
	for _, n := range names {
		t, _ := m.Type(n)
		vt := &vtype{ns: NamespaceFHIR, name: t.Name, mt: t}
		if t.Kind == r4model.Backbone {
			vt.name = "BackboneElement"
		}
		if t.Kind == r4model.Primitive {
			vt.sys = sysKindOf(t.SystemType())
		}
		if t.Name == "Resource" {
			vt.resource = true
		}
		e.types[n] = vt
	}
	// Profiles such as SimpleQuantity appear in instances as their base type.
	for _, n := range names {
		t, _ := m.Type(n)
		if t.Profile {
			e.types[n] = e.types[t.BaseName]
		}
	}
	for _, n := range names {
		t, _ := m.Type(n)
		vt := e.types[n]
		if t.Kind == r4model.Primitive || vt.mt != t {
			continue
		}
		vt.elems = make(map[string]*navElem, len(t.Elements))
		for _, el := range t.Elements {
			ne := &navElem{name: el.Name}
			for _, r := range el.Types {
				v := navVariant{key: el.JSONName(r), t: e.types[r.Type.Name]}
				if r.Type.Kind == r4model.Primitive {
					v.extKey = "_" + v.key
				}
				ne.variants = append(ne.variants, v)
			}
			vt.elems[el.Name] = ne
		}
	}
	e.resource = e.types["Resource"]
	e.trueColl = Collection{{t: e.st[sysBoolean], node: true}}
	e.falseColl = Collection{{t: e.st[sysBoolean], node: false}}
	return e
}

func sysKindOf(name string) sysKind {
	switch name {
	case "Boolean":
		return sysBoolean
	case "String":
		return sysString
	case "Integer":
		return sysInteger
	case "Decimal":
		return sysDecimal
	case "Date":
		return sysDate
	case "DateTime":
		return sysDateTime
	case "Time":
		return sysTime
	case "Quantity":
		return sysQuantity
	}
	return sysNone
}

// Model returns the type model the engine uses.
func (e *Engine) Model() *r4model.Model { return e.model }

// MustCompile is Compile that panics on error, for expressions fixed in code.
func (e *Engine) MustCompile(expr string) *Expression {
	x, err := e.Compile(expr)
	if err != nil {
		panic(err)
	}
	return x
}

// Option configures one evaluation.
type Option func(*config)

type config struct {
	resolver  func(reference string) (map[string]any, bool)
	vars      map[string]any
	vsChecker func(system, code, valueSetURL string) (member bool, known bool)
	profile   func(resource map[string]any, url string) (bool, error)
	now       func() time.Time
	trace     func(name string, values Collection)
	strict    bool
	rootType  string
	resource  map[string]any
}

// WithResolver supplies resolve() with resources not found in the input itself.
func WithResolver(f func(reference string) (map[string]any, bool)) Option {
	return func(c *config) { c.resolver = f }
}

// WithVariables defines %name variables. Values may be Collection, Value, or JSON
// (map[string]any resources and elements, string, bool, json.Number, int, float64, []any).
// They override the built-in ones (%resource, %context, %ucum, ...).
func WithVariables(vars map[string]any) Option {
	return func(c *config) {
		if c.vars == nil {
			c.vars = make(map[string]any, len(vars))
		}
		for k, v := range vars {
			c.vars[k] = v
		}
	}
}

// WithValueSetChecker answers memberOf(): whether code (from system, which may be empty for
// bare codes) is in the value set, and whether the value set is known at all.
func WithValueSetChecker(f func(system, code, valueSetURL string) (member bool, known bool)) Option {
	return func(c *config) { c.vsChecker = f }
}

// WithProfileChecker answers conformsTo() for profiles other than the core resource types.
func WithProfileChecker(f func(resource map[string]any, url string) (bool, error)) Option {
	return func(c *config) { c.profile = f }
}

// WithNow fixes the clock used by now(), today() and timeOfDay().
func WithNow(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithTrace receives the output of trace().
func WithTrace(f func(name string, values Collection)) Option {
	return func(c *config) { c.trace = f }
}

// Strict makes navigation to an element the type does not define an error instead of an
// empty result.
func Strict() Option { return func(c *config) { c.strict = true } }

// WithRootType types the input as the named FHIR type (a data type or backbone path such
// as "HumanName" or "Patient.contact") instead of reading resourceType.
func WithRootType(name string) Option { return func(c *config) { c.rootType = name } }

// WithResource sets %resource and %rootResource (and where resolve() looks for contained
// resources) when the input is an element inside that resource rather than the resource
// itself, as when checking element-level invariants. %context stays the input.
func WithResource(resource map[string]any) Option {
	return func(c *config) { c.resource = resource }
}

// TypedValue wraps a JSON node as a Value of the named FHIR type ("" to infer a resource from
// resourceType), e.g. to pass an element as a variable.
func (e *Engine) TypedValue(node any, typeName string) Value {
	if typeName != "" {
		if vt, ok := e.types[typeName]; ok {
			return Value{t: vt, node: node}
		}
	}
	return e.inferValue(node)
}

// inferValue types a JSON node: resources by resourceType, primitives by their JSON kind.
func (e *Engine) inferValue(node any) Value {
	switch n := node.(type) {
	case map[string]any:
		if rt, ok := n["resourceType"].(string); ok {
			if vt, ok := e.types[rt]; ok && vt.mt.Kind == r4model.Resource {
				return Value{t: vt, node: n}
			}
		}
		return Value{t: e.untyped, node: n}
	case string:
		return Value{t: e.types["string"], node: n}
	case bool:
		return Value{t: e.types["boolean"], node: n}
	case json.Number:
		if _, err := n.Int64(); err == nil {
			return Value{t: e.types["integer"], node: n}
		}
		return Value{t: e.types["decimal"], node: n}
	case int:
		return Value{t: e.st[sysInteger], node: int64(n)}
	case int64:
		return Value{t: e.st[sysInteger], node: n}
	case float64:
		d, _ := decimalFromFloat(n)
		return Value{t: e.st[sysDecimal], node: d}
	}
	return Value{t: e.untyped, node: node}
}

// toCollection converts a variable value to a collection.
func (e *Engine) toCollection(v any) Collection {
	switch x := v.(type) {
	case nil:
		return nil
	case Collection:
		return x
	case Value:
		return Collection{x}
	case []Value:
		return Collection(x)
	case []any:
		out := make(Collection, 0, len(x))
		for _, it := range x {
			if it != nil {
				out = append(out, e.inferValue(it))
			}
		}
		return out
	case string:
		return Collection{{t: e.st[sysString], node: x}}
	case bool:
		return Collection{{t: e.st[sysBoolean], node: x}}
	}
	return Collection{e.inferValue(v)}
}
