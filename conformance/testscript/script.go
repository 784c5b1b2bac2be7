// Package testscript loads, checks and runs FHIR R4 TestScript resources against a FHIR
// server: fixtures (contained or files beside the script, with autocreate/autodelete),
// variables, setup, tests and teardown, every REST operation type of the
// testscript-operation-codes and every assert with every operator.
//
// A script is checked before anything is sent: an invalid TestScript is reported with the
// element at fault (TestScript.test[1].action[0].assert.operator) and runs nothing.
package testscript

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
)

// Script is a parsed TestScript with the files it was loaded from.
type Script struct {
	TestScript
	// File is the script's path inside FS; fixtures are resolved relative to its folder.
	File string
	// FS holds the script and its fixture files; nil for a script parsed from bytes alone.
	FS fs.FS
	// Raw is the JSON as read.
	Raw []byte
	// Resource is the decoded JSON (contained resources are taken from it verbatim).
	Resource map[string]any
}

// TestScript holds the R4 TestScript elements the runner uses.
type TestScript struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id,omitempty"`
	URL          string            `json:"url"`
	Name         string            `json:"name"`
	Title        string            `json:"title,omitempty"`
	Status       string            `json:"status"`
	Description  string            `json:"description,omitempty"`
	Contained    []json.RawMessage `json:"contained,omitempty"`
	Origin       []Participant     `json:"origin,omitempty"`
	Destination  []Participant     `json:"destination,omitempty"`
	Metadata     *Metadata         `json:"metadata,omitempty"`
	Fixture      []Fixture         `json:"fixture,omitempty"`
	Profile      []Reference       `json:"profile,omitempty"`
	Variable     []Variable        `json:"variable,omitempty"`
	Setup        *Setup            `json:"setup,omitempty"`
	Test         []Test            `json:"test,omitempty"`
	Teardown     *Teardown         `json:"teardown,omitempty"`
}

// Participant is an origin or destination.
type Participant struct {
	Index   *int    `json:"index"`
	Profile *Coding `json:"profile"`
}

// Metadata lists the capabilities the script needs.
type Metadata struct {
	Link       []struct{ URL string } `json:"link,omitempty"`
	Capability []Capability           `json:"capability"`
}

