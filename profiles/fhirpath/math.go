package fhirpath

import (
	"math"
	"math/big"
)

// inputNumber reads the single numeric input of a math function.
func inputNumber(n *funcNode, in Collection) (Value, bool, error) {
	if len(in) == 0 {
		return Value{}, false, nil
	}
	if len(in) > 1 {
		return Value{}, false, errorf("%s() on a collection of %d items", n.name, len(in))
	}
	v := in[0]
	if v.node == nil {
		return Value{}, false, nil
	}
	if v.t.sys != sysInteger && v.t.sys != sysDecimal {
		if _, ok := quantityOf(v); ok && n.name == "abs" {
			return v, true, nil
		}
		return Value{}, false, errorf("%s() needs a number, got %s", n.name, v.t.name)
	}
	return v, true, nil
}

func fnAbs(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	v, ok, err := inputNumber(n, in)
	if err != nil || !ok {
		return nil, err
	}
	if q, isQ := quantityOf(v); isQ {
		return Collection{c.quantity(&Quantity{value: q.value.abs(), unit: q.unit, calendar: q.calendar})}, nil
	}
	if v.t.sys == sysInteger {
		i, _ := integerOf(v)
		if i < 0 {
			i = -i
		}
		return Collection{c.integer(i)}, nil
	}
	d, _ := decimalOf(v)
	return Collection{c.decimal(d.abs())}, nil
}

type roundMode uint8

const (
	roundCeil roundMode = iota
	roundFloor
	roundTrunc
)

func fnRounding(mode roundMode) fnImpl {
	return func(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
		v, ok, err := inputNumber(n, in)
		if err != nil || !ok {
			return nil, err
		}
		d, _ := decimalOf(v)
		var i *big.Int
		switch mode {
		case roundCeil:
			i = d.ceilInt()
		case roundFloor:
			i = d.floorInt()
		default:
			i = d.truncInt()
		}
		if !i.IsInt64() {
			return nil, errorf("%s() result out of range", n.name)
		}
		return Collection{c.integer(i.Int64())}, nil
	}
}

func fnRound(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	v, ok, err := inputNumber(n, in)
	if err != nil || !ok {
		return nil, err
	}
	p := int64(0)
	if len(n.args) == 1 {
		var has bool
		if p, has, err = intArg(c, n, 0, focus); err != nil || !has {
			return nil, err
		}
		if p < 0 {
			return nil, errorf("round() precision must not be negative")
		}
	}
	d, _ := decimalOf(v)
	return Collection{c.decimal(d.round(int(p)))}, nil
}

func mathExp(x float64) float64  { return math.Exp(x) }
func mathLn(x float64) float64   { return math.Log(x) }
func mathSqrt(x float64) float64 { return math.Sqrt(x) }

// floatFunc wraps a float function; results that are not finite numbers are empty.
func floatFunc(f func(float64) float64) fnImpl {
	return func(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
		v, ok, err := inputNumber(n, in)
		if err != nil || !ok {
			return nil, err
		}
		d, _ := decimalOf(v)
		return c.floatResult(f(d.float()))
	}
}

func (c *evalCtx) floatResult(f float64) (Collection, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, nil
	}
	d, ok := decimalFromFloat(f)
	if !ok {
		return nil, nil
	}
	return Collection{c.decimal(d)}, nil
}

func numberArg(c *evalCtx, n *funcNode, i int, focus Collection) (Value, bool, error) {
	a, err := n.arg(c, i, focus)
	if err != nil || len(a) == 0 {
		return Value{}, false, err
	}
	if len(a) > 1 || (a[0].t.sys != sysInteger && a[0].t.sys != sysDecimal) {
		return Value{}, false, errorf("%s() needs a number argument", n.name)
	}
	return a[0], true, nil
}

