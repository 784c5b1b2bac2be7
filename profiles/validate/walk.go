package validate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// seg is one step of the expression naming the element being checked.
type seg struct {
	name   string
	idx    int    // -1 for a single-valued element
	ofType string // choice type, rendered as .ofType(T)
}

// walker validates one resource tree. The expression of the current element is kept as a
// stack of segments and rendered only when an issue is reported.
type walker struct {
	v      *Validator
	opts   *Options
	issues []outcome.Issue
	path   []seg
	// bindingErrors counts the errors against base required bindings.
	bindingErrors int
}

// resCtx is what the checks of one resource (a root, an entry or a contained resource) share.
type resCtx struct {
	root     map[string]any
	profiles []*compiledProfile
	opts     []fhirpath.Option // %resource, resolve() and memberOf() for invariants
	resolve  func(ref string) (map[string]any, bool)
	bundle   *bundleIndex
}

func (w *walker) expr() string {
	var b strings.Builder
	for i, s := range w.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.ofType != "" {
			b.WriteString(".ofType(")
			b.WriteString(s.ofType)
			b.WriteByte(')')
		}
		if s.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.idx))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func (w *walker) push(name string, idx int, ofType string) {
	w.path = append(w.path, seg{name, idx, ofType})
}
func (w *walker) pop() { w.path = w.path[:len(w.path)-1] }

// add reports an issue at the current element, or at a child of it when sub is not "".
func (w *walker) add(severity, code, sub, format string, args ...any) {
	at := w.expr()
	if sub != "" {
		at += "." + sub
	}
	msg := fmt.Sprintf(format, args...)
	w.issues = append(w.issues, outcome.Issue{Severity: severity, Code: code, Diagnostics: at + ": " + msg, Expression: []string{at}})
}

// bundleIndex finds Bundle entries by fullUrl and by Type/id in constant time.
type bundleIndex struct {
	byURL map[string]map[string]any
	outer func(ref string) (map[string]any, bool)
}

func newBundleIndex(b map[string]any, outer func(string) (map[string]any, bool)) *bundleIndex {
	entries, _ := b["entry"].([]any)
	ix := &bundleIndex{byURL: make(map[string]map[string]any, 2*len(entries)), outer: outer}
	for _, e := range entries {
		em, _ := e.(map[string]any)
		res, ok := em["resource"].(map[string]any)
		if !ok {
			continue
		}
		if fu, _ := em["fullUrl"].(string); fu != "" {
			ix.byURL[fu] = res
		}
		t, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		if t != "" && id != "" {
			if _, dup := ix.byURL[t+"/"+id]; !dup {
				ix.byURL[t+"/"+id] = res
			}
		}
	}
	return ix
}

func (ix *bundleIndex) find(ref string) (map[string]any, bool) {
	if r, ok := ix.byURL[ref]; ok {
		return r, true
	}
	if typ, id, ok := refTypeID(ref); ok {
		if r, ok := ix.byURL[typ+"/"+id]; ok {
			return r, true
		}
	}
	if ix.outer != nil {
		return ix.outer(ref)
	}
	return nil, false
}

// refTypeID reads [base/]Type/id[/_history/v].
func refTypeID(ref string) (typ, id string, ok bool) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 || j == len(ref)-1 {
		return "", "", false
	}
	id = ref[j+1:]
	rest := ref[:j]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	return typ, id, typ != ""
}

