package auth

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Permission letters of SMART v2 scopes, in the order a scope must list them.
const permLetters = "cruds"

// Scope is one SMART resource scope such as system/Observation.rs. The v1 suffixes .read
// (= rs), .write (= cud) and .* (= cruds) are accepted and kept in v2 form.
type Scope struct {
	Context      string // system, user or patient
	ResourceType string // a resource type or "*"
	perms        uint8  // bit i set: permLetters[i] granted
}

// ParseScope parses one scope. Granular scopes with query parameters
// ("system/Observation.rs?category=...") are refused: the broker cannot enforce them, and
// treating them as the unrestricted scope would grant too much.
func ParseScope(s string) (Scope, error) {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, fmt.Errorf("scope %q: want context/ResourceType.permissions", s)
	}
	switch ctx {
	case "system", "user", "patient":
	default:
		return Scope{}, fmt.Errorf("scope %q: context must be system, user or patient", s)
	}
	if strings.ContainsAny(rest, "?#") {
		return Scope{}, fmt.Errorf("scope %q: granular scopes with parameters are not supported", s)
	}
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok {
		return Scope{}, fmt.Errorf("scope %q: missing permissions after the resource type", s)
	}
	if !validResourceType(typ) {
		return Scope{}, fmt.Errorf("scope %q: %q is not a resource type", s, typ)
	}
	bits, err := parsePerms(perm)
	if err != nil {
		return Scope{}, fmt.Errorf("scope %q: %w", s, err)
	}
	return Scope{Context: ctx, ResourceType: typ, perms: bits}, nil
}

func parsePerms(p string) (uint8, error) {
	switch p {
	case "read":
		return permBit('r') | permBit('s'), nil
	case "write":
		return permBit('c') | permBit('u') | permBit('d'), nil
	case "*":
		return 0x1f, nil
	case "":
		return 0, errors.New("no permissions")
	}
	// v2 letters must appear at most once and in the order c, r, u, d, s.
	var bits uint8
	next := 0
	for i := 0; i < len(p); i++ {
		j := strings.IndexByte(permLetters[next:], p[i])
		if j < 0 {
			return 0, fmt.Errorf("permissions %q: want letters of %q, each once, in that order", p, permLetters)
		}
		next += j + 1
		bits |= 1 << (next - 1)
	}
	return bits, nil
}

func permBit(p byte) uint8 {
	i := strings.IndexByte(permLetters, p)
	if i < 0 {
		return 0
	}
	return 1 << i
}

// validResourceType accepts "*" or a FHIR type name: an upper-case letter then letters.
func validResourceType(t string) bool {
	if t == "*" {
		return true
	}
	if t == "" || t[0] < 'A' || t[0] > 'Z' || len(t) > 64 {
		return false
	}
	for i := 1; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// Has reports whether the scope grants a permission letter ('c','r','u','d','s').
func (s Scope) Has(perm byte) bool {
	b := permBit(perm)
	return b != 0 && s.perms&b != 0
}

// Perms returns the granted permission letters in v2 order ("rs").
func (s Scope) Perms() string {
	var b strings.Builder
	for i := 0; i < len(permLetters); i++ {
		if s.perms&(1<<i) != 0 {
			b.WriteByte(permLetters[i])
		}
	}
	return b.String()
}

// String returns the scope in SMART v2 form.
func (s Scope) String() string { return s.Context + "/" + s.ResourceType + "." + s.Perms() }

// Scopes is a set of granted scopes.
type Scopes []Scope

// ParseScopes parses a space-separated scope string or list. Scopes that are not resource
// scopes (openid, launch, offline_access, ...) are returned in ignored; malformed resource
// scopes are an error.
func ParseScopes(list ...string) (Scopes, []string, error) {
	var out Scopes
	var ignored []string
	for _, item := range list {
		for _, f := range strings.Fields(item) {
			if !strings.Contains(f, "/") {
				ignored = append(ignored, f)
				continue
			}
			sc, err := ParseScope(f)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, sc)
		}
	}
	return out.normalize(), ignored, nil
}

// Allows reports whether the scopes permit an interaction on a resource type. Only system
// scopes count: backend services have no user or patient context to restrict the others to.
func (ss Scopes) Allows(resourceType string, perm byte) bool {
	for _, s := range ss {
		if s.Context == "system" && (s.ResourceType == "*" || s.ResourceType == resourceType) && s.Has(perm) {
			return true
		}
	}
	return false
}

// String joins the scopes with spaces, as the OAuth scope parameter does.
func (ss Scopes) String() string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}

// Intersect returns what of requested is within allowed: for each pair with the same
// context and overlapping types, the narrower type with the common permissions. A request
// for system/*.rs against an allowance of system/Observation.cruds gives system/Observation.rs.
func (ss Scopes) Intersect(allowed Scopes) Scopes {
	var out Scopes
	for _, r := range ss {
		for _, a := range allowed {
			if r.Context != a.Context || r.perms&a.perms == 0 {
				continue
			}
			typ := ""
			switch {
			case r.ResourceType == a.ResourceType:
				typ = r.ResourceType
			case r.ResourceType == "*":
				typ = a.ResourceType
			case a.ResourceType == "*":
				typ = r.ResourceType
			default:
				continue
			}
			out = append(out, Scope{Context: r.Context, ResourceType: typ, perms: r.perms & a.perms})
		}
	}
	return out.normalize()
}

// normalize merges scopes of the same context and type, drops those wholly covered by a
// wildcard scope of the same context, and sorts, so that granted scope strings are stable.
func (ss Scopes) normalize() Scopes {
	type key struct{ ctx, typ string }
	merged := map[key]uint8{}
	for _, s := range ss {
		merged[key{s.Context, s.ResourceType}] |= s.perms
	}
	var out Scopes
	for k, p := range merged {
		if k.typ != "*" && p&^merged[key{k.ctx, "*"}] == 0 {
			continue
		}
		if p != 0 {
			out = append(out, Scope{Context: k.ctx, ResourceType: k.typ, perms: p})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Context != out[j].Context {
			return out[i].Context < out[j].Context
		}
		return out[i].ResourceType < out[j].ResourceType
	})
	return out
}
