package validate

import (
	"github.com/hjbroker/hjbroker/profiles/bindings"
	"github.com/hjbroker/hjbroker/profiles/invariants"
)

// FromInvariants converts the base R4 invariants of profiles/invariants.
func FromInvariants(list []invariants.Invariant) []Invariant {
	out := make([]Invariant, len(list))
	for i, x := range list {
		out[i] = Invariant{Key: x.Key, Severity: x.Severity, Human: x.Human, Path: x.Path, Expression: x.Expression}
	}
	return out
}

// FromBindings converts the base R4 required bindings of profiles/bindings and their value
// sets.
func FromBindings(s *bindings.Set) ([]BaseBinding, []ValueSet) {
	bs := make([]BaseBinding, len(s.Bindings))
	for i, b := range s.Bindings {
		bs[i] = BaseBinding{Path: b.Path, ValueSet: b.ValueSet}
	}
	vs := make([]ValueSet, len(s.ValueSets))
	for i, x := range s.ValueSets {
		v := ValueSet{URL: x.URL, Version: x.Version, Name: x.Name}
		for _, in := range x.Include {
			inc := Include{System: in.System}
			for _, c := range in.Codes {
				inc.Codes = append(inc.Codes, Concept{Code: c.Code, Display: c.Display})
			}
			v.Include = append(v.Include, inc)
		}
		vs[i] = v
	}
	return bs, vs
}