// resource validates one resource: root (push the type as the first segment) or nested
// (the enclosing element's segment names it).
func (w *walker) resource(res map[string]any, typ string, outer *resCtx, explicit []string, baseOnly bool, bundle *bundleIndex) {
	t, ok := w.v.model.Type(typ)
	if !ok || t.Kind != r4model.Resource || t.Abstract {
		w.add("error", "not-supported", "resourceType", "%q is not an R4 resource type", typ)
		return
	}
	root := outer == nil
	if root {
		w.push(typ, -1, "")
		defer w.pop()
	}
	c := &resCtx{root: res, bundle: bundle}
	switch {
	case bundle != nil:
		c.resolve = bundle.find
	case outer != nil:
		c.resolve = outer.resolve
	default:
		c.resolve = w.opts.Resolve
	}
	if typ == "Bundle" {
		c.bundle = newBundleIndex(res, c.resolve)
		c.resolve = c.bundle.find
	}
	if !baseOnly {
		c.profiles = w.chooseProfiles(res, typ, explicit)
	}
	c.opts = []fhirpath.Option{fhirpath.WithResource(res), fhirpath.WithValueSetChecker(w.v.memberOf)}
	if c.resolve != nil {
		c.opts = append(c.opts, fhirpath.WithResolver(c.resolve))
	}
	var keys []string
	if len(c.profiles) > 0 {
		keys = []string{typ}
	}
	w.visit(c, res, nil, t, nil, "", keys, baseOnly)
	if typ == "QuestionnaireResponse" && w.v.qcheck != nil {
		w.questionnaire(c, res)
	}
}

// chooseProfiles picks the profiles for a resource and reports unknown ones.
func (w *walker) chooseProfiles(res map[string]any, typ string, explicit []string) []*compiledProfile {
	urls, sub := explicit, ""
	if len(urls) == 0 {
		if meta, ok := res["meta"].(map[string]any); ok {
			if list, ok := meta["profile"].([]any); ok {
				for _, x := range list {
					if s, ok := x.(string); ok {
						urls = append(urls, s)
					}
				}
				sub = "meta.profile"
			}
		}
	}
	if len(urls) == 0 {
		if d := w.v.defaults[typ]; d != "" {
			return []*compiledProfile{w.v.profiles[d]}
		}
		return nil
	}
	var out []*compiledProfile
	for i, u := range urls {
		at := ""
		if sub != "" {
			at = sub + "[" + strconv.Itoa(i) + "]"
		}
		p, ok, why := w.v.lookupProfile(u)
		if !ok {
			w.add("error", "not-supported", at, "%s", why)
			continue
		}
		if p == nil {
			if strings.TrimPrefix(strings.SplitN(u, "|", 2)[0], coreSD) != typ {
				w.add("error", "invalid", at, "profile %s is for another resource type than %s", u, typ)
			}
			continue
		}
		if p.typ != typ {
			w.add("error", "invalid", at, "profile %s constrains %s, not %s", u, p.typ, typ)
			continue
		}
		if p.status == "retired" {
			w.add("warning", "business-rule", at, "profile %s is retired", u)
		}
		out = append(out, p)
	}
	return out
}

