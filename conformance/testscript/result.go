package testscript

import (
	"net/http"
	"time"
)

// Status is the outcome of an action, a test or a script.
type Status string

// Statuses. A warning is a failed warningOnly assert: reported, but it does not fail the test.
const (
	Pass    Status = "pass"
	Fail    Status = "fail"
	Warning Status = "warning"
	// Errored is an action the runner could not carry out (no connection, a fixture or
	// variable that could not be read), as opposed to a check that failed.
	Errored Status = "error"
)

// Exchange is one HTTP request and its response.
type Exchange struct {
	Method         string      `json:"method"`
	URL            string      `json:"url"`
	RequestHeader  http.Header `json:"requestHeader,omitempty"`
	RequestBody    []byte      `json:"-"`
	Status         int         `json:"status,omitempty"`
	ResponseHeader http.Header `json:"responseHeader,omitempty"`
	ResponseBody   []byte      `json:"-"`
	// Err is set when no response was received.
	Err string `json:"error,omitempty"`

	requestJSON  any
	responseJSON any
}

// ActionResult is the outcome of one operation or assert.
type ActionResult struct {
	// Path names the action in the script: TestScript.test[1].action[3].
	Path  string `json:"path"`
	Kind  string `json:"kind"` // operation | assert | fixture
	Label string `json:"label"`
	// Status is pass, fail, warning (a failed warningOnly assert) or error.
	Status   Status `json:"status"`
	Message  string `json:"message,omitempty"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	// Exchange is the request sent (operations) or the one the assert looked at.
	Exchange *Exchange     `json:"exchange,omitempty"`
	Duration time.Duration `json:"durationNs"`
}

// TestResult is the outcome of one TestScript.test.
type TestResult struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Status      Status         `json:"status"`
	Message     string         `json:"message,omitempty"`
	Actions     []ActionResult `json:"actions"`
	Duration    time.Duration  `json:"durationNs"`
}

// Failure returns the first failing action, or nil.
func (t *TestResult) Failure() *ActionResult {
	for i := range t.Actions {
		if s := t.Actions[i].Status; s == Fail || s == Errored {
			return &t.Actions[i]
		}
	}
	return nil
}

// ScriptResult is the outcome of one TestScript.
type ScriptResult struct {
	Name  string `json:"name"`
	Title string `json:"title,omitempty"`
	URL   string `json:"url,omitempty"`
	File  string `json:"file,omitempty"`
	// Invalid holds the problems of a script that failed its check and so ran nothing.
	Invalid  []Problem      `json:"invalid,omitempty"`
	Setup    []ActionResult `json:"setup,omitempty"`
	Tests    []TestResult   `json:"tests"`
	Teardown []ActionResult `json:"teardown,omitempty"`
	Duration time.Duration  `json:"durationNs"`
}

// Passed reports whether the script was valid and every test passed.
func (r *ScriptResult) Passed() bool {
	if len(r.Invalid) > 0 {
		return false
	}
	for _, t := range r.Tests {
		if t.Status != Pass && t.Status != Warning {
			return false
		}
	}
	return true
}
