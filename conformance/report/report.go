// Package report writes the outcome of a conformance run as JUnit XML (for CI), a JSON
// summary (for tools) and a self-contained HTML page (for people).
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/testscript"
)

// Run is one conformance run: the suites run against one target.
type Run struct {
	Target   string
	Started  time.Time
	Duration time.Duration
	Suites   []*suite.Result
}

// Totals counts a run's tests. An invalid script counts as one failed test.
type Totals struct {
	Suites         int `json:"suites"`
	Scripts        int `json:"scripts"`
	InvalidScripts int `json:"invalidScripts"`
	Tests          int `json:"tests"`
	Passed         int `json:"passed"`
	Failed         int `json:"failed"`
	Errors         int `json:"errors"`
	Warnings       int `json:"warnings"`
}

// Totals adds up the run.
func (r *Run) Totals() Totals {
	var t Totals
	t.Suites = len(r.Suites)
	for _, s := range r.Suites {
		for _, sc := range s.Scripts {
			t.Scripts++
			if len(sc.Invalid) > 0 {
				t.InvalidScripts++
				t.Tests++
				t.Errors++
				continue
			}
			for _, tr := range sc.Tests {
				t.Tests++
				switch tr.Status {
				case testscript.Pass:
					t.Passed++
				case testscript.Errored:
					t.Errors++
				default:
					t.Failed++
				}
				for _, a := range tr.Actions {
					if a.Status == testscript.Warning {
						t.Warnings++
					}
				}
			}
		}
	}
	return t
}

// Passed reports whether every test of every suite passed.
func (r *Run) Passed() bool {
	t := r.Totals()
	return t.Failed == 0 && t.Errors == 0 && t.Tests > 0
}

// Files are the names WriteDir writes.
const (
	JUnitFile = "junit.xml"
	JSONFile  = "summary.json"
	HTMLFile  = "report.html"
)

// WriteDir writes the three reports into dir, creating it.
func WriteDir(dir string, r *Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating report folder: %w", err)
	}
	for _, f := range []struct {
		name  string
		write func(*os.File, *Run) error
	}{
		{JUnitFile, func(f *os.File, r *Run) error { return WriteJUnit(f, r) }},
		{JSONFile, func(f *os.File, r *Run) error { return WriteJSON(f, r) }},
		{HTMLFile, func(f *os.File, r *Run) error { return WriteHTML(f, r) }},
	} {
		p := filepath.Join(dir, f.name)
		out, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		err = f.write(out, r)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}

// secretHeaders are never written to a report.
var secretHeaders = map[string]bool{"Authorization": true, "Cookie": true, "Set-Cookie": true, "Proxy-Authorization": true}

// headerText renders headers one per line, secrets redacted.
func headerText(h http.Header) string {
	var b strings.Builder
	for _, k := range sortedKeys(h) {
		v := strings.Join(h[k], ", ")
		if secretHeaders[k] {
			v = "(redacted)"
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	return b.String()
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// excerpt cuts a body to n bytes on a rune boundary; JSON is indented first, for reading.
func excerpt(b []byte, n int) string {
	var ind bytes.Buffer
	if json.Indent(&ind, b, "", "  ") == nil {
		b = ind.Bytes()
	}
	if len(b) <= n {
		return string(b)
	}
	// A rune cut in half is dropped rather than shown as garbage.
	return strings.ToValidUTF8(string(b[:n]), "") + fmt.Sprintf("\n… (%d more bytes)", len(b)-n)
}

// failureText describes a failed test for JUnit and the summary.
func failureText(t *testscript.TestResult) string {
	var b strings.Builder
	b.WriteString(t.Message)
	if f := t.Failure(); f != nil && f.Exchange != nil {
		ex := f.Exchange
		fmt.Fprintf(&b, "\n\n%s %s\n%s", ex.Method, ex.URL, headerText(ex.RequestHeader))
		if len(ex.RequestBody) > 0 {
			b.WriteString(excerpt(ex.RequestBody, 2048) + "\n")
		}
		if ex.Err != "" {
			fmt.Fprintf(&b, "\n→ %s\n", ex.Err)
		} else {
			fmt.Fprintf(&b, "\n→ %d\n%s%s\n", ex.Status, headerText(ex.ResponseHeader), excerpt(ex.ResponseBody, 4096))
		}
	}
	return b.String()
}
