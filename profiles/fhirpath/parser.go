package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// SemanticError reports an expression that parses but cannot be valid: an unknown
// function or type, a wrong number of arguments, or a path the type model rules out.
type SemanticError struct {
	Expr   string
	Offset int
	Msg    string
}

func (e *SemanticError) Error() string {
	return fmt.Sprintf("fhirpath: %s (at offset %d in %q)", e.Msg, e.Offset, e.Expr)
}

// Compile parses and checks an expression.
func (e *Engine) Compile(expr string) (*Expression, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{src: expr, toks: toks, e: e}
	root, err := p.expression(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s", describe(t))
	}
	if err := e.check(expr, root); err != nil {
		return nil, err
	}
	return &Expression{src: expr, root: root, e: e}, nil
}

type parser struct {
	src  string
	toks []token
	i    int
	e    *Engine
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return newSyntaxError(p.src, t.pos, format, args...)
}

func (p *parser) semErr(t token, format string, args ...any) error {
	return &SemanticError{Expr: p.src, Offset: t.pos, Msg: fmt.Sprintf(format, args...)}
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tString:
		return "string '" + t.text + "'"
	case tOp:
		return "'" + t.text + "'"
	}
	return "'" + t.text + "'"
}

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == s
}

func (p *parser) expect(s string) error {
	t := p.next()
	if t.kind != tOp || t.text != s {
		return p.errAt(t, "expected '%s', found %s", s, describe(t))
	}
	return nil
}

// binary operator precedences, tightest last.
func binaryPrec(t token) int {
	switch t.kind {
	case tOp:
		switch t.text {
		case "*", "/":
			return 10
		case "+", "-", "&":
			return 9
		case "|":
			return 7
		case "<", "<=", ">", ">=":
			return 6
		case "=", "~", "!=", "!~":
			return 5
		}
	case tIdent:
		switch t.text {
		case "div", "mod":
			return 10
		case "is", "as":
			return 8
		case "in", "contains":
			return 4
		case "and":
			return 3
		case "or", "xor":
			return 2
		case "implies":
			return 1
		}
	}
	return 0
}

func (p *parser) expression(minPrec int) (node, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec := binaryPrec(t)
		if prec == 0 || prec <= minPrec {
			return left, nil
		}
		p.next()
		if t.kind == tIdent && (t.text == "is" || t.text == "as") {
			spec, err := p.typeSpecifier()
			if err != nil {
				return nil, err
			}
			left = &typeOpNode{x: left, as: t.text == "as", spec: spec}
			continue
		}
		right, err := p.expression(prec)
		if err != nil {
			return nil, err
		}
		left = newBinary(t.text, left, right)
	}
}

func (p *parser) unary() (node, error) {
	if p.isOp("+") || p.isOp("-") {
		t := p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		// Fold negative number literals so that -1 is an Integer literal.
		if lit, ok := x.(*literalNode); ok && t.text == "-" && len(lit.val) == 1 {
			switch n := lit.val[0].node.(type) {
			case int64:
				return &literalNode{val: Collection{{t: lit.val[0].t, node: -n}}}, nil
			case decimal:
				return &literalNode{val: Collection{{t: lit.val[0].t, node: n.neg()}}}, nil
			}
		}
		return &unaryNode{neg: t.text == "-", x: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (node, error) {
	x, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			p.next()
			t := p.next()
			if t.kind != tIdent && t.kind != tDelimIdent {
				return nil, p.errAt(t, "expected a name after '.', found %s", describe(t))
			}
			if t.kind == tIdent && p.isOp("(") {
				x, err = p.function(x, t)
				if err != nil {
					return nil, err
				}
				continue
			}
			x = &memberNode{recv: x, name: t.text, pos: t.pos}
		case p.isOp("["):
			p.next()
			idx, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			x = &indexerNode{recv: x, idx: idx}
		default:
			return x, nil
		}
	}
}

func (p *parser) term() (node, error) {
	t := p.next()
	switch t.kind {
	case tIdent:
		if p.isOp("(") {
			return p.function(nil, t)
		}
		switch t.text {
		case "true":
			return &literalNode{val: Collection{{t: p.e.st[sysBoolean], node: true}}}, nil
		case "false":
			return &literalNode{val: Collection{{t: p.e.st[sysBoolean], node: false}}}, nil
		}
		if binaryPrec(t) != 0 && t.text != "as" && t.text != "is" && t.text != "contains" && t.text != "in" {
			return nil, p.errAt(t, "expected an expression, found operator '%s'", t.text)
		}
		return p.ident(t.text), nil
	case tDelimIdent:
		return p.ident(t.text), nil
	case tString:
		return &literalNode{val: Collection{{t: p.e.st[sysString], node: t.text}}}, nil
	case tNumber:
		return p.number(t)
	case tDate:
		d, _ := parseDate(t.text)
		return &literalNode{val: Collection{{t: p.e.sys["Date"], node: d}}}, nil
	case tDateTime:
		d, _ := parseDateTime(t.text)
		return &literalNode{val: Collection{{t: p.e.sys["DateTime"], node: d}}}, nil
	case tTime:
		d, _ := parseTime(t.text)
		return &literalNode{val: Collection{{t: p.e.sys["Time"], node: d}}}, nil
	case tExternal:
		return &varNode{name: t.text}, nil
	case tSpecial:
		switch t.text {
		case "this":
			return thisNode{}, nil
		case "index":
			return indexNode{}, nil
		}
		return totalNode{}, nil
	case tOp:
		switch t.text {
		case "(":
			x, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return x, nil
		case "{":
			if err := p.expect("}"); err != nil {
				return nil, err
			}
			return emptyNode{}, nil
		}
	}
	return nil, p.errAt(t, "expected an expression, found %s", describe(t))
}

func (p *parser) ident(name string) node {
	typeName := false
	if r := []rune(name); len(r) > 0 && unicode.IsUpper(r[0]) {
		_, typeName = p.e.types[name]
	}
	return &identNode{name: name, typeName: typeName}
}

func (p *parser) number(t token) (node, error) {
	var v Value
	if strings.Contains(t.text, ".") {
		d, ok := parseDecimal(t.text)
		if !ok {
			return nil, p.errAt(t, "bad number %s", t.text)
		}
		v = Value{t: p.e.st[sysDecimal], node: d}
	} else {
		i, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			d, ok := parseDecimal(t.text)
			if !ok {
				return nil, p.errAt(t, "bad number %s", t.text)
			}
			v = Value{t: p.e.st[sysDecimal], node: d}
		} else {
			v = Value{t: p.e.st[sysInteger], node: i}
		}
	}
	// A unit makes a Quantity literal.
	u := p.peek()
	if u.kind == tString {
		p.next()
		d, _ := decimalOf(v)
		return &literalNode{val: Collection{{t: p.e.st[sysQuantity], node: &Quantity{value: d, unit: u.text}}}}, nil
	}
	if u.kind == tIdent {
		if _, ok := calendarUnit(u.text); ok {
			p.next()
			d, _ := decimalOf(v)
			return &literalNode{val: Collection{{t: p.e.st[sysQuantity], node: &Quantity{value: d, unit: u.text, calendar: true}}}}, nil
		}
	}
	return &literalNode{val: Collection{v}}, nil
}

