package testscript

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// Validator validates a resource against profiles; *validate.Validator is one.
type Validator interface {
	Validate(res map[string]any, opts validate.Options) validate.Result
}

// Config is what a Runner needs.
type Config struct {
	// Base is the FHIR base URL of the server under test (https://host/fhir).
	Base string
	// Client sends the requests; default: a client with a 60-second timeout.
	Client *http.Client
	// Header is sent with every request (Authorization, X-Purpose-Of-Use, ...); a script's
	// requestHeader of the same name replaces it.
	Header http.Header
	// FHIRPath evaluates expressions; required.
	FHIRPath *fhirpath.Engine
	// Validator serves validateProfileId asserts; without it they are errors.
	Validator Validator
	// Structure, when set, checks each script against the R4 structure before it runs.
	Structure *resource.Checker
	// OnTest, when set, is called as each test finishes (for progress output).
	OnTest func(script *Script, t *TestResult)
	// Variables give values to variables the scripts declare, replacing the scripts' own
	// definitions: values known only when the run starts, such as tokens for further
	// clients. A variable declared with only a hint must be given here.
	Variables map[string]string
	// MaxBody caps the response bodies kept (default 8 MiB).
	MaxBody int64
}

// Runner runs TestScripts against one server. It is safe for concurrent use; each Run has
// its own state.
type Runner struct {
	cfg Config
}

// New checks cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.FHIRPath == nil {
		return nil, errors.New("testscript: a FHIRPath engine is required")
	}
	u, err := url.Parse(cfg.Base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("testscript: target %q is not an http(s) URL", cfg.Base)
	}
	cfg.Base = strings.TrimRight(cfg.Base, "/")
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 8 << 20
	}
	return &Runner{cfg: cfg}, nil
}

// Check checks s with the runner's tools (see Check).
func (r *Runner) Check(s *Script) error {
	return Check(s, CheckOptions{FHIRPath: r.cfg.FHIRPath, Structure: r.cfg.Structure})
}

// fixture is a fixture's content and, once autocreated, where the server put it.
type fixture struct {
	raw     []byte
	json    any
	auto    bool // autocreated
	created *Exchange
}

// run is the state of one script run.
type run struct {
	r         *Runner
	s         *Script
	fixtures  map[string]*fixture
	responses map[string]*Exchange
	requests  map[string]*Exchange
	last      *Exchange
	vars      map[string]*Variable
	profiles  map[string]string
	// fixtureVars caches variables whose source is a fixture.
	fixtureVars map[string]string
}

// Run checks s and, when it is valid, runs it: fixtures are autocreated, then setup, each
// test and teardown run, and autocreated or autodelete fixtures are deleted. A setup failure
// fails every test; teardown and the fixture deletions always run.
func (r *Runner) Run(ctx context.Context, s *Script) *ScriptResult {
	start := time.Now()
	res := &ScriptResult{Name: s.Name, Title: s.TestScript.Title, URL: s.URL, File: s.File}
	if err := r.Check(s); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			res.Invalid = ce.Problems
		} else {
			res.Invalid = []Problem{{Path: "TestScript", Message: err.Error()}}
		}
		return res
	}
	st := &run{r: r, s: s, fixtures: map[string]*fixture{}, responses: map[string]*Exchange{},
		requests: map[string]*Exchange{}, vars: map[string]*Variable{}, profiles: map[string]string{},
		fixtureVars: map[string]string{}}
	for i := range s.Variable {
		st.vars[s.Variable[i].Name] = &s.Variable[i]
	}
	for _, p := range s.Profile {
		st.profiles[p.ID] = p.Reference
	}

	setupErr := st.loadFixtures(&res.Setup)
	if setupErr == "" {
		setupErr = st.autocreate(ctx, &res.Setup)
	}
	if setupErr == "" && s.Setup != nil {
		setupErr = st.actions(ctx, "TestScript.setup", s.Setup.Action, &res.Setup)
	}
	for i, t := range s.Test {
		tr := TestResult{Name: t.Name, Description: t.Description, Status: Pass}
		if tr.Name == "" {
			tr.Name = fmt.Sprintf("test %d", i+1)
		}
		ts := time.Now()
		if setupErr != "" {
			tr.Status, tr.Message = Fail, "setup failed: "+setupErr
			// The setup action that failed is this test's failure, for the reports.
			if n := len(res.Setup); n > 0 {
				tr.Actions = []ActionResult{res.Setup[n-1]}
			}
		} else if msg := st.actions(ctx, fmt.Sprintf("TestScript.test[%d]", i), t.Action, &tr.Actions); msg != "" {
			tr.Status, tr.Message = Fail, msg
			if f := tr.Failure(); f != nil && f.Status == Errored {
				tr.Status = Errored
			}
		}
		tr.Duration = time.Since(ts)
		if r.cfg.OnTest != nil {
			r.cfg.OnTest(s, &tr)
		}
		res.Tests = append(res.Tests, tr)
	}
	// Teardown runs whatever happened before, on a context a cancelled run does not cancel
	// (the client's timeout still bounds each request).
	tctx := context.WithoutCancel(ctx)
	if s.Teardown != nil {
		for i, a := range s.Teardown.Action {
			ar := st.operation(tctx, fmt.Sprintf("TestScript.teardown.action[%d].operation", i), a.Operation)
			if ar.Status != Pass {
				ar.Status = Warning
			}
			res.Teardown = append(res.Teardown, ar)
		}
	}
	st.autodelete(tctx, &res.Teardown)
	res.Duration = time.Since(start)
	return res
}

