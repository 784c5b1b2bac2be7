// Package config reads the broker configuration: the agencies of a Health & Justice service,
// their API clients, the sharing rules and consent defaults that decide what each agency may
// see and receive, and (for routing) their endpoints and routes. The file is YAML, checked
// against a JSON Schema and then for consistency; every error names the path and line.
package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v3"
)

//go:embed schema.json
var schemaJSON []byte

//go:embed demo.yaml
var demoYAML []byte

// Agency kinds.
const (
	KindCustodyHealthcare = "custody-healthcare"
	KindLiaisonDiversion  = "liaison-diversion"
	KindCourt             = "court"
	KindProbation         = "probation"
	KindGP                = "gp"
	// KindBroker is the service's own operators.
	KindBroker = "broker"
)

// IsHealth reports whether an agency kind gives direct care: implied consent for direct care
// applies between these.
func IsHealth(kind string) bool {
	return kind == KindCustodyHealthcare || kind == KindLiaisonDiversion || kind == KindGP
}

// Config is a whole configuration file.
type Config struct {
	Version         int              `json:"version"`
	Agencies        []Agency         `json:"agencies"`
	Sharing         []SharingRule    `json:"sharing,omitempty"`
	ConsentDefaults []ConsentDefault `json:"consentDefaults,omitempty"`
	Routes          []Route          `json:"routes,omitempty"`
	// Source names where the configuration came from, for messages.
	Source string `json:"-"`
	// root is the parsed YAML, kept so that later checks (route compilation) can name lines.
	root *yaml.Node
}

// Agency is an organisation taking part in the pathway.
type Agency struct {
	ID        string     `json:"id"`
	ODS       string     `json:"ods"`
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	Clients   []Client   `json:"clients,omitempty"`
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Client is a system that calls the broker's API on behalf of an agency.
type Client struct {
	ID string `json:"id"`
	// Scopes are the SMART v2 scopes the client may be granted ("system/Observation.rs").
	Scopes []string `json:"scopes"`
	// Purposes are the purposes of use (v3-ActReason codes) the client may claim; empty means
	// the defaults of its agency kind.
	Purposes []string `json:"purposes,omitempty"`
	// JWKS holds the client's public keys inline; JWKSFile names a file with them. A client
	// without keys cannot use the token endpoint; operators mint its tokens with
	// `hjbroker token`.
	JWKS     map[string]any `json:"jwks,omitempty"`
	JWKSFile string         `json:"jwksFile,omitempty"`
}

// Endpoint is where deliveries to an agency go.
type Endpoint struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	URL  string `json:"url"`
	// Client is the client id the broker authenticates as when pushing.
	Client      string `json:"client,omitempty"`
	MaxAttempts int    `json:"maxAttempts,omitempty"`
	MaxAge      string `json:"maxAge,omitempty"`
	// TokenURL, when set, is the destination's OAuth token endpoint: the broker gets a bearer
	// token by the client-credentials grant with a private_key_jwt assertion as Client, signed
	// with the PEM private key in KeyFile (KeyID its kid, Scope the scope asked for).
	TokenURL string `json:"tokenUrl,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	KeyID    string `json:"keyId,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// SharingRule says what an agency may see and receive for some purposes of use.
type SharingRule struct {
	ID          string   `json:"id"`
	Description string   `json:"description,omitempty"`
	AgencyKinds []string `json:"agencyKinds,omitempty"`
	Agencies    []string `json:"agencies,omitempty"`
	Purposes    []string `json:"purposes"`
	Allow       Selector `json:"allow"`
	Deny        Selector `json:"deny,omitempty"`
	// RequiresConsent: disclosure under this rule needs an explicit permitting Consent or a
	// recorded legal basis, not implied consent.
	RequiresConsent bool `json:"requiresConsent,omitempty"`
	// BreakGlass: the rule applies only to requests with purpose BTG and a stated reason.
	BreakGlass bool `json:"breakGlass,omitempty"`
}

// Selector picks resources by type, category and security label. An empty selector list
// means "any"; a selector with no lists at all selects nothing.
type Selector struct {
	Types []string `json:"types,omitempty"`
	// Categories are "system|code" or "code" matched against the resource's category, type or
	// code (whichever the resource type has).
	Categories []string `json:"categories,omitempty"`
	// Labels are meta.security codes ("R", "PSY", "http://...|V").
	Labels []string `json:"labels,omitempty"`
}

// Empty reports whether the selector has no criteria at all.
func (s Selector) Empty() bool {
	return len(s.Types) == 0 && len(s.Categories) == 0 && len(s.Labels) == 0
}

// ConsentDefault is the decision when the patient has no applicable Consent.
type ConsentDefault struct {
	ID          string   `json:"id"`
	Description string   `json:"description,omitempty"`
	Purposes    []string `json:"purposes"`
	// FromKinds and ToKinds name the agency kinds that record and receive; empty means any.
	FromKinds []string `json:"fromKinds,omitempty"`
	ToKinds   []string `json:"toKinds,omitempty"`
	Decision  string   `json:"decision"` // permit | deny
}

// Route sends events to agencies. Routes are matched in file order by broker/routing; see
// docs/routes/README.md.
type Route struct {
	ID          string  `json:"id"`
	Description string  `json:"description,omitempty"`
	On          RouteOn `json:"on"`
	// Profile matches resources whose meta.profile contains this canonical URL.
	Profile string `json:"profile,omitempty"`
	// From names source agencies by id or kind; empty means any source.
	From []string `json:"from,omitempty"`
	// Criteria is a FHIRPath expression that must be true of the resource.
	Criteria string `json:"criteria,omitempty"`
	// To names destinations: agency ids or kinds (every endpoint of those agencies) or
	// "agency/endpoint" for one endpoint.
	To        []string `json:"to"`
	Transform string   `json:"transform,omitempty"`
	Purpose   string   `json:"purpose"`
}

// RouteOn is the event a route matches. Each field takes one name or a list.
type RouteOn struct {
	// Event is create, update, delete, message or task-status.
	Event Names `json:"event"`
	// Resource names resource types (required for create, update and delete).
	Resource Names `json:"resource,omitempty"`
	// MessageEvent names MessageHeader event codes (required for message).
	MessageEvent Names `json:"messageEvent,omitempty"`
	// TaskStatus optionally narrows task-status events to new statuses.
	TaskStatus Names `json:"taskStatus,omitempty"`
}

// Names is one name or a list of names: YAML may say `event: create` or
// `event: [create, update]`.
type Names []string

// UnmarshalJSON accepts a string or an array of strings.
func (n *Names) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*n = Names{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*n = l
	return nil
}

// Has reports whether s is one of the names.
func (n Names) Has(s string) bool {
	for _, x := range n {
		if x == s {
			return true
		}
	}
	return false
}

// Route event names (RouteOn.Event).
const (
	EventCreate     = "create"
	EventUpdate     = "update"
	EventDelete     = "delete"
	EventMessage    = "message"
	EventTaskStatus = "task-status"
)

// Demo returns the built-in configuration for the custody-to-court pathway, used when no
// file is given.
func Demo() (*Config, error) { return Parse(demoYAML, "built-in demo configuration") }

// DemoYAML returns the text of the built-in configuration.
func DemoYAML() []byte { return append([]byte(nil), demoYAML...) }

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(b, path)
}

