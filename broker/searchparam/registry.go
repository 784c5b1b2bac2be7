package searchparam

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// r4JSON holds the FHIR R4 (4.0.1) search parameters the broker supports. It is read-only
// data; each Registry decodes its own copy.
//
//go:embed r4.json
var r4JSON []byte

// The pseudo base types whose parameters apply to every resource type (DomainResource:
// all but Bundle, Binary and Parameters).
const (
	baseResource       = "Resource"
	baseDomainResource = "DomainResource"
)

// Registry holds search parameters by resource type and code. Lookups may run
// concurrently with each other and with Add calls. Returned Params are shared and must not
// be modified.
type Registry struct {
	mu     sync.RWMutex
	known  map[string]bool              // resource types the registry accepts as bases
	byType map[string]map[string]*Param // base type -> code -> param
	byURL  map[string]*Param
}

// r4File is the layout of r4.json.
type r4File struct {
	FHIRVersion   string   `json:"fhirVersion"`
	ResourceTypes []string `json:"resourceTypes"`
	Params        []*Param `json:"param"`
}

// NewR4 returns a registry loaded with the embedded R4 definitions.
func NewR4() (*Registry, error) {
	var f r4File
	if err := json.Unmarshal(r4JSON, &f); err != nil {
		return nil, fmt.Errorf("searchparam: decode r4.json: %w", err)
	}
	if len(f.ResourceTypes) == 0 {
		return nil, errors.New("searchparam: r4.json lists no resource types")
	}
	r := &Registry{
		known:  make(map[string]bool, len(f.ResourceTypes)),
		byType: make(map[string]map[string]*Param),
		byURL:  make(map[string]*Param, len(f.Params)),
	}
	for _, t := range f.ResourceTypes {
		r.known[t] = true
	}
	for _, p := range f.Params {
		if err := r.add(p); err != nil {
			return nil, fmt.Errorf("searchparam: r4.json: %w", err)
		}
	}
	return r, nil
}

// Lookup finds the parameter with the given code for a resource type: one defined for the
// type itself, or a common one (base Resource or DomainResource) when the type is known.
func (r *Registry) Lookup(resourceType, code string) (*Param, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if p, ok := r.byType[resourceType][code]; ok {
		return p, true
	}
	if !r.known[resourceType] {
		return nil, false
	}
	if appliesDomainResource(resourceType) {
		if p, ok := r.byType[baseDomainResource][code]; ok {
			return p, true
		}
	}
	p, ok := r.byType[baseResource][code]
	return p, ok
}

// ForType lists the parameters that apply to a resource type, common ones included,
// sorted by code. It is empty for an unknown type.
func (r *Registry) ForType(resourceType string) []*Param {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.known[resourceType] {
		return nil
	}
	byCode := make(map[string]*Param)
	layers := []string{baseResource}
	if appliesDomainResource(resourceType) {
		layers = append(layers, baseDomainResource)
	}
	layers = append(layers, resourceType) // later layers win, as in Lookup
	for _, l := range layers {
		for code, p := range r.byType[l] {
			byCode[code] = p
		}
	}
	out := make([]*Param, 0, len(byCode))
	for _, p := range byCode {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Types lists, sorted, the resource types that have parameters of their own (not only the
// common ones).
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byType))
	for t, m := range r.byType {
		if t != baseResource && t != baseDomainResource && len(m) > 0 {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// ByURL finds a parameter by its canonical URL.
func (r *Registry) ByURL(url string) (*Param, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byURL[url]
	return p, ok
}

// AddFromResource registers a custom parameter from a FHIR SearchParameter resource in
// its JSON form. url, code, base, type and (unless the type is special) expression are
// required; bases and targets must be R4 resource types. A parameter with the same url
// replaces the earlier one; a different url reusing a code on one of its bases is rejected.
func (r *Registry) AddFromResource(sp map[string]any) (*Param, error) {
	p, err := paramFromResource(sp)
	if err != nil {
		return nil, fmt.Errorf("searchparam: invalid SearchParameter: %w", err)
	}
	if err := r.add(p); err != nil {
		return nil, fmt.Errorf("searchparam: invalid SearchParameter: %w", err)
	}
	return p, nil
}

// add validates p and indexes it under each base.
func (r *Registry) add(p *Param) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.validate(p); err != nil {
		if p.URL != "" {
			return fmt.Errorf("%s: %w", p.URL, err)
		}
		return err
	}
	// The url identifies a definition: re-adding it is an update, so its old entries are
	// not conflicts.
	for _, b := range p.Base {
		if old, ok := r.byType[b][p.Code]; ok && old.URL != p.URL {
			return fmt.Errorf("code %q on %s is already defined by %s", p.Code, b, old.URL)
		}
	}
	p.perType = make(map[string]string, len(p.Base))
	for _, b := range p.Base {
		p.perType[b] = expressionFor(p.Expression, b)
	}
	if old, ok := r.byURL[p.URL]; ok {
		for _, b := range old.Base {
			delete(r.byType[b], old.Code)
		}
	}
	for _, b := range p.Base {
		if r.byType[b] == nil {
			r.byType[b] = make(map[string]*Param)
		}
		r.byType[b][p.Code] = p
	}
	r.byURL[p.URL] = p
	return nil
}

// validate checks a definition against the registry's known types. Callers hold r.mu.
func (r *Registry) validate(p *Param) error {
	if p.URL == "" {
		return errors.New("url is missing")
	}
	if p.Code == "" {
		return errors.New("code is missing")
	}
	if strings.ContainsAny(p.Code, " \t\r\n:?&=,$|.") {
		return fmt.Errorf("code %q contains a character not allowed in a parameter name", p.Code)
	}
	if len(p.Base) == 0 {
		return errors.New("base is missing")
	}
	for i, b := range p.Base {
		if b != baseResource && b != baseDomainResource && !r.known[b] {
			return fmt.Errorf("base[%d]: unknown resource type %q", i, b)
		}
	}
	if !validType(p.Type) {
		if p.Type == "" {
			return errors.New("type is missing")
		}
		return fmt.Errorf("type %q is not a search parameter type", p.Type)
	}
	if p.Type != Special {
		if strings.TrimSpace(p.Expression) == "" {
			return errors.New("expression is missing")
		}
	}
	if p.Expression != "" {
		if err := checkExpression(p.Expression); err != nil {
			return fmt.Errorf("expression: %w", err)
		}
	}
	for i, t := range p.Target {
		if !r.known[t] {
			return fmt.Errorf("target[%d]: unknown resource type %q", i, t)
		}
	}
	if p.Type == Composite && len(p.Components) == 0 {
		return errors.New("component is missing for a composite parameter")
	}
	for i, c := range p.Components {
		if c.Definition == "" {
			return fmt.Errorf("component[%d].definition is missing", i)
		}
		if err := checkExpression(c.Expression); err != nil {
			return fmt.Errorf("component[%d].expression: %w", i, err)
		}
	}
	return nil
}

func validType(t Type) bool {
	switch t {
	case Number, Date, String, Token, Reference, Composite, Quantity, URI, Special:
		return true
	}
	return false
}

func appliesDomainResource(resourceType string) bool {
	switch resourceType {
	case "Bundle", "Binary", "Parameters":
		return false
	}
	return true
}
