package fhirpath

import (
	"encoding/json"
	"strings"
)

// tri is a three-valued boolean.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// itemClass groups values that compare with each other.
type itemClass uint8

const (
	clsOther itemClass = iota
	clsBool
	clsString
	clsNumber
	clsDateTime
	clsQuantity
	clsComplex
)

func classOf(v Value) itemClass {
	switch v.t.sys {
	case sysBoolean:
		return clsBool
	case sysString:
		return clsString
	case sysInteger, sysDecimal:
		return clsNumber
	case sysDate, sysDateTime, sysTime:
		return clsDateTime
	case sysQuantity:
		return clsQuantity
	}
	if _, ok := v.node.(map[string]any); ok {
		if v.t.mt != nil && v.t.mt.Is("Quantity") {
			return clsQuantity
		}
		return clsComplex
	}
	return clsOther
}

// equalItems implements = for two single items.
func equalItems(a, b Value) tri {
	if a.node == nil || b.node == nil {
		return triUnknown // primitives that carry only extensions have no value
	}
	ca, cb := classOf(a), classOf(b)
	if ca != cb {
		return triFalse
	}
	switch ca {
	case clsBool:
		return triOf(a.node.(bool) == b.node.(bool))
	case clsString:
		sa, _ := a.node.(string)
		sb, _ := b.node.(string)
		return triOf(sa == sb)
	case clsNumber:
		if a.t.sys == sysInteger && b.t.sys == sysInteger {
			ia, ok1 := integerOf(a)
			ib, ok2 := integerOf(b)
			if ok1 && ok2 {
				return triOf(ia == ib)
			}
		}
		da, ok1 := decimalOf(a)
		db, ok2 := decimalOf(b)
		if !ok1 || !ok2 {
			return triUnknown
		}
		return triOf(da.cmp(db) == 0)
	case clsDateTime:
		da, ok1 := dateTimeOf(a)
		db, ok2 := dateTimeOf(b)
		if !ok1 || !ok2 || !dtCompatible(da, db) {
			return triFalse
		}
		c, ok := compareDT(da, db)
		if !ok {
			return triUnknown
		}
		return triOf(c == 0)
	case clsQuantity:
		qa, ok1 := quantityOf(a)
		qb, ok2 := quantityOf(b)
		if !ok1 || !ok2 {
			return triOf(deepEqual(a.node, b.node))
		}
		c, ok := compareQuantities(qa, qb)
		if !ok {
			return triUnknown
		}
		return triOf(c == 0)
	case clsComplex:
		return triOf(deepEqual(a.node, b.node))
	}
	return triOf(deepEqual(a.node, b.node))
}

// equivalentItems implements ~ for two single items.
func equivalentItems(a, b Value) bool {
	if a.node == nil || b.node == nil {
		return a.node == nil && b.node == nil
	}
	ca, cb := classOf(a), classOf(b)
	if ca != cb {
		return false
	}
	switch ca {
	case clsString:
		sa, _ := a.node.(string)
		sb, _ := b.node.(string)
		return normalizeSpace(sa) == normalizeSpace(sb)
	case clsNumber:
		da, ok1 := decimalOf(a)
		db, ok2 := decimalOf(b)
		if !ok1 || !ok2 {
			return false
		}
		p := da.precision()
		if q := db.precision(); q < p {
			p = q
		}
		return da.round(p).cmp(db.round(p)) == 0
	case clsDateTime:
		da, ok1 := dateTimeOf(a)
		db, ok2 := dateTimeOf(b)
		if !ok1 || !ok2 || !dtCompatible(da, db) || da.effPrec() != db.effPrec() {
			return false
		}
		c, ok := compareDT(da, db)
		return ok && c == 0
	case clsQuantity:
		qa, ok1 := quantityOf(a)
		qb, ok2 := quantityOf(b)
		if !ok1 || !ok2 {
			return deepEqual(a.node, b.node)
		}
		return equivalentQuantities(qa, qb)
	}
	return equalItems(a, b) == triTrue
}

