package fhirpath

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Expression is a compiled FHIRPath expression. It is immutable and safe for concurrent use.
type Expression struct {
	src  string
	root node
	e    *Engine
}

// String returns the source text.
func (x *Expression) String() string { return x.src }

// EvalError is an error raised while evaluating an expression (wrong cardinality, wrong
// operand types, unknown variables, ...).
type EvalError struct {
	Expr string
	Msg  string
}

func (e *EvalError) Error() string { return "fhirpath: " + e.Msg + " (in " + e.Expr + ")" }

type evalError struct{ msg string }

func (e *evalError) Error() string { return e.msg }

func errorf(format string, args ...any) error { return &evalError{msg: fmt.Sprintf(format, args...)} }

type evalCtx struct {
	e       *Engine
	cfg     config
	root    Collection // the input: %context
	rootBuf [1]Value
	// resource is %resource and %rootResource: the input unless WithResource says otherwise.
	resource Collection

	index    int
	hasIndex bool
	total    Collection
	hasTotal bool
	now      time.Time
	nowSet   bool
}

// Evaluate runs the expression against a resource (map[string]any as produced by
// encoding/json with UseNumber). The input is typed from its resourceType, or from
// WithRootType. A nil input evaluates against an empty context.
func (x *Expression) Evaluate(input any, opts ...Option) (Collection, error) {
	c := &evalCtx{e: x.e}
	for _, o := range opts {
		o(&c.cfg)
	}
	if input != nil {
		if c.cfg.rootType != "" {
			vt, ok := x.e.types[c.cfg.rootType]
			if !ok {
				return nil, &EvalError{Expr: x.src, Msg: "unknown root type " + c.cfg.rootType}
			}
			c.rootBuf[0] = Value{t: vt, node: input}
		} else {
			c.rootBuf[0] = x.e.inferValue(input)
		}
		c.root = c.rootBuf[:]
	}
	c.resource = c.root
	if c.cfg.resource != nil {
		c.resource = Collection{x.e.inferValue(c.cfg.resource)}
	}
	out, err := x.root.eval(c, c.root)
	if err != nil {
		if ee, ok := err.(*evalError); ok {
			return nil, &EvalError{Expr: x.src, Msg: ee.msg}
		}
		return nil, err
	}
	return out, nil
}

// EvaluateBool evaluates the expression and reads the result as a boolean by the singleton
// rules: empty is false, a single non-boolean item is true, more than one item is an error.
func (x *Expression) EvaluateBool(input any, opts ...Option) (bool, error) {
	out, err := x.Evaluate(input, opts...)
	if err != nil {
		return false, err
	}
	b, known, err := singletonBool(out)
	if err != nil {
		return false, &EvalError{Expr: x.src, Msg: err.Error()}
	}
	return known && b, nil
}

func (c *evalCtx) currentTime() time.Time {
	if !c.nowSet {
		if c.cfg.now != nil {
			c.now = c.cfg.now()
		} else {
			c.now = time.Now()
		}
		c.nowSet = true
	}
	return c.now
}

type node interface {
	eval(c *evalCtx, focus Collection) (Collection, error)
}

type literalNode struct{ val Collection }

func (n *literalNode) eval(*evalCtx, Collection) (Collection, error) { return n.val, nil }

type emptyNode struct{}

func (emptyNode) eval(*evalCtx, Collection) (Collection, error) { return nil, nil }

type thisNode struct{}

func (thisNode) eval(_ *evalCtx, focus Collection) (Collection, error) { return focus, nil }

type indexNode struct{}

func (indexNode) eval(c *evalCtx, _ Collection) (Collection, error) {
	if !c.hasIndex {
		return nil, nil
	}
	return Collection{c.integer(int64(c.index))}, nil
}

type totalNode struct{}

func (totalNode) eval(c *evalCtx, _ Collection) (Collection, error) {
	if !c.hasTotal {
		return nil, nil
	}
	return c.total, nil
}

// identNode is the first name of a path: a type name filtering the focus ("Patient") or an
// element of the focus.
type identNode struct {
	name     string
	typeName bool
}

