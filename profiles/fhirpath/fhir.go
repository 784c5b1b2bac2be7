package fhirpath

import (
	"encoding/xml"
	"errors"
	"io"
	"sort"
	"strings"
)

func fnChildren(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	for _, v := range in {
		out = c.childrenOf(out, v)
	}
	return out, nil
}

func fnDescendants(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	queue := in
	for len(queue) > 0 {
		var next Collection
		for _, v := range queue {
			next = c.childrenOf(next, v)
		}
		out = append(out, next...)
		queue = next
	}
	return out, nil
}

// childrenOf appends the child elements of v in definition order (sorted keys for JSON the
// model does not describe).
func (c *evalCtx) childrenOf(out Collection, v Value) Collection {
	m, ok := v.node.(map[string]any)
	if !ok {
		if v.ext != nil {
			out, _ = c.navigate(out, v, "extension")
		}
		return out
	}
	if v.t.elems != nil && v.t.mt != nil {
		for _, el := range v.t.mt.Elements {
			out, _ = c.navigate(out, v, el.Name)
		}
		return out
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "resourceType" && !strings.HasPrefix(k, "_") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = c.appendUntyped(out, m[k])
	}
	return out
}

func fnType(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	out := make(Collection, 0, len(in))
	for _, v := range in {
		out = append(out, Value{t: c.e.typeInfo, node: map[string]any{"namespace": v.t.ns, "name": v.t.name}})
	}
	return out, nil
}

func fnIs(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errorf("is() on a collection of %d items", len(in))
	}
	return c.boolColl(n.spec.matches(in[0])), nil
}

// fnAs is the function form of 'as'. The specification makes a collection of more than one
// item an error, but FHIR's own invariants rely on it filtering (dom-3 uses
// descendants().as(canonical)), so it behaves as ofType() unless evaluation is Strict.
func fnAs(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	if len(in) > 1 && c.cfg.strict {
		return nil, errorf("as() on a collection of %d items", len(in))
	}
	return fnOfType(c, n, in, focus)
}

func fnNow(c *evalCtx, _ *funcNode, _, _ Collection) (Collection, error) {
	return Collection{c.dateTime(fromTime(c.currentTime(), kindDateTime, precMillisecond))}, nil
}

func fnToday(c *evalCtx, _ *funcNode, _, _ Collection) (Collection, error) {
	d := fromTime(c.currentTime(), kindDate, precDay)
	d.hasTZ, d.tzMin = false, 0
	return Collection{c.dateTime(d)}, nil
}

func fnTimeOfDay(c *evalCtx, _ *funcNode, _, _ Collection) (Collection, error) {
	d := fromTime(c.currentTime(), kindTime, precMillisecond)
	d.hasTZ, d.tzMin = false, 0
	return Collection{c.dateTime(d)}, nil
}

func fnExtension(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	url, ok, err := argString(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	ext := c.e.types["Extension"]
	var out Collection
	for _, v := range in {
		for _, x := range v.Extensions() {
			if m, ok := x.(map[string]any); ok && m["url"] == url {
				out = append(out, Value{t: ext, node: m})
			}
		}
	}
	return out, nil
}

func fnHasValue(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	ok := len(in) == 1 && in[0].t.ns == NamespaceFHIR && in[0].IsPrimitive() && in[0].node != nil
	return c.boolColl(ok), nil
}

func fnGetValue(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) != 1 || !in[0].IsPrimitive() || in[0].node == nil {
		return nil, nil
	}
	v := in[0]
	return Collection{{t: c.e.st[v.t.sys], node: v.node}}, nil
}

// fnResolve follows references: contained resources, Bundle entries, then the resolver
// option; an unresolvable Type/id reference yields a stub of that type.
func fnResolve(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	for _, v := range in {
		var ref string
		switch n := v.node.(type) {
		case map[string]any:
			ref, _ = n["reference"].(string)
		case string:
			if v.t.sys == sysString {
				ref = n
			}
		}
		if ref == "" {
			continue
		}
		if r, ok := c.resolveRef(ref); ok {
			out = append(out, c.e.inferValue(r))
		}
	}
	return out, nil
}

func (c *evalCtx) resolveRef(ref string) (map[string]any, bool) {
	var root map[string]any
	if len(c.resource) == 1 {
		root, _ = c.resource[0].node.(map[string]any)
	}
	if strings.HasPrefix(ref, "#") {
		if root == nil {
			return nil, false
		}
		if ref == "#" {
			return root, true
		}
		if r, ok := findContained(root, ref[1:]); ok {
			return r, true
		}
		if entries, ok := root["entry"].([]any); ok && root["resourceType"] == "Bundle" {
			for _, e := range entries {
				em, _ := e.(map[string]any)
				if res, ok := em["resource"].(map[string]any); ok {
					if r, ok := findContained(res, ref[1:]); ok {
						return r, true
					}
				}
			}
		}
		return nil, false
	}
	if root != nil && root["resourceType"] == "Bundle" {
		if r, ok := findInBundle(root, ref); ok {
			return r, true
		}
	}
	if c.cfg.resolver != nil {
		if r, ok := c.cfg.resolver(ref); ok {
			return r, true
		}
	}
	return c.stubFor(ref)
}

