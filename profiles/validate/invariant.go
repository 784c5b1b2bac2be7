package validate

import (
	"fmt"
	"strings"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// compiledInv is an invariant with its compiled expression.
type compiledInv struct {
	Invariant
	expr *fhirpath.Expression
}

// baseInvariants indexes the R4 invariants by where they sit: on a type (every value of that
// type or a subtype) or on an element of a type ("Organization.address").
type baseInvariants struct {
	byType map[string][]*compiledInv
	byElem map[string]map[string][]*compiledInv // type name -> element name -> invariants
}

func (v *Validator) compileInv(inv Invariant) (*compiledInv, error) {
	if inv.Severity != "error" && inv.Severity != "warning" {
		return nil, fmt.Errorf("validate: invariant %s: severity %q is not error or warning", inv.Key, inv.Severity)
	}
	x, err := v.fp.Compile(inv.Expression)
	if err != nil {
		return nil, fmt.Errorf("validate: invariant %s (%s): %w", inv.Key, inv.Path, err)
	}
	return &compiledInv{Invariant: inv, expr: x}, nil
}

func (v *Validator) compileBase(list []Invariant) (baseInvariants, error) {
	b := baseInvariants{byType: map[string][]*compiledInv{}, byElem: map[string]map[string][]*compiledInv{}}
	for _, inv := range list {
		ci, err := v.compileInv(inv)
		if err != nil {
			return b, err
		}
		if _, ok := v.model.Type(inv.Path); ok {
			b.byType[inv.Path] = append(b.byType[inv.Path], ci)
			continue
		}
		i := strings.LastIndexByte(inv.Path, '.')
		if i < 0 {
			return b, fmt.Errorf("validate: invariant %s: path %q names no R4 type", inv.Key, inv.Path)
		}
		typ, name := inv.Path[:i], inv.Path[i+1:]
		if _, ok := v.model.Element(typ, name); !ok {
			return b, fmt.Errorf("validate: invariant %s: path %q names no R4 element", inv.Key, inv.Path)
		}
		if b.byElem[typ] == nil {
			b.byElem[typ] = map[string][]*compiledInv{}
		}
		b.byElem[typ][name] = append(b.byElem[typ][name], ci)
	}
	return b, nil
}

// forNode calls f for each base invariant that applies to a value of type t held by element
// name of a parent of type parent (nil for a resource root). Primitives skip the invariants
// of Element: a primitive with a value satisfies ele-1 by definition, and one without a value
// is checked structurally.
func (b *baseInvariants) forNode(t, parent *r4model.Type, name string, f func(*compiledInv)) {
	for x := t; x != nil; x = x.Base() {
		if t.Kind == r4model.Primitive && x.Name == "Element" {
			break
		}
		for _, ci := range b.byType[x.Name] {
			f(ci)
		}
	}
	for x := parent; x != nil; x = x.Base() {
		for _, ci := range b.byElem[x.Name][name] {
			f(ci)
		}
	}
}
