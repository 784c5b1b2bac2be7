// Package index extracts search index rows from resources by evaluating each search
// parameter's FHIRPath expression and reading the values by their FHIR type.
package index

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/searchparam"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
)

// Params lists the parameters of a type.
type Params interface {
	ForType(resourceType string) []*searchparam.Param
}

// Indexer computes store.Index rows. Compiled expressions are cached per type and parameter.
type Indexer struct {
	params Params
	fp     *fhirpath.Engine

	mu    sync.RWMutex
	plans map[string][]compiled // by resource type
}

type compiled struct {
	p    *searchparam.Param
	expr *fhirpath.Expression
}

// New returns an indexer over the given parameters.
func New(params Params, fp *fhirpath.Engine) *Indexer {
	return &Indexer{params: params, fp: fp, plans: map[string][]compiled{}}
}

// Invalidate drops cached plans, after custom search parameters were added.
func (ix *Indexer) Invalidate() {
	ix.mu.Lock()
	ix.plans = map[string][]compiled{}
	ix.mu.Unlock()
}

func (ix *Indexer) plan(typ string) ([]compiled, error) {
	ix.mu.RLock()
	p, ok := ix.plans[typ]
	ix.mu.RUnlock()
	if ok {
		return p, nil
	}
	var out []compiled
	for _, sp := range ix.params.ForType(typ) {
		switch sp.Code {
		case "_id", "_lastUpdated":
			continue // kept on the resources table itself
		}
		switch sp.Type {
		case searchparam.Composite, searchparam.Special:
			continue
		}
		src := sp.ExpressionFor(typ)
		if src == "" {
			continue
		}
		src = strings.ReplaceAll(src, "Resource.", typ+".")
		e, err := ix.fp.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("search parameter %s (%s): %w", sp.Code, src, err)
		}
		out = append(out, compiled{p: sp, expr: e})
	}
	ix.mu.Lock()
	ix.plans[typ] = out
	ix.mu.Unlock()
	return out, nil
}

// Index returns the index rows of res, a resource of type typ.
func (ix *Indexer) Index(typ string, res map[string]any) (store.Index, error) {
	var out store.Index
	plan, err := ix.plan(typ)
	if err != nil {
		return out, err
	}
	for _, c := range plan {
		vals, err := c.expr.Evaluate(res)
		if err != nil {
			// An expression that does not fit this resource's data indexes nothing rather
			// than rejecting the write; search then simply does not find it by that parameter.
			continue
		}
		for _, v := range vals {
			addValue(&out, c.p, v)
		}
	}
	return out, nil
}