// visit checks one value of type t (held by element name of a parent of type parent) and
// walks its children. keys are the profile rule keys that apply to it.
func (w *walker) visit(c *resCtx, node any, ext map[string]any, t *r4model.Type, parent *r4model.Type, name string, keys []string, baseOnly bool) {
	prim := t.Kind == r4model.Primitive
	if !prim || node != nil {
		w.v.base.forNode(t, parent, name, func(ci *compiledInv) { w.invariant(c, ci, node, t) })
	}
	if parent != nil && !prim && len(w.v.bindings) > 0 {
		w.checkBase(node, t, parent, name)
	}
	for _, p := range c.profiles {
		for _, k := range keys {
			for _, ci := range p.invs[k] {
				w.invariant(c, ci, node, t)
			}
			for _, r := range p.self[k] {
				w.checkValue(c, r, node, t)
			}
		}
	}
	var m map[string]any
	if prim {
		m = ext
	} else {
		m, _ = node.(map[string]any)
	}
	if len(c.profiles) > 0 && m != nil {
		if list, ok := m["extension"].([]any); ok || len(keys) > 0 {
			w.checkExtensions(c, list, keys)
		}
	}
	if prim {
		if ext != nil {
			w.walkList(c, ext, "extension", w.v.extensionType(), t, keys, baseOnly)
		}
		return
	}
	if m == nil {
		return
	}
	var aliases map[string][]string
	for _, p := range c.profiles {
		for _, k := range keys {
			for _, r := range p.children[k] {
				aliases = w.checkChildren(r, m, t, aliases)
			}
		}
	}
	for _, el := range t.Elements {
		for _, r := range el.Types {
			jn := el.JSONName(r)
			val, hasVal := m[jn]
			var extv any
			if r.Type != nil && r.Type.Kind == r4model.Primitive {
				extv = m["_"+jn]
			}
			if !hasVal && extv == nil {
				continue
			}
			ofType := ""
			if el.Choice {
				ofType = r.Code
			}
			var childKeys []string
			if len(keys) > 0 {
				childKeys = w.childKeys(c, keys, el.Name)
			}
			if el.List {
				items, _ := val.([]any)
				exts, _ := extv.([]any)
				n := len(items)
				if len(exts) > n {
					n = len(exts)
				}
				for i := 0; i < n; i++ {
					var it any
					var ie map[string]any
					if i < len(items) {
						it = items[i]
					}
					if i < len(exts) {
						ie, _ = exts[i].(map[string]any)
					}
					ks := childKeys
					if al := aliases[el.Name+"#"+strconv.Itoa(i)]; len(al) > 0 {
						ks = append(append([]string(nil), childKeys...), al...)
					}
					w.push(el.Name, i, ofType)
					w.child(c, it, ie, r, t, el.Name, ks, baseOnly)
					w.pop()
				}
				continue
			}
			em, _ := extv.(map[string]any)
			ks := childKeys
			if al := aliases[el.Name+"#0"]; len(al) > 0 {
				ks = append(append([]string(nil), childKeys...), al...)
			}
			w.push(el.Name, -1, ofType)
			w.child(c, val, em, r, t, el.Name, ks, baseOnly)
			w.pop()
		}
	}
}

func (w *walker) child(c *resCtx, val any, ext map[string]any, r r4model.TypeRef, parent *r4model.Type, name string, keys []string, baseOnly bool) {
	ct := r.Type
	if ct == nil {
		return
	}
	if ct.Kind == r4model.Resource {
		res, ok := val.(map[string]any)
		if !ok {
			return
		}
		typ, _ := res["resourceType"].(string)
		if typ == "" {
			w.add("error", "required", "", "a nested resource needs a resourceType")
			return
		}
		// Bundle entries are resources in their own right (their meta.profile or their
		// type's default profile); contained resources and parameters get base R4.
		entry := parent.Name == "Bundle.entry" && name == "resource"
		var bix *bundleIndex
		if entry {
			bix = c.bundle
		}
		w.resource(res, typ, c, nil, baseOnly || !entry, bix)
		return
	}
	if ct.Kind != r4model.Primitive {
		if _, ok := val.(map[string]any); !ok {
			return // wrong JSON shape: the structural check reports it
		}
	} else if _, bad := val.(map[string]any); bad {
		return
	}
	w.visit(c, val, ext, ct, parent, name, keys, baseOnly)
}

func (w *walker) walkList(c *resCtx, m map[string]any, name string, t *r4model.Type, parent *r4model.Type, keys []string, baseOnly bool) {
	list, _ := m[name].([]any)
	if t == nil {
		return
	}
	var ks []string
	if len(keys) > 0 {
		ks = w.childKeys(c, keys, name)
	}
	for i, it := range list {
		if _, ok := it.(map[string]any); !ok {
			continue
		}
		w.push(name, i, "")
		w.visit(c, it, nil, t, parent, name, ks, baseOnly)
		w.pop()
	}
}

func (v *Validator) extensionType() *r4model.Type {
	t, _ := v.model.Type("Extension")
	return t
}

// childKeys extends keys by one element name, keeping only keys some profile constrains.
func (w *walker) childKeys(c *resCtx, keys []string, name string) []string {
	var out []string
	for _, k := range keys {
		ck := k + "." + name
		for _, p := range c.profiles {
			if p.reach[ck] {
				out = append(out, ck)
				break
			}
		}
	}
	return out
}

