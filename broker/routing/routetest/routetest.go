// Package routetest runs route tests written as data: a YAML file names a configuration and
// lists cases, each an event and the exact set of deliveries it must cause. `hjbroker config
// test` runs them; the file format is described in docs/routes/README.md.
package routetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/routing"
)

// BuiltinDemo as a suite's config names the built-in demo configuration.
const BuiltinDemo = "builtin:demo"

// Suite is one test file.
type Suite struct {
	Path string
	// Config is the configuration file the cases run against (resolved against the test
	// file's directory), or BuiltinDemo.
	Config string
	Cases  []Case
}

// Case is one given event and the deliveries expected of it.
type Case struct {
	Name   string
	Line   int
	Event  routing.Event
	Expect []Expectation
}

// Expectation is one delivery a case expects.
type Expectation struct {
	Route       string `yaml:"route"`
	Destination string `yaml:"destination"`
	Purpose     string `yaml:"purpose"`
}

func (e Expectation) String() string {
	return fmt.Sprintf("{route: %s, destination: %s, purpose: %s}", e.Route, e.Destination, e.Purpose)
}

// Result is the outcome of one case.
type Result struct {
	Case                Case
	Missing, Unexpected []Expectation
}

// Pass reports whether the case got exactly the deliveries it expected.
func (r Result) Pass() bool { return len(r.Missing) == 0 && len(r.Unexpected) == 0 }

type fileDoc struct {
	Config string     `yaml:"config"`
	Cases  []caseNode `yaml:"cases"`
}

type caseNode struct {
	Name   string         `yaml:"name"`
	Event  eventNode      `yaml:"event"`
	Expect *[]Expectation `yaml:"expect"`
	line   int
}

func (c *caseNode) UnmarshalYAML(n *yaml.Node) error {
	type plain caseNode
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	c.line = n.Line
	return nil
}

type eventNode struct {
	Kind           string    `yaml:"kind"`
	ResourceType   string    `yaml:"resourceType"`
	ID             string    `yaml:"id"`
	Version        int64     `yaml:"version"`
	Resource       yaml.Node `yaml:"resource"`
	SourceAgency   string    `yaml:"sourceAgency"`
	MessageEvent   string    `yaml:"messageEvent"`
	TaskStatus     string    `yaml:"taskStatus"`
	PreviousStatus string    `yaml:"previousStatus"`
	Patient        string    `yaml:"patient"`
}

// Load reads a test file. Errors name the file and line.
func Load(path string) (*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Config == "" {
		return nil, fmt.Errorf("%s: no config: name the configuration file (or %s)", path, BuiltinDemo)
	}
	s := &Suite{Path: path, Config: doc.Config}
	if doc.Config != BuiltinDemo && !filepath.IsAbs(doc.Config) {
		s.Config = filepath.Join(filepath.Dir(path), doc.Config)
	}
	if len(doc.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", path)
	}
	names := map[string]bool{}
	for _, cn := range doc.Cases {
		at := fmt.Sprintf("%s:%d", path, cn.line)
		if cn.Name == "" || names[cn.Name] {
			return nil, fmt.Errorf("%s: each case needs a name of its own", at)
		}
		names[cn.Name] = true
		if cn.Expect == nil {
			return nil, fmt.Errorf("%s: case %q: no expect (write expect: [] for no delivery)", at, cn.Name)
		}
		ev, err := cn.Event.event(filepath.Dir(path))
		if err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", at, cn.Name, err)
		}
		s.Cases = append(s.Cases, Case{Name: cn.Name, Line: cn.line, Event: ev, Expect: *cn.Expect})
	}
	return s, nil
}

