package questionnaire

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Lexical forms of the R4 temporal primitives (https://hl7.org/fhir/R4/datatypes.html).
var (
	dateRE     = regexp.MustCompile(`^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$`)
	dateTimeRE = regexp.MustCompile(`^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$`)
	timeRE     = regexp.MustCompile(`^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?$`)
	intRE      = regexp.MustCompile(`^[+-]?\d+$`)
)

// answerKinds lists the answer value[x] suffixes an item type accepts (before answerOption
// widens choice items).
func answerKinds(typ string) []string {
	switch typ {
	case "boolean":
		return []string{"Boolean"}
	case "decimal":
		return []string{"Decimal"}
	case "integer":
		return []string{"Integer"}
	case "date":
		return []string{"Date"}
	case "dateTime":
		return []string{"DateTime"}
	case "time":
		return []string{"Time"}
	case "string", "text":
		return []string{"String"}
	case "url":
		return []string{"Uri"}
	case "choice":
		return []string{"Coding"}
	case "open-choice":
		return []string{"Coding", "String"}
	case "attachment":
		return []string{"Attachment"}
	case "reference":
		return []string{"Reference"}
	case "quantity":
		return []string{"Quantity"}
	}
	return nil
}

// allowedKinds is answerKinds for d's type plus the value types of its answerOptions, since R4
// choice items may offer string, integer, date, time or Reference options.
func allowedKinds(d *qItem) []string {
	out := answerKinds(d.typ)
	if d.typ != "choice" && d.typ != "open-choice" {
		return out
	}
	for _, o := range d.options {
		k, _ := choiceValue(o, "value")
		if k != "" && !contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// malformed reports why v is not a valid value of kind, or "" when it is.
func malformed(kind string, v any) string {
	switch kind {
	case "Boolean":
		if _, ok := v.(bool); !ok {
			return "must be true or false"
		}
	case "Decimal":
		if _, ok := ratOf(v); !ok {
			return "must be a JSON number"
		}
	case "Integer":
		if _, ok := intOf(v); !ok {
			return "must be a whole JSON number within the 32-bit range"
		}
	case "Date":
		if s, ok := v.(string); !ok || !dateRE.MatchString(s) || !calendarOK(s) {
			return "must be a date YYYY, YYYY-MM or YYYY-MM-DD"
		}
	case "DateTime":
		if s, ok := v.(string); !ok || !dateTimeRE.MatchString(s) || !calendarOK(s) {
			return "must be a dateTime (YYYY[-MM[-DD[Thh:mm:ss[.fff](Z|+hh:mm)]]])"
		}
	case "Time":
		if s, ok := v.(string); !ok || !timeRE.MatchString(s) {
			return "must be a time hh:mm:ss"
		}
	case "String":
		if s, ok := v.(string); !ok || strings.TrimSpace(s) == "" {
			return "must be a non-empty string"
		}
	case "Uri":
		if s, ok := v.(string); !ok || s == "" || strings.ContainsAny(s, " \t\r\n") {
			return "must be a non-empty URI without whitespace"
		}
	case "Coding":
		m, ok := v.(map[string]any)
		if !ok {
			return "must be a Coding object"
		}
		if _, ok := m["code"].(string); !ok {
			if _, ok := m["display"].(string); !ok {
				return "must have a code or a display"
			}
		}
	case "Quantity":
		m, ok := v.(map[string]any)
		if !ok {
			return "must be a Quantity object"
		}
		if x, present := m["value"]; present {
			if _, ok := ratOf(x); !ok {
				return "value must be a JSON number"
			}
		}
	case "Attachment", "Reference":
		if _, ok := v.(map[string]any); !ok {
			return "must be a " + kind + " object"
		}
	}
	return ""
}

// calendarOK rejects dates such as 2024-02-30 that the lexical pattern lets through.
func calendarOK(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}

func ratOf(v any) (*big.Rat, bool) {
	switch n := v.(type) {
	case json.Number:
		r, ok := new(big.Rat).SetString(string(n))
		return r, ok
	case float64:
		if math.IsInf(n, 0) || math.IsNaN(n) {
			return nil, false
		}
		return new(big.Rat).SetFloat64(n), true
	case int:
		return new(big.Rat).SetInt64(int64(n)), true
	case int64:
		return new(big.Rat).SetInt64(n), true
	}
	return nil, false
}

func intOf(v any) (int64, bool) {
	var n int64
	switch x := v.(type) {
	case json.Number:
		if !intRE.MatchString(string(x)) {
			return 0, false
		}
		i, err := x.Int64()
		if err != nil {
			return 0, false
		}
		n = i
	case float64:
		if x != math.Trunc(x) {
			return 0, false
		}
		n = int64(x)
	case int:
		n = int64(x)
	case int64:
		n = x
	default:
		return 0, false
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, false
	}
	return n, true
}

// textLength counts characters, as maxLength is defined on characters, not bytes.
func textLength(v any) int {
	s, _ := v.(string)
	return utf8.RuneCountInString(s)
}

// family groups value[x] suffixes that compare with each other.
func family(kind string) string {
	switch kind {
	case "Decimal", "Integer":
		return "number"
	case "Date", "DateTime":
		return "date"
	case "String", "Uri":
		return "string"
	}
	return kind
}

// compare compares an answer value with an enableWhen value. ok is false when the two cannot be
// compared (different types, different units, or temporal values whose precision leaves the
// order undetermined); ordered is false for types with equality only.
func compare(aKind string, a any, bKind string, b any) (c int, ok, ordered bool) {
	if family(aKind) != family(bKind) {
		return 0, false, false
	}
	switch family(aKind) {
	case "number":
		x, ok1 := ratOf(a)
		y, ok2 := ratOf(b)
		if !ok1 || !ok2 {
			return 0, false, false
		}
		return x.Cmp(y), true, true
	case "date":
		x, _ := a.(string)
		y, _ := b.(string)
		c, ok := compareDateTime(x, y)
		return c, ok, true
	case "Time", "string":
		x, ok1 := a.(string)
		y, ok2 := b.(string)
		if !ok1 || !ok2 {
			return 0, false, false
		}
		return strings.Compare(x, y), true, true
	case "Quantity":
		return compareQuantity(a, b)
	case "Boolean":
		x, ok1 := a.(bool)
		y, ok2 := b.(bool)
		if !ok1 || !ok2 {
			return 0, false, false
		}
		return boolDiff(x == y), true, false
	case "Coding":
		x, _ := a.(map[string]any)
		y, _ := b.(map[string]any)
		if x == nil || y == nil {
			return 0, false, false
		}
		// An enableWhen coding without a system matches on code alone.
		ys, _ := y["system"].(string)
		xs, _ := x["system"].(string)
		same := str(x, "code") != "" && str(x, "code") == str(y, "code") && (ys == "" || xs == ys)
		return boolDiff(same), true, false
	case "Reference":
		x, _ := a.(map[string]any)
		y, _ := b.(map[string]any)
		if x == nil || y == nil {
			return 0, false, false
		}
		same := str(x, "reference") != "" && str(x, "reference") == str(y, "reference")
		return boolDiff(same), true, false
	}
	return 0, false, false
}

func boolDiff(same bool) int {
	if same {
		return 0
	}
	return 1
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// compareDateTime orders two date/dateTime strings. Values with a time of day are compared as
// instants; otherwise the shared precision decides, and equal prefixes of different precision
// are incomparable (2024-05 vs 2024-05-01).
func compareDateTime(a, b string) (int, bool) {
	ta, errA := time.Parse(time.RFC3339Nano, a)
	tb, errB := time.Parse(time.RFC3339Nano, b)
	if errA == nil && errB == nil {
		return ta.Compare(tb), true
	}
	da, db := a, b
	if len(da) > 10 {
		da = da[:10]
	}
	if len(db) > 10 {
		db = db[:10]
	}
	n := min(len(da), len(db))
	if c := strings.Compare(da[:n], db[:n]); c != 0 {
		return c, true
	}
	if len(a) == len(b) && a == b {
		return 0, true
	}
	return 0, false
}

func compareQuantity(a, b any) (int, bool, bool) {
	x, _ := a.(map[string]any)
	y, _ := b.(map[string]any)
	if x == nil || y == nil {
		return 0, false, false
	}
	if str(x, "code") != "" || str(y, "code") != "" {
		if str(x, "code") != str(y, "code") || str(x, "system") != str(y, "system") {
			return 0, false, false
		}
	} else if str(x, "unit") != str(y, "unit") {
		return 0, false, false
	}
	vx, ok1 := ratOf(x["value"])
	vy, ok2 := ratOf(y["value"])
	if !ok1 || !ok2 {
		return 0, false, false
	}
	return vx.Cmp(vy), true, true
}

// optionMatches reports whether an answer value equals an answerOption's value. Codings match
// on system and code; other types on their value.
func optionMatches(opt map[string]any, kind string, v any) bool {
	ok, ov := choiceValue(opt, "value")
	if ok != kind {
		return false
	}
	switch kind {
	case "Coding":
		x, _ := v.(map[string]any)
		y, _ := ov.(map[string]any)
		return x != nil && y != nil && str(x, "code") != "" && str(x, "code") == str(y, "code") && str(x, "system") == str(y, "system")
	case "Integer":
		x, ok1 := intOf(v)
		y, ok2 := intOf(ov)
		return ok1 && ok2 && x == y
	case "Reference":
		x, _ := v.(map[string]any)
		y, _ := ov.(map[string]any)
		return x != nil && y != nil && str(x, "reference") != "" && str(x, "reference") == str(y, "reference")
	}
	x, ok1 := v.(string)
	y, ok2 := ov.(string)
	return ok1 && ok2 && x == y
}

// describe renders an answer value for messages.
func describe(kind string, v any) string {
	switch kind {
	case "Coding":
		m, _ := v.(map[string]any)
		if m == nil {
			return "(not a Coding)"
		}
		if s := str(m, "system"); s != "" {
			return s + "|" + str(m, "code")
		}
		return str(m, "code")
	case "Reference":
		m, _ := v.(map[string]any)
		return str(m, "reference")
	}
	return fmt.Sprint(v)
}