// Error lists every problem found, each with its path and line.
type Error struct {
	Source   string
	Problems []Problem
}

// Problem is one error in a configuration.
type Problem struct {
	Path    string // e.g. agencies[1].clients[0].scopes[2]
	Line    int
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s)", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  line %d: %s: %s", p.Line, p.Path, p.Message)
	}
	return b.String()
}

// Parse checks YAML text against the schema and for consistency.
func Parse(b []byte, source string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, &Error{Source: source, Problems: []Problem{{Path: "(file)", Line: yamlLine(err), Message: err.Error()}}}
	}
	var doc any
	if err := root.Decode(&doc); err != nil {
		return nil, &Error{Source: source, Problems: []Problem{{Path: "(file)", Message: err.Error()}}}
	}
	doc = stringKeys(doc)
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, &Error{Source: source, Problems: []Problem{{Path: "(file)", Message: err.Error()}}}
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schemaJSON), gojsonschema.NewBytesLoader(raw))
	if err != nil {
		return nil, fmt.Errorf("checking %s against the schema: %w", source, err)
	}
	if !res.Valid() {
		e := &Error{Source: source}
		errs := res.Errors()
		for _, re := range errs {
			// "Must validate at least one schema (anyOf)" adds nothing when a branch's own
			// error at the same place says what is wrong.
			if re.Type() == "number_any_of" && hasErrorWithin(errs, re) {
				continue
			}
			path := schemaPath(re.Field())
			e.Problems = append(e.Problems, Problem{Path: path, Line: lineOf(&root, path), Message: re.Description()})
		}
		sort.SliceStable(e.Problems, func(i, j int) bool { return e.Problems[i].Line < e.Problems[j].Line })
		return nil, e
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, &Error{Source: source, Problems: []Problem{{Path: "(file)", Message: err.Error()}}}
	}
	cfg.Source = source
	cfg.root = &root
	if probs := cfg.check(); len(probs) > 0 {
		for i := range probs {
			probs[i].Line = lineOf(&root, probs[i].Path)
		}
		return nil, &Error{Source: source, Problems: probs}
	}
	return &cfg, nil
}

