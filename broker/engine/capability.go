package engine

import (
	"context"
	"net/http"
	"slices"
	"sort"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// ServerCapabilityID is the id of the server's own CapabilityStatement, also served at
// /metadata.
const ServerCapabilityID = "hjbroker"

// CapabilityBase starts the canonical URL of the broker's CapabilityStatements.
const CapabilityBase = "https://hjbroker.dev/fhir/CapabilityStatement/"

// Scopes answers whether SMART scopes allow a permission (c, r, u, d, s) on a type.
type Scopes interface {
	Allows(resourceType string, perm byte) bool
}

// CapabilityConfig is what the CapabilityStatements are made of besides the engine itself.
type CapabilityConfig struct {
	// OperationDefinitions define the operations served (broker/engine/opdefs): each is
	// matched to an operation by code, level and resource, named in the CapabilityStatement
	// and served at OperationDefinition/{id}.
	OperationDefinitions []map[string]any
	// SupportedProfiles lists, per resource type, the profiles the validator knows, for
	// CapabilityStatement.rest.resource.supportedProfile.
	SupportedProfiles map[string][]string
	// Views, when set, supplies the CapabilityStatements restricted to one agency or client,
	// served at CapabilityStatement/{id}.
	Views CapabilityViews
	// Searches describes the types Config.Searches serves from outside the store: their own
	// search parameters replace the registry's, and the searches take no _include.
	Searches map[string]ExternalSearch
}

// ExternalSearch describes a type searched outside the store (AuditEvent from the audit
// trail).
type ExternalSearch struct {
	Documentation string
	Params        []SearchParamInfo
}

// SearchParamInfo is one search parameter of an ExternalSearch.
type SearchParamInfo struct {
	Name, Type, Documentation string
}

// CapabilityView restricts the server's CapabilityStatement to what one agency or client may
// do. The interactions listed follow from Scopes exactly as the engine enforces them, so a
// listed interaction is never refused for want of scope and an omitted one always is.
type CapabilityView struct {
	ID                       string // the statement's id, e.g. agency-court
	Name, Title, Description string
	Scopes                   Scopes
	// Documentation is rest.documentation; TypeDocumentation, when set, documents each type
	// listed (what the sharing rules let the agency see of it).
	Documentation     string
	TypeDocumentation func(typ string) string
	// Security, when set, replaces the server's rest.security.
	Security map[string]any
}

// CapabilityViews supplies the restricted statements (broker/capability builds them from
// the agency configuration).
type CapabilityViews interface {
	// Views lists the statements the requester may read; nil Access (the broker itself) may
	// read all.
	Views(a *Access) []CapabilityView
	// View returns the statement with id: a not-found outcome when there is none, forbidden
	// when the requester may not read it.
	View(a *Access, id string) (CapabilityView, error)
}

// capabilities serves /metadata: the server's CapabilityStatement.
func (e *Engine) capabilities(req *Request) (*Response, error) {
	return &Response{Status: http.StatusOK, Body: e.serverCapability(req.Base), Interaction: "capabilities"}, nil
}

// maxCachedBases bounds the statements kept: the base comes from the request's Host when no
// public base is configured, and a client must not grow the cache by varying it.
const maxCachedBases = 16

// serverCapability returns the server's statement, encoded, for a base URL. It depends only
// on the configuration and the base, so it is built once per base (for the first few bases
// seen); encoding it is what each request would otherwise pay.
func (e *Engine) serverCapability(base string) []byte {
	e.capMu.Lock()
	body, ok := e.capCache[base]
	e.capMu.Unlock()
	if ok {
		return body
	}
	body = resource.Encode(e.buildCapabilities(base, nil))
	e.capMu.Lock()
	if len(e.capCache) < maxCachedBases {
		e.capCache[base] = body
	}
	e.capMu.Unlock()
	return body
}

// fullScopes grants everything: the server's own statement.
type fullScopes struct{}

func (fullScopes) Allows(string, byte) bool { return true }

// conformanceTypes are served from the engine's own definitions (read and search, no scope
// needed), never from the store.
var conformanceTypes = map[string]bool{"OperationDefinition": true, "CapabilityStatement": true}

// buildCapabilities generates a CapabilityStatement from what this engine really supports:
// the resource types of the R4 model, the interactions the dispatcher implements, the search
// parameters in the registry, the operations served with their definitions and the profiles
// the validator knows. Nothing in it is written by hand per type. A view (nil for the
// server's own) keeps what its scopes allow.
func (e *Engine) buildCapabilities(base string, v *CapabilityView) map[string]any {
	var scopes Scopes = fullScopes{}
	if v != nil && v.Scopes != nil {
		scopes = v.Scopes
	}
	types := append([]string(nil), e.cfg.Types.ResourceTypes()...)
	sort.Strings(types)
	var resources []any
	for _, t := range types {
		if r := e.resourceCapability(t, types, scopes, v); r != nil {
			resources = append(resources, r)
		}
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"id":           ServerCapabilityID,
		"url":          CapabilityBase + ServerCapabilityID,
		"version":      e.cfg.Version,
		"name":         "HjbrokerServer",
		"title":        "hjbroker FHIR R4 server",
		"status":       "active",
		"date":         instant(e.started),
		"publisher":    "hjbroker",
		"kind":         "instance",
		"software":     map[string]any{"name": e.cfg.Software, "version": e.cfg.Version},
		"implementation": map[string]any{
			"description": "hjbroker FHIR R4 facade (" + e.storeName() + " store)",
			"url":         base,
		},
		"fhirVersion": "4.0.1",
		"format":      []any{"application/fhir+json", "json"},
		"patchFormat": []any{"application/json-patch+json"},
	}
	if v != nil {
		cs["id"], cs["url"] = v.ID, CapabilityBase+v.ID
		cs["name"], cs["title"] = v.Name, v.Title
		if v.Description != "" {
			cs["description"] = v.Description
		}
		cs["instantiates"] = []any{CapabilityBase + ServerCapabilityID}
	}
	cs["rest"] = []any{e.restElement(resources, scopes, v)}
	return cs
}

// resourceCapability describes one type as far as scopes allow it, or nil when they allow
// nothing on it.
func (e *Engine) resourceCapability(t string, types []string, scopes Scopes, v *CapabilityView) map[string]any {
	if conformanceTypes[t] {
		return e.conformanceCapability(t, v)
	}
	allowed := func(p byte) bool { return scopes.Allows(t, p) }
	kept := e.kept(t)
	_, readable := e.cfg.Reads[t]
	var inter []any
	for _, in := range []struct {
		code string
		perm byte
	}{
		{"read", 'r'}, {"vread", 'r'}, {"update", 'u'}, {"patch", 'u'}, {"delete", 'd'},
		{"history-instance", 'r'}, {"history-type", 'r'}, {"create", 'c'}, {"search-type", 's'},
	} {
		// A type kept outside the store has no versions and is written by the broker only.
		if kept && !(in.code == "search-type" || in.code == "read" && readable) {
			continue
		}
		if allowed(in.perm) {
			inter = append(inter, map[string]any{"code": in.code})
		}
	}
	if len(inter) == 0 {
		return nil
	}
	canRead := allowed('r')
	versioning := "versioned-update"
	if kept {
		// No history, updates, creates or deletes to describe.
		allowed = func(p byte) bool { return p == 's' && scopes.Allows(t, p) }
		versioning = "no-version"
	}
	r := map[string]any{
		"type":            t,
		"profile":         e.baseProfile(t),
		"interaction":     inter,
		"versioning":      versioning,
		"referencePolicy": []any{"literal", "logical"},
	}
	if sp := e.cfg.Capability.SupportedProfiles[t]; len(sp) > 0 {
		l := make([]any, len(sp))
		for i, p := range sp {
			l[i] = p
		}
		r["supportedProfile"] = l
	}
	if allowed('r') {
		r["readHistory"] = true
		r["conditionalRead"] = "full-support"
	}
	if allowed('u') {
		r["updateCreate"] = true
		r["conditionalUpdate"] = true
	}
	if allowed('c') {
		r["conditionalCreate"] = true
	}
	if allowed('d') {
		r["conditionalDelete"] = "single"
	} else {
		r["conditionalDelete"] = "not-supported"
	}
	ext, external := e.cfg.Capability.Searches[t]
	if _, ok := e.cfg.Searches[t]; ok && !external {
		external = true // served outside the store, but undescribed: no parameters to claim
	}
	if allowed('s') && external {
		var params []any
		for _, p := range ext.Params {
			params = append(params, map[string]any{"name": p.Name, "type": p.Type, "documentation": p.Documentation})
		}
		if len(params) > 0 {
			r["searchParam"] = params
		}
		if ext.Documentation != "" {
			r["documentation"] = ext.Documentation
		}
	}
	if allowed('s') && !external {
		var params, includes, revincludes []any
		for _, p := range e.cfg.Params.ForType(t) {
			sp := map[string]any{"name": p.Code, "type": string(p.Type)}
			if p.URL != "" {
				sp["definition"] = p.URL
			}
			if p.Description != "" {
				sp["documentation"] = p.Description
			}
			params = append(params, sp)
			if p.Type == "reference" {
				includes = append(includes, t+":"+p.Code)
			}
		}
		for _, src := range types {
			if !scopes.Allows(src, 'r') && !scopes.Allows(src, 's') {
				continue // what a client may not read is never included for it
			}
			if _, ok := e.cfg.Searches[src]; ok {
				continue // kept outside the store, so never included
			}
			for _, p := range e.cfg.Params.ForType(src) {
				if p.Type != "reference" || p.Code == "_source" {
					continue
				}
				if slices.Contains(p.Target, t) {
					revincludes = append(revincludes, src+":"+p.Code)
				}
			}
		}
		r["searchParam"] = params
		if len(includes) > 0 {
			r["searchInclude"] = append([]any{"*"}, includes...)
		}
		if len(revincludes) > 0 {
			r["searchRevInclude"] = revincludes
		}
	}
	if ops := e.typeOperations(t, canRead); len(ops) > 0 {
		r["operation"] = ops
	}
	if v != nil && v.TypeDocumentation != nil {
		if d := v.TypeDocumentation(t); d != "" {
			if prev, ok := r["documentation"].(string); ok {
				d = prev + " " + d
			}
			r["documentation"] = d
		}
	}
	return r
}

// conformanceCapability describes OperationDefinition and CapabilityStatement: read and
// search of the broker's own definitions, open to every authenticated client.
func (e *Engine) conformanceCapability(t string, v *CapabilityView) map[string]any {
	var params []any
	for _, code := range conformanceParams[t] {
		p, ok := e.cfg.Params.Lookup(t, code)
		if !ok {
			continue
		}
		sp := map[string]any{"name": p.Code, "type": string(p.Type)}
		if p.URL != "" {
			sp["definition"] = p.URL
		}
		if p.Description != "" {
			sp["documentation"] = p.Description
		}
		params = append(params, sp)
	}
	doc := "The broker's own operation definitions, one per operation it serves; read-only."
	if t == "CapabilityStatement" {
		doc = "This server's statement (id " + ServerCapabilityID + ", also at /metadata) and one per agency (agency-{id}) " +
			"and per client (client-{id}) saying what that agency or client may do; read-only. " +
			"An agency's clients may read their own agency's and their own; operators all."
	}
	return map[string]any{
		"type":          t,
		"profile":       "http://hl7.org/fhir/StructureDefinition/" + t,
		"documentation": doc,
		"interaction":   []any{map[string]any{"code": "read"}, map[string]any{"code": "search-type"}},
		"versioning":    "no-version",
		"searchParam":   params,
	}
}

// baseProfile is the profile every resource of the type is held to: the UK Core profile the
// validator applies when a resource declares none, or the base R4 definition.
func (e *Engine) baseProfile(t string) string {
	if d, ok := e.cfg.Validator.(interface{ DefaultProfile(string) string }); ok && e.cfg.Validation.Mode != ValidationOff {
		if p := d.DefaultProfile(t); p != "" {
			return p
		}
	}
	return "http://hl7.org/fhir/StructureDefinition/" + t
}

func (e *Engine) storeName() string { return e.cfg.Store.Backend() }

// restElement assembles CapabilityStatement.rest: the resources, system interactions, the
// system-level operations registered with the engine and the security service.
func (e *Engine) restElement(resources []any, scopes Scopes, v *CapabilityView) map[string]any {
	// Batches and transactions are checked entry by entry, so every client may send one.
	inter := []any{map[string]any{"code": "transaction"}, map[string]any{"code": "batch"}}
	if scopes.Allows("*", 's') {
		inter = append(inter, map[string]any{"code": "search-system"})
	}
	if scopes.Allows("*", 'r') {
		inter = append(inter, map[string]any{"code": "history-system"})
	}
	rest := map[string]any{
		"mode":        "server",
		"resource":    resources,
		"interaction": inter,
	}
	doc := "Batch and transaction entries are each checked against the client's scopes. $validate needs no scope."
	if e.cfg.Capability.Views != nil && v == nil {
		doc += " What one agency or client may do is described by its own CapabilityStatement: " +
			"CapabilityStatement/agency-{id} and CapabilityStatement/client-{id} (GET CapabilityStatement lists those the caller may read)."
	}
	if v != nil && v.Documentation != "" {
		doc = v.Documentation + " " + doc
	}
	rest["documentation"] = doc
	if ops := e.typeOperations("", true); len(ops) > 0 {
		rest["operation"] = ops
	}
	switch {
	case v != nil && v.Security != nil:
		rest["security"] = v.Security
	case e.cfg.Security != nil:
		rest["security"] = e.cfg.Security
	}
	return rest
}

// typeOperations lists the operations served on a type ("" for system level) with their
// definitions; read says whether the requester may read the type, which operations other than
// $validate need.
func (e *Engine) typeOperations(typ string, read bool) []any {
	seen := map[string]bool{}
	var out []any
	for _, op := range e.ops {
		if seen[op.Name] || !(op.Type == typ || typ != "" && op.Type == anyType) {
			continue
		}
		if !read && op.Name != "validate" {
			continue
		}
		seen[op.Name] = true
		def := op.Definition
		if def == "" {
			def = op.wantDefinition()
		}
		out = append(out, map[string]any{"name": op.Name, "definition": def})
	}
	return out
}

// everything returns the patient and what refers to them, plus what those resources refer to
// (practitioners, organisations, encounters, medications).
func (e *Engine) everything(ctx context.Context, req *Request, id string) (*Response, error) {
	fail := &Response{Interaction: "operation"}
	pat, err := e.cfg.Store.Current(ctx, "Patient", id)
	if err == store.ErrNotFound || (err == nil && pat.Deleted) {
		return fail, errNotFound("Patient", id)
	}
	if err != nil {
		return fail, err
	}
	b := newSearchset(req.Base)
	sess := e.session(ctx, req)
	// add puts r in the Bundle when the requester may see it, and reports whether it did.
	add := func(r *store.Resource, mode string) (bool, error) {
		shown, ok, err := disclose(ctx, sess, r)
		if err != nil || !ok {
			return false, err
		}
		return true, b.add(shown, mode, e, nil)
	}
	ok, err := add(pat, "match")
	if err != nil {
		return fail, err
	}
	if !ok {
		return fail, errNotFound("Patient", id)
	}
	seen := map[string]bool{"Patient/" + id: true}
	matches := 1
	related, rids, err := e.cfg.Store.Referencing(ctx, []store.Key{{Type: "Patient", ID: id}}, "", "")
	if err != nil {
		return fail, err
	}
	var shownRIDs []int64
	for i, r := range related {
		seen[r.Type+"/"+r.ID] = true
		ok, err := add(r, "match")
		if err != nil {
			return fail, err
		}
		if ok {
			matches++
			shownRIDs = append(shownRIDs, rids[i])
		}
	}
	refs, _, err := e.cfg.Store.Referenced(ctx, shownRIDs, "", "")
	if err != nil {
		return fail, err
	}
	for _, r := range refs {
		if k := r.Type + "/" + r.ID; !seen[k] {
			seen[k] = true
			if _, err := add(r, "include"); err != nil {
				return fail, err
			}
		}
	}
	b.total = matches
	b.link("self", req.Base+"/Patient/"+id+"/$everything")
	return &Response{Status: http.StatusOK, Resource: b.resource(), Interaction: "operation"}, nil
}
