package fhirpath

import (
	"math/big"
)

type binaryNode struct {
	op   string
	l, r node
}

func newBinary(op string, l, r node) node {
	switch op {
	case "and", "or", "xor", "implies":
		return &logicNode{op: op, l: l, r: r}
	}
	return &binaryNode{op: op, l: l, r: r}
}

func (n *binaryNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	l, err := n.l.eval(c, focus)
	if err != nil {
		return nil, err
	}
	r, err := n.r.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "|":
		return union(l, r), nil
	case "=", "!=":
		t := equalCollections(l, r)
		if t == triUnknown {
			return nil, nil
		}
		return c.boolColl((t == triTrue) == (n.op == "=")), nil
	case "~", "!~":
		return c.boolColl(equivalentCollections(l, r) == (n.op == "~")), nil
	case "<", "<=", ">", ">=":
		return c.order(n.op, l, r)
	case "in":
		return c.membership(l, r)
	case "contains":
		return c.membership(r, l)
	case "&":
		if len(l) > 1 || len(r) > 1 {
			return nil, errorf("'&' needs single values")
		}
		ls, rs := "", ""
		if len(l) == 1 {
			s, ok := stringOf(l[0])
			if !ok || l[0].t.sys != sysString {
				return nil, errorf("'&' needs strings, got %s", l[0].t.name)
			}
			ls = s
		}
		if len(r) == 1 {
			s, ok := stringOf(r[0])
			if !ok || r[0].t.sys != sysString {
				return nil, errorf("'&' needs strings, got %s", r[0].t.name)
			}
			rs = s
		}
		return Collection{c.str(ls + rs)}, nil
	}
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, errorf("operator '%s' needs single values, got %d and %d", n.op, len(l), len(r))
	}
	return c.arith(n.op, l[0], r[0])
}

