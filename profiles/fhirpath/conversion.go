package fhirpath

import (
	"strconv"
	"strings"
)

// converter converts one value; ok is false when the value does not convert.
type converter func(c *evalCtx, v Value) (Value, bool)

// convert builds toX (test=false) and convertsToX (test=true).
func convert(f converter, test bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errorf("%s() on a collection of %d items", n.name, len(in))
		}
		if in[0].node == nil {
			return nil, nil
		}
		out, ok := f(c, in[0])
		if test {
			return c.boolColl(ok), nil
		}
		if !ok {
			return nil, nil
		}
		return Collection{out}, nil
	}
}

func toBoolean(c *evalCtx, v Value) (Value, bool) {
	switch v.t.sys {
	case sysBoolean:
		return c.boolean(v.node.(bool)), true
	case sysInteger:
		i, ok := integerOf(v)
		if ok && (i == 0 || i == 1) {
			return c.boolean(i == 1), true
		}
	case sysDecimal:
		d, ok := decimalOf(v)
		if ok && d.isInt() {
			if i, _ := d.int64(); i == 0 || i == 1 {
				return c.boolean(i == 1), true
			}
		}
	case sysString:
		switch strings.ToLower(v.node.(string)) {
		case "true", "t", "yes", "y", "1", "1.0":
			return c.boolean(true), true
		case "false", "f", "no", "n", "0", "0.0":
			return c.boolean(false), true
		}
	}
	return Value{}, false
}

func isIntegerString(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	return isAllDigits(s)
}

func isDecimalString(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	return isAllDigits(whole) && (!hasDot || isAllDigits(frac))
}

func toInteger(c *evalCtx, v Value) (Value, bool) {
	switch v.t.sys {
	case sysInteger:
		i, ok := integerOf(v)
		return c.integer(i), ok
	case sysBoolean:
		if v.node.(bool) {
			return c.integer(1), true
		}
		return c.integer(0), true
	case sysString:
		s := v.node.(string)
		if !isIntegerString(s) {
			return Value{}, false
		}
		i, err := strconv.ParseInt(s, 10, 64)
		return c.integer(i), err == nil
	}
	return Value{}, false
}

func toDecimal(c *evalCtx, v Value) (Value, bool) {
	switch v.t.sys {
	case sysInteger, sysDecimal:
		d, ok := decimalOf(v)
		return c.decimal(d), ok
	case sysBoolean:
		if v.node.(bool) {
			return c.decimal(decimal{r: decimalFromInt(1).r, scale: 1}), true
		}
		return c.decimal(decimal{r: decimalFromInt(0).r, scale: 1}), true
	case sysString:
		s := v.node.(string)
		if !isDecimalString(s) {
			return Value{}, false
		}
		d, ok := parseDecimal(s)
		return c.decimal(d), ok
	}
	return Value{}, false
}

func toStringValue(c *evalCtx, v Value) (Value, bool) {
	if v.t.sys == sysNone {
		return Value{}, false
	}
	s, ok := stringOf(v)
	if !ok {
		return Value{}, false
	}
	return c.str(s), true
}

func toDate(c *evalCtx, v Value) (Value, bool) {
	switch v.t.sys {
	case sysDate, sysDateTime:
		d, ok := dateTimeOf(v)
		if !ok {
			return Value{}, false
		}
		return c.dateTime(asDate(d)), true
	case sysString:
		s := v.node.(string)
		if d, ok := parseDate(s); ok {
			return c.dateTime(d), true
		}
		if d, ok := parseDateTime(s); ok {
			return c.dateTime(asDate(d)), true
		}
	}
	return Value{}, false
}

func asDate(d dateTime) dateTime {
	out := dateTime{kind: kindDate, year: d.year, month: d.month, day: d.day, prec: d.prec}
	if out.prec > precDay {
		out.prec = precDay
	}
	return out
}

func toDateTime(c *evalCtx, v Value) (Value, bool) {
	switch v.t.sys {
	case sysDate, sysDateTime:
		d, ok := dateTimeOf(v)
		if !ok {
			return Value{}, false
		}
		d.kind = kindDateTime
		return c.dateTime(d), true
	case sysString:
		if d, ok := parseDateTime(v.node.(string)); ok {
			return c.dateTime(d), true
		}
	}
	return Value{}, false
}

func toTime(c *evalCtx, v Value) (Value, bool) {
	switch v.t.sys {
	case sysTime:
		d, ok := dateTimeOf(v)
		return c.dateTime(d), ok
	case sysString:
		s := strings.TrimPrefix(v.node.(string), "T")
		if d, ok := parseTime(s); ok {
			return c.dateTime(d), true
		}
	}
	return Value{}, false
}

// parseQuantityString reads the string form of a quantity: a number, then optionally a UCUM
// unit in single quotes or a calendar duration keyword.
func parseQuantityString(s string) (*Quantity, bool) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && (isDigit(s[i]) || s[i] == '.') {
		i++
	}
	num, rest := s[:i], strings.TrimSpace(s[i:])
	if !isDecimalString(num) {
		return nil, false
	}
	d, ok := parseDecimal(num)
	if !ok {
		return nil, false
	}
	switch {
	case rest == "":
		return &Quantity{value: d, unit: "1"}, true
	case len(rest) >= 3 && rest[0] == '\'' && rest[len(rest)-1] == '\'':
		unit := rest[1 : len(rest)-1]
		if unit == "" || strings.ContainsRune(unit, '\'') {
			return nil, false
		}
		return &Quantity{value: d, unit: unit}, true
	}
	if _, ok := calendarUnit(rest); ok {
		return &Quantity{value: d, unit: rest, calendar: true}, true
	}
	return nil, false
}

func toQuantityValue(v Value) (*Quantity, bool) {
	switch v.t.sys {
	case sysInteger, sysDecimal:
		d, ok := decimalOf(v)
		if !ok {
			return nil, false
		}
		return &Quantity{value: d, unit: "1"}, true
	case sysBoolean:
		i := int64(0)
		if v.node.(bool) {
			i = 1
		}
		return &Quantity{value: decimal{r: decimalFromInt(i).r, scale: 1}, unit: "1"}, true
	case sysString:
		return parseQuantityString(v.node.(string))
	}
	return quantityOf(v)
}

func fnToQuantity(test bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errorf("%s() on a collection of %d items", n.name, len(in))
		}
		q, ok := toQuantityValue(in[0])
		if ok && len(n.args) == 1 {
			ua, err := n.arg(c, 0, focus)
			if err != nil {
				return nil, err
			}
			if len(ua) != 1 {
				return nil, nil
			}
			unit, _ := stringOf(ua[0])
			target := &Quantity{value: decimalFromInt(1), unit: unit}
			if kw, isCal := calendarUnit(unit); isCal && ucumForCalendar(kw) == "" {
				target.calendar = true
			}
			v, conv := q.convertTo(target)
			if conv {
				q = &Quantity{value: v, unit: target.unit, calendar: target.calendar}
			}
			ok = conv
		}
		if test {
			return c.boolColl(ok), nil
		}
		if !ok {
			return nil, nil
		}
		return Collection{c.quantity(q)}, nil
	}
}
