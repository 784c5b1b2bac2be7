package engine

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
)

// subsetTag marks a resource that is not complete (_summary, _elements), so it is not
// mistaken for the whole resource and written back.
func subsetTag() map[string]any {
	return map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
}

// subset applies _summary and _elements to a decoded resource.
func (e *Engine) subset(m map[string]any, q url.Values) (map[string]any, error) {
	summary := q.Get("_summary")
	elements := q.Get("_elements")
	if summary == "" && elements == "" || summary == "false" {
		return m, nil
	}
	typ := resource.Type(m)
	keep := map[string]bool{"resourceType": true, "id": true, "meta": true}
	for _, el := range e.mandatory(typ) {
		keep[el] = true
	}
	switch summary {
	case "", "false":
	case "count":
		return m, nil
	case "data":
		delete(m, "text")
		markSubsetted(m)
		return m, nil
	case "text":
		keep["text"] = true
	case "true":
		if e.cfg.Summary == nil {
			delete(m, "text")
			markSubsetted(m)
			return m, nil
		}
		for _, el := range e.cfg.Summary.SummaryElements(typ) {
			keep[el] = true
		}
		keep["implicitRules"] = true
	default:
		return nil, outcome.At(http.StatusBadRequest, "invalid", "_summary", "_summary must be true, false, text, data or count; got %q", summary)
	}
	if elements != "" && summary == "" {
		for _, el := range strings.Split(elements, ",") {
			el = strings.TrimSpace(el)
			if i := strings.IndexByte(el, '.'); i >= 0 {
				el = el[i+1:] // "Patient.name" names the same element as "name"
			}
			keep[el] = true
		}
	}
	out := make(map[string]any, len(keep))
	for k, v := range m {
		base := strings.TrimPrefix(k, "_")
		if keep[base] || keep[choiceBase(base)] {
			out[k] = v
		}
	}
	markSubsetted(out)
	return out, nil
}

// choiceBase maps valueQuantity to value, so "_elements=value" keeps a choice element.
func choiceBase(k string) string {
	for i := 1; i < len(k); i++ {
		if k[i] >= 'A' && k[i] <= 'Z' {
			return k[:i]
		}
	}
	return k
}

func markSubsetted(m map[string]any) {
	meta := resource.Meta(m)
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, subsetTag())
}

// mandatory lists the top-level elements a subset must keep (minimum cardinality 1).
func (e *Engine) mandatory(typ string) []string {
	if e.cfg.Summary == nil {
		return nil
	}
	return e.cfg.Summary.MandatoryElements(typ)
}
