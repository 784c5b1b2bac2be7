// Package outcome builds FHIR OperationOutcomes and the errors that carry them with an HTTP
// status, so every layer can fail with something a client can act on.
package outcome

import (
	"fmt"
	"net/http"
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"` // fatal | error | warning | information
	Code        string   `json:"code"`     // IssueType code: invalid, structure, required, value, not-found, ...
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Error is a failed interaction: an HTTP status and the issues explaining it.
type Error struct {
	Status int
	Issues []Issue
}

func (e *Error) Error() string {
	if len(e.Issues) == 0 {
		return http.StatusText(e.Status)
	}
	msg := e.Issues[0].Diagnostics
	if len(e.Issues) > 1 {
		msg += fmt.Sprintf(" (and %d more issues)", len(e.Issues)-1)
	}
	return msg
}

// New returns an error with one issue of severity error.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: fmt.Sprintf(format, args...)}}}
}

// At returns an error with one issue naming the element it is about.
func At(status int, code, expression, format string, args ...any) *Error {
	e := New(status, code, format, args...)
	if expression != "" {
		e.Issues[0].Expression = []string{expression}
	}
	return e
}

// Resource renders issues as an OperationOutcome resource.
func Resource(issues []Issue) map[string]any {
	list := make([]any, 0, len(issues))
	for _, is := range issues {
		m := map[string]any{"severity": is.Severity, "code": is.Code}
		if is.Diagnostics != "" {
			m["diagnostics"] = is.Diagnostics
		}
		if len(is.Expression) > 0 {
			ex := make([]any, len(is.Expression))
			for i, s := range is.Expression {
				ex[i] = s
			}
			m["expression"] = ex
		}
		list = append(list, m)
	}
	if len(list) == 0 {
		list = append(list, map[string]any{"severity": "information", "code": "informational", "diagnostics": "All OK"})
	}
	return map[string]any{"resourceType": "OperationOutcome", "issue": list}
}

// Info returns a single informational issue, for successful operations that answer with an
// OperationOutcome (Prefer: return=OperationOutcome, deletes).
func Info(format string, args ...any) []Issue {
	return []Issue{{Severity: "information", Code: "informational", Diagnostics: fmt.Sprintf(format, args...)}}
}
