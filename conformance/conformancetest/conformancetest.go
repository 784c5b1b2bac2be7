// Package conformancetest proves that a conformance suite catches what it claims to: it puts
// a proxy in front of a conformant server that breaks chosen behaviours (wrong status codes
// or content types, invalid resources, missing headers or links), runs the suite through it
// and checks that exactly the expected tests fail.
//
// A suite's test typically starts a broker with apptest, wraps it in a Proxy with one Fault
// per behaviour the suite checks, runs the suite and calls ExpectFailures with the tests
// each fault must break and nothing else.
package conformancetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/testscript"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// Fault breaks one behaviour of the upstream server. The request matches when every
// criterion given matches; the response is then changed as the fault says.
type Fault struct {
	// Name says what the fault breaks (shown when it never applied).
	Name string
	// Method is the request method to match ("" any).
	Method string
	// Path matches the request path below the FHIR base, without a leading slash
	// (e.g. `^Patient/[^/]+$`); nil matches any.
	Path *regexp.Regexp
	// Query must be a substring of the raw query when set.
	Query string
	// Request, when set, must be a substring of the request body.
	Request string
	// Status, when set, only matches upstream responses with this status.
	Status int

	// SetStatus replaces the status code.
	SetStatus int
	// DropHeaders removes response headers (Location, ETag, ...).
	DropHeaders []string
	// SetHeaders sets response headers (e.g. Content-Type: text/html).
	SetHeaders map[string]string
	// Rewrite changes the decoded JSON response body; it may return a new value.
	Rewrite func(body map[string]any) map[string]any
	// Body replaces the response body.
	Body []byte
}

func (f *Fault) matches(r *http.Request, rel string, reqBody []byte, status int) bool {
	switch {
	case f.Method != "" && !strings.EqualFold(f.Method, r.Method):
	case f.Path != nil && !f.Path.MatchString(rel):
	case f.Query != "" && !strings.Contains(r.URL.RawQuery, f.Query) && !strings.Contains(unescape(r.URL.RawQuery), f.Query):
	case f.Request != "" && !bytes.Contains(reqBody, []byte(f.Request)):
	case f.Status != 0 && f.Status != status:
	default:
		return true
	}
	return false
}

func unescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// Proxy is an httptest server relaying to an upstream FHIR server and applying faults.
type Proxy struct {
	*httptest.Server
	// Base is the proxy's FHIR base URL, to give the runner.
	Base string

	upstream *url.URL
	faults   []Fault
	mu       sync.Mutex
	applied  map[int]int
}

// NewProxy starts a proxy in front of upstreamBase (a FHIR base URL such as
// http://127.0.0.1:1234/fhir) until the test ends. Links and Location headers the upstream
// writes are rewritten to the proxy, so paging goes through it too.
func NewProxy(t testing.TB, upstreamBase string, faults ...Fault) *Proxy {
	t.Helper()
	u, err := url.Parse(strings.TrimRight(upstreamBase, "/"))
	if err != nil {
		t.Fatalf("upstream %q: %v", upstreamBase, err)
	}
	p := &Proxy{upstream: u, faults: faults, applied: map[int]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	p.Base = p.Server.URL + u.Path
	t.Cleanup(p.Server.Close)
	return p
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	reqBody, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	target := *p.upstream
	target.Path = r.URL.Path
	target.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), bytes.NewReader(reqBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	// The upstream's own URLs become the proxy's.
	from, to := p.upstream.Scheme+"://"+p.upstream.Host, p.Server.URL
	body = bytes.ReplaceAll(body, []byte(from), []byte(to))
	hdr := resp.Header.Clone()
	for _, k := range []string{"Location", "Content-Location"} {
		if v := hdr.Get(k); v != "" {
			hdr.Set(k, strings.ReplaceAll(v, from, to))
		}
	}
	status := resp.StatusCode
	rel := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, p.upstream.Path), "/")
	for i := range p.faults {
		f := &p.faults[i]
		if !f.matches(r, rel, reqBody, status) {
			continue
		}
		p.mu.Lock()
		p.applied[i]++
		p.mu.Unlock()
		if f.SetStatus != 0 {
			status = f.SetStatus
		}
		for _, h := range f.DropHeaders {
			hdr.Del(h)
		}
		for k, v := range f.SetHeaders {
			hdr.Set(k, v)
		}
		if f.Rewrite != nil {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if dec.Decode(&m) == nil {
				if nm := f.Rewrite(m); nm != nil {
					m = nm
				}
				body, _ = json.Marshal(m)
			}
		}
		if f.Body != nil {
			body = f.Body
		}
	}
	hdr.Del("Content-Length")
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Unused returns the names of faults that never applied: a fault that breaks nothing
// proves nothing.
func (p *Proxy) Unused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for i, f := range p.faults {
		if p.applied[i] == 0 {
			out = append(out, f.Name)
		}
	}
	return out
}

// Failed lists the tests of a result that did not pass, as "file/test" (an invalid script
// is "file/TestScript"; a setup failure fails each test of its script).
func Failed(res *suite.Result) []string {
	var out []string
	for _, sc := range res.Scripts {
		if len(sc.Invalid) > 0 {
			out = append(out, sc.File+"/TestScript")
			continue
		}
		for _, t := range sc.Tests {
			if t.Status != testscript.Pass {
				out = append(out, sc.File+"/"+t.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ExpectFailures fails the test unless exactly the want tests ("file/test") failed, showing
// why each unexpected one failed, and unless every fault of the proxy applied at least once
// (p may be nil).
func ExpectFailures(t testing.TB, res *suite.Result, p *Proxy, want ...string) {
	t.Helper()
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	got := map[string]bool{}
	for _, f := range Failed(res) {
		got[f] = true
	}
	for _, sc := range res.Scripts {
		for _, prob := range sc.Invalid {
			if !wantSet[sc.File+"/TestScript"] {
				t.Errorf("%s is invalid: %s", sc.File, prob)
			}
		}
		for _, tr := range sc.Tests {
			name := sc.File + "/" + tr.Name
			if got[name] && !wantSet[name] {
				t.Errorf("unexpected failure %s: %s", name, tr.Message)
			}
		}
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("%s passed, but it should have failed", w)
		}
	}
	for _, w := range want {
		if !strings.Contains(w, "/") {
			t.Errorf("expectation %q: want file/test", w)
		}
	}
	if p != nil {
		for _, n := range p.Unused() {
			t.Errorf("fault %q never applied", n)
		}
	}
	if t.Failed() {
		t.Logf("failed tests: %s", fmt.Sprint(Failed(res)))
	}
}

// Run runs a suite against base with the project's FHIRPath engine, validator and R4
// structure check, failing the test if the run cannot start. vars are given to the runner
// (see suite.TokenVariables).
func Run(t testing.TB, s *suite.Suite, base string, header http.Header, vars map[string]string) *suite.Result {
	t.Helper()
	cfg := Config(t)
	cfg.Base, cfg.Header, cfg.Variables = base, header, vars
	res, err := s.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("running suite %s: %v", s.Name, err)
	}
	return res
}

// Config returns a runner configuration with the project's tools and no target.
func Config(t testing.TB) testscript.Config {
	t.Helper()
	fp := fhirpath.NewEngine(r4model.Load())
	v, err := app.NewValidator(fp, nil)
	if err != nil {
		t.Fatalf("building the validator: %v", err)
	}
	checker, err := resource.NewChecker(64)
	if err != nil {
		t.Fatalf("building the R4 checker: %v", err)
	}
	return testscript.Config{FHIRPath: fp, Validator: v, Structure: checker}
}
