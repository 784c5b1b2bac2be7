package clinical

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/xeipuuv/gojsonschema"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// checkSchema validates raw against the format's JSON Schema. Each issue's expression is the
// JSON path of the offending member ("observations[0].heartRate").
func (m *Mapper) checkSchema(raw []byte) error {
	res, err := m.schema.Validate(gojsonschema.NewBytesLoader(raw))
	if err != nil {
		return outcome.New(http.StatusBadRequest, "structure", "the body is not JSON: %v", err)
	}
	if res.Valid() {
		return nil
	}
	var issues []outcome.Issue
	seen := map[string]bool{}
	for _, re := range res.Errors() {
		// An anyOf failure adds nothing when a more precise error is reported at or below it.
		if re.Type() == "number_any_of" && hasErrorWithin(res.Errors(), re) {
			continue
		}
		path := jsonPath(re.Field())
		code := "invalid"
		switch re.Type() {
		case "required":
			code = "required"
			if p, ok := re.Details()["property"].(string); ok {
				path = join(path, p)
			}
		case "additional_property_not_allowed":
			code = "structure"
			if p, ok := re.Details()["property"].(string); ok {
				path = join(path, p)
			}
		case "invalid_type":
			code = "structure"
		case "enum", "const", "pattern", "format", "number_gte", "number_lte", "number_gt", "number_lt", "string_gte", "string_lte":
			code = "value"
		}
		msg := re.Description()
		if anyOfAt(re) {
			if re.Type() == "required" {
				path = jsonPath(re.Field())
			}
			msg = anyOfMessage(path, msg)
		}
		if p := path; p != "" {
			msg = p + ": " + msg
		}
		if seen[path+"\x00"+msg] {
			continue
		}
		seen[path+"\x00"+msg] = true
		is := outcome.Issue{Severity: "error", Code: code, Diagnostics: msg}
		if path != "" {
			is.Expression = []string{path}
		}
		issues = append(issues, is)
	}
	sort.SliceStable(issues, func(i, j int) bool { return firstExpr(issues[i]) < firstExpr(issues[j]) })
	return &outcome.Error{Status: http.StatusBadRequest, Issues: issues}
}

func firstExpr(is outcome.Issue) string {
	if len(is.Expression) == 0 {
		return ""
	}
	return is.Expression[0]
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// jsonPath turns gojsonschema's "observations.0.heartRate" into "observations[0].heartRate";
// the document itself ("(root)") is "".
func jsonPath(field string) string {
	if field == "(root)" || field == "" {
		return ""
	}
	var b strings.Builder
	for i, part := range strings.Split(field, ".") {
		if _, err := strconv.Atoi(part); err == nil {
			fmt.Fprintf(&b, "[%s]", part)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

func hasErrorWithin(errs []gojsonschema.ResultError, outer gojsonschema.ResultError) bool {
	for _, e := range errs {
		if e == outer || e.Type() == "number_any_of" {
			continue
		}
		if e.Field() == outer.Field() || strings.HasPrefix(e.Field(), outer.Field()+".") || outer.Field() == "(root)" {
			return true
		}
	}
	return false
}

var observationKeys = map[string]bool{"heartRate": true, "respiratoryRate": true, "bloodPressure": true,
	"temperature": true, "spo2": true, "acvpu": true, "news2": true}

// anyOfAt reports whether an error comes from one of the schema's anyOf alternatives, whose
// messages gojsonschema gives for its first branch only ("heartRate is required").
func anyOfAt(re gojsonschema.ResultError) bool {
	f := re.Field()
	switch {
	case re.Type() == "number_any_of":
		return true
	case re.Type() == "required" && strings.HasPrefix(f, "observations.") && strings.Count(f, ".") == 1:
		p, _ := re.Details()["property"].(string)
		return observationKeys[p]
	case strings.HasSuffix(f, ".code.system") && re.Type() == "enum":
		return true
	case strings.HasSuffix(f, ".onset") && (re.Type() == "pattern" || re.Type() == "format"):
		return true
	}
	return false
}

// anyOfMessage says in words what an anyOf in the schema wants, by where it is.
func anyOfMessage(path, fallback string) string {
	switch last := path[strings.LastIndexAny(path, ".]")+1:]; {
	case last == "system":
		return "the code system must be snomed, read2, ctv3, dmd or an absolute URI"
	case last == "onset":
		return "must be a date (YYYY, YYYY-MM or YYYY-MM-DD) or a date-time with a time zone"
	case strings.HasPrefix(path, "observations["):
		return "an observation set records at least one of heartRate, respiratoryRate, bloodPressure, temperature, spo2, acvpu or news2"
	}
	return fallback
}
