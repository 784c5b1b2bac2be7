// Package capability works out what a set of TestScripts needs of a server — resource
// types, interactions, search parameters, _include values and operations — and which of
// those a CapabilityStatement does not declare.
package capability

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/hjbroker/hjbroker/conformance/testscript"
)

// Requirement is one thing a script needs the server to support.
type Requirement struct {
	// Kind is resource, interaction, searchParam, include, revinclude, operation or
	// conditional (conditionalCreate, conditionalDelete).
	Kind string `json:"kind"`
	// Resource is the resource type; empty for system-level interactions and operations.
	Resource string `json:"resource,omitempty"`
	// Name is the interaction code, parameter name, include value or operation name.
	Name string `json:"name,omitempty"`
	// UsedBy lists where the requirement comes from (file and element).
	UsedBy []string `json:"usedBy"`
}

func (r Requirement) String() string {
	where := "system"
	if r.Resource != "" {
		where = r.Resource
	}
	switch r.Kind {
	case "resource":
		return "resource type " + r.Resource
	case "interaction":
		return fmt.Sprintf("interaction %s on %s", r.Name, where)
	case "searchParam":
		return fmt.Sprintf("search parameter %s on %s", r.Name, where)
	case "include", "revinclude":
		return fmt.Sprintf("_%s=%s on %s", r.Kind, r.Name, where)
	case "operation":
		return fmt.Sprintf("operation $%s on %s", r.Name, where)
	case "conditional":
		return fmt.Sprintf("%s on %s", r.Name, where)
	}
	return r.Kind + " " + r.Name
}

func (r Requirement) key() string { return r.Kind + "|" + r.Resource + "|" + r.Name }

// resultParams are search result parameters, not search parameters a server declares.
var resultParams = map[string]bool{"_count": true, "_sort": true, "_summary": true, "_elements": true,
	"_total": true, "_format": true, "_pretty": true, "_contained": true, "_containedType": true,
	"_getpages": true, "_offset": true, "_include": true, "_revinclude": true,
	// _has is reverse chaining, which CapabilityStatements do not list as a parameter.
	"_has": true}

// collector gathers requirements, merging duplicates.
type collector struct {
	by         map[string]*Requirement
	order      []string
	isResource func(string) bool
	// refused is set while reading an operation the script expects the server to refuse:
	// its search parameters are what is being refused, not what the script needs.
	refused bool
}

// expectsRefusal reports whether the asserts right after an operation expect a 4xx answer.
func expectsRefusal(next []testscript.Action) bool {
	refusals := map[string]bool{"bad": true, "forbidden": true, "notFound": true, "methodNotAllowed": true,
		"conflict": true, "gone": true, "preconditionFailed": true, "unprocessable": true}
	for _, a := range next {
		if a.Operation != nil {
			return false
		}
		if as := a.Assert; as != nil && as.SourceID == "" && as.Operator != "notEquals" && as.Operator != "notIn" {
			if refusals[as.Response] || strings.HasPrefix(as.ResponseCode, "4") {
				return true
			}
		}
	}
	return false
}

func (c *collector) add(kind, res, name, usedBy string) {
	if res != "" && c.isResource != nil && !c.isResource(res) {
		return
	}
	if c.refused && (kind == "searchParam" || kind == "include" || kind == "revinclude") {
		return
	}
	r := Requirement{Kind: kind, Resource: res, Name: name}
	k := r.key()
	if have, ok := c.by[k]; ok {
		if len(have.UsedBy) < 5 {
			have.UsedBy = append(have.UsedBy, usedBy)
		}
		return
	}
	r.UsedBy = []string{usedBy}
	c.by[k] = &r
	c.order = append(c.order, k)
}

// Requirements lists what the scripts need, in a stable order. URLs with variables
// (${name}) are read as far as they can be without running the script. isResource, when
// given, drops types that are not resource types (a script may probe the answer to one).
func Requirements(scripts []*testscript.Script, isResource func(string) bool) []Requirement {
	c := &collector{by: map[string]*Requirement{}, isResource: isResource}
	for _, s := range scripts {
		types := map[string]string{} // fixture and response ids to resource types
		for _, f := range s.Fixture {
			if t := fixtureType(s, f); t != "" {
				types[f.ID] = t
			}
		}
		visit := func(p string, op *testscript.Operation, refused bool) {
			if op == nil {
				return
			}
			c.refused = refused
			typ := operationRequirements(c, s.File+" "+p, op, types)
			c.refused = false
			if op.ResponseID != "" && typ != "" {
				types[op.ResponseID] = typ
			}
		}
		if s.Setup != nil {
			for i, a := range s.Setup.Action {
				visit(fmt.Sprintf("TestScript.setup.action[%d].operation", i), a.Operation, expectsRefusal(s.Setup.Action[i+1:]))
			}
		}
		for i, t := range s.Test {
			for j, a := range t.Action {
				visit(fmt.Sprintf("TestScript.test[%d].action[%d].operation", i, j), a.Operation, expectsRefusal(t.Action[j+1:]))
			}
		}
		if s.Teardown != nil {
			for i, a := range s.Teardown.Action {
				visit(fmt.Sprintf("TestScript.teardown.action[%d].operation", i), a.Operation, false)
			}
		}
		for i, f := range s.Fixture {
			p := fmt.Sprintf("%s TestScript.fixture[%d]", s.File, i)
			if t := types[f.ID]; t != "" {
				if f.Autocreate != nil && *f.Autocreate {
					c.add("resource", t, "", p)
					c.add("interaction", t, "create", p)
				}
				if f.Autodelete != nil && *f.Autodelete {
					c.add("resource", t, "", p)
					c.add("interaction", t, "delete", p)
				}
			}
		}
	}
	out := make([]Requirement, 0, len(c.order))
	for _, k := range c.order {
		out = append(out, *c.by[k])
	}
	return out
}