func findContained(res map[string]any, id string) (map[string]any, bool) {
	list, _ := res["contained"].([]any)
	for _, x := range list {
		if m, ok := x.(map[string]any); ok && m["id"] == id {
			return m, true
		}
	}
	return nil, false
}

func findInBundle(bundle map[string]any, ref string) (map[string]any, bool) {
	entries, _ := bundle["entry"].([]any)
	typ, id, relative := splitReference(ref)
	for _, e := range entries {
		em, _ := e.(map[string]any)
		res, ok := em["resource"].(map[string]any)
		if !ok {
			continue
		}
		if full, _ := em["fullUrl"].(string); full != "" && full == ref {
			return res, true
		}
		if relative != "" && res["resourceType"] == typ && res["id"] == id {
			return res, true
		}
	}
	return nil, false
}

// splitReference extracts Type and id from [base/]Type/id[/_history/v].
func splitReference(ref string) (typ, id, relative string) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return "", "", ""
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	return typ, id, typ + "/" + id
}

func (c *evalCtx) stubFor(ref string) (map[string]any, bool) {
	typ, id, rel := splitReference(ref)
	if rel == "" || id == "" || !c.e.model.IsResource(typ) {
		return nil, false
	}
	return map[string]any{"resourceType": typ, "id": id}, true
}

func fnMemberOf(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errorf("memberOf() on a collection of %d items", len(in))
	}
	vs, ok, err := argString(c, n, 0, focus)
	if err != nil || !ok || c.cfg.vsChecker == nil {
		return nil, err
	}
	type coding struct{ system, code string }
	var codings []coding
	v := in[0]
	switch node := v.node.(type) {
	case string:
		codings = append(codings, coding{code: node})
	case map[string]any:
		switch {
		case v.t.mt != nil && v.t.mt.Is("CodeableConcept"):
			list, _ := node["coding"].([]any)
			for _, x := range list {
				if m, ok := x.(map[string]any); ok {
					s, _ := m["system"].(string)
					cd, _ := m["code"].(string)
					codings = append(codings, coding{s, cd})
				}
			}
		default:
			s, _ := node["system"].(string)
			cd, _ := node["code"].(string)
			codings = append(codings, coding{s, cd})
		}
	}
	anyKnown := false
	for _, cd := range codings {
		if cd.code == "" {
			continue
		}
		member, known := c.cfg.vsChecker(cd.system, cd.code, vs)
		if !known {
			continue
		}
		anyKnown = true
		if member {
			return c.boolColl(true), nil
		}
	}
	if !anyKnown {
		return nil, nil
	}
	return c.boolColl(false), nil
}

// fnHTMLChecks checks narrative XHTML: well-formed, a div root, and none of the elements
// and attributes FHIR forbids (scripts, forms, frames, event handlers).
func fnHTMLChecks(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errorf("htmlChecks() on a collection of %d items", len(in))
	}
	s, ok := in[0].node.(string)
	if !ok {
		return c.boolColl(false), nil
	}
	return c.boolColl(checkXHTML(s)), nil
}

func checkXHTML(s string) bool {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	depth := 0
	sawRoot := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return sawRoot && depth == 0
		}
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if sawRoot || t.Name.Local != "div" {
					return false
				}
				sawRoot = true
			}
			switch strings.ToLower(t.Name.Local) {
			case "script", "object", "applet", "embed", "iframe", "frame", "frameset", "form", "input",
				"button", "select", "textarea", "base", "link", "meta", "style", "head", "body", "html":
				return false
			}
			for _, a := range t.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
					return false
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return false
			}
		}
	}
}

func fnConformsTo(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	url, ok, err := argString(c, n, 0, focus)
	if err != nil || !ok || len(in) == 0 {
		return nil, err
	}
	if len(in) > 1 {
		return nil, errorf("conformsTo() on a collection of %d items", len(in))
	}
	v := in[0]
	const core = "http://hl7.org/fhir/StructureDefinition/"
	if name, ok := strings.CutPrefix(url, core); ok {
		if _, known := c.e.types[name]; known {
			return c.boolColl(v.t.mt != nil && v.t.mt.Is(name)), nil
		}
	}
	if c.cfg.profile != nil {
		m, _ := v.node.(map[string]any)
		ok, err := c.cfg.profile(m, url)
		if err != nil {
			return nil, errorf("conformsTo(%s): %v", url, err)
		}
		return c.boolColl(ok), nil
	}
	return nil, errorf("conformsTo(): unknown profile %s", url)
}
