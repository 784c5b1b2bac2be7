package fhirpath

import (
	"encoding/json"
	"strconv"

	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// Namespaces of FHIRPath types.
const (
	NamespaceFHIR   = "FHIR"
	NamespaceSystem = "System"
)

type sysKind uint8

const (
	sysNone sysKind = iota // complex FHIR types
	sysBoolean
	sysString
	sysInteger
	sysDecimal
	sysDate
	sysDateTime
	sysTime
	sysQuantity
)

// vtype describes the type of a Value: a System type or a FHIR type from the model, with the
// navigation table for FHIR types that have elements.
type vtype struct {
	ns   string
	name string // FHIRPath type name: "Patient", "code", "Integer", "BackboneElement"
	sys  sysKind
	mt   *r4model.Type
	// elems resolves element names of complex FHIR types; nil for primitives and System types.
	elems map[string]*navElem
	// resource is set for the abstract Resource type: the concrete type comes from the
	// JSON's resourceType.
	resource bool
	// untyped marks JSON that the model does not describe: properties are read as-is.
	untyped bool
}

// navElem is one element of a FHIR type prepared for navigation.
type navElem struct {
	name     string
	variants []navVariant
}

// navVariant is one JSON property an element may appear as (one per choice type).
type navVariant struct {
	key    string
	extKey string // "_key" for primitives, "" otherwise
	t      *vtype
}

// Value is one item of a Collection: a node of the input JSON with its FHIR type, or a value
// computed by the expression (a System type).
type Value struct {
	t    *vtype
	node any
	// ext is the "_name" sibling of a primitive: its id and extensions.
	ext map[string]any
}

// Collection is the result of evaluating an expression: an ordered list of values.
type Collection []Value

// Type returns the type name: FHIR types ("HumanName", "code", "dateTime", "Patient",
// "BackboneElement") for nodes of the input, System types ("String", "Integer", "Boolean",
// "Decimal", "Date", "DateTime", "Time", "Quantity") for computed values.
func (v Value) Type() string { return v.t.name }

// Namespace returns "FHIR" or "System".
func (v Value) Namespace() string { return v.t.ns }

// ModelType returns the r4model type of a FHIR node (the backbone type for backbone
// elements), or nil for System values and JSON the model does not describe.
func (v Value) ModelType() *r4model.Type { return v.t.mt }

// IsPrimitive reports whether the value is a primitive (FHIR primitive or System
// primitive other than Quantity).
func (v Value) IsPrimitive() bool { return v.t.sys != sysNone && v.t.sys != sysQuantity }

// HasValue reports whether a primitive carries a value (it may have only extensions).
func (v Value) HasValue() bool { return v.node != nil }

// Extensions returns the extension list of a primitive's "_name" sibling or of an element.
func (v Value) Extensions() []any {
	if v.ext != nil {
		l, _ := v.ext["extension"].([]any)
		return l
	}
	if m, ok := v.node.(map[string]any); ok {
		l, _ := m["extension"].([]any)
		return l
	}
	return nil
}

// JSON returns the value as JSON: the input node itself, or a JSON rendering of computed
// values (dates and times as strings without '@', Quantities as FHIR Quantity objects,
// integers and decimals as json.Number).
func (v Value) JSON() any {
	switch n := v.node.(type) {
	case int64:
		return json.Number(strconv.FormatInt(n, 10))
	case decimal:
		return n.jsonNumber()
	case dateTime:
		return n.String()
	case *Quantity:
		return n.json()
	}
	return v.node
}

// String returns the FHIRPath string form of a primitive (as toString() does) and the
// compact JSON of complex values.
func (v Value) String() string {
	if s, ok := stringOf(v); ok {
		return s
	}
	b, _ := json.Marshal(v.JSON())
	return string(b)
}

// AsString returns the value when it is string-like (string, code, uri, id, ...).
func (v Value) AsString() (string, bool) {
	if v.t.sys != sysString {
		return "", false
	}
	s, ok := v.node.(string)
	return s, ok
}

// AsBool returns the value of a Boolean or FHIR boolean.
func (v Value) AsBool() (bool, bool) {
	if v.t.sys != sysBoolean {
		return false, false
	}
	b, ok := v.node.(bool)
	return b, ok
}

// AsInteger returns the value of an Integer or FHIR integer/positiveInt/unsignedInt.
func (v Value) AsInteger() (int64, bool) {
	if v.t.sys != sysInteger {
		return 0, false
	}
	return integerOf(v)
}

// AsDecimalString returns a Decimal or Integer as its decimal string.
func (v Value) AsDecimalString() (string, bool) {
	d, ok := decimalOf(v)
	if !ok {
		return "", false
	}
	return d.String(), true
}

// AsQuantity returns a System Quantity or a FHIR Quantity (or specialisation) with a
// value. FHIR quantities without code use their unit text.
func (v Value) AsQuantity() (*Quantity, bool) { return quantityOf(v) }

// AsDateTimeString returns a Date, DateTime or Time (System or FHIR) in FHIR format.
func (v Value) AsDateTimeString() (string, bool) {
	d, ok := dateTimeOf(v)
	if !ok {
		return "", false
	}
	return d.String(), true
}

func integerOf(v Value) (int64, bool) {
	switch n := v.node.(type) {
	case int64:
		return n, true
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			d, ok := parseDecimal(string(n))
			if !ok {
				return 0, false
			}
			return d.int64()
		}
		return i, true
	case float64:
		return int64(n), float64(int64(n)) == n
	}
	return 0, false
}