func fnLog(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	v, ok, err := inputNumber(n, in)
	if err != nil || !ok {
		return nil, err
	}
	b, ok, err := numberArg(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	x, _ := decimalOf(v)
	base, _ := decimalOf(b)
	return c.floatResult(math.Log(x.float()) / math.Log(base.float()))
}

func fnPower(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	v, ok, err := inputNumber(n, in)
	if err != nil || !ok {
		return nil, err
	}
	e, ok, err := numberArg(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	if v.t.sys == sysInteger && e.t.sys == sysInteger {
		x, _ := integerOf(v)
		y, _ := integerOf(e)
		if y >= 0 {
			r := new(big.Int).Exp(big.NewInt(x), big.NewInt(y), nil)
			if r.IsInt64() {
				return Collection{c.integer(r.Int64())}, nil
			}
		}
	}
	x, _ := decimalOf(v)
	y, _ := decimalOf(e)
	return c.floatResult(math.Pow(x.float(), y.float()))
}

// Boundaries: a decimal written with s fraction digits stands for the interval of values
// that round to it, [v - 5*10^-(s+1), v + 5*10^-(s+1)); the result is cut to the requested
// number of digits (default 8) towards the outside of that interval.
func fnBoundary(high bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errorf("%s() on a collection of %d items", n.name, len(in))
		}
		v := in[0]
		prec, hasPrec, err := intArg(c, n, 0, focus)
		if err != nil {
			return nil, err
		}
		switch {
		case v.t.sys == sysInteger || v.t.sys == sysDecimal:
			d, ok := decimalOf(v)
			if !ok {
				return nil, nil
			}
			b, ok := decimalBoundary(d, high, prec, hasPrec)
			if !ok {
				return nil, nil
			}
			return Collection{c.decimal(b)}, nil
		case v.t.sys == sysDate || v.t.sys == sysDateTime || v.t.sys == sysTime:
			d, ok := dateTimeOf(v)
			if !ok {
				return nil, nil
			}
			p := int64(d.precisionDigits())
			if hasPrec {
				p = prec
			} else if d.kind == kindDateTime {
				p = 17
			} else if d.kind == kindDate {
				p = 8
			} else {
				p = 9
			}
			b, ok := d.boundary(high, int(p))
			if !ok {
				return nil, nil
			}
			return Collection{c.dateTime(b)}, nil
		}
		if q, ok := quantityOf(v); ok {
			b, ok := decimalBoundary(q.value, high, prec, hasPrec)
			if !ok {
				return nil, nil
			}
			return Collection{c.quantity(&Quantity{value: b, unit: q.unit, calendar: q.calendar})}, nil
		}
		return nil, errorf("%s() needs a number, date/time or quantity, got %s", n.name, v.t.name)
	}
}

func decimalBoundary(d decimal, high bool, prec int64, hasPrec bool) (decimal, bool) {
	if !hasPrec {
		prec = 8
	}
	if prec < 0 || prec > 28 {
		return decimal{}, false
	}
	s := d.precision()
	half := decimal{r: new(big.Rat).Mul(big.NewRat(5, 1), pow10(-(s + 1)))}
	if high {
		return d.add(half).ceilTo(int(prec)), true
	}
	return d.sub(half).floorTo(int(prec)), true
}

func fnPrecision(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errorf("precision() on a collection of %d items", len(in))
	}
	v := in[0]
	switch v.t.sys {
	case sysInteger:
		return Collection{c.integer(0)}, nil
	case sysDecimal:
		d, ok := decimalOf(v)
		if !ok {
			return nil, nil
		}
		return Collection{c.integer(int64(d.precision()))}, nil
	case sysDate, sysDateTime, sysTime:
		d, ok := dateTimeOf(v)
		if !ok {
			return nil, nil
		}
		return Collection{c.integer(int64(d.precisionDigits()))}, nil
	}
	return nil, errorf("precision() needs a number or date/time, got %s", v.t.name)
}

func fnComparable(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	if len(in) != 1 {
		return nil, nil
	}
	a, err := n.arg(c, 0, focus)
	if err != nil || len(a) != 1 {
		return nil, err
	}
	qa, ok1 := quantityOf(in[0])
	qb, ok2 := quantityOf(a[0])
	if !ok1 || !ok2 {
		return nil, errorf("comparable() needs quantities")
	}
	return c.boolColl(comparableUnits(qa, qb)), nil
}
