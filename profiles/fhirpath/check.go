package fhirpath

import (
	"strings"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// check is the compile-time semantic pass. Where a path starts from a type name
// ("Observation.value.unit") the types of each step are known from the model, and naming
// an element that none of them has is reported, as is the common mistake of using a
// choice element's JSON name (valueQuantity) instead of value.ofType(Quantity). Paths whose
// type is not known statically are left to evaluation.
func (e *Engine) check(src string, n node) error {
	_, err := e.staticTypes(src, n)
	return err
}

// staticTypes returns the model types n can produce, or nil when they are not known.
func (e *Engine) staticTypes(src string, n node) ([]*r4model.Type, error) {
	switch x := n.(type) {
	case *identNode:
		if x.typeName {
			if vt := e.types[x.name]; vt != nil && vt.mt != nil {
				return []*r4model.Type{vt.mt}, nil
			}
		}
		return nil, nil
	case *memberNode:
		in, err := e.staticTypes(src, x.recv)
		if err != nil || in == nil {
			return nil, err
		}
		return e.memberTypes(src, x, in)
	case *indexerNode:
		if _, err := e.staticTypes(src, x.idx); err != nil {
			return nil, err
		}
		return e.staticTypes(src, x.recv)
	case *typeOpNode:
		if _, err := e.staticTypes(src, x.x); err != nil {
			return nil, err
		}
		if x.as {
			return e.specTypes(x.spec), nil
		}
		return nil, nil
	case *unaryNode:
		_, err := e.staticTypes(src, x.x)
		return nil, err
	case *binaryNode:
		l, err := e.staticTypes(src, x.l)
		if err != nil {
			return nil, err
		}
		r, err := e.staticTypes(src, x.r)
		if err != nil {
			return nil, err
		}
		if x.op == "|" && l != nil && r != nil {
			return append(append([]*r4model.Type(nil), l...), r...), nil
		}
		return nil, nil
	case *logicNode:
		if _, err := e.staticTypes(src, x.l); err != nil {
			return nil, err
		}
		_, err := e.staticTypes(src, x.r)
		return nil, err
	case *funcNode:
		var in []*r4model.Type
		if x.recv != nil {
			var err error
			if in, err = e.staticTypes(src, x.recv); err != nil {
				return nil, err
			}
		}
		for _, a := range x.args {
			if _, err := e.staticTypes(src, a); err != nil {
				return nil, err
			}
		}
		switch x.name {
		case "where", "first", "last", "single", "tail", "skip", "take", "distinct", "trace", "intersect", "exclude":
			if x.recv != nil {
				return in, nil
			}
		case "ofType", "as":
			return e.specTypes(x.spec), nil
		case "extension":
			return []*r4model.Type{e.types["Extension"].mt}, nil
		}
		return nil, nil
	}
	return nil, nil
}

func (e *Engine) specTypes(s typeSpec) []*r4model.Type {
	if !s.fhir {
		return nil
	}
	if vt := e.types[s.name]; vt != nil && vt.mt != nil {
		return []*r4model.Type{vt.mt}
	}
	return nil
}

func (e *Engine) memberTypes(src string, x *memberNode, in []*r4model.Type) ([]*r4model.Type, error) {
	var out []*r4model.Type
	found := false
	for _, t := range in {
		if t.Abstract && t.Kind == r4model.Resource {
			return nil, nil // any resource: the concrete type is only known at run time
		}
		el, ok := t.Element(x.name)
		if !ok {
			continue
		}
		found = true
		for _, r := range el.Types {
			out = append(out, r.Type)
		}
	}
	if found {
		return out, nil
	}
	names := make([]string, 0, len(in))
	for _, t := range in {
		names = append(names, t.Name)
		if m, ok := t.Lookup(x.name); ok && m.Element.Choice {
			return nil, &SemanticError{Expr: src, Offset: x.pos, Msg: "'" + x.name + "' is not an element of " + t.Name +
				"; choice elements are navigated as " + m.Element.Name + ".ofType(" + m.Type.Code + ")"}
		}
	}
	return nil, &SemanticError{Expr: src, Offset: x.pos, Msg: "'" + x.name + "' is not an element of " + strings.Join(names, " | ")}
}
