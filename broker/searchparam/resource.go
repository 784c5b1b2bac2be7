package searchparam

import (
	"errors"
	"fmt"
	"strings"
)

// paramFromResource reads the elements of a SearchParameter resource that the broker
// uses. Presence of the required elements is checked here for JSON shape, and against the
// registry's known types by Registry.validate.
func paramFromResource(sp map[string]any) (*Param, error) {
	if sp == nil {
		return nil, errors.New("resource is empty")
	}
	if rt, ok := sp["resourceType"]; ok && rt != "SearchParameter" {
		return nil, fmt.Errorf("resourceType is %v, want SearchParameter", rt)
	}
	p := &Param{}
	var err error
	if p.URL, err = stringElem(sp, "url"); err != nil {
		return nil, err
	}
	if p.Code, err = stringElem(sp, "code"); err != nil {
		return nil, err
	}
	if strings.HasPrefix(p.Code, "_") {
		return nil, fmt.Errorf("code %q: names starting with _ are reserved for the common parameters", p.Code)
	}
	if p.Base, err = stringsElem(sp, "base"); err != nil {
		return nil, err
	}
	typ, err := stringElem(sp, "type")
	if err != nil {
		return nil, err
	}
	p.Type = Type(typ)
	if p.Expression, err = stringElem(sp, "expression"); err != nil {
		return nil, err
	}
	if p.Target, err = stringsElem(sp, "target"); err != nil {
		return nil, err
	}
	if p.Description, err = stringElem(sp, "description"); err != nil {
		return nil, err
	}
	if p.Components, err = componentsElem(sp); err != nil {
		return nil, err
	}
	return p, nil
}

// stringElem returns an optional string element, "" when absent.
func stringElem(m map[string]any, name string) (string, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s must be a string, got %T", name, v)
	}
	return strings.TrimSpace(s), nil
}

// stringsElem returns an optional array-of-strings element, nil when absent.
func stringsElem(m map[string]any, name string) ([]string, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		if ss, ok := v.([]string); ok {
			return append([]string(nil), ss...), nil
		}
		return nil, fmt.Errorf("%s must be an array of strings, got %T", name, v)
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("%s[%d] must be a non-empty string", name, i)
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out, nil
}

func componentsElem(m map[string]any) ([]Component, error) {
	v, ok := m["component"]
	if !ok || v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("component must be an array, got %T", v)
	}
	out := make([]Component, 0, len(arr))
	for i, e := range arr {
		cm, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("component[%d] must be an object", i)
		}
		def, err := stringElem(cm, "definition")
		if err != nil {
			return nil, fmt.Errorf("component[%d].%w", i, err)
		}
		expr, err := stringElem(cm, "expression")
		if err != nil {
			return nil, fmt.Errorf("component[%d].%w", i, err)
		}
		out = append(out, Component{Definition: def, Expression: expr})
	}
	return out, nil
}
