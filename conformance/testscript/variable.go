package testscript

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
)

// subject is what an assert or a variable reads: a response (or request), or a fixture.
type subject struct {
	ex      *Exchange // nil for a fixture
	body    any
	raw     []byte
	header  http.Header
	request bool // the request side of ex
}

// subjectOf finds sourceId (a fixture, a responseId or a requestId), or the last response.
// A fixture is read with its variables substituted, as it would be sent.
func (st *run) subjectOf(ctx context.Context, id string, request bool) (*subject, error) {
	if fx, ok := st.fixtures[id]; ok && fx.raw != nil {
		s, err := st.substitute(ctx, string(fx.raw), true)
		if err != nil {
			return nil, err
		}
		sub := &subject{raw: []byte(s)}
		_ = jsonUnmarshal(sub.raw, &sub.body)
		return sub, nil
	}
	return st.rawSubject(id, request)
}

// rawSubject is subjectOf without substitution in fixtures, for variables (whose own
// values may be what a fixture refers to).
func (st *run) rawSubject(id string, request bool) (*subject, error) {
	if id == "" {
		if st.last == nil {
			return nil, fmt.Errorf("no operation has run yet")
		}
		return exchangeSubject(st.last, request), nil
	}
	if fx, ok := st.fixtures[id]; ok {
		// Once autocreated, a fixture is what the server made of it (its id, its version).
		if fx.created != nil {
			return exchangeSubject(fx.created, false), nil
		}
		return &subject{body: fx.json, raw: fx.raw}, nil
	}
	if ex, ok := st.responses[id]; ok {
		return exchangeSubject(ex, request), nil
	}
	if ex, ok := st.requests[id]; ok {
		return exchangeSubject(ex, true), nil
	}
	return nil, fmt.Errorf("%q has no content yet (has the operation that records it run?)", id)
}

func exchangeSubject(ex *Exchange, request bool) *subject {
	if request {
		return &subject{ex: ex, body: ex.requestJSON, raw: ex.RequestBody, header: ex.RequestHeader, request: true}
	}
	return &subject{ex: ex, body: ex.responseJSON, raw: ex.ResponseBody, header: ex.ResponseHeader}
}

// variable evaluates a variable now, against the current state of its source.
func (st *run) variable(ctx context.Context, v *Variable, depth int) (string, error) {
	if val, ok := st.r.cfg.Variables[v.Name]; ok {
		return val, nil
	}
	if v.Expression == "" && v.HeaderField == "" && v.Path == "" {
		if v.DefaultValue == "" && v.Hint != "" {
			return "", fmt.Errorf("the runner was not given a value (%s)", v.Hint)
		}
		return v.DefaultValue, nil
	}
	// A fixture never changes, so a variable over one has one value for the whole run (which
	// also makes now() usable for values unique to a run).
	if val, ok := st.fixtureVars[v.Name]; ok {
		return val, nil
	}
	val, err := st.evalVariable(ctx, v, depth)
	if err == nil {
		if fx, isFixture := st.fixtures[v.SourceID]; isFixture && (!fx.auto || fx.created != nil) {
			st.fixtureVars[v.Name] = val
		}
	}
	return val, err
}

func (st *run) evalVariable(ctx context.Context, v *Variable, depth int) (string, error) {
	sub, err := st.rawSubject(v.SourceID, false)
	if err != nil {
		if v.DefaultValue != "" {
			return v.DefaultValue, nil
		}
		return "", err
	}
	if v.HeaderField != "" {
		if sub.header == nil || sub.header.Get(v.HeaderField) == "" {
			if v.DefaultValue != "" {
				return v.DefaultValue, nil
			}
			return "", fmt.Errorf("header %s is absent", v.HeaderField)
		}
		return sub.header.Get(v.HeaderField), nil
	}
	expr := v.Expression
	if v.Path != "" {
		if expr, err = pathToFHIRPath(v.Path); err != nil {
			return "", err
		}
	}
	expr, err = st.substituteDepth(ctx, expr, false, depth+1)
	if err != nil {
		return "", err
	}
	vals, err := st.evaluate(expr, sub.body)
	if err != nil {
		return "", err
	}
	if len(vals) == 0 {
		if v.DefaultValue != "" {
			return v.DefaultValue, nil
		}
		return "", fmt.Errorf("%s gave no value", expr)
	}
	return vals[0].String(), nil
}

// evaluate runs a FHIRPath expression on a JSON body.
func (st *run) evaluate(expr string, body any) (fhirpath.Collection, error) {
	x, err := st.r.cfg.FHIRPath.Compile(expr)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, nil
	}
	return x.Evaluate(body)
}

var (
	dotted    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])?)*$`)
	xpathStep = regexp.MustCompile(`^(?:fhir:)?([A-Za-z][A-Za-z0-9]*)(?:\[([0-9]+)\])?$`)
)

// pathToFHIRPath turns the simple paths TestScripts use into FHIRPath: XPath steps
// (fhir:Patient/fhir:name[1]/fhir:family/@value), JSONPath ($.name[0].family) or dotted
// names (Patient.name.family). Anything with predicates or functions is refused: such a
// check is written as an expression.
func pathToFHIRPath(p string) (string, error) {
	s := strings.TrimSpace(p)
	switch {
	case strings.HasPrefix(s, "$."):
		s = s[2:]
	case strings.Contains(s, "/"):
		s = strings.TrimPrefix(strings.TrimSuffix(s, "/@value"), "/")
		var out []string
		for _, step := range strings.Split(s, "/") {
			m := xpathStep.FindStringSubmatch(step)
			if m == nil {
				return "", fmt.Errorf("%q: only simple paths are supported here (step %q); use expression", p, step)
			}
			part := m[1]
			if m[2] != "" {
				n := 0
				fmt.Sscan(m[2], &n)
				if n < 1 {
					return "", fmt.Errorf("%q: XPath positions start at 1", p)
				}
				part += fmt.Sprintf("[%d]", n-1)
			}
			out = append(out, part)
		}
		s = strings.Join(out, ".")
	}
	if !dotted.MatchString(s) {
		return "", fmt.Errorf("%q: only simple paths are supported here (names, dots and [n]); use expression", p)
	}
	return s, nil
}