func fixtureType(s *testscript.Script, f testscript.Fixture) string {
	sub, err := s.FixtureJSON(f.ID)
	if err != nil {
		return ""
	}
	t, _ := sub["resourceType"].(string)
	return t
}

// operationRequirements records what one operation needs and returns the resource type it
// acts on.
func operationRequirements(c *collector, usedBy string, op *testscript.Operation, types map[string]string) string {
	code := ""
	if op.Type != nil {
		code = op.Type.Code
	}
	typ := op.Resource
	if typ == "" && op.TargetID != "" {
		typ = types[op.TargetID]
	}
	if typ == "" && op.SourceID != "" && code != "batch" && code != "transaction" {
		typ = types[op.SourceID]
	}
	if op.URL != "" && !strings.HasPrefix(op.URL, "${") {
		return urlRequirements(c, usedBy, op, "")
	}
	if typ != "" && code != "capabilities" && code != "batch" && code != "transaction" {
		c.add("resource", typ, "", usedBy)
	}
	for _, h := range op.RequestHeader {
		if strings.EqualFold(h.Field, "If-None-Exist") {
			c.add("conditional", typ, "conditionalCreate", usedBy)
		}
	}
	switch code {
	case "capabilities", "":
	case "read", "vread", "patch", "delete", "create":
		c.add("interaction", typ, code, usedBy)
	case "update", "updateCreate":
		c.add("interaction", typ, "update", usedBy)
		if code == "updateCreate" {
			c.add("conditional", typ, "updateCreate", usedBy)
		}
	case "deleteCondSingle", "deleteCondMultiple":
		c.add("interaction", typ, "delete", usedBy)
		c.add("conditional", typ, code, usedBy)
	case "history":
		switch {
		case op.TargetID != "" || (typ != "" && strings.HasPrefix(op.Params, "/") && !strings.HasPrefix(op.Params, "/_history")):
			c.add("interaction", typ, "history-instance", usedBy)
		case typ != "":
			c.add("interaction", typ, "history-type", usedBy)
		default:
			c.add("interaction", "", "history-system", usedBy)
		}
	case "search":
		if typ == "" {
			c.add("interaction", "", "search-system", usedBy)
		} else {
			c.add("interaction", typ, "search-type", usedBy)
		}
		queryRequirements(c, usedBy, typ, op.Params)
	case "batch", "transaction":
		c.add("interaction", "", code, usedBy)
	default:
		c.add("operation", typ, code, usedBy)
	}
	return typ
}

// urlRequirements reads an explicit url: [Type[/id[/_history[/vid]]]][/$op][?query].
func urlRequirements(c *collector, usedBy string, op *testscript.Operation, typ string) string {
	raw := op.URL
	if u, err := url.Parse(raw); err == nil && u.IsAbs() {
		return typ // another server's or a followed link: nothing to declare here
	}
	path, query, _ := strings.Cut(raw, "?")
	seg := strings.Split(strings.Trim(path, "/"), "/")
	method := strings.ToLower(op.Method)
	if len(seg) == 1 && seg[0] == "metadata" {
		return ""
	}
	if len(seg) > 0 && seg[0] != "" && !strings.HasPrefix(seg[0], "$") && !strings.HasPrefix(seg[0], "_") && !strings.HasPrefix(seg[0], "${") {
		typ = seg[0]
		c.add("resource", typ, "", usedBy)
	}
	last := seg[len(seg)-1]
	switch {
	case strings.HasPrefix(last, "$"):
		c.add("operation", typ, strings.TrimPrefix(last, "$"), usedBy)
	case len(seg) >= 2 && seg[1] == "_search", len(seg) == 1 && typ != "" && method == "get":
		c.add("interaction", typ, "search-type", usedBy)
		queryRequirements(c, usedBy, typ, "?"+query)
	case len(seg) == 1 && typ != "" && method == "post":
		c.add("interaction", typ, "create", usedBy)
	case len(seg) >= 3 && seg[2] == "_history":
		if len(seg) == 4 {
			c.add("interaction", typ, "vread", usedBy)
		} else {
			c.add("interaction", typ, "history-instance", usedBy)
		}
	case len(seg) == 2 && typ != "":
		switch method {
		case "get":
			c.add("interaction", typ, "read", usedBy)
		case "put":
			c.add("interaction", typ, "update", usedBy)
		case "patch":
			c.add("interaction", typ, "patch", usedBy)
		case "delete":
			c.add("interaction", typ, "delete", usedBy)
		}
	}
	return typ
}