// Capability is one capability the script requires or validates.
type Capability struct {
	Required     *bool    `json:"required,omitempty"`
	Validated    *bool    `json:"validated,omitempty"`
	Description  string   `json:"description,omitempty"`
	Capabilities string   `json:"capabilities"`
	Link         []string `json:"link,omitempty"`
}

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// Reference is a FHIR Reference; profiles carry an id naming them within the script.
type Reference struct {
	ID        string `json:"id,omitempty"`
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

// Fixture is a resource the script uses, optionally created before setup and deleted after
// teardown.
type Fixture struct {
	ID         string     `json:"id"`
	Autocreate *bool      `json:"autocreate"`
	Autodelete *bool      `json:"autodelete"`
	Resource   *Reference `json:"resource,omitempty"`
}

// Variable is a named value substituted as ${name}.
type Variable struct {
	Name         string `json:"name"`
	DefaultValue string `json:"defaultValue,omitempty"`
	Description  string `json:"description,omitempty"`
	Expression   string `json:"expression,omitempty"`
	HeaderField  string `json:"headerField,omitempty"`
	Hint         string `json:"hint,omitempty"`
	Path         string `json:"path,omitempty"`
	SourceID     string `json:"sourceId,omitempty"`
}

// Setup runs before the tests.
type Setup struct {
	Action []Action `json:"action"`
}

// Test is one test: a sequence of operations and asserts.
type Test struct {
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	Action      []Action `json:"action"`
}

// Teardown runs after the tests, whatever happened before.
type Teardown struct {
	Action []TeardownAction `json:"action"`
}

// Action is an operation or an assert.
type Action struct {
	Operation *Operation `json:"operation,omitempty"`
	Assert    *Assert    `json:"assert,omitempty"`
}

// TeardownAction holds an operation only.
type TeardownAction struct {
	Operation *Operation `json:"operation,omitempty"`
}

// Operation is one request to the server.
type Operation struct {
	Type             *Coding         `json:"type,omitempty"`
	Resource         string          `json:"resource,omitempty"`
	Label            string          `json:"label,omitempty"`
	Description      string          `json:"description,omitempty"`
	Accept           string          `json:"accept,omitempty"`
	ContentType      string          `json:"contentType,omitempty"`
	Destination      *int            `json:"destination,omitempty"`
	EncodeRequestURL *bool           `json:"encodeRequestUrl"`
	Method           string          `json:"method,omitempty"`
	Origin           *int            `json:"origin,omitempty"`
	Params           string          `json:"params,omitempty"`
	RequestHeader    []RequestHeader `json:"requestHeader,omitempty"`
	RequestID        string          `json:"requestId,omitempty"`
	ResponseID       string          `json:"responseId,omitempty"`
	SourceID         string          `json:"sourceId,omitempty"`
	TargetID         string          `json:"targetId,omitempty"`
	URL              string          `json:"url,omitempty"`
}

// RequestHeader is one header sent with an operation.
type RequestHeader struct {
	Field string `json:"field"`
	Value string `json:"value"`
}

// Assert is one check of a request or response.
type Assert struct {
	Label                     string `json:"label,omitempty"`
	Description               string `json:"description,omitempty"`
	Direction                 string `json:"direction,omitempty"`
	CompareToSourceID         string `json:"compareToSourceId,omitempty"`
	CompareToSourceExpression string `json:"compareToSourceExpression,omitempty"`
	CompareToSourcePath       string `json:"compareToSourcePath,omitempty"`
	ContentType               string `json:"contentType,omitempty"`
	Expression                string `json:"expression,omitempty"`
	HeaderField               string `json:"headerField,omitempty"`
	MinimumID                 string `json:"minimumId,omitempty"`
	NavigationLinks           *bool  `json:"navigationLinks,omitempty"`
	Operator                  string `json:"operator,omitempty"`
	Path                      string `json:"path,omitempty"`
	RequestMethod             string `json:"requestMethod,omitempty"`
	RequestURL                string `json:"requestURL,omitempty"`
	Resource                  string `json:"resource,omitempty"`
	Response                  string `json:"response,omitempty"`
	ResponseCode              string `json:"responseCode,omitempty"`
	SourceID                  string `json:"sourceId,omitempty"`
	ValidateProfileID         string `json:"validateProfileId,omitempty"`
	Value                     string `json:"value,omitempty"`
	WarningOnly               *bool  `json:"warningOnly"`
}

// Parse decodes a TestScript from JSON. It checks only that the JSON is a TestScript; Check
// applies the R4 rules.
func Parse(raw []byte) (*Script, error) {
	s := &Script{Raw: raw}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&s.Resource); err != nil {
		return nil, fmt.Errorf("decoding TestScript JSON: %w", err)
	}
	if rt, _ := s.Resource["resourceType"].(string); rt != "TestScript" {
		return nil, &Error{Problems: []Problem{{Path: "resourceType", Message: fmt.Sprintf("is %q, want \"TestScript\"", rt)}}}
	}
	if err := json.Unmarshal(raw, &s.TestScript); err != nil {
		return nil, &Error{Problems: []Problem{{Path: "TestScript", Message: "does not have the R4 TestScript shape: " + err.Error()}}}
	}
	return s, nil
}

// Load reads and parses the TestScript at file in fsys; fixtures are later read from the same
// folder.
func Load(fsys fs.FS, file string) (*Script, error) {
	raw, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, fmt.Errorf("reading TestScript: %w", err)
	}
	s, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s.File, s.FS = file, fsys
	return s, nil
}

// FixtureJSON returns a fixture's content as JSON (contained or from its file), without
// variable substitution.
func (s *Script) FixtureJSON(id string) (map[string]any, error) {
	for _, f := range s.Fixture {
		if f.ID != id || f.Resource == nil {
			continue
		}
		var raw []byte
		if cid, ok := strings.CutPrefix(f.Resource.Reference, "#"); ok {
			for _, c := range s.Contained {
				var r struct {
					ID string `json:"id"`
				}
				if jsonUnmarshal(c, &r) == nil && r.ID == cid {
					raw = c
				}
			}
		} else if s.FS != nil {
			b, err := readFixture(s, f.Resource.Reference)
			if err != nil {
				return nil, err
			}
			raw = b
		}
		if raw == nil {
			return nil, fmt.Errorf("fixture %q has no content", id)
		}
		var m map[string]any
		if err := jsonUnmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("fixture %q is not a JSON object: %w", id, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("no fixture %q", id)
}