// actions runs a setup or test's actions in order, stopping at the first failure; it
// returns a description of that failure, or "".
func (st *run) actions(ctx context.Context, prefix string, actions []Action, out *[]ActionResult) string {
	for i, a := range actions {
		p := fmt.Sprintf("%s.action[%d]", prefix, i)
		var ar ActionResult
		if a.Operation != nil {
			ar = st.operation(ctx, p+".operation", a.Operation)
		} else {
			ar = st.assert(p+".assert", a.Assert)
		}
		*out = append(*out, ar)
		if ar.Status == Fail || ar.Status == Errored {
			msg := ar.Path + " (" + ar.Label + "): " + ar.Message
			if (ar.Expected != "" || ar.Actual != "") && !strings.Contains(ar.Message, "expected "+ar.Expected) {
				msg += fmt.Sprintf(" [expected %s, actual %s]", ar.Expected, ar.Actual)
			}
			return msg
		}
	}
	return ""
}

func (st *run) loadFixtures(out *[]ActionResult) string {
	contained := map[string]json.RawMessage{}
	for _, raw := range st.s.Contained {
		var r struct {
			ID string `json:"id"`
		}
		if jsonUnmarshal(raw, &r) == nil {
			contained[r.ID] = raw
		}
	}
	for i, f := range st.s.Fixture {
		if f.Resource == nil || f.Resource.Reference == "" {
			st.fixtures[f.ID] = &fixture{}
			continue
		}
		var raw []byte
		ref := f.Resource.Reference
		if id, ok := strings.CutPrefix(ref, "#"); ok {
			raw = contained[id]
		} else {
			b, err := readFixture(st.s, ref)
			if err != nil {
				ar := ActionResult{Path: fmt.Sprintf("TestScript.fixture[%d]", i), Kind: "fixture", Label: "load fixture " + f.ID, Status: Errored, Message: err.Error()}
				*out = append(*out, ar)
				return ar.Path + ": " + err.Error()
			}
			raw = b
		}
		fx := &fixture{raw: raw, auto: f.Autocreate != nil && *f.Autocreate}
		_ = jsonUnmarshal(raw, &fx.json)
		st.fixtures[f.ID] = fx
	}
	return ""
}

func (st *run) autocreate(ctx context.Context, out *[]ActionResult) string {
	for i, f := range st.s.Fixture {
		if f.Autocreate == nil || !*f.Autocreate {
			continue
		}
		fx := st.fixtures[f.ID]
		p := fmt.Sprintf("TestScript.fixture[%d]", i)
		typ := resource.Type(asMap(fx.json))
		ar := ActionResult{Path: p, Kind: "fixture", Label: "autocreate " + f.ID}
		start := time.Now()
		body, err := st.substitute(ctx, string(fx.raw), true)
		if err != nil {
			ar.Status, ar.Message = Errored, err.Error()
		} else {
			ex := st.send(ctx, "POST", st.r.cfg.Base+"/"+typ, nil, []byte(body), "application/fhir+json", "application/fhir+json")
			ar.Exchange = ex
			switch {
			case ex.Err != "":
				ar.Status, ar.Message = Errored, ex.Err
			case ex.Status < 200 || ex.Status > 299:
				ar.Status, ar.Message = Fail, fmt.Sprintf("the server answered %d to creating the fixture", ex.Status)
				ar.Expected, ar.Actual = "2xx", fmt.Sprint(ex.Status)
			default:
				ar.Status = Pass
				fx.created = ex
			}
		}
		ar.Duration = time.Since(start)
		*out = append(*out, ar)
		if ar.Status != Pass {
			return p + " (" + ar.Label + "): " + ar.Message
		}
	}
	return ""
}