// queryRequirements reads the search parameters of a params string.
func queryRequirements(c *collector, usedBy, typ, params string) {
	_, q, ok := strings.Cut(params, "?")
	if !ok {
		return
	}
	parts := strings.Split(q, "&")
	// A system search restricted by _type needs its parameters on those types.
	types := []string{typ}
	if typ == "" {
		for _, part := range parts {
			if v, ok := strings.CutPrefix(part, "_type="); ok && !strings.Contains(v, "${") {
				types = strings.Split(v, ",")
				for _, t := range types {
					c.add("resource", t, "", usedBy)
				}
			}
		}
	}
	for _, part := range parts {
		k, v, _ := strings.Cut(part, "=")
		if k == "" || k == "_type" {
			continue
		}
		if k == "_include" || k == "_revinclude" {
			if !strings.Contains(v, "${") {
				v = strings.TrimSuffix(strings.TrimSuffix(v, ":iterate"), ":recurse")
				c.add(strings.TrimPrefix(k, "_"), typ, v, usedBy)
			}
			continue
		}
		name, _, _ := strings.Cut(k, ":")
		name, _, _ = strings.Cut(name, ".")
		if resultParams[name] || strings.Contains(name, "${") {
			continue
		}
		for _, t := range types {
			c.add("searchParam", t, name, usedBy)
		}
	}
}

// Missing returns the requirements the CapabilityStatement (decoded JSON) does not declare,
// in the order given.
func Missing(cs map[string]any, reqs []Requirement) []Requirement {
	decl := declared(cs)
	var out []Requirement
	for _, r := range reqs {
		if !decl.has(r) {
			out = append(out, r)
		}
	}
	return out
}

type declaration struct {
	resources map[string]map[string]any
	system    map[string]bool // system interactions
	sysParams map[string]bool
	sysOps    map[string]bool
}

func declared(cs map[string]any) declaration {
	d := declaration{resources: map[string]map[string]any{}, system: map[string]bool{}, sysParams: map[string]bool{}, sysOps: map[string]bool{}}
	for _, r := range list(cs["rest"]) {
		rest := obj(r)
		if m, _ := rest["mode"].(string); m != "server" {
			continue
		}
		for _, res := range list(rest["resource"]) {
			m := obj(res)
			if t, _ := m["type"].(string); t != "" {
				d.resources[t] = m
			}
		}
		for _, it := range list(rest["interaction"]) {
			d.system[str(obj(it)["code"])] = true
		}
		for _, sp := range list(rest["searchParam"]) {
			d.sysParams[str(obj(sp)["name"])] = true
		}
		for _, op := range list(rest["operation"]) {
			d.sysOps[str(obj(op)["name"])] = true
		}
	}
	return d
}

func (d declaration) has(r Requirement) bool {
	if r.Resource == "" {
		switch r.Kind {
		case "interaction":
			return d.system[r.Name]
		case "searchParam":
			return d.sysParams[r.Name]
		case "operation":
			return d.sysOps[strings.TrimPrefix(r.Name, "$")]
		}
		return true
	}
	res, ok := d.resources[r.Resource]
	if !ok {
		return false
	}
	switch r.Kind {
	case "resource":
		return true
	case "interaction":
		return named(res["interaction"], "code", r.Name)
	case "searchParam":
		return named(res["searchParam"], "name", r.Name) || d.sysParams[r.Name]
	case "include":
		return contains(res["searchInclude"], r.Name) || contains(res["searchInclude"], "*")
	case "revinclude":
		return contains(res["searchRevInclude"], r.Name) || contains(res["searchRevInclude"], "*")
	case "operation":
		return named(res["operation"], "name", r.Name) || d.sysOps[r.Name]
	case "conditional":
		switch r.Name {
		case "conditionalCreate", "updateCreate":
			b, _ := res[r.Name].(bool)
			return b
		case "deleteCondSingle":
			v := str(res["conditionalDelete"])
			return v == "single" || v == "multiple"
		case "deleteCondMultiple":
			return str(res["conditionalDelete"]) == "multiple"
		}
	}
	return true
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func named(v any, key, name string) bool {
	for _, it := range list(v) {
		if str(obj(it)[key]) == name {
			return true
		}
	}
	return false
}

func contains(v any, s string) bool {
	for _, it := range list(v) {
		if str(it) == s {
			return true
		}
	}
	return false
}

// Sort orders requirements by resource, kind and name (for printing).
func Sort(reqs []Requirement) {
	sort.SliceStable(reqs, func(i, j int) bool {
		a, b := reqs[i], reqs[j]
		if a.Resource != b.Resource {
			return a.Resource < b.Resource
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
}