// check finds what the schema cannot: duplicate ids and references to unknown agencies.
func (c *Config) check() []Problem {
	var probs []Problem
	agencies := map[string]bool{}
	clients := map[string]bool{}
	for i, a := range c.Agencies {
		p := fmt.Sprintf("agencies[%d]", i)
		if agencies[a.ID] {
			probs = append(probs, Problem{Path: p + ".id", Message: fmt.Sprintf("agency id %q is used twice", a.ID)})
		}
		agencies[a.ID] = true
		for j, cl := range a.Clients {
			cp := fmt.Sprintf("%s.clients[%d]", p, j)
			if clients[cl.ID] {
				probs = append(probs, Problem{Path: cp + ".id", Message: fmt.Sprintf("client id %q is used twice", cl.ID)})
			}
			clients[cl.ID] = true
			if cl.JWKSFile != "" && cl.JWKS != nil {
				probs = append(probs, Problem{Path: cp, Message: "give jwks or jwksFile, not both"})
			}
		}
	}
	for i, r := range c.Sharing {
		for j, a := range r.Agencies {
			if !agencies[a] {
				probs = append(probs, Problem{Path: fmt.Sprintf("sharing[%d].agencies[%d]", i, j), Message: fmt.Sprintf("no agency has id %q", a)})
			}
		}
	}
	probs = append(probs, c.checkRoutes(agencies)...)
	return probs
}

// Line returns the line of a path such as routes[2].criteria in the file the configuration
// was parsed from (the nearest ancestor's when the path is absent; 0 when built in code).
func (c *Config) Line(path string) int {
	if c.root == nil {
		return 0
	}
	return lineOf(c.root, path)
}

// Problem builds a Problem at path with its line, for checks made outside this package.
func (c *Config) Problem(path, msg string) Problem {
	return Problem{Path: path, Line: c.Line(path), Message: msg}
}

// Endpoint returns the endpoint with id (endpoint ids are unique in a configuration) and its
// agency.
func (c *Config) Endpoint(id string) (*Endpoint, *Agency, bool) {
	for i := range c.Agencies {
		a := &c.Agencies[i]
		for j := range a.Endpoints {
			if a.Endpoints[j].ID == id {
				return &a.Endpoints[j], a, true
			}
		}
	}
	return nil, nil, false
}

func hasErrorWithin(errs []gojsonschema.ResultError, outer gojsonschema.ResultError) bool {
	for _, re := range errs {
		if re != outer && re.Type() != "number_any_of" && (re.Field() == outer.Field() || strings.HasPrefix(re.Field(), outer.Field()+".")) {
			return true
		}
	}
	return false
}

func validKind(k string) bool {
	switch k {
	case KindCustodyHealthcare, KindLiaisonDiversion, KindCourt, KindProbation, KindGP, KindBroker:
		return true
	}
	return false
}

// Agency returns the agency with id.
func (c *Config) Agency(id string) (*Agency, bool) {
	for i := range c.Agencies {
		if c.Agencies[i].ID == id {
			return &c.Agencies[i], true
		}
	}
	return nil, false
}

// Client returns a client and its agency.
func (c *Config) Client(id string) (*Client, *Agency, bool) {
	for i := range c.Agencies {
		a := &c.Agencies[i]
		for j := range a.Clients {
			if a.Clients[j].ID == id {
				return &a.Clients[j], a, true
			}
		}
	}
	return nil, nil, false
}

// stringKeys turns YAML maps into JSON-compatible ones.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = stringKeys(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = stringKeys(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = stringKeys(e)
		}
	}
	return v
}

// schemaPath turns gojsonschema's "agencies.1.clients.0" into "agencies[1].clients[0]".
func schemaPath(field string) string {
	if field == "(root)" {
		return "(root)"
	}
	var b strings.Builder
	for i, part := range strings.Split(field, ".") {
		if _, err := strconv.Atoi(part); err == nil {
			b.WriteString("[" + part + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// lineOf finds the line of a path like agencies[1].clients[0].id in the YAML tree; it falls
// back to the nearest ancestor that exists.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	if path == "(root)" || path == "(file)" {
		return line
	}
	for _, tok := range pathTokens(path) {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		case yaml.SequenceNode:
			if idx, err := strconv.Atoi(tok); err == nil && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func pathTokens(path string) []string {
	path = strings.ReplaceAll(path, "[", ".")
	path = strings.ReplaceAll(path, "]", "")
	return strings.Split(path, ".")
}

func yamlLine(err error) int {
	// yaml.v3 errors read "yaml: line N: ..."
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		if j := strings.IndexByte(rest, ':'); j > 0 {
			if n, err := strconv.Atoi(rest[:j]); err == nil {
				return n
			}
		}
	}
	return 0
}