func (st *run) autodelete(ctx context.Context, out *[]ActionResult) {
	for i, f := range st.s.Fixture {
		fx := st.fixtures[f.ID]
		if f.Autodelete == nil || !*f.Autodelete || fx == nil {
			continue
		}
		typ, id := st.locate(fx.created, fx.json)
		if typ == "" || id == "" {
			continue // never created, nothing to delete
		}
		start := time.Now()
		ex := st.send(ctx, "DELETE", st.r.cfg.Base+"/"+typ+"/"+id, nil, nil, "", "application/fhir+json")
		ar := ActionResult{Path: fmt.Sprintf("TestScript.fixture[%d]", i), Kind: "fixture", Label: "autodelete " + f.ID, Exchange: ex, Status: Pass}
		if ex.Err != "" || (ex.Status >= 300 && ex.Status != http.StatusNotFound && ex.Status != http.StatusGone) {
			ar.Status, ar.Message = Warning, fmt.Sprintf("deleting the fixture: %d %s", ex.Status, ex.Err)
		}
		ar.Duration = time.Since(start)
		*out = append(*out, ar)
	}
}

// locate returns the type and id of what an exchange created or returned, else of a fixture.
func (st *run) locate(ex *Exchange, fallback any) (typ, id string) {
	if ex != nil {
		if loc := ex.ResponseHeader.Get("Location"); loc != "" {
			if t, i, _, ok := splitLocation(st.r.cfg.Base, loc); ok {
				return t, i
			}
		}
		if m := asMap(ex.responseJSON); m != nil && resource.ID(m) != "" {
			return resource.Type(m), resource.ID(m)
		}
		return "", ""
	}
	m := asMap(fallback)
	return resource.Type(m), resource.ID(m)
}

// splitLocation reads [base/]Type/id[/_history/vid].
func splitLocation(base, loc string) (typ, id, vid string, ok bool) {
	loc = strings.TrimPrefix(loc, base+"/")
	if u, err := url.Parse(loc); err == nil && u.IsAbs() {
		loc = strings.TrimPrefix(u.Path, "/")
		if i := strings.Index(loc, "/fhir/"); i >= 0 {
			loc = loc[i+len("/fhir/"):]
		}
	}
	parts := strings.Split(strings.Trim(loc, "/"), "/")
	n := len(parts)
	if n >= 4 && parts[n-2] == "_history" {
		return parts[n-4], parts[n-3], parts[n-1], true
	}
	if n >= 2 {
		return parts[n-2], parts[n-1], "", true
	}
	return "", "", "", false
}

// credentialHeaders are the runner's headers withheld from other origins.
var credentialHeaders = map[string]bool{"Authorization": true, "Cookie": true, "Proxy-Authorization": true}

// sameOrigin reports whether u has the target's scheme, host and port.
func (r *Runner) sameOrigin(u string) bool {
	a, err1 := url.Parse(u)
	b, err2 := url.Parse(r.cfg.Base)
	return err1 == nil && err2 == nil && a.Scheme == b.Scheme && strings.EqualFold(a.Host, b.Host)
}

// send performs one request; it never fails, the error is kept in the Exchange.
func (st *run) send(ctx context.Context, method, u string, hdr http.Header, body []byte, contentType, accept string) *Exchange {
	ex := &Exchange{Method: method, URL: u, RequestBody: body, RequestHeader: http.Header{}}
	sameOrigin := st.r.sameOrigin(u)
	for k, v := range st.r.cfg.Header {
		// Credentials go to the target only, never to a URL a response pointed elsewhere.
		if !sameOrigin && credentialHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		ex.RequestHeader[k] = append([]string(nil), v...)
	}
	if accept != "" {
		ex.RequestHeader.Set("Accept", accept)
	}
	if body != nil && contentType != "" {
		ex.RequestHeader.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		// A requestHeader with an empty value removes the header (e.g. Authorization).
		if strings.Join(v, "") == "" {
			ex.RequestHeader.Del(k)
			continue
		}
		ex.RequestHeader[k] = v
	}
	if len(body) > 0 {
		_ = jsonUnmarshal(body, &ex.requestJSON)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		ex.Err = "building the request: " + err.Error()
		return ex
	}
	req.Header = ex.RequestHeader.Clone()
	resp, err := st.r.cfg.Client.Do(req)
	if err != nil {
		ex.Err = err.Error()
		return ex
	}
	defer resp.Body.Close()
	ex.Status, ex.ResponseHeader = resp.StatusCode, resp.Header
	ex.ResponseBody, err = io.ReadAll(io.LimitReader(resp.Body, st.r.cfg.MaxBody))
	if err != nil {
		ex.Err = "reading the response: " + err.Error()
	}
	if len(ex.ResponseBody) > 0 {
		_ = jsonUnmarshal(ex.ResponseBody, &ex.responseJSON)
	}
	return ex
}

func jsonUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