// invariant evaluates one invariant on node; only an explicit false fails it (an empty
// result means the rule does not apply).
func (w *walker) invariant(c *resCtx, ci *compiledInv, node any, t *r4model.Type) {
	opts := c.opts
	if ro, ok := w.v.rootOpt[t.Name]; ok && t.Kind != r4model.Resource {
		opts = append(opts[:len(opts):len(opts)], ro)
	}
	out, err := ci.expr.Evaluate(node, opts...)
	if err != nil {
		w.add("warning", "processing", "", "invariant %s could not be evaluated: %v", ci.Key, err)
		return
	}
	if len(out) != 1 {
		return
	}
	if b, ok := out[0].AsBool(); ok && !b {
		code := "invariant"
		w.add(ci.Severity, code, "", "%s: %s (%s)", ci.Key, ci.Human, ci.Expression)
	}
}

// checkChildren applies a rule's cardinality, type, must-support and slicing to the children
// it names, and records which slices each item belongs to.
func (w *walker) checkChildren(r *elemRule, m map[string]any, t *r4model.Type, aliases map[string][]string) map[string][]string {
	el, ok := t.Element(r.name)
	if !ok {
		return aliases
	}
	var items []any
	for _, tr := range el.Types {
		jn := el.JSONName(tr)
		val, has := m[jn]
		var ext any
		if tr.Type != nil && tr.Type.Kind == r4model.Primitive {
			ext = m["_"+jn]
		}
		if !has && ext == nil {
			continue
		}
		if el.Choice && len(r.types) > 0 && !contains(r.types, tr.Code) {
			w.add("error", "structure", el.Name+".ofType("+tr.Code+")", "%s allows %s here, not %s (%s)", r.prof, strings.Join(r.types, ", "), tr.Code, r.key)
		}
		if el.List {
			list, _ := val.([]any)
			exts, _ := ext.([]any)
			n := len(list)
			if len(exts) > n {
				n = len(exts)
			}
			for i := 0; i < n; i++ {
				if i < len(list) {
					items = append(items, list[i])
				} else {
					items = append(items, nil)
				}
			}
		} else {
			items = append(items, val)
		}
	}
	n := len(items)
	switch {
	case r.hasMin && n < r.min:
		w.add("error", "required", el.Name, "%s requires at least %d %s (%s); found %d", r.prof, r.min, el.Name, r.key, n)
	case r.max == 0 && n > 0:
		w.add("error", "structure", el.Name, "%s does not allow %s (%s)", r.prof, el.Name, r.key)
	case r.max > 0 && n > r.max:
		w.add("error", "structure", el.Name, "%s allows at most %d %s (%s); found %d", r.prof, r.max, el.Name, r.key, n)
	}
	if n == 0 && r.mustSupport {
		w.add("information", "informational", el.Name, "%s is must-support in %s and is absent", r.key, r.prof)
	}
	if len(r.slices) == 0 {
		return aliases
	}
	counts := make([]int, len(r.slices))
	for i, it := range items {
		matched := false
		for si, s := range r.slices {
			if s.matches(it) {
				counts[si]++
				if aliases == nil {
					aliases = map[string][]string{}
				}
				k := el.Name + "#" + strconv.Itoa(i)
				aliases[k] = append(aliases[k], s.alias)
				matched = true
				break
			}
		}
		if !matched && r.closed {
			sub := el.Name
			if el.List {
				sub += "[" + strconv.Itoa(i) + "]"
			}
			w.add("error", "structure", sub, "%s matches no slice of %s in %s, and the slicing is closed", el.Name, r.key, r.prof)
		}
	}
	for si, s := range r.slices {
		switch {
		case counts[si] < s.min:
			w.add("error", "required", el.Name, "%s requires at least %d %s in slice %s (%s); found %d", r.prof, s.min, el.Name, s.name, s.describe(), counts[si])
		case s.max >= 0 && counts[si] > s.max:
			w.add("error", "structure", el.Name, "%s allows at most %d %s in slice %s (%s); found %d", r.prof, s.max, el.Name, s.name, s.describe(), counts[si])
		}
		if counts[si] == 0 && s.mustSupport {
			w.add("information", "informational", el.Name, "slice %s (%s) is must-support in %s and is absent", s.alias, s.describe(), r.prof)
		}
	}
	return aliases
}

