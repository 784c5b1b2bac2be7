package engine

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/hjbroker/hjbroker/broker/engine/opdefs"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// anyType is the resource of operations served on every type ($validate).
const anyType = "Resource"

// OperationInfo is one operation the engine serves and the definition matched to it.
type OperationInfo struct {
	// Type is the resource type, "" at system level, "Resource" on every type.
	Type     string
	Instance bool
	Name     string
	// Definition is the canonical URL of its OperationDefinition, "" when none matches.
	Definition string
}

// Key is the operation's OperationKey ("Patient/{id}/$everything").
func (o OperationInfo) Key() string { return operationKey(o.Type, o.Instance, o.Name) }

// wantDefinition is the canonical a missing definition would have, so the CapabilityStatement
// still names one (and the test that every operation is defined fails on it).
func (o OperationInfo) wantDefinition() string {
	if o.Type == "" {
		return opdefs.DefinitionBase + o.Name
	}
	return opdefs.DefinitionBase + o.Type + "-" + o.Name
}

// Operations lists every operation served: the engine's own ($everything, $validate) and
// the registered ones, sorted by key, each with its definition.
func (e *Engine) Operations() []OperationInfo { return append([]OperationInfo(nil), e.ops...) }

// servedOperations collects the operations and matches each to a definition.
func servedOperations(cfg Config) []OperationInfo {
	ops := []OperationInfo{
		{Type: "Patient", Instance: true, Name: "everything"},
		{Type: anyType, Name: "validate"},
		{Type: anyType, Instance: true, Name: "validate"},
	}
	for key := range cfg.Operations {
		ops = append(ops, parseOperationKey(key))
	}
	for i := range ops {
		if d := matchDefinition(cfg.Capability.OperationDefinitions, ops[i]); d != nil {
			ops[i].Definition, _ = d["url"].(string)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Key() < ops[j].Key() })
	return ops
}

// parseOperationKey reverses OperationKey.
func parseOperationKey(key string) OperationInfo {
	if strings.HasPrefix(key, "$") {
		return OperationInfo{Name: key[1:]}
	}
	path, name, _ := strings.Cut(key, "/$")
	typ, rest, _ := strings.Cut(path, "/")
	return OperationInfo{Type: typ, Instance: rest != "", Name: name}
}

// matchDefinition finds the definition of an operation: same code, defined at the
// operation's level (system, type or instance) and on its type (or on every type).
func matchDefinition(defs []map[string]any, op OperationInfo) map[string]any {
	for _, d := range defs {
		if d["code"] != op.Name {
			continue
		}
		switch {
		case op.Type == "":
			if d["system"] != true {
				continue
			}
		case op.Instance && d["instance"] != true, !op.Instance && d["type"] != true:
			continue
		}
		if op.Type != "" && !definedOn(d, op.Type) {
			continue
		}
		return d
	}
	return nil
}

func definedOn(def map[string]any, typ string) bool {
	list, _ := def["resource"].([]any)
	for _, r := range list {
		if r == typ || r == anyType {
			return true
		}
	}
	return false
}

// indexDefinitions encodes the definitions by id and checks ids and urls are unique.
func indexDefinitions(defs []map[string]any) (map[string][]byte, error) {
	byID := map[string][]byte{}
	urls := map[string]bool{}
	for _, d := range defs {
		id, _ := d["id"].(string)
		u, _ := d["url"].(string)
		if id == "" || u == "" || d["resourceType"] != "OperationDefinition" {
			return nil, fmt.Errorf("engine: an operation definition needs resourceType OperationDefinition, an id and a url")
		}
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("engine: operation definition id %q: %w", id, err)
		}
		if byID[id] != nil || urls[u] {
			return nil, fmt.Errorf("engine: operation definition %s (%s) is defined twice", id, u)
		}
		urls[u] = true
		byID[id] = resource.Encode(d)
	}
	return byID, nil
}

// conformanceParams are the search parameters the conformance types are searched by.
var conformanceParams = map[string][]string{
	"OperationDefinition": {"_id", "url", "code", "name", "base"},
	"CapabilityStatement": {"_id", "url", "name"},
}

