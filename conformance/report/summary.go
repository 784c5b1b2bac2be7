package report

import (
	"encoding/json"
	"io"
	"time"

	"github.com/hjbroker/hjbroker/conformance/testscript"
)

// Summary is the JSON summary of a run.
type Summary struct {
	Target     string         `json:"target"`
	Started    time.Time      `json:"started"`
	DurationMS int64          `json:"durationMs"`
	Passed     bool           `json:"passed"`
	Totals     Totals         `json:"totals"`
	Suites     []SuiteSummary `json:"suites"`
}

// SuiteSummary is one suite of a Summary.
type SuiteSummary struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Passed      bool            `json:"passed"`
	Scripts     []ScriptSummary `json:"scripts"`
}

// ScriptSummary is one TestScript of a Summary.
type ScriptSummary struct {
	File    string               `json:"file"`
	Name    string               `json:"name"`
	Title   string               `json:"title,omitempty"`
	Passed  bool                 `json:"passed"`
	Invalid []testscript.Problem `json:"invalid,omitempty"`
	Tests   []TestSummary        `json:"tests"`
}

// TestSummary is one test of a Summary.
type TestSummary struct {
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	DurationMS int64           `json:"durationMs"`
	Message    string          `json:"message,omitempty"`
	Failure    *FailureSummary `json:"failure,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`
}

// FailureSummary is the action a test failed on.
type FailureSummary struct {
	Path     string `json:"path"`
	Label    string `json:"label"`
	Message  string `json:"message"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Method   string `json:"method,omitempty"`
	URL      string `json:"url,omitempty"`
	Status   int    `json:"status,omitempty"`
}

// Summarize builds the summary of a run.
func Summarize(r *Run) Summary {
	s := Summary{Target: r.Target, Started: r.Started.UTC(), DurationMS: r.Duration.Milliseconds(), Passed: r.Passed(), Totals: r.Totals()}
	for _, sr := range r.Suites {
		ss := SuiteSummary{Name: sr.Suite, Description: sr.Description, Passed: sr.Passed()}
		for _, sc := range sr.Scripts {
			cs := ScriptSummary{File: sc.File, Name: sc.Name, Title: sc.Title, Passed: sc.Passed(), Invalid: sc.Invalid, Tests: []TestSummary{}}
			for i := range sc.Tests {
				t := &sc.Tests[i]
				ts := TestSummary{Name: t.Name, Status: string(t.Status), DurationMS: t.Duration.Milliseconds(), Message: t.Message}
				if f := t.Failure(); f != nil {
					fs := &FailureSummary{Path: f.Path, Label: f.Label, Message: f.Message, Expected: f.Expected, Actual: f.Actual}
					if f.Exchange != nil {
						fs.Method, fs.URL, fs.Status = f.Exchange.Method, f.Exchange.URL, f.Exchange.Status
					}
					ts.Failure = fs
				}
				for _, a := range t.Actions {
					if a.Status == testscript.Warning {
						ts.Warnings = append(ts.Warnings, a.Path+": "+a.Message)
					}
				}
				cs.Tests = append(cs.Tests, ts)
			}
			ss.Scripts = append(ss.Scripts, cs)
		}
		s.Suites = append(s.Suites, ss)
	}
	return s
}

// WriteJSON writes the summary as indented JSON.
func WriteJSON(w io.Writer, r *Run) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(Summarize(r))
}