func (s *sliceRule) describe() string {
	parts := make([]string, 0, len(s.disc))
	for _, d := range s.disc {
		if d.value == "" {
			parts = append(parts, strings.Join(d.path, ".")+" present")
		} else {
			parts = append(parts, strings.Join(d.path, ".")+" = "+d.value)
		}
	}
	return strings.Join(parts, ", ")
}

// matches reports whether an item belongs to the slice: every discriminator path has a
// value equal to the discriminator's (or exists, when its value is empty).
func (s *sliceRule) matches(item any) bool {
	for _, d := range s.disc {
		if !jsonPathHas(item, d.path, d.value) {
			return false
		}
	}
	return true
}

func jsonPathHas(x any, path []string, want string) bool {
	if len(path) == 0 || (len(path) == 1 && path[0] == "") {
		if x == nil {
			return false
		}
		return want == "" || primString(x) == want
	}
	switch n := x.(type) {
	case map[string]any:
		return jsonPathHas(n[path[0]], path[1:], want)
	case []any:
		for _, it := range n {
			if jsonPathHas(it, path, want) {
				return true
			}
		}
	}
	return false
}

func primString(x any) string {
	switch v := x.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkValue applies a rule's value constraints to one value.
func (w *walker) checkValue(c *resCtx, r *elemRule, node any, t *r4model.Type) {
	if node == nil {
		return
	}
	if r.fixed != nil && !jsonEqual(r.fixed, node) {
		w.add("error", "value", "", "%s fixes %s to %s", r.prof, r.key, compact(r.fixed))
	}
	if r.pattern != nil && !jsonMatches(r.pattern, node) {
		w.add("error", "value", "", "%s requires %s to match %s", r.prof, r.key, compact(r.pattern))
	}
	if r.binding != nil {
		w.checkBinding(r.binding, node, t, r.prof+" ("+r.key+")")
	}
	if len(r.targets) > 0 && t.Is("Reference") {
		w.checkTarget(c, r, node)
	}
	for _, rule := range r.rules {
		s, sub := "", ""
		switch n := node.(type) {
		case string:
			s = n
		case map[string]any:
			s, _ = n["value"].(string)
			sub = "value"
		}
		if s == "" {
			continue
		}
		var ok bool
		var why string
		if rule == "nhs-number" {
			if ok, why = ValidNHSNumber(s); !ok {
				w.add("error", "value", sub, "%q is not a valid NHS number: %s", s, why)
			}
		} else if rule == "ods-code" {
			if ok, why = ValidODSCode(s); !ok {
				w.add("error", "value", sub, "%q is not a valid ODS code: %s", s, why)
			}
		}
	}
}

// codings lists the (system, code) pairs of a coded value; ok is false for types that carry
// no code.
func codings(node any, t *r4model.Type) (out [][2]string, ok bool) {
	switch {
	case t.Kind == r4model.Primitive:
		s, isStr := node.(string)
		if !isStr || !t.Is("code") {
			return nil, false
		}
		return [][2]string{{"", s}}, true
	case t.Is("Coding"):
		m, _ := node.(map[string]any)
		s, _ := m["system"].(string)
		cd, _ := m["code"].(string)
		return [][2]string{{s, cd}}, true
	case t.Is("CodeableConcept"):
		m, _ := node.(map[string]any)
		list, _ := m["coding"].([]any)
		for _, x := range list {
			cm, _ := x.(map[string]any)
			s, _ := cm["system"].(string)
			cd, _ := cm["code"].(string)
			out = append(out, [2]string{s, cd})
		}
		return out, true
	}
	return nil, false
}

// checkBinding tests a coded value against a value set: required fails with an error,
// extensible with a warning; preferred and example bindings are guidance only.
func (w *walker) checkBinding(b *Binding, node any, t *r4model.Type, where string) {
	if b.Strength != "required" && b.Strength != "extensible" {
		return
	}
	cs, ok := codings(node, t)
	if !ok {
		return
	}
	vs, known := w.v.vsets[b.ValueSet]
	if !known {
		w.add("information", "informational", "", "value set %s (%s binding, %s) is not available offline; the code was not checked", b.ValueSet, b.Strength, where)
		return
	}
	sev := "error"
	if b.Strength == "extensible" {
		sev = "warning"
	}
	if len(cs) == 0 {
		if b.Strength == "required" {
			w.add(sev, "code-invalid", "", "a code from value set %s is required (%s binding, %s); there is none", b.ValueSet, b.Strength, where)
		}
		return
	}
	for _, c := range cs {
		if c[0] == "" && t.Kind != r4model.Primitive {
			continue // a Coding's code means nothing without its system
		}
		if vs.contains(c[0], c[1]) {
			if vs.retired {
				w.add("warning", "business-rule", "", "value set %s (%s) is retired", b.ValueSet, where)
			}
			return
		}
	}
	var got []string
	for _, c := range cs {
		switch {
		case c[0] != "":
			got = append(got, c[0]+"|"+c[1])
		case t.Kind != r4model.Primitive:
			got = append(got, c[1]+" (with no system)")
		default:
			got = append(got, c[1])
		}
	}
	w.add(sev, "code-invalid", "", "%s is not in value set %s (%s binding, %s)", strings.Join(got, ", "), b.ValueSet, b.Strength, where)
}

// checkTarget checks the type of the resource a Reference points to, when it can be told
// from the reference, the resource it resolves to, or Reference.type.
func (w *walker) checkTarget(c *resCtx, r *elemRule, node any) {
	m, _ := node.(map[string]any)
	ref, _ := m["reference"].(string)
	typ := ""
	switch {
	case strings.HasPrefix(ref, "#"):
		list, _ := c.root["contained"].([]any)
		for _, x := range list {
			if cm, ok := x.(map[string]any); ok && "#"+primString(cm["id"]) == ref {
				typ, _ = cm["resourceType"].(string)
			}
		}
	case ref != "":
		if c.resolve != nil {
			if res, ok := c.resolve(ref); ok {
				typ, _ = res["resourceType"].(string)
			}
		}
		if typ == "" && !strings.HasPrefix(ref, "urn:") {
			if t, _, ok := refTypeID(ref); ok && w.v.model.IsResource(t) {
				typ = t
			}
		}
	}
	if typ == "" {
		typ, _ = m["type"].(string)
	}
	if typ == "" || contains(r.targets, typ) || contains(r.targets, "Resource") {
		return
	}
	w.add("error", "structure", "", "%s allows a reference to %s here (%s), not to %s", r.prof, strings.Join(r.targets, " or "), r.key, typ)
}

// checkExtensions checks the extensions on one element against the extension rules of the
// profiles for it.
func (w *walker) checkExtensions(c *resCtx, list []any, keys []string) {
	var rules map[string]*ExtensionRule
	for _, p := range c.profiles {
		for _, k := range keys {
			for _, r := range p.self[k] {
				for u, x := range r.exts {
					if rules == nil {
						rules = map[string]*ExtensionRule{}
					}
					rules[u] = x
				}
			}
		}
	}
	if len(rules) == 0 && len(list) == 0 {
		return
	}
	var counts map[string]int
	if len(rules) > 0 {
		counts = map[string]int{}
	}
	for i, x := range list {
		ext, ok := x.(map[string]any)
		if !ok {
			continue
		}
		u, _ := ext["url"].(string)
		if counts != nil {
			counts[u]++
		}
		sub := "extension[" + strconv.Itoa(i) + "]"
		rule, ok := rules[u]
		if !ok {
			switch {
			case w.v.extURLs[u]:
				w.add("error", "extension", sub, "extension %s is not allowed on this element by the profile", u)
			case strings.HasPrefix(u, "https://fhir.hl7.org.uk/") || strings.HasPrefix(u, "https://fhir.nhs.uk/"):
				w.add("warning", "extension", sub, "extension %s is not a known UK Core extension", u)
			}
			continue
		}
		w.push("extension", i, "")
		w.checkExtension(c, rule, ext)
		w.pop()
	}
	for u, r := range rules {
		n := counts[u]
		switch {
		case n < r.Min:
			w.add("error", "required", "extension('"+u+"')", "at least %d extension %s required; found %d", r.Min, u, n)
		case r.Max != "" && r.Max != "*":
			if max, err := strconv.Atoi(r.Max); err == nil && n > max {
				w.add("error", "structure", "extension('"+u+"')", "at most %s extension %s allowed; found %d", r.Max, u, n)
			}
		}
	}
}

// checkExtension checks one extension: retirement, value type and binding, or the
// sub-extensions of a complex extension.
func (w *walker) checkExtension(c *resCtx, r *ExtensionRule, ext map[string]any) {
	if r.Status == "retired" {
		w.add("warning", "business-rule", "", "extension %s is retired", r.URL)
	}
	var valKey, valType string
	for k := range ext {
		if strings.HasPrefix(k, "value") && len(k) > 5 {
			valKey, valType = k, k[5:]
		}
	}
	if vf := w.v.verif; vf != nil && r.URL == vf.Extension && valKey != "" {
		// Check the current spelling; a retired one is a warning and is normalised on write.
		cp := map[string]any{valKey: cloneJSON(ext[valKey])}
		if changed, was := vf.normalizeValue(cp); changed {
			w.add("warning", "code-invalid", "value.ofType("+typeCode(valType)+")", "NHS number verification status %s is a retired spelling; it is stored as %s", strings.Join(was, ", "), describeCodings(cp[valKey]))
			ext = cp
		}
	}
	if len(r.Sub) > 0 {
		if valKey != "" {
			w.add("error", "structure", valKey, "extension %s is complex: it has sub-extensions, not a value", r.URL)
		}
		subs, _ := ext["extension"].([]any)
		byURL := map[string]*ExtensionRule{}
		for i := range r.Sub {
			byURL[r.Sub[i].URL] = &r.Sub[i]
		}
		counts := map[string]int{}
		for i, x := range subs {
			se, _ := x.(map[string]any)
			u, _ := se["url"].(string)
			counts[u]++
			sr, ok := byURL[u]
			if !ok {
				w.add("error", "extension", "extension["+strconv.Itoa(i)+"]", "extension %s has no sub-extension %q", r.URL, u)
				continue
			}
			w.push("extension", i, "")
			w.checkExtension(c, sr, se)
			w.pop()
		}
		for i := range r.Sub {
			sr := &r.Sub[i]
			n := counts[sr.URL]
			if n < sr.Min {
				w.add("error", "required", "extension('"+sr.URL+"')", "extension %s needs at least %d sub-extension %q; found %d", r.URL, sr.Min, sr.URL, n)
			}
			if max, err := strconv.Atoi(sr.Max); err == nil && n > max {
				w.add("error", "structure", "extension('"+sr.URL+"')", "extension %s allows at most %d sub-extension %q; found %d", r.URL, max, sr.URL, n)
			}
		}
		return
	}
	if len(r.ValueTypes) == 0 {
		return
	}
	if valKey == "" {
		w.add("error", "required", "value", "extension %s needs a value (%s)", r.URL, strings.Join(r.ValueTypes, " or "))
		return
	}
	ok := false
	for _, vt := range r.ValueTypes {
		if r4model.ChoiceSuffix(vt) == valType {
			ok = true
		}
	}
	code := typeCode(valType)
	if !ok {
		w.add("error", "structure", "value.ofType("+code+")", "extension %s takes a value of type %s, not %s", r.URL, strings.Join(r.ValueTypes, " or "), code)
		return
	}
	if r.Binding != nil {
		if t, found := w.v.model.Type(code); found {
			w.push("value", -1, code)
			w.checkBinding(r.Binding, ext[valKey], t, "extension "+r.URL)
			w.pop()
		}
	}
}

// typeCode turns a choice suffix back into a type code ("DateTime" → "dateTime").
func typeCode(suffix string) string {
	if suffix == "" {
		return ""
	}
	lower := strings.ToLower(suffix[:1]) + suffix[1:]
	switch lower {
	case "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary", "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt", "positiveInt", "uuid":
		return lower
	}
	return suffix
}

func describeCodings(v any) string {
	var parts []string
	var list []any
	if m, ok := v.(map[string]any); ok {
		if l, ok := m["coding"].([]any); ok {
			list = l
		} else {
			list = []any{m}
		}
	}
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			parts = append(parts, primString(m["system"])+"|"+primString(m["code"]))
		}
	}
	return strings.Join(parts, ", ")
}

