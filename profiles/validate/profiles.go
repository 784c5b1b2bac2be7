package validate

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// compiledProfile is a profile (with the rules of the profiles it derives from) indexed by
// rule key. A key is an element path from the resource type, with slices named as in FHIR
// ("Patient.identifier:nhsNumber.value").
type compiledProfile struct {
	url, version, name, typ, status string
	// children holds, per parent key, the rules that count that parent's children.
	children map[string][]*elemRule
	// self holds, per key, the rules that check each value at that key.
	self map[string][]*elemRule
	invs map[string][]*compiledInv
	// reach holds every key with rules at or below it, so the walk stops tracking keys in
	// subtrees the profile does not constrain.
	reach map[string]bool
}

type elemRule struct {
	prof        string // profile name, for messages
	key         string
	name        string // last path segment (the element name, slice suffix removed)
	hasMin      bool
	min         int
	max         int // -1 unbounded or unchanged
	types       []string
	fixed       any
	pattern     any
	binding     *Binding
	mustSupport bool
	targets     []string
	slices      []*sliceRule
	closed      bool
	exts        map[string]*ExtensionRule
	rules       []string
}

type sliceRule struct {
	name, alias string
	disc        []discriminator
	min, max    int
	mustSupport bool
}

type discriminator struct {
	path  []string
	value string
}

func parseMax(s string) (int, error) {
	switch s {
	case "", "*":
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("max %q is not a number or *", s)
	}
	return n, nil
}

func (v *Validator) compileProfile(url string, all map[string]Profile) (*compiledProfile, error) {
	p := all[url]
	cp := &compiledProfile{url: p.URL, version: p.Version, name: p.Name, typ: p.Type, status: p.Status,
		children: map[string][]*elemRule{}, self: map[string][]*elemRule{}, invs: map[string][]*compiledInv{}, reach: map[string]bool{}}
	if cp.name == "" {
		cp.name = url[strings.LastIndexByte(url, '/')+1:]
	}
	// Base profiles first: a derived profile adds its constraints to theirs.
	var chain []Profile
	seen := map[string]bool{}
	for u := url; u != ""; {
		if seen[u] {
			return nil, fmt.Errorf("validate: profile %s derives from itself", url)
		}
		seen[u] = true
		bp, ok := all[u]
		if !ok {
			if strings.HasPrefix(u, coreSD) {
				break
			}
			return nil, fmt.Errorf("validate: profile %s derives from %s, which is not defined", url, u)
		}
		if bp.Type != p.Type {
			return nil, fmt.Errorf("validate: profile %s (%s) derives from %s, which constrains %s", url, p.Type, u, bp.Type)
		}
		chain = append([]Profile{bp}, chain...)
		u = bp.Base
	}
	for _, bp := range chain {
		for _, el := range bp.Elements {
			if err := v.addElement(cp, bp, el, ""); err != nil {
				return nil, err
			}
		}
		for _, inv := range bp.Invariants {
			ci, err := v.compileInv(inv)
			if err != nil {
				return nil, fmt.Errorf("validate: profile %s: %w", bp.URL, err)
			}
			if !strings.HasPrefix(inv.Path+".", p.Type+".") {
				return nil, fmt.Errorf("validate: profile %s: invariant %s path %q is not in %s", bp.URL, inv.Key, inv.Path, p.Type)
			}
			cp.invs[inv.Path] = append(cp.invs[inv.Path], ci)
			cp.addReach(inv.Path)
		}
	}
	return cp, nil
}

