package questionnaire

import (
	"fmt"
	"strings"
)

// codeSet is an offline value set: explicit system|code pairs plus systems included whole,
// less excluded pairs.
type codeSet struct {
	codes    map[string]bool
	systems  map[string]bool
	excluded map[string]bool
}

func (s *codeSet) has(system, code string) bool {
	key := system + "|" + code
	return code != "" && !s.excluded[key] && (s.codes[key] || s.systems[system])
}

// resolved is a value set lookup result, cached per Check call; reason says why set is nil.
type resolved struct {
	set     *codeSet
	reason  string
	missing bool // a contained reference that the Questionnaire does not contain
}

func (c *checker) valueSet(url string) resolved {
	if r, ok := c.vsCache[url]; ok {
		return r
	}
	var r resolved
	if id, ok := strings.CutPrefix(url, "#"); ok {
		r = containedValueSet(c.q, id)
	} else if c.opts.ValueSet == nil {
		r.reason = fmt.Sprintf("value set %s is not contained in the Questionnaire and no resolver is configured", url)
	} else if codes, ok := c.opts.ValueSet(url); !ok {
		r.reason = fmt.Sprintf("value set %s could not be resolved offline", url)
	} else {
		set := &codeSet{codes: make(map[string]bool, len(codes))}
		for _, cd := range codes {
			set.codes[cd.System+"|"+cd.Code] = true
		}
		r.set = set
	}
	c.vsCache[url] = r
	return r
}

// containedValueSet builds a code set from a contained ValueSet's expansion and enumerated
// compose. Filters and imported value sets need a terminology server, so such sets are
// reported as not checkable rather than guessed.
func containedValueSet(q map[string]any, id string) resolved {
	var vs map[string]any
	list, _ := q["contained"].([]any)
	for _, el := range list {
		m, _ := el.(map[string]any)
		if m != nil && m["resourceType"] == "ValueSet" && m["id"] == id {
			vs = m
			break
		}
	}
	if vs == nil {
		return resolved{missing: true, reason: fmt.Sprintf("answerValueSet #%s refers to a ValueSet the Questionnaire does not contain", id)}
	}
	set := &codeSet{codes: map[string]bool{}, systems: map[string]bool{}, excluded: map[string]bool{}}
	if exp, ok := vs["expansion"].(map[string]any); ok {
		addContains(set, exp["contains"])
	}
	compose, _ := vs["compose"].(map[string]any)
	incs, _ := compose["include"].([]any)
	for _, el := range incs {
		inc, _ := el.(map[string]any)
		if inc == nil {
			continue
		}
		if inc["filter"] != nil || inc["valueSet"] != nil {
			return resolved{reason: fmt.Sprintf("contained ValueSet #%s uses filters or imports that cannot be evaluated offline", id)}
		}
		system := str(inc, "system")
		concepts, _ := inc["concept"].([]any)
		if len(concepts) == 0 {
			set.systems[system] = true
		}
		for _, ce := range concepts {
			if cm, ok := ce.(map[string]any); ok {
				set.codes[system+"|"+str(cm, "code")] = true
			}
		}
	}
	excs, _ := compose["exclude"].([]any)
	for _, el := range excs {
		exc, _ := el.(map[string]any)
		concepts, _ := exc["concept"].([]any)
		if exc == nil || len(concepts) == 0 {
			return resolved{reason: fmt.Sprintf("contained ValueSet #%s excludes by filter or whole system, which cannot be evaluated offline", id)}
		}
		for _, ce := range concepts {
			if cm, ok := ce.(map[string]any); ok {
				set.excluded[str(exc, "system")+"|"+str(cm, "code")] = true
			}
		}
	}
	return resolved{set: set}
}

func addContains(set *codeSet, v any) {
	list, _ := v.([]any)
	for _, el := range list {
		m, _ := el.(map[string]any)
		if m == nil {
			continue
		}
		if code := str(m, "code"); code != "" {
			set.codes[str(m, "system")+"|"+code] = true
		}
		addContains(set, m["contains"])
	}
}