func union(l, r Collection) Collection {
	out := make(Collection, 0, len(l)+len(r))
	for _, v := range l {
		if !containsItem(out, v) {
			out = append(out, v)
		}
	}
	for _, v := range r {
		if !containsItem(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (c *evalCtx) order(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, errorf("operator '%s' needs single values, got %d and %d", op, len(l), len(r))
	}
	cmp, known, err := compareItems(l[0], r[0])
	if err != nil || !known {
		return nil, err
	}
	var b bool
	switch op {
	case "<":
		b = cmp < 0
	case "<=":
		b = cmp <= 0
	case ">":
		b = cmp > 0
	default:
		b = cmp >= 0
	}
	return c.boolColl(b), nil
}

// membership implements "item in collection".
func (c *evalCtx) membership(item, coll Collection) (Collection, error) {
	if len(item) == 0 {
		return nil, nil
	}
	if len(item) > 1 {
		return nil, errorf("membership test needs a single item, got %d", len(item))
	}
	for _, v := range coll {
		if equalItems(item[0], v) == triTrue {
			return c.boolColl(true), nil
		}
	}
	return c.boolColl(false), nil
}

type logicNode struct {
	op   string
	l, r node
}

func (n *logicNode) eval(c *evalCtx, focus Collection) (Collection, error) {
	lc, err := n.l.eval(c, focus)
	if err != nil {
		return nil, err
	}
	lv, lk, err := singletonBool(lc)
	if err != nil {
		return nil, err
	}
	// Short-circuit where the left side decides the result.
	switch {
	case n.op == "and" && lk && !lv:
		return c.boolColl(false), nil
	case n.op == "or" && lk && lv:
		return c.boolColl(true), nil
	case n.op == "implies" && lk && !lv:
		return c.boolColl(true), nil
	}
	rc, err := n.r.eval(c, focus)
	if err != nil {
		return nil, err
	}
	rv, rk, err := singletonBool(rc)
	if err != nil {
		return nil, err
	}
	var res tri
	switch n.op {
	case "and":
		switch {
		case rk && !rv:
			res = triFalse
		case lk && rk:
			res = triTrue
		default:
			res = triUnknown
		}
	case "or":
		switch {
		case rk && rv:
			res = triTrue
		case lk && rk:
			res = triFalse
		default:
			res = triUnknown
		}
	case "xor":
		if lk && rk {
			res = triOf(lv != rv)
		} else {
			res = triUnknown
		}
	case "implies":
		switch {
		case lk && lv:
			if rk {
				res = triOf(rv)
			} else {
				res = triUnknown
			}
		case rk && rv:
			res = triTrue
		default:
			res = triUnknown
		}
	}
	if res == triUnknown {
		return nil, nil
	}
	return c.boolColl(res == triTrue), nil
}

// arith applies + - * / div mod to two single values.
func (c *evalCtx) arith(op string, a, b Value) (Collection, error) {
	ca, cb := classOf(a), classOf(b)
	switch {
	case ca == clsNumber && cb == clsNumber:
		return c.numeric(op, a, b)
	case ca == clsString && cb == clsString && op == "+":
		sa, _ := a.node.(string)
		sb, _ := b.node.(string)
		return Collection{c.str(sa + sb)}, nil
	case ca == clsDateTime && cb == clsQuantity && (op == "+" || op == "-"):
		return c.dateArith(op, a, b)
	case ca == clsQuantity || cb == clsQuantity:
		return c.quantityArith(op, a, b)
	}
	return nil, errorf("operator '%s' cannot be applied to %s and %s", op, a.t.name, b.t.name)
}

func (c *evalCtx) numeric(op string, a, b Value) (Collection, error) {
	if a.t.sys == sysInteger && b.t.sys == sysInteger && op != "/" {
		x, ok1 := integerOf(a)
		y, ok2 := integerOf(b)
		if ok1 && ok2 {
			switch op {
			case "+":
				return Collection{c.integer(x + y)}, nil
			case "-":
				return Collection{c.integer(x - y)}, nil
			case "*":
				return Collection{c.integer(x * y)}, nil
			case "div":
				if y == 0 {
					return nil, nil
				}
				return Collection{c.integer(x / y)}, nil
			case "mod":
				if y == 0 {
					return nil, nil
				}
				return Collection{c.integer(x % y)}, nil
			}
		}
	}
	x, ok1 := decimalOf(a)
	y, ok2 := decimalOf(b)
	if !ok1 || !ok2 {
		return nil, nil
	}
	switch op {
	case "+":
		return Collection{c.decimal(x.add(y))}, nil
	case "-":
		return Collection{c.decimal(x.sub(y))}, nil
	case "*":
		return Collection{c.decimal(x.mul(y))}, nil
	case "/":
		q, ok := x.div(y)
		if !ok {
			return nil, nil
		}
		return Collection{c.decimal(q)}, nil
	case "div":
		q, ok := x.div(y)
		if !ok {
			return nil, nil
		}
		return Collection{c.integer(q.truncInt().Int64())}, nil
	case "mod":
		q, ok := x.div(y)
		if !ok {
			return nil, nil
		}
		t := decimal{r: new(big.Rat).SetInt(q.truncInt()), scale: 0}
		rem := x.sub(t.mul(y))
		return Collection{c.decimal(rem)}, nil
	}
	return nil, errorf("unknown operator %s", op)
}

func (c *evalCtx) dateArith(op string, a, b Value) (Collection, error) {
	d, ok := dateTimeOf(a)
	if !ok {
		return nil, nil
	}
	q, ok := quantityOf(b)
	if !ok {
		return nil, nil
	}
	unit, ok := q.durationUnit()
	if !ok {
		return nil, errorf("cannot add a quantity in '%s' to a %s; use a calendar duration", q.unit, d.typeName())
	}
	n := q.value.truncInt().Int64()
	if op == "-" {
		n = -n
	}
	out, err := d.addDuration(n, unit)
	if err != nil {
		return nil, err
	}
	return Collection{c.dateTime(out)}, nil
}

func (c *evalCtx) quantityArith(op string, a, b Value) (Collection, error) {
	qa, ok := asQuantityOperand(a)
	if !ok {
		return nil, errorf("operator '%s' cannot be applied to %s and %s", op, a.t.name, b.t.name)
	}
	qb, ok := asQuantityOperand(b)
	if !ok {
		return nil, errorf("operator '%s' cannot be applied to %s and %s", op, a.t.name, b.t.name)
	}
	switch op {
	case "+", "-":
		// Adding absolute Celsius and Fahrenheit temperatures has no meaning, so only the
		// same unit is allowed there.
		if (isAffineUnit(qa.unit) || isAffineUnit(qb.unit)) && qa.unit != qb.unit {
			return nil, nil
		}
		bv, ok := qb.convertTo(qa)
		if !ok {
			return nil, nil
		}
		v := qa.value.add(bv)
		if op == "-" {
			v = qa.value.sub(bv)
		}
		return Collection{c.quantity(&Quantity{value: v, unit: qa.unit, calendar: qa.calendar})}, nil
	case "*", "/":
		unit, ok := unitProduct(qa, qb, op == "/")
		if !ok {
			return nil, nil
		}
		var v decimal
		if op == "*" {
			v = qa.value.mul(qb.value)
		} else {
			if v, ok = qa.value.div(qb.value); !ok {
				return nil, nil
			}
		}
		return Collection{c.quantity(&Quantity{value: v, unit: unit})}, nil
	}
	return nil, errorf("operator '%s' cannot be applied to quantities", op)
}

// asQuantityOperand reads a quantity, or a number as a dimensionless quantity.
func asQuantityOperand(v Value) (*Quantity, bool) {
	if q, ok := quantityOf(v); ok {
		return q, true
	}
	if v.t.sys != sysInteger && v.t.sys != sysDecimal {
		return nil, false
	}
	d, ok := decimalOf(v)
	if !ok {
		return nil, false
	}
	return &Quantity{value: d, unit: "1"}, true
}
