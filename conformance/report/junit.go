package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/hjbroker/hjbroker/conformance/testscript"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
	SystemOut string      `xml:"system-out,omitempty"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d interface{ Seconds() float64 }) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes the run as JUnit XML: one testsuite per TestScript (named suite/file),
// one testcase per test. An invalid script is one testcase with an error listing its problems.
func WriteJUnit(w io.Writer, r *Run) error {
	out := junitSuites{Name: "hjbroker conformance " + r.Target, Time: seconds(r.Duration)}
	for _, s := range r.Suites {
		for _, sc := range s.Scripts {
			js := junitSuite{Name: s.Suite + "/" + sc.File, Time: seconds(sc.Duration), Timestamp: s.Started.UTC().Format("2006-01-02T15:04:05")}
			class := s.Suite + "." + strings.TrimSuffix(sc.File, ".json")
			if len(sc.Invalid) > 0 {
				var lines []string
				for _, p := range sc.Invalid {
					lines = append(lines, p.String())
				}
				js.Cases = append(js.Cases, junitCase{Name: "TestScript check", Classname: class, Time: "0.000",
					Error: &junitProblem{Message: "invalid TestScript: " + sc.Invalid[0].String(), Type: "invalid", Text: strings.Join(lines, "\n")}})
				js.Tests, js.Errors = 1, 1
			}
			for i := range sc.Tests {
				t := &sc.Tests[i]
				jc := junitCase{Name: t.Name, Classname: class, Time: seconds(t.Duration)}
				switch t.Status {
				case testscript.Pass:
				case testscript.Errored:
					jc.Error = &junitProblem{Message: t.Message, Type: "error", Text: failureText(t)}
					js.Errors++
				default:
					jc.Failure = &junitProblem{Message: t.Message, Type: "assert", Text: failureText(t)}
					js.Failures++
				}
				var warn []string
				for _, a := range t.Actions {
					if a.Status == testscript.Warning {
						warn = append(warn, fmt.Sprintf("warning: %s (%s): %s", a.Path, a.Label, a.Message))
					}
				}
				jc.SystemOut = strings.Join(warn, "\n")
				js.Cases = append(js.Cases, jc)
				js.Tests++
			}
			var notes []string
			for _, a := range append(append([]testscript.ActionResult(nil), sc.Setup...), sc.Teardown...) {
				if a.Status != testscript.Pass {
					notes = append(notes, fmt.Sprintf("%s %s (%s): %s", a.Status, a.Path, a.Label, a.Message))
				}
			}
			js.SystemOut = strings.Join(notes, "\n")
			out.Tests += js.Tests
			out.Failures += js.Failures
			out.Errors += js.Errors
			out.Suites = append(out.Suites, js)
		}
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