func (e eventNode) event(dir string) (routing.Event, error) {
	ev := routing.Event{
		Kind: routing.EventKind(e.Kind), ResourceType: e.ResourceType, ID: e.ID, Version: e.Version,
		SourceAgency: e.SourceAgency, MessageEvent: e.MessageEvent, TaskStatus: e.TaskStatus,
		PreviousStatus: e.PreviousStatus, Patient: e.Patient,
	}
	switch ev.Kind {
	case routing.Create, routing.Update, routing.Delete, routing.Message, routing.TaskStatus:
	default:
		return ev, fmt.Errorf("event kind %q: want create, update, delete, message or task-status", e.Kind)
	}
	if ev.Kind == routing.Message && ev.MessageEvent == "" {
		return ev, fmt.Errorf("a message event needs messageEvent")
	}
	if ev.Kind == routing.TaskStatus && ev.TaskStatus == "" {
		return ev, fmt.Errorf("a task-status event needs taskStatus")
	}
	switch e.Resource.Kind {
	case 0:
		if ev.Kind != routing.Delete {
			return ev, fmt.Errorf("no resource (inline, or the name of a JSON file)")
		}
	case yaml.ScalarNode:
		res, err := readJSON(filepath.Join(dir, e.Resource.Value))
		if err != nil {
			return ev, err
		}
		ev.Resource = res
	case yaml.MappingNode:
		ev.Resource = plainJSON(&e.Resource).(map[string]any)
	default:
		return ev, fmt.Errorf("line %d: resource is inline JSON or YAML, or a file name", e.Resource.Line)
	}
	if ev.Resource != nil {
		if ev.ResourceType == "" {
			ev.ResourceType, _ = ev.Resource["resourceType"].(string)
		}
		if ev.ID == "" {
			ev.ID, _ = ev.Resource["id"].(string)
		}
	}
	if ev.ResourceType == "" {
		return ev, fmt.Errorf("no resourceType")
	}
	if ev.Version == 0 {
		ev.Version = 1
	}
	return ev, nil
}

func readJSON(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// plainJSON turns YAML into the values encoding/json (with UseNumber) would give for the same
// JSON: numbers keep their exact text, and dates stay strings rather than becoming
// timestamps as plain YAML decoding would make them.
func plainJSON(n *yaml.Node) any {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			return plainJSON(n.Content[0])
		}
		return nil
	case yaml.AliasNode:
		return plainJSON(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = plainJSON(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, c := range n.Content {
			l[i] = plainJSON(c)
		}
		return l
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int", "!!float":
		if json.Valid([]byte(n.Value)) {
			return json.Number(n.Value)
		}
	}
	return n.Value
}

// LoadConfig reads the suite's configuration.
func (s *Suite) LoadConfig() (*config.Config, error) {
	if s.Config == BuiltinDemo {
		return config.Demo()
	}
	return config.Load(s.Config)
}

// Run matches every case's event and compares the deliveries with the expected set.
func (s *Suite) Run(r *routing.Router) []Result {
	out := make([]Result, 0, len(s.Cases))
	for _, c := range s.Cases {
		got := map[Expectation]int{}
		for _, d := range r.Match(c.Event) {
			got[Expectation{Route: d.Route, Destination: d.Destination, Purpose: d.Purpose}]++
		}
		want := map[Expectation]int{}
		for _, e := range c.Expect {
			want[e]++
		}
		res := Result{Case: c}
		for e, n := range want {
			for i := got[e]; i < n; i++ {
				res.Missing = append(res.Missing, e)
			}
		}
		for e, n := range got {
			for i := want[e]; i < n; i++ {
				res.Unexpected = append(res.Unexpected, e)
			}
		}
		sortExpectations(res.Missing)
		sortExpectations(res.Unexpected)
		out = append(out, res)
	}
	return out
}

func sortExpectations(l []Expectation) {
	sort.Slice(l, func(i, j int) bool { return l[i].String() < l[j].String() })
}

// Report writes PASS or FAIL per case, with the difference for failures, and returns
// whether every case passed.
func Report(w io.Writer, s *Suite, results []Result) bool {
	ok := true
	failed := 0
	for _, r := range results {
		if r.Pass() {
			fmt.Fprintf(w, "PASS  %s\n", r.Case.Name)
			continue
		}
		ok = false
		failed++
		fmt.Fprintf(w, "FAIL  %s (%s:%d)\n", r.Case.Name, s.Path, r.Case.Line)
		for _, e := range r.Missing {
			fmt.Fprintf(w, "      - missing:    %s\n", e)
		}
		for _, e := range r.Unexpected {
			fmt.Fprintf(w, "      + unexpected: %s\n", e)
		}
	}
	fmt.Fprintf(w, "%s: %d passed, %d failed\n", s.Path, len(results)-failed, failed)
	return ok
}