func (p *parser) function(recv node, name token) (node, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	var args []node
	typeArg := name.text == "is" || name.text == "as" || name.text == "ofType"
	var spec typeSpec
	if !p.isOp(")") {
		for {
			if typeArg && len(args) == 0 {
				s, err := p.typeSpecifier()
				if err != nil {
					return nil, err
				}
				spec = s
				args = append(args, emptyNode{})
			} else {
				a, err := p.expression(0)
				if err != nil {
					return nil, err
				}
				args = append(args, a)
			}
			if p.isOp(",") {
				p.next()
				continue
			}
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	def := lookupFunc(name.text)
	if def == nil {
		return nil, p.semErr(name, "unknown function %s()", name.text)
	}
	if len(args) < def.minArgs || len(args) > def.maxArgs {
		return nil, p.semErr(name, "%s() takes %s, got %d", name.text, arity(def), len(args))
	}
	fn := &funcNode{recv: recv, name: name.text, def: def, args: args, spec: spec}
	switch name.text {
	case "matches", "matchesFull", "replaceMatches":
		// Literal patterns are compiled once here rather than on every evaluation.
		if lit, ok := args[0].(*literalNode); ok && len(lit.val) == 1 {
			if pat, ok := lit.val[0].node.(string); ok && pat != "" {
				re, err := compileRegex(pat, name.text == "matchesFull")
				if err != nil {
					return nil, p.semErr(name, "%v", err)
				}
				fn.re = re
			}
		}
	}
	return fn, nil
}

func arity(d *funcDef) string {
	switch {
	case d.minArgs == d.maxArgs && d.minArgs == 1:
		return "1 argument"
	case d.minArgs == d.maxArgs:
		return fmt.Sprintf("%d arguments", d.minArgs)
	}
	return fmt.Sprintf("%d to %d arguments", d.minArgs, d.maxArgs)
}

// typeSpecifier reads a (possibly namespace-qualified) type name and resolves it.
func (p *parser) typeSpecifier() (typeSpec, error) {
	t := p.next()
	if t.kind != tIdent && t.kind != tDelimIdent {
		return typeSpec{}, p.errAt(t, "expected a type name, found %s", describe(t))
	}
	name := t.text
	ns := ""
	if p.isOp(".") {
		p.next()
		t2 := p.next()
		if t2.kind != tIdent && t2.kind != tDelimIdent {
			return typeSpec{}, p.errAt(t2, "expected a type name, found %s", describe(t2))
		}
		ns, name = name, t2.text
	}
	_, isFHIR := p.e.types[name]
	_, isSys := p.e.sys[name]
	switch ns {
	case NamespaceFHIR:
		if !isFHIR {
			return typeSpec{}, p.semErr(t, "unknown type FHIR.%s", name)
		}
		return typeSpec{name: name, fhir: true}, nil
	case NamespaceSystem:
		// An unknown System type is a valid specifier that nothing matches.
		return typeSpec{name: name, sys: true}, nil
	case "":
		if !isFHIR && !isSys {
			return typeSpec{}, p.semErr(t, "unknown type %s", name)
		}
		// Unqualified names resolve in the FHIR model first; a System type of the same name
		// (Quantity) also matches computed values.
		return typeSpec{name: name, fhir: isFHIR, sys: isSys}, nil
	}
	// A backbone path such as Patient.contact is not a type specifier.
	return typeSpec{}, p.semErr(t, "unknown type namespace %s", ns)
}