func (n *identNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	if n.typeName {
		// Return the focus unchanged when every item matches, avoiding a copy.
		all := true
		for _, v := range focus {
			if !typeNameMatches(v, n.name) {
				all = false
				break
			}
		}
		if all {
			return focus, nil
		}
		var out Collection
		for _, v := range focus {
			if typeNameMatches(v, n.name) {
				out = append(out, v)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		return nil, nil
	}
	return c.children(focus, n.name)
}

func typeNameMatches(v Value, name string) bool {
	return v.t.mt != nil && v.t.mt.Is(name)
}

type memberNode struct {
	recv node
	name string
	pos  int
}

func (n *memberNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	in, err := n.recv.eval(c, focus)
	if err != nil {
		return nil, err
	}
	return c.children(in, n.name)
}

func (c *evalCtx) children(in Collection, name string) (Collection, error) {
	var out Collection
	var err error
	for _, v := range in {
		if out, err = c.navigate(out, v, name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// navigate appends the values of element name of v to out.
func (c *evalCtx) navigate(out Collection, v Value, name string) (Collection, error) {
	m, ok := v.node.(map[string]any)
	if !ok {
		if q, isQ := v.node.(*Quantity); isQ {
			// System Quantities expose value and unit.
			switch name {
			case "value":
				return append(out, c.decimal(q.value)), nil
			case "unit":
				return append(out, c.str(q.unit)), nil
			}
			return out, nil
		}
		if v.ext != nil {
			switch name {
			case "extension":
				return c.appendJSON(out, v.ext["extension"], nil, c.e.types["Extension"]), nil
			case "id":
				return c.appendJSON(out, v.ext["id"], nil, c.e.types["string"]), nil
			}
		}
		if c.cfg.strict && v.t.mt != nil && name != "extension" && name != "id" {
			return nil, errorf("%s has no element %q", v.t.mt.Name, name)
		}
		return out, nil
	}
	if v.t.untyped || v.t.elems == nil {
		raw, ok := m[name]
		if !ok {
			return out, nil
		}
		if s, isStr := raw.(string); isStr && v.t == c.e.typeInfo {
			return append(out, c.str(s)), nil
		}
		return c.appendUntyped(out, raw), nil
	}
	ne := v.t.elems[name]
	if ne == nil {
		if c.cfg.strict {
			return nil, errorf("%s has no element %q", v.t.mt.Name, name)
		}
		return out, nil
	}
	for i := range ne.variants {
		vr := &ne.variants[i]
		raw, ok := m[vr.key]
		var ext any
		if vr.extKey != "" {
			ext = m[vr.extKey]
		}
		if !ok && ext == nil {
			continue
		}
		out = c.appendJSON(out, raw, ext, vr.t)
	}
	return out, nil
}

func (c *evalCtx) appendJSON(out Collection, raw, ext any, t *vtype) Collection {
	if arr, ok := raw.([]any); ok || (raw == nil && ext != nil) {
		extArr, _ := ext.([]any)
		n := len(arr)
		if len(extArr) > n {
			n = len(extArr)
		}
		if arr == nil && extArr == nil {
			// a single primitive with only an extension sibling
			if em, ok := ext.(map[string]any); ok {
				return append(out, Value{t: t, ext: em})
			}
			return out
		}
		if out == nil {
			out = make(Collection, 0, n)
		}
		for i := 0; i < n; i++ {
			var item any
			if i < len(arr) {
				item = arr[i]
			}
			var em map[string]any
			if i < len(extArr) {
				em, _ = extArr[i].(map[string]any)
			}
			if item == nil && em == nil {
				continue
			}
			out = append(out, c.typed(t, item, em))
		}
		return out
	}
	if raw == nil {
		return out
	}
	em, _ := ext.(map[string]any)
	return append(out, c.typed(t, raw, em))
}

func (c *evalCtx) typed(t *vtype, node any, ext map[string]any) Value {
	if t == nil {
		return c.e.inferValue(node)
	}
	if t.resource {
		return c.e.inferValue(node)
	}
	return Value{t: t, node: node, ext: ext}
}

func (c *evalCtx) appendUntyped(out Collection, raw any) Collection {
	if arr, ok := raw.([]any); ok {
		for _, it := range arr {
			if it != nil {
				out = append(out, c.e.inferValue(it))
			}
		}
		return out
	}
	if raw == nil {
		return out
	}
	return append(out, c.e.inferValue(raw))
}

type varNode struct{ name string }

func (n *varNode) eval(c *evalCtx, _ Collection) (Collection, error) {
	if v, ok := c.cfg.vars[n.name]; ok {
		return c.e.toCollection(v), nil
	}
	switch n.name {
	case "resource", "rootResource":
		return c.resource, nil
	case "context":
		return c.root, nil
	case "ucum":
		return Collection{c.str(ucumSystem)}, nil
	case "sct":
		return Collection{c.str("http://snomed.info/sct")}, nil
	case "loinc":
		return Collection{c.str("http://loinc.org")}, nil
	}
	if rest, ok := strings.CutPrefix(n.name, "vs-"); ok {
		return Collection{c.str("http://hl7.org/fhir/ValueSet/" + rest)}, nil
	}
	if rest, ok := strings.CutPrefix(n.name, "ext-"); ok {
		return Collection{c.str("http://hl7.org/fhir/StructureDefinition/" + rest)}, nil
	}
	return nil, errorf("undefined variable %%%s", n.name)
}

type indexerNode struct{ recv, idx node }

func (n *indexerNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	in, err := n.recv.eval(c, focus)
	if err != nil {
		return nil, err
	}
	ix, err := n.idx.eval(c, focus)
	if err != nil {
		return nil, err
	}
	if len(ix) == 0 {
		return nil, nil
	}
	i, ok := singleInt(ix)
	if !ok {
		return nil, errorf("indexer must be a single integer")
	}
	if i < 0 || i >= int64(len(in)) {
		return nil, nil
	}
	return Collection{in[i]}, nil
}

type unaryNode struct {
	neg bool
	x   node
}

func (n *unaryNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	in, err := n.x.eval(c, focus)
	if err != nil || len(in) == 0 {
		return nil, err
	}
	if len(in) > 1 {
		return nil, errorf("unary operator needs a single value, got %d", len(in))
	}
	v := in[0]
	if !n.neg {
		if _, ok := decimalOf(v); ok {
			return in, nil
		}
		if _, ok := quantityOf(v); ok {
			return in, nil
		}
		return nil, errorf("unary + needs a number or quantity, got %s", v.t.name)
	}
	switch v.t.sys {
	case sysInteger:
		if i, ok := integerOf(v); ok {
			return Collection{c.integer(-i)}, nil
		}
	case sysDecimal:
		if d, ok := decimalOf(v); ok {
			return Collection{c.decimal(d.neg())}, nil
		}
	}
	if q, ok := quantityOf(v); ok {
		return Collection{c.quantity(&Quantity{value: q.value.neg(), unit: q.unit, calendar: q.calendar})}, nil
	}
	return nil, errorf("unary - needs a number or quantity, got %s", v.t.name)
}

// typeSpec is a resolved type specifier.
type typeSpec struct {
	name string
	// fhir matches FHIR values whose model type is or specialises name.
	fhir bool
	// sys matches System values of this name.
	sys bool
}

func (s typeSpec) String() string {
	switch {
	case s.fhir && !s.sys:
		return "FHIR." + s.name
	case s.sys && !s.fhir:
		return "System." + s.name
	}
	return s.name
}

// matches implements is(): subtypes match.
func (s typeSpec) matches(v Value) bool {
	if v.t.ns == NamespaceSystem {
		return s.sys && v.t.name == s.name
	}
	return s.fhir && v.t.mt != nil && v.t.mt.Is(s.name)
}

// castable implements as() and ofType(): complex types match their specialisations, but a
// FHIR primitive matches only its own type (a code is not returned by as(string)).
func (s typeSpec) castable(v Value) bool {
	if v.t.ns == NamespaceFHIR && v.t.mt != nil && v.t.mt.IsPrimitive() {
		return s.fhir && v.t.mt.Name == s.name
	}
	return s.matches(v)
}

type typeOpNode struct {
	x    node
	as   bool
	spec typeSpec
}

func (n *typeOpNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	in, err := n.x.eval(c, focus)
	if err != nil || len(in) == 0 {
		return nil, err
	}
	if len(in) > 1 {
		op := "is"
		if n.as {
			op = "as"
		}
		return nil, errorf("'%s' needs a single value, got %d", op, len(in))
	}
	if n.as {
		if n.spec.castable(in[0]) {
			return in, nil
		}
		return nil, nil
	}
	return c.boolColl(n.spec.matches(in[0])), nil
}

type funcNode struct {
	recv node // nil: the function applies to the focus
	name string
	def  *funcDef
	args []node
	// spec is the type argument of is/as/ofType.
	spec typeSpec
	// re is the compiled pattern of matches/matchesFull/replaceMatches when it is a literal.
	re *regexp.Regexp
}

func (n *funcNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	in := focus
	if n.recv != nil {
		var err error
		if in, err = n.recv.eval(c, focus); err != nil {
			return nil, err
		}
	}
	return n.def.fn(c, n, in, focus)
}

// arg evaluates argument i against the focus of the invocation.
func (n *funcNode) arg(c *evalCtx, i int, focus Collection) (Collection, error) {
	if i >= len(n.args) {
		return nil, nil
	}
	return n.args[i].eval(c, focus)
}

// value constructors

func (c *evalCtx) boolean(b bool) Value { return Value{t: c.e.st[sysBoolean], node: b} }

// boolColl returns a shared one-item collection; collections are never modified in place.
func (c *evalCtx) boolColl(b bool) Collection {
	if b {
		return c.e.trueColl
	}
	return c.e.falseColl
}
func (c *evalCtx) str(s string) Value { return Value{t: c.e.st[sysString], node: s} }
func (c *evalCtx) integer(i int64) Value {
	return Value{t: c.e.st[sysInteger], node: i}
}
func (c *evalCtx) decimal(d decimal) Value { return Value{t: c.e.st[sysDecimal], node: d} }
func (c *evalCtx) quantity(q *Quantity) Value {
	return Value{t: c.e.st[sysQuantity], node: q}
}
func (c *evalCtx) dateTime(d dateTime) Value {
	return Value{t: c.e.sys[d.typeName()], node: d}
}

func singleInt(c Collection) (int64, bool) {
	if len(c) != 1 || c[0].t.sys != sysInteger {
		return 0, false
	}
	return integerOf(c[0])
}

// singletonBool applies the singleton evaluation rules to a boolean context: empty is
// unknown, one item is its boolean value (any non-boolean single item counts as true),
// more items are an error.
func singletonBool(in Collection) (val bool, known bool, err error) {
	switch len(in) {
	case 0:
		return false, false, nil
	case 1:
		v := in[0]
		if v.t.sys == sysBoolean {
			b, ok := v.node.(bool)
			return b, ok, nil
		}
		return true, true, nil
	}
	return false, false, errorf("expected a single boolean, got %d items", len(in))
}