func addValue(out *store.Index, p *searchparam.Param, v fhirpath.Value) {
	node := v.JSON()
	switch p.Type {
	case searchparam.Token:
		addToken(out, p.Code, v.Type(), node)
	case searchparam.String:
		addStrings(out, p.Code, node)
	case searchparam.Date:
		addDate(out, p.Code, v.Type(), node)
	case searchparam.Reference:
		addRef(out, p.Code, v.Type(), node)
	case searchparam.Number:
		if f, ok := number(node); ok {
			out.Numbers = append(out.Numbers, store.NumberRow{Param: p.Code, Value: f})
		}
	case searchparam.Quantity:
		addQuantity(out, p.Code, node)
	case searchparam.URI:
		if s, ok := node.(string); ok && s != "" {
			out.URIs = append(out.URIs, store.URIRow{Param: p.Code, URI: s})
		}
	}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func number(node any) (float64, bool) {
	switch x := node.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

func addToken(out *store.Index, param, typ string, node any) {
	switch x := node.(type) {
	case string:
		out.Tokens = append(out.Tokens, store.TokenRow{Param: param, Code: x})
	case bool:
		code := "false"
		if x {
			code = "true"
		}
		out.Tokens = append(out.Tokens, store.TokenRow{Param: param, Code: code})
	case json.Number:
		out.Tokens = append(out.Tokens, store.TokenRow{Param: param, Code: x.String()})
	case map[string]any:
		switch {
		case typ == "Identifier" || (x["value"] != nil && x["coding"] == nil && x["code"] == nil && typ != "ContactPoint"):
			value := str(x, "value")
			tt, _ := x["type"].(map[string]any)
			out.Tokens = append(out.Tokens, store.TokenRow{Param: param, System: str(x, "system"), Code: value, Text: search.Normalize(str(tt, "text"))})
			if tt != nil {
				codings, _ := tt["coding"].([]any)
				for _, c := range codings {
					cm, _ := c.(map[string]any)
					out.Tokens = append(out.Tokens, store.TokenRow{Param: store.OfTypeParam(param), System: str(cm, "system"), Code: str(cm, "code") + "|" + value})
				}
			}
		case typ == "ContactPoint":
			out.Tokens = append(out.Tokens, store.TokenRow{Param: param, System: str(x, "system"), Code: str(x, "value")})
		case x["coding"] != nil || typ == "CodeableConcept":
			text := str(x, "text")
			codings, _ := x["coding"].([]any)
			for _, c := range codings {
				cm, _ := c.(map[string]any)
				t := text
				if t == "" {
					t = str(cm, "display")
				}
				out.Tokens = append(out.Tokens, store.TokenRow{Param: param, System: str(cm, "system"), Code: str(cm, "code"), Text: search.Normalize(t)})
			}
			if len(codings) == 0 && text != "" {
				out.Tokens = append(out.Tokens, store.TokenRow{Param: param, Text: search.Normalize(text)})
			}
		default: // Coding, and Quantity-like code carriers
			out.Tokens = append(out.Tokens, store.TokenRow{Param: param, System: str(x, "system"), Code: str(x, "code"), Text: search.Normalize(str(x, "display"))})
		}
	}
}

// stringParts lists the parts of HumanName and Address a string search matches on.
var stringParts = []string{"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"}

func addStrings(out *store.Index, param string, node any) {
	add := func(s string) {
		if s == "" {
			return
		}
		out.Strings = append(out.Strings, store.StringRow{Param: param, Norm: search.Normalize(s), Exact: s})
	}
	switch x := node.(type) {
	case string:
		add(x)
	case map[string]any:
		matched := false
		for _, k := range stringParts {
			switch v := x[k].(type) {
			case string:
				add(v)
				matched = true
			case []any:
				for _, e := range v {
					if s, ok := e.(string); ok {
						add(s)
						matched = true
					}
				}
			}
		}
		if !matched {
			// Other complex values: every string leaf, one level down.
			for _, v := range x {
				if s, ok := v.(string); ok {
					add(s)
				}
			}
		}
	}
}

func addDate(out *store.Index, param, typ string, node any) {
	switch x := node.(type) {
	case string:
		if r, err := search.DateRange(x); err == nil {
			out.Dates = append(out.Dates, store.DateRow{Param: param, Lo: r.Low, Hi: r.High})
		}
	case map[string]any:
		switch {
		case x["start"] != nil || x["end"] != nil:
			if r, err := search.PeriodRange(str(x, "start"), str(x, "end")); err == nil {
				out.Dates = append(out.Dates, store.DateRow{Param: param, Lo: r.Low, Hi: r.High})
			}
		case x["event"] != nil: // Timing
			events, _ := x["event"].([]any)
			for _, e := range events {
				addDate(out, param, "dateTime", e)
			}
		}
	}
}

func addRef(out *store.Index, param, typ string, node any) {
	switch x := node.(type) {
	case string: // canonical or uri used as a reference target
		if x != "" {
			t, id, ok := localRef(x)
			if ok {
				out.Refs = append(out.Refs, store.RefRow{Param: param, TargetType: t, TargetID: id})
			} else {
				out.Refs = append(out.Refs, store.RefRow{Param: param, URL: x})
			}
		}
	case map[string]any:
		if ref := str(x, "reference"); ref != "" && !strings.HasPrefix(ref, "#") {
			if t, id, ok := localRef(ref); ok {
				out.Refs = append(out.Refs, store.RefRow{Param: param, TargetType: t, TargetID: id})
			} else {
				out.Refs = append(out.Refs, store.RefRow{Param: param, URL: ref})
			}
		}
		if idf, ok := x["identifier"].(map[string]any); ok {
			out.Tokens = append(out.Tokens, store.TokenRow{Param: store.IdentifierParam(param), System: str(idf, "system"), Code: str(idf, "value")})
		}
		// A resource (from resolve()) indexes as a reference to itself.
		if rt, id := str(x, "resourceType"), str(x, "id"); rt != "" && id != "" && x["reference"] == nil {
			out.Refs = append(out.Refs, store.RefRow{Param: param, TargetType: rt, TargetID: id})
		}
	}
}

// localRef reads "Type/id" or "Type/id/_history/v".
func localRef(ref string) (typ, id string, ok bool) {
	if strings.Contains(ref, ":") {
		return "", "", false
	}
	parts := strings.Split(ref, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return "", "", false
	}
	if parts[0] == "" || parts[1] == "" || parts[0][0] < 'A' || parts[0][0] > 'Z' {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func addQuantity(out *store.Index, param string, node any) {
	x, ok := node.(map[string]any)
	if !ok {
		if f, ok := number(node); ok {
			out.Numbers = append(out.Numbers, store.NumberRow{Param: param, Value: f})
		}
		return
	}
	f, ok := number(x["value"])
	if !ok {
		return
	}
	row := store.NumberRow{Param: param, Value: f, System: str(x, "system"), Code: str(x, "code"), Unit: str(x, "unit")}
	if cur := str(x, "currency"); cur != "" { // Money
		row.System, row.Code = "urn:iso:std:iso:4217", cur
	}
	out.Numbers = append(out.Numbers, row)
}
