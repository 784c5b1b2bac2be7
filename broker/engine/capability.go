package engine

import (
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// capabilities generates the CapabilityStatement from what this engine really supports: the
// resource types of the R4 model, the interactions the dispatcher implements and the search
// parameters in the registry. Nothing in it is written by hand per type.
func (e *Engine) capabilities(req *Request) (*Response, error) {
	// The statement depends only on the configuration and the base URL, so it is built once
	// per base; encoding it is what each request pays.
	if cs, ok := e.capCache.Load(req.Base); ok {
		return &Response{Status: http.StatusOK, Body: cs.([]byte), Interaction: "capabilities"}, nil
	}
	resp, err := e.buildCapabilities(req)
	if err == nil {
		body := resource.Encode(resp.Resource)
		e.capCache.Store(req.Base, body)
		resp.Resource, resp.Body = nil, body
	}
	return resp, err
}

func (e *Engine) buildCapabilities(req *Request) (*Response, error) {
	types := append([]string(nil), e.cfg.Types.ResourceTypes()...)
	sort.Strings(types)
	var resources []any
	for _, t := range types {
		var params []any
		var includes []any
		var revincludes []any
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
			for _, p := range e.cfg.Params.ForType(src) {
				if p.Type != "reference" || p.Code == "_source" {
					continue
				}
				for _, target := range p.Target {
					if target == t {
						revincludes = append(revincludes, src+":"+p.Code)
						break
					}
				}
			}
		}
		r := map[string]any{
			"type":              t,
			"versioning":        "versioned-update",
			"readHistory":       true,
			"updateCreate":      true,
			"conditionalCreate": true,
			"conditionalRead":   "full-support",
			"conditionalUpdate": true,
			"conditionalDelete": "single",
			"referencePolicy":   []any{"literal", "logical"},
			"interaction": []any{
				map[string]any{"code": "read"}, map[string]any{"code": "vread"},
				map[string]any{"code": "update"}, map[string]any{"code": "patch"},
				map[string]any{"code": "delete"}, map[string]any{"code": "history-instance"},
				map[string]any{"code": "history-type"}, map[string]any{"code": "create"},
				map[string]any{"code": "search-type"},
			},
			"searchParam": params,
		}
		if len(includes) > 0 {
			r["searchInclude"] = append([]any{"*"}, includes...)
		}
		if len(revincludes) > 0 {
			r["searchRevInclude"] = revincludes
		}
		ops := []any{map[string]any{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}}
		if t == "Patient" {
			ops = append(ops, map[string]any{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"})
		}
		ops = append(ops, e.extraOperations(t)...)
		r["operation"] = ops
		resources = append(resources, r)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         instant(e.started),
		"kind":         "instance",
		"software":     map[string]any{"name": e.cfg.Software, "version": e.cfg.Version},
		"implementation": map[string]any{
			"description": "hjbroker FHIR R4 facade (" + e.storeName() + " store)",
			"url":         req.Base,
		},
		"fhirVersion": "4.0.1",
		"format":      []any{"application/fhir+json", "json"},
		"patchFormat": []any{"application/json-patch+json"},
		"rest":        []any{e.restElement(resources)},
	}
	return &Response{Status: http.StatusOK, Resource: cs, Interaction: "capabilities"}, nil
}

func (e *Engine) storeName() string { return e.cfg.Store.Backend() }

// restElement assembles CapabilityStatement.rest: the resources, system interactions, the
// system-level operations registered with the engine and the security service.
func (e *Engine) restElement(resources []any) map[string]any {
	rest := map[string]any{
		"mode":     "server",
		"resource": resources,
		"interaction": []any{
			map[string]any{"code": "transaction"}, map[string]any{"code": "batch"},
			map[string]any{"code": "search-system"}, map[string]any{"code": "history-system"},
		},
	}
	if ops := e.extraOperations(""); len(ops) > 0 {
		rest["operation"] = ops
	}
	if e.cfg.Security != nil {
		rest["security"] = e.cfg.Security
	}
	return rest
}

// extraOperations lists the registered operations of a type ("" for system level).
func (e *Engine) extraOperations(typ string) []any {
	var names []string
	for key := range e.cfg.Operations {
		t, rest, _ := strings.Cut(key, "/")
		if strings.HasPrefix(key, "$") {
			t, rest = "", key
		}
		if t != typ {
			continue
		}
		names = append(names, rest[strings.LastIndex(rest, "$")+1:])
	}
	sort.Strings(names)
	out := make([]any, 0, len(names))
	for _, n := range names {
		out = append(out, map[string]any{"name": n, "definition": "https://hjbroker.dev/fhir/OperationDefinition/" + n})
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
