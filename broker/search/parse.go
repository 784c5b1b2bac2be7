package search

import (
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/searchparam"
)

// maxChain bounds chain and _has depth so one request cannot ask for an unbounded join.
const maxChain = 4

var elementRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$`)

type parser struct {
	reg  Params
	opts Options
	now  time.Time
	q    *Query
}

// Parse validates the search parameters q for resourceType ("" for a system-level search,
// where _type names the types) and returns the Query. Problems are returned as *Error.
// Parameters with empty values are ignored. Keys are processed in sorted order, so errors and
// warnings do not depend on map order.
func Parse(resourceType string, q url.Values, reg Params, opts Options) (*Query, error) {
	p := &parser{reg: reg, opts: opts, now: opts.Now, q: &Query{Type: resourceType}}
	if p.now.IsZero() {
		p.now = time.Now()
	}
	if resourceType != "" {
		p.q.Types = []string{resourceType}
	}
	maxCount := opts.MaxCount
	if maxCount <= 0 {
		maxCount = MaxPageSize
	}
	p.q.Count = opts.DefaultCount
	if p.q.Count <= 0 {
		p.q.Count = DefaultPageSize
	}
	p.q.Count = min(p.q.Count, maxCount)

	// _type first: the other parameters are looked up on the types it names.
	if err := p.parseTypes(nonEmpty(q["_type"])); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		vals := nonEmpty(q[key])
		if len(vals) == 0 || key == "_type" {
			continue
		}
		if err := p.param(key, vals, maxCount); err != nil {
			return nil, err
		}
	}
	if p.q.Summary == SummaryCount {
		p.q.Count = 0
	}
	return p.q, nil
}

func nonEmpty(vals []string) []string {
	var out []string
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// unsupported applies Prefer: handling to an unknown or unsupported parameter.
func (p *parser) unsupported(e *Error) error {
	if p.opts.Strict {
		return e
	}
	p.q.Warnings = append(p.q.Warnings, e)
	return nil
}

// param dispatches one query key with its non-empty values.
func (p *parser) param(key string, vals []string, maxCount int) error {
	base := key
	if i := strings.IndexAny(key, ":."); i >= 0 {
		base = key[:i]
	}
	switch base {
	case "_include", "_revinclude":
		return p.parseIncludes(key, base == "_revinclude", vals)
	case "_format", "_pretty":
		return nil // the server handles the representation
	case "_contained", "_containedType":
		return errorf(key, CodeNotSupported, "searching contained resources is not supported")
	case "_text", "_content", "_list", "_query", "_filter":
		return p.unsupported(errorf(key, CodeNotSupported, "the %s parameter is not supported by this server", base))
	case "_count", "_offset", "_sort", "_total", "_summary", "_elements", "_type":
		if key != base {
			return errorf(key, CodeInvalid, "%s takes no modifier", base)
		}
		return p.resultParam(key, vals, maxCount)
	}
	return p.parseClauses(key, vals)
}

func (p *parser) resultParam(key string, vals []string, maxCount int) error {
	if key != "_elements" && len(vals) > 1 {
		return errorf(key, CodeInvalid, "may appear only once")
	}
	v := vals[0]
	switch key {
	case "_count", "_offset":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(key, CodeValue, "%q is not a non-negative whole number", v)
		}
		if key == "_offset" {
			p.q.Offset = n
			return nil
		}
		if n > maxCount {
			p.q.Warnings = append(p.q.Warnings, errorf(key, CodeInformation, "%d is more than the maximum page size; using %d", n, maxCount))
			n = maxCount
		}
		p.q.Count = n
	case "_total":
		switch t := Total(v); t {
		case TotalNone, TotalEstimate, TotalAccurate:
			p.q.Total = t
		default:
			return errorf(key, CodeValue, "%q is not valid (expected none, estimate or accurate)", v)
		}
	case "_summary":
		switch s := Summary(v); s {
		case SummaryTrue, SummaryText, SummaryData, SummaryCount, SummaryFalse:
			p.q.Summary = s
		default:
			return errorf(key, CodeValue, "%q is not valid (expected true, text, data, count or false)", v)
		}
	case "_elements":
		for _, v := range vals {
			for _, e := range strings.Split(v, ",") {
				e = strings.TrimSpace(e)
				if e == "" || slices.Contains(p.q.Elements, e) {
					continue
				}
				if !elementRE.MatchString(e) {
					return errorf(key, CodeValue, "%q is not an element name", e)
				}
				p.q.Elements = append(p.q.Elements, e)
			}
		}
	case "_sort":
		return p.parseSort(key, v)
	}
	return nil
}

func (p *parser) parseTypes(vals []string) error {
	if len(vals) == 0 {
		return nil
	}
	if len(vals) > 1 {
		return errorf("_type", CodeInvalid, "may appear only once (list the types separated by commas)")
	}
	var types []string
	for _, t := range strings.Split(vals[0], ",") {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(types, t) {
			continue
		}
		if !typeRE.MatchString(t) {
			return errorf("_type", CodeValue, "%q is not a resource type", t)
		}
		types = append(types, t)
	}
	if p.q.Type != "" {
		if len(types) > 0 && (len(types) != 1 || types[0] != p.q.Type) {
			return errorf("_type", CodeInvalid, "can only be used in a system-level search (this search is on %s)", p.q.Type)
		}
		return nil
	}
	p.q.Types = types
	return nil
}

func (p *parser) parseSort(key, v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		name, desc := strings.CutPrefix(item, "-")
		if name == "" {
			continue
		}
		if strings.ContainsAny(name, ":.") {
			return errorf(key, CodeInvalid, "cannot sort on %q: modifiers and chains are not allowed in _sort", name)
		}
		def, ok := p.lookupIn(p.q.Types, name)
		if !ok {
			if err := p.unsupported(errorf(key, CodeNotSupported, "cannot sort on unknown search parameter %q%s", name, p.forTypes(p.q.Types))); err != nil {
				return err
			}
			continue
		}
		if def.Type == searchparam.Composite || def.Type == searchparam.Special {
			if err := p.unsupported(errorf(key, CodeNotSupported, "sorting on %s parameter %q is not supported", def.Type, name)); err != nil {
				return err
			}
			continue
		}
		if slices.ContainsFunc(p.q.Sort, func(s Sort) bool { return s.Param.Code == name }) {
			continue
		}
		p.q.Sort = append(p.q.Sort, Sort{Param: def, Desc: desc})
	}
	return nil
}

func (p *parser) parseIncludes(key string, rev bool, vals []string) error {
	base, mod, _ := strings.Cut(key, ":")
	if mod != "" && mod != "iterate" && mod != "recurse" {
		return errorf(key, CodeInvalid, "unknown modifier :%s on %s (expected :iterate)", mod, base)
	}
	iterate := mod != ""
	for _, v := range vals {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			inc, err := p.parseInclude(key, item, rev, iterate)
			if err != nil {
				return err
			}
			if inc == nil { // ignored under lenient handling
				continue
			}
			if rev {
				p.q.RevIncludes = append(p.q.RevIncludes, *inc)
			} else {
				p.q.Includes = append(p.q.Includes, *inc)
			}
		}
	}
	return nil
}

// parseInclude parses "*", "Type:*", "Type:param" and "Type:param:TargetType". It returns a
// nil Include for a parameter ignored under lenient handling.
func (p *parser) parseInclude(key, item string, rev, iterate bool) (*Include, error) {
	if item == "*" {
		return &Include{Wildcard: true, Iterate: iterate}, nil
	}
	parts := strings.Split(item, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[1] == "" {
		return nil, errorf(key, CodeValue, "%q is not valid (expected Type:parameter[:TargetType] or *)", item)
	}
	inc := &Include{Type: parts[0], Iterate: iterate}
	if !typeRE.MatchString(inc.Type) {
		return nil, errorf(key, CodeValue, "%q: %q is not a resource type", item, inc.Type)
	}
	if parts[1] == "*" {
		if len(parts) == 3 {
			return nil, errorf(key, CodeValue, "%q: a wildcard cannot name a target type", item)
		}
		inc.Wildcard = true
	} else {
		def, ok := p.lookup(inc.Type, parts[1])
		if !ok {
			return nil, p.unsupported(errorf(key, CodeNotSupported, "%q: %s has no search parameter %q", item, inc.Type, parts[1]))
		}
		if def.Type != searchparam.Reference {
			return nil, errorf(key, CodeInvalid, "%q: %s is a %s parameter, not a reference", item, parts[1], def.Type)
		}
		inc.Param = def
		if len(parts) == 3 {
			inc.TargetType = parts[2]
			if !typeRE.MatchString(inc.TargetType) {
				return nil, errorf(key, CodeValue, "%q: %q is not a resource type", item, inc.TargetType)
			}
			if len(def.Target) > 0 && !slices.Contains(def.Target, inc.TargetType) {
				return nil, errorf(key, CodeInvalid, "%q: %s:%s cannot refer to a %s", item, inc.Type, def.Code, inc.TargetType)
			}
		}
	}
	if iterate || p.q.Types == nil {
		return inc, nil
	}
	if !rev && !slices.Contains(p.q.Types, inc.Type) {
		return nil, errorf(key, CodeInvalid, "%q: %s is not a searched type (use _include:iterate to include from included resources)", item, inc.Type)
	}
	if rev && inc.Param != nil && len(inc.Param.Target) > 0 &&
		!slices.ContainsFunc(p.q.Types, func(t string) bool { return slices.Contains(inc.Param.Target, t) }) {
		return nil, errorf(key, CodeInvalid, "%q: %s:%s cannot refer to %s", item, inc.Type, inc.Param.Code, strings.Join(p.q.Types, " or "))
	}
	return inc, nil
}

// keyInfo is a parsed clause key.
type keyInfo struct {
	chain   []Link
	param   *searchparam.Param
	mod     Modifier
	refType string
}

// parseClauses turns each repetition of key into one AND-ed clause.
func (p *parser) parseClauses(key string, vals []string) error {
	info, err, ignorable := p.parseKey(key, p.q.Types, key, 0)
	if err != nil {
		if ignorable {
			return p.unsupported(err)
		}
		return err
	}
	for _, raw := range vals {
		c := Clause{Key: key, Chain: info.chain, Param: info.param, Modifier: info.mod}
		for _, part := range splitEscaped(raw, ',') {
			if part == "" {
				continue
			}
			v, err := p.parseValue(info.param, info.mod, info.refType, part)
			if err != nil {
				return errorf(key, CodeValue, "%v", err)
			}
			c.Values = append(c.Values, v)
		}
		if len(c.Values) > 0 {
			p.q.Clauses = append(p.q.Clauses, c)
		}
	}
	return nil
}

// parseKey resolves the part of the key that applies to types (the searched types, or the
// type reached so far through a chain). full is the key as written, for messages. ignorable
// marks errors that lenient handling may turn into warnings: unknown and unsupported
// parameters.
func (p *parser) parseKey(full string, types []string, key string, depth int) (info *keyInfo, err *Error, ignorable bool) {
	if depth > maxChain {
		return nil, errorf(full, CodeNotSupported, "chains longer than %d links are not supported", maxChain), false
	}
	if rest, ok := strings.CutPrefix(key, "_has:"); ok {
		return p.parseHas(full, types, rest, depth)
	}
	if head, rest, ok := strings.Cut(key, "."); ok {
		return p.parseChain(full, types, head, rest, depth)
	}
	code, modStr, _ := strings.Cut(key, ":")
	def, ok := p.lookupIn(types, code)
	if !ok {
		return nil, errorf(full, CodeNotSupported, "unknown search parameter %q%s", code, p.forTypes(types)), true
	}
	switch def.Type {
	case searchparam.Composite, searchparam.Special:
		return nil, errorf(full, CodeNotSupported, "%s parameters such as %q are not supported", def.Type, code), true
	}
	mod, refType, err := checkModifier(full, def, modStr)
	if err != nil {
		return nil, err, false
	}
	return &keyInfo{param: def, mod: mod, refType: refType}, nil, false
}

// parseHas handles rest = "Type:param:key" of "_has:Type:param:key".
func (p *parser) parseHas(full string, types []string, rest string, depth int) (*keyInfo, *Error, bool) {
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, errorf(full, CodeInvalid, "_has must be written _has:Type:reference:parameter"), false
	}
	if len(types) != 1 {
		return nil, errorf(full, CodeNotSupported, "_has is only supported when searching one resource type"), true
	}
	typ, code := parts[0], parts[1]
	if !typeRE.MatchString(typ) {
		return nil, errorf(full, CodeInvalid, "_has: %q is not a resource type", typ), false
	}
	ref, ok := p.lookup(typ, code)
	if !ok {
		return nil, errorf(full, CodeNotSupported, "_has: %s has no search parameter %q", typ, code), true
	}
	if ref.Type != searchparam.Reference {
		return nil, errorf(full, CodeInvalid, "_has: %s.%s is a %s parameter, not a reference", typ, code, ref.Type), false
	}
	if len(ref.Target) > 0 && !slices.Contains(ref.Target, types[0]) {
		return nil, errorf(full, CodeInvalid, "_has: %s:%s cannot refer to a %s", typ, code, types[0]), false
	}
	info, err, ign := p.parseKey(full, []string{typ}, parts[2], depth+1)
	if err != nil {
		return nil, err, ign
	}
	info.chain = append([]Link{{Reverse: true, Type: typ, Param: ref}}, info.chain...)
	return info, nil, false
}

// parseChain handles "ref[:Type].rest".
func (p *parser) parseChain(full string, types []string, head, rest string, depth int) (*keyInfo, *Error, bool) {
	code, typ, _ := strings.Cut(head, ":")
	if len(types) != 1 {
		return nil, errorf(full, CodeNotSupported, "chained parameters are only supported when searching one resource type"), true
	}
	ref, ok := p.lookupIn(types, code)
	if !ok {
		return nil, errorf(full, CodeNotSupported, "unknown search parameter %q%s", code, p.forTypes(types)), true
	}
	if ref.Type != searchparam.Reference {
		return nil, errorf(full, CodeInvalid, "%q is a %s parameter, not a reference, so it cannot be chained", code, ref.Type), false
	}
	if rest == "" {
		return nil, errorf(full, CodeInvalid, "nothing follows the \".\" of the chain"), false
	}
	if typ != "" {
		if !typeRE.MatchString(typ) {
			return nil, errorf(full, CodeInvalid, "modifier :%s cannot be used in a chain (only a target type can)", typ), false
		}
		if len(ref.Target) > 0 && !slices.Contains(ref.Target, typ) {
			return nil, errorf(full, CodeInvalid, "%s cannot refer to a %s (targets: %s)", code, typ, strings.Join(ref.Target, ", ")), false
		}
	} else {
		var e *Error
		var ign bool
		if typ, e, ign = p.chainTarget(full, ref, rest); e != nil {
			return nil, e, ign
		}
	}
	info, err, ign := p.parseKey(full, []string{typ}, rest, depth+1)
	if err != nil {
		return nil, err, ign
	}
	info.chain = append([]Link{{Type: typ, Param: ref}}, info.chain...)
	return info, nil, false
}

// chainTarget picks the target type of a chain that does not name one: the parameter's only
// target, or else the only target that has the next parameter.
func (p *parser) chainTarget(full string, ref *searchparam.Param, rest string) (string, *Error, bool) {
	if len(ref.Target) == 1 {
		return ref.Target[0], nil, false
	}
	if len(ref.Target) == 0 {
		return "", errorf(full, CodeInvalid, "%s can refer to any type: name the target, e.g. %s:Patient.%s", ref.Code, ref.Code, rest), false
	}
	next := rest
	if i := strings.IndexAny(next, ":."); i >= 0 {
		next = next[:i]
	}
	var candidates []string
	if next != "_has" {
		for _, t := range ref.Target {
			if _, ok := p.lookup(t, next); ok {
				candidates = append(candidates, t)
			}
		}
	}
	switch len(candidates) {
	case 1:
		return candidates[0], nil, false
	case 0:
		if next == "_has" {
			break
		}
		return "", errorf(full, CodeNotSupported, "none of the types %s can refer to (%s) has a search parameter %q", ref.Code, strings.Join(ref.Target, ", "), next), true
	}
	if candidates == nil {
		candidates = ref.Target
	}
	return "", errorf(full, CodeInvalid, "ambiguous chain: %s can refer to %s; name the type, e.g. %s:%s.%s",
		ref.Code, strings.Join(candidates, ", "), ref.Code, candidates[0], rest), false
}

// checkModifier validates modStr for def; a reference type modifier is returned as refType.
func checkModifier(full string, def *searchparam.Param, modStr string) (Modifier, string, *Error) {
	m := Modifier(modStr)
	if m == ModNone || (m == ModMissing && def.Code != "_id") {
		return m, "", nil
	}
	ok := false
	switch def.Type {
	case searchparam.String:
		ok = m == ModExact || m == ModContains
	case searchparam.Token:
		switch m {
		case ModText, ModNot, ModIn, ModNotIn:
			ok = def.Code != "_id" || m == ModNot
		case ModOfType:
			if !strings.Contains(strings.ToLower(def.Code+" "+def.Expression), "identifier") {
				return "", "", errorf(full, CodeInvalid, "modifier :of-type applies only to identifier parameters")
			}
			ok = true
		case ModAbove, ModBelow:
			return "", "", errorf(full, CodeNotSupported, "modifier :%s (code subsumption) is not supported for token parameters", m)
		}
	case searchparam.Reference:
		switch {
		case m == ModIdentifier:
			ok = true
		case typeRE.MatchString(modStr):
			if len(def.Target) > 0 && !slices.Contains(def.Target, modStr) {
				return "", "", errorf(full, CodeInvalid, "%s cannot refer to a %s (targets: %s)", def.Code, modStr, strings.Join(def.Target, ", "))
			}
			return ModNone, modStr, nil
		case m == ModAbove || m == ModBelow:
			return "", "", errorf(full, CodeNotSupported, "modifier :%s is not supported for reference parameters", m)
		}
	case searchparam.URI:
		ok = m == ModAbove || m == ModBelow
	}
	if !ok {
		return "", "", errorf(full, CodeInvalid, "modifier :%s is not valid for %s parameter %q", modStr, def.Type, def.Code)
	}
	return m, "", nil
}

// lookup finds code on one type: the registry first, then the built-in Resource parameters.
func (p *parser) lookup(typ, code string) (*searchparam.Param, bool) {
	if p.reg != nil {
		if d, ok := p.reg.Lookup(typ, code); ok {
			return d, true
		}
	}
	return builtinParam(code)
}

// lookupIn finds code on every type in types (nil: on "Resource"). A parameter whose type
// differs between the types counts as unknown: one clause cannot compare both ways.
func (p *parser) lookupIn(types []string, code string) (*searchparam.Param, bool) {
	if len(types) == 0 {
		return p.lookup("Resource", code)
	}
	var first *searchparam.Param
	for _, t := range types {
		d, ok := p.lookup(t, code)
		if !ok || (first != nil && d.Type != first.Type) {
			return nil, false
		}
		if first == nil {
			first = d
		}
	}
	return first, true
}

func (p *parser) forTypes(types []string) string {
	if len(types) == 0 {
		return " for all resource types"
	}
	return " for " + strings.Join(types, ", ")
}
