package validate

import (
	"fmt"
	"strings"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// BaseBinding is a required binding of the base R4 specification on a coded element that is
// not of type code (profiles/bindings). Elements of type code are held to their bindings by
// the structural check.
type BaseBinding struct {
	// Path is the element, from its type: "Condition.clinicalStatus".
	Path     string
	ValueSet string
}

// baseBindings indexes the base required bindings by type name and element name.
type baseBindings map[string]map[string]*Binding

// compileBindings checks that each binding names a Coding or CodeableConcept element and an
// enumerated value set the validator holds: a base binding that cannot be checked is a data
// error, not something to report on every resource.
func (v *Validator) compileBindings(list []BaseBinding) (baseBindings, error) {
	out := baseBindings{}
	for _, b := range list {
		i := strings.LastIndexByte(b.Path, '.')
		if i < 0 {
			return nil, fmt.Errorf("validate: base binding %q names no element", b.Path)
		}
		typ, name := b.Path[:i], b.Path[i+1:]
		el, ok := v.model.Element(typ, name)
		if !ok {
			return nil, fmt.Errorf("validate: base binding %q names no R4 element", b.Path)
		}
		for _, r := range el.Types {
			if r.Code != "CodeableConcept" && r.Code != "Coding" {
				return nil, fmt.Errorf("validate: base binding %q: the element is of type %s, not CodeableConcept or Coding", b.Path, r.Code)
			}
		}
		vs, ok := v.vsets[b.ValueSet]
		if !ok || len(vs.whole) > 0 || len(vs.list) == 0 {
			return nil, fmt.Errorf("validate: base binding %q: value set %s is not loaded with its codes listed", b.Path, b.ValueSet)
		}
		if out[typ] == nil {
			out[typ] = map[string]*Binding{}
		}
		out[typ][name] = &Binding{Strength: "required", ValueSet: b.ValueSet}
	}
	return out, nil
}

// checkBase checks a value held by element name of a parent of type parent against the base
// required binding on that element, if any, and counts the errors found.
func (w *walker) checkBase(node any, t, parent *r4model.Type, name string) {
	for x := parent; x != nil; x = x.Base() {
		b := w.v.bindings[x.Name][name]
		if b == nil {
			continue
		}
		before := len(w.issues)
		w.checkBinding(b, node, t, "base R4 "+x.Name+"."+name)
		for _, is := range w.issues[before:] {
			if is.Severity == "error" {
				w.bindingErrors++
			}
		}
		return
	}
}