// addElement compiles one element rule; base is the slice alias key slice elements are
// relative to ("" for the profile's own elements).
func (v *Validator) addElement(cp *compiledProfile, p Profile, el Element, base string) error {
	key := el.Path
	if base != "" {
		key = base
		if el.Path != "" {
			key = base + "." + el.Path
		}
	}
	if key != p.Type && !strings.HasPrefix(key, p.Type+".") {
		return fmt.Errorf("validate: profile %s: element path %q is not in %s", p.URL, key, p.Type)
	}
	if err := v.checkPath(key); err != nil {
		return fmt.Errorf("validate: profile %s: %w", p.URL, err)
	}
	r := &elemRule{prof: cp.name, key: key, types: el.Types, fixed: el.Fixed, pattern: el.Pattern, binding: el.Binding,
		mustSupport: el.MustSupport, targets: el.TargetTypes, closed: el.Closed, rules: el.Rules, max: -1}
	if el.Min != nil {
		r.hasMin, r.min = true, *el.Min
	}
	var err error
	if r.max, err = parseMax(el.Max); err != nil {
		return fmt.Errorf("validate: profile %s: %s: %w", p.URL, key, err)
	}
	for _, rule := range el.Rules {
		if rule != "nhs-number" && rule != "ods-code" {
			return fmt.Errorf("validate: profile %s: %s: unknown rule %q", p.URL, key, rule)
		}
	}
	if el.Binding != nil {
		switch el.Binding.Strength {
		case "required", "extensible", "preferred", "example":
		default:
			return fmt.Errorf("validate: profile %s: %s: binding strength %q", p.URL, key, el.Binding.Strength)
		}
	}
	if len(el.Extensions) > 0 {
		r.exts = map[string]*ExtensionRule{}
		for i := range el.Extensions {
			x := &el.Extensions[i]
			if x.URL == "" {
				return fmt.Errorf("validate: profile %s: %s: an extension rule has no url", p.URL, key)
			}
			r.exts[x.URL] = x
			v.extURLs[x.URL] = true
		}
	}
	for _, s := range el.Slices {
		sr := &sliceRule{name: s.Name, alias: key + ":" + s.Name, min: s.Min, mustSupport: s.MustSupport}
		if sr.max, err = parseMax(s.Max); err != nil {
			return fmt.Errorf("validate: profile %s: slice %s: %w", p.URL, sr.alias, err)
		}
		if len(s.Discriminator) == 0 {
			return fmt.Errorf("validate: profile %s: slice %s has no discriminator", p.URL, sr.alias)
		}
		for path, val := range s.Discriminator {
			sr.disc = append(sr.disc, discriminator{path: strings.Split(path, "."), value: val})
		}
		r.slices = append(r.slices, sr)
		cp.addReach(sr.alias)
		for _, se := range s.Elements {
			if err := v.addElement(cp, p, se, sr.alias); err != nil {
				return err
			}
		}
	}
	if i := strings.LastIndexByte(key, '.'); i > 0 && !strings.Contains(key[i:], ":") {
		r.name = key[i+1:]
		cp.children[key[:i]] = append(cp.children[key[:i]], r)
	} else if i > 0 {
		r.name = key[i+1:]
		if j := strings.IndexByte(r.name, ':'); j >= 0 {
			r.name = r.name[:j]
		}
	}
	cp.self[key] = append(cp.self[key], r)
	cp.addReach(key)
	return nil
}

func (cp *compiledProfile) addReach(key string) {
	for k := key; k != ""; {
		cp.reach[k] = true
		i := strings.LastIndexAny(k, ".:")
		if i < 0 {
			break
		}
		k = k[:i]
	}
}

// checkPath resolves a rule key through the R4 model, so that a typo in profile data fails
// at start-up instead of silently never matching.
func (v *Validator) checkPath(key string) error {
	segs := strings.Split(key, ".")
	t, ok := v.model.Type(segs[0])
	if !ok {
		return fmt.Errorf("path %q: %q is not an R4 type", key, segs[0])
	}
	for _, s := range segs[1:] {
		if t == nil {
			return nil // below a choice of several types: checked at run time
		}
		name, _, _ := strings.Cut(s, ":")
		el, ok := t.Element(name)
		if !ok {
			return fmt.Errorf("path %q: %s has no element %q", key, t.Name, name)
		}
		t = nil
		if len(el.Types) == 1 {
			t = el.Types[0].Type
			if t != nil && t.Kind == r4model.Resource {
				t = nil
			}
		}
	}
	return nil
}