func cloneJSON(x any) any {
	switch n := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(n))
		for k, v := range n {
			out[k] = cloneJSON(v)
		}
		return out
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			out[i] = cloneJSON(v)
		}
		return out
	}
	return x
}

// jsonEqual compares JSON values; numbers compare by value.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !jsonEqual(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case string, bool:
		return a == b
	}
	if isNumber(a) && isNumber(b) {
		fa, ea := strconv.ParseFloat(primString(a), 64)
		fb, eb := strconv.ParseFloat(primString(b), 64)
		return ea == nil && eb == nil && fa == fb
	}
	return false
}

func isNumber(x any) bool {
	switch x.(type) {
	case json.Number, float64:
		return true
	}
	return false
}

// jsonMatches applies FHIR pattern semantics: everything in the pattern is present in the
// value with the same value; a pattern array item matches some item of the value's array.
func jsonMatches(pattern, value any) bool {
	switch p := pattern.(type) {
	case map[string]any:
		v, ok := value.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range p {
			if !jsonMatches(pv, v[k]) {
				return false
			}
		}
		return true
	case []any:
		v, ok := value.([]any)
		if !ok {
			return false
		}
		for _, pi := range p {
			found := false
			for _, vi := range v {
				if jsonMatches(pi, vi) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	return jsonEqual(pattern, value)
}

func compact(x any) string {
	b, _ := json.Marshal(x)
	return string(b)
}

// questionnaire checks a QuestionnaireResponse against the Questionnaire it names, found in
// the Bundle, among the contained resources or through Options.Questionnaire.
func (w *walker) questionnaire(c *resCtx, qr map[string]any) {
	canonical, _ := qr["questionnaire"].(string)
	if canonical == "" {
		return
	}
	var q map[string]any
	if strings.HasPrefix(canonical, "#") {
		list, _ := qr["contained"].([]any)
		for _, x := range list {
			if m, ok := x.(map[string]any); ok && "#"+primString(m["id"]) == canonical {
				q = m
			}
		}
	}
	if q == nil && c.resolve != nil {
		if r, ok := c.resolve(canonical); ok && r["resourceType"] == "Questionnaire" {
			q = r
		}
	}
	if q == nil && w.opts.Questionnaire != nil {
		q, _ = w.opts.Questionnaire(canonical)
	}
	if q == nil {
		w.add("information", "not-found", "questionnaire", "Questionnaire %s is not available; the answers were not checked against it", canonical)
		return
	}
	prefix := w.expr()
	for _, is := range w.v.qcheck(qr, q) {
		for i, x := range is.Expression {
			if rest, ok := strings.CutPrefix(x, "QuestionnaireResponse"); ok {
				is.Expression[i] = prefix + rest
				is.Diagnostics = strings.Replace(is.Diagnostics, x, is.Expression[i], 1)
			}
		}
		w.issues = append(w.issues, is)
	}
}