func normalizeSpace(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// compareItems orders two single items for <, <=, >, >=. known is false when precision or
// units leave the answer open; an error means the operands cannot be ordered.
func compareItems(a, b Value) (int, bool, error) {
	if a.node == nil || b.node == nil {
		return 0, false, nil
	}
	ca, cb := classOf(a), classOf(b)
	if ca != cb {
		return 0, false, errorf("cannot compare %s with %s", a.t.name, b.t.name)
	}
	switch ca {
	case clsString:
		sa, _ := a.node.(string)
		sb, _ := b.node.(string)
		return strings.Compare(sa, sb), true, nil
	case clsNumber:
		if a.t.sys == sysInteger && b.t.sys == sysInteger {
			ia, ok1 := integerOf(a)
			ib, ok2 := integerOf(b)
			if ok1 && ok2 {
				switch {
				case ia < ib:
					return -1, true, nil
				case ia > ib:
					return 1, true, nil
				}
				return 0, true, nil
			}
		}
		da, ok1 := decimalOf(a)
		db, ok2 := decimalOf(b)
		if !ok1 || !ok2 {
			return 0, false, nil
		}
		return da.cmp(db), true, nil
	case clsDateTime:
		da, ok1 := dateTimeOf(a)
		db, ok2 := dateTimeOf(b)
		if !ok1 || !ok2 {
			return 0, false, nil
		}
		if !dtCompatible(da, db) {
			return 0, false, errorf("cannot compare %s with %s", a.t.name, b.t.name)
		}
		c, ok := compareDT(da, db)
		return c, ok, nil
	case clsQuantity:
		qa, ok1 := quantityOf(a)
		qb, ok2 := quantityOf(b)
		if !ok1 || !ok2 {
			return 0, false, nil
		}
		c, ok := compareQuantities(qa, qb)
		return c, ok, nil
	}
	return 0, false, errorf("cannot order values of type %s", a.t.name)
}

// deepEqual compares two JSON trees.
func deepEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !deepEqual(v, w) {
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
			if !deepEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		dx, ok1 := parseDecimal(string(x))
		dy, ok2 := parseDecimal(string(y))
		return ok1 && ok2 && dx.cmp(dy) == 0
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	case *Quantity:
		y, ok := b.(*Quantity)
		if !ok {
			return false
		}
		c, known := compareQuantities(x, y)
		return known && c == 0
	case decimal:
		y, ok := b.(decimal)
		return ok && x.cmp(y) == 0
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case dateTime:
		y, ok := b.(dateTime)
		return ok && x == y
	}
	return false
}

// sameItem is the equality used to remove duplicates (union, distinct): values that are
// equal, treating an unknown comparison as different.
func sameItem(a, b Value) bool {
	if a.node == nil && b.node == nil {
		return a.t == b.t && deepEqual(a.ext, b.ext)
	}
	return equalItems(a, b) == triTrue
}

func containsItem(c Collection, v Value) bool {
	for _, x := range c {
		if sameItem(x, v) {
			return true
		}
	}
	return false
}

// equalCollections implements = and != over collections.
func equalCollections(l, r Collection) tri {
	if len(l) == 0 || len(r) == 0 {
		return triUnknown
	}
	if len(l) != len(r) {
		return triFalse
	}
	unknown := false
	for i := range l {
		switch equalItems(l[i], r[i]) {
		case triFalse:
			return triFalse
		case triUnknown:
			unknown = true
		}
	}
	if unknown {
		return triUnknown
	}
	return triTrue
}

// equivalentCollections implements ~: order does not matter.
func equivalentCollections(l, r Collection) bool {
	if len(l) != len(r) {
		return false
	}
	used := make([]bool, len(r))
	for _, a := range l {
		found := false
		for j, b := range r {
			if !used[j] && equivalentItems(a, b) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
