package validate

import "github.com/hjbroker/hjbroker/profiles/invariants"

// FromInvariants converts the base R4 invariants of profiles/invariants.
func FromInvariants(list []invariants.Invariant) []Invariant {
	out := make([]Invariant, len(list))
	for i, x := range list {
		out[i] = Invariant{Key: x.Key, Severity: x.Severity, Human: x.Human, Path: x.Path, Expression: x.Expression}
	}
	return out
}