// conformance serves OperationDefinition and CapabilityStatement: the broker's own
// definitions, read-only, from memory. They describe the server, not anyone's data, so any
// authenticated client may read them (as it may read /metadata) without a scope on the type.
// Operations on them ($validate of a definition a client wrote) take the normal path.
func (e *Engine) conformance(ctx context.Context, req *Request, seg []string) (*Response, error) {
	typ := seg[0]
	m := req.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	switch {
	case len(seg) == 1 && m == http.MethodGet, len(seg) == 2 && seg[1] == "_search" && m == http.MethodPost:
		return e.conformanceSearch(ctx, req, typ)
	case len(seg) == 2 && m == http.MethodGet && seg[1] != "_history":
		body, err := e.conformanceRead(req, typ, seg[1])
		if err != nil {
			return &Response{Interaction: "read"}, err
		}
		return &Response{Status: http.StatusOK, Body: body, Interaction: "read"}, nil
	}
	return &Response{Interaction: "conformance"}, outcome.New(http.StatusMethodNotAllowed, "not-supported",
		"%s resources are the broker's own definitions: they may be read and searched, not written or versioned", typ)
}

func (e *Engine) conformanceRead(req *Request, typ, id string) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if typ == "OperationDefinition" {
		if b, ok := e.opdefs[id]; ok {
			return b, nil
		}
		return nil, errNotFound(typ, id)
	}
	if id == ServerCapabilityID {
		return e.serverCapability(req.Base), nil
	}
	if e.cfg.Capability.Views == nil {
		return nil, errNotFound(typ, id)
	}
	v, err := e.cfg.Capability.Views.View(req.Access, id)
	if err != nil {
		return nil, err
	}
	return resource.Encode(e.buildCapabilities(req.Base, &v)), nil
}

// conformanceCandidates lists the resources of a conformance type the requester may read.
func (e *Engine) conformanceCandidates(req *Request, typ string) []*store.Resource {
	var out []*store.Resource
	if typ == "OperationDefinition" {
		ids := make([]string, 0, len(e.opdefs))
		for id := range e.opdefs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			out = append(out, &store.Resource{Type: typ, ID: id, Body: e.opdefs[id]})
		}
		return out
	}
	out = append(out, &store.Resource{Type: typ, ID: ServerCapabilityID, Body: e.serverCapability(req.Base)})
	if e.cfg.Capability.Views != nil {
		for _, v := range e.cfg.Capability.Views.Views(req.Access) {
			out = append(out, &store.Resource{Type: typ, ID: v.ID, Body: resource.Encode(e.buildCapabilities(req.Base, &v))})
		}
	}
	return out
}

func (e *Engine) conformanceSearch(_ context.Context, req *Request, typ string) (*Response, error) {
	fail := &Response{Interaction: "search-type"}
	strict := strings.EqualFold(preferValue(req.Header, "handling"), "strict")
	b := newSearchset(req.Base)
	var crits []struct {
		field  string
		values []string
	}
	for k, vs := range req.Query {
		switch k {
		case "_format", "_pretty":
			continue
		}
		field := ""
		for _, p := range conformanceParams[typ] {
			if k == p {
				field = strings.TrimPrefix(p, "_")
			}
		}
		if field == "" {
			msg := fmt.Sprintf("%s is searched by %s; %q is not supported", typ, strings.Join(conformanceParams[typ], ", "), k)
			if strict {
				return fail, outcome.At(http.StatusBadRequest, "not-supported", k, "%s", msg)
			}
			b.warn(msg+" and was ignored", k)
			continue
		}
		for _, v := range vs {
			crits = append(crits, struct {
				field  string
				values []string
			}{field, strings.Split(v, ",")})
		}
	}
	matches := 0
	for _, r := range e.conformanceCandidates(req, typ) {
		res, err := resource.Decode(r.Body, resource.Limits{})
		if err != nil {
			return fail, err
		}
		ok := true
		for _, c := range crits {
			if !conformanceMatch(res, c.field, c.values) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		matches++
		if err := b.add(r, "match", e, nil); err != nil {
			return fail, err
		}
	}
	b.total = matches
	self := req.Base + "/" + typ
	if q := req.Query.Encode(); q != "" {
		self += "?" + q
	}
	b.link("self", self)
	return &Response{Status: http.StatusOK, Resource: b.resource(), Interaction: "search-type"}, nil
}

// conformanceMatch applies one criterion (values ORed): exact for id, url (with an optional
// |version) and code; for name, a case-insensitive prefix as string search does.
func conformanceMatch(res map[string]any, field string, values []string) bool {
	got, _ := res[field].(string)
	for _, v := range values {
		switch field {
		case "url", "base":
			u, ver, hasVer := strings.Cut(v, "|")
			if got == u && (!hasVer || res["version"] == ver) {
				return true
			}
		case "name":
			if v != "" && strings.HasPrefix(strings.ToLower(got), strings.ToLower(v)) {
				return true
			}
		default:
			if got == v {
				return true
			}
		}
	}
	return false
}