func decimalOf(v Value) (decimal, bool) {
	switch n := v.node.(type) {
	case decimal:
		return n, true
	case int64:
		return decimalFromInt(n), true
	case json.Number:
		return parseDecimal(string(n))
	case float64:
		return decimalFromFloat(n)
	}
	return decimal{}, false
}

func dateTimeOf(v Value) (dateTime, bool) {
	switch n := v.node.(type) {
	case dateTime:
		return n, true
	case string:
		switch v.t.sys {
		case sysDate:
			return parseDate(n)
		case sysDateTime:
			if d, ok := parseDateTime(n); ok {
				return d, true
			}
		case sysTime:
			return parseTime(n)
		}
	}
	return dateTime{}, false
}

// quantityOf converts a System Quantity or a FHIR Quantity-typed node.
func quantityOf(v Value) (*Quantity, bool) {
	switch n := v.node.(type) {
	case *Quantity:
		return n, true
	case map[string]any:
		if v.t.mt == nil || !v.t.mt.Is("Quantity") {
			return nil, false
		}
		num, ok := n["value"].(json.Number)
		if !ok {
			return nil, false
		}
		d, ok := parseDecimal(string(num))
		if !ok {
			return nil, false
		}
		q := &Quantity{value: d}
		code, _ := n["code"].(string)
		system, _ := n["system"].(string)
		unit, _ := n["unit"].(string)
		switch {
		case code != "" && (system == ucumSystem || system == ""):
			q.unit = code
		case unit != "":
			if kw, ok := calendarUnit(unit); ok && system == "" {
				q.unit, q.calendar = kw, true
			} else {
				q.unit = unit
			}
		case code != "":
			q.unit = code
		default:
			q.unit = "1"
		}
		return q, true
	}
	return nil, false
}

// stringOf renders a primitive the way toString() does.
func stringOf(v Value) (string, bool) {
	switch n := v.node.(type) {
	case string:
		if v.t.sys == sysNone {
			return "", false
		}
		return n, true
	case bool:
		return strconv.FormatBool(n), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case json.Number:
		return string(n), true
	case decimal:
		return n.String(), true
	case dateTime:
		return n.String(), true
	case *Quantity:
		return n.String(), true
	}
	return "", false
}
