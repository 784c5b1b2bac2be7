package resource

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

var missingField = regexp.MustCompile(`missing required field "([A-Za-z0-9_]+)"`)

// Checker validates R4 structure with google/fhir/go: unknown elements, wrong types, bad
// primitives, codes outside required bindings, and missing required elements.
type Checker struct {
	u *jsonformat.Unmarshaller
}

// NewChecker builds a checker. maxDepth bounds nesting (0 = unbounded).
func NewChecker(maxDepth int) (*Checker, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("building R4 parser: %w", err)
	}
	u.MaxNestingDepth = maxDepth
	return &Checker{u: u}, nil
}

// Check returns nil when b is structurally valid R4, or an *outcome.Error listing every
// problem with the element it concerns. Structural problems are 400; a resource that parses
// but breaks a rule of the base specification (a missing required element, a bad reference) is
// 422.
func (c *Checker) Check(b []byte) *outcome.Error {
	_, oo, err := c.u.UnmarshalWithOutcome(b)
	if err != nil {
		issues := unmarshalIssues(err)
		if len(issues) == 0 {
			issues = []outcome.Issue{{Severity: "error", Code: "structure", Diagnostics: err.Error()}}
		}
		return &outcome.Error{Status: http.StatusBadRequest, Issues: issues}
	}
	if oo == nil || oo.R4Outcome == nil || len(oo.R4Outcome.GetIssue()) == 0 {
		return nil
	}
	var issues []outcome.Issue
	for _, is := range oo.R4Outcome.GetIssue() {
		sev := strings.ToLower(is.GetSeverity().GetValue().String())
		if sev != "error" && sev != "fatal" {
			continue
		}
		var expr []string
		for _, e := range is.GetExpression() {
			expr = append(expr, e.GetValue())
		}
		code := "invariant"
		msg := is.GetDiagnostics().GetValue()
		if m := missingField.FindStringSubmatch(msg); m != nil {
			code = "required"
			if len(expr) > 0 {
				expr[0] += "." + m[1]
			}
			msg = fmt.Sprintf("missing required element %q", m[1])
		}
		issues = append(issues, outcome.Issue{Severity: "error", Code: code, Diagnostics: describe(expr, msg), Expression: expr})
	}
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
}

func describe(expr []string, msg string) string {
	if len(expr) == 0 {
		return msg
	}
	return expr[0] + ": " + msg
}

// unmarshalIssues turns the parser's error list into issues. The list's element type is
// internal to google/fhir/go, so its exported fields (Path, Details, Diagnostics) are read by
// reflection; anything else falls back to the error text.
func unmarshalIssues(err error) []outcome.Issue {
	v := reflect.ValueOf(err)
	var elems []reflect.Value
	switch v.Kind() {
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			elems = append(elems, v.Index(i))
		}
	case reflect.Pointer:
		elems = append(elems, v)
	}
	var issues []outcome.Issue
	for _, e := range elems {
		if e.Kind() == reflect.Pointer {
			if e.IsNil() {
				continue
			}
			e = e.Elem()
		}
		if e.Kind() != reflect.Struct {
			continue
		}
		path, details, diag := field(e, "Path"), field(e, "Details"), field(e, "Diagnostics")
		if details == "" {
			continue
		}
		is := outcome.Issue{Severity: "error", Code: "structure"}
		switch {
		case details == "unknown field":
			name, uerr := strconv.Unquote(diag)
			if uerr != nil {
				name = diag
			}
			if path != "" && name != "" {
				path += "." + name
			}
			is.Diagnostics = fmt.Sprintf("unknown element %q", path)
		case details == "invalid JSON":
			is.Code = "invalid"
			is.Diagnostics = "body is not valid JSON: " + diag
		default:
			is.Code = "value"
			is.Diagnostics = details
			if path != "" {
				is.Diagnostics = path + ": " + details
			}
		}
		if path != "" {
			is.Expression = []string{path}
		}
		issues = append(issues, is)
	}
	if len(issues) == 0 {
		var target interface{ Unwrap() error }
		if errors.As(err, &target) && target.Unwrap() != nil {
			return nil
		}
	}
	return issues
}

func field(v reflect.Value, name string) string {
	f := v.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.String {
		return ""
	}
	return f.String()
}

// EmptyValues finds what FHIR JSON forbids but the R4 parser lets through: empty strings and
// empty arrays. Expressions start at the resource type ("Patient.name[0].family").
func EmptyValues(res map[string]any) *outcome.Error {
	var issues []outcome.Issue
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, path+"."+k)
			}
		case []any:
			if len(x) == 0 {
				issues = append(issues, outcome.Issue{Severity: "error", Code: "structure", Diagnostics: path + ": an array may not be empty; leave the element out", Expression: []string{path}})
			}
			for i, c := range x {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case string:
			if x == "" {
				issues = append(issues, outcome.Issue{Severity: "error", Code: "value", Diagnostics: path + ": a value may not be an empty string; leave the element out", Expression: []string{path}})
			}
		}
	}
	typ, _ := res["resourceType"].(string)
	for k, v := range res {
		walk(v, typ+"."+k)
	}
	if len(issues) == 0 {
		return nil
	}
	sort.Slice(issues, func(i, j int) bool { return issues[i].Expression[0] < issues[j].Expression[0] })
	return &outcome.Error{Status: http.StatusBadRequest, Issues: issues}
}
