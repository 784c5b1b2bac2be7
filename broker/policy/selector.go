package policy

import (
	"slices"
	"strings"

	"github.com/hjbroker/hjbroker/broker/config"
)

// classes is what selectors and Consent provisions match a resource on.
type classes struct {
	typ string
	// codes are the codings of the resource's category, type and code elements.
	codes []coding
	// labels are meta.security codings.
	labels   []coding
	profiles []string
}

func classify(res map[string]any) classes {
	c := classes{typ: str(res, "resourceType")}
	for _, k := range []string{"category", "type", "code"} {
		c.codes = append(c.codes, codings(res[k])...)
	}
	meta := obj(res["meta"])
	c.labels = codings(meta["security"])
	for _, p := range list(meta["profile"]) {
		if s, ok := p.(string); ok {
			c.profiles = append(c.profiles, s)
		}
	}
	return c
}

// selects applies a sharing-rule selector: every list given must match (an empty list means
// any); a selector with no lists selects nothing.
func selects(s config.Selector, c classes) bool {
	if s.Empty() {
		return false
	}
	if len(s.Types) > 0 && !slices.Contains(s.Types, "*") && !slices.Contains(s.Types, c.typ) {
		return false
	}
	if len(s.Categories) > 0 && !anyToken(s.Categories, c.codes) {
		return false
	}
	if len(s.Labels) > 0 && !anyToken(s.Labels, c.labels) {
		return false
	}
	return true
}

// matchedLabels lists the selector labels the resource carries.
func matchedLabels(s config.Selector, c classes) []string {
	var out []string
	for _, l := range s.Labels {
		if anyToken([]string{l}, c.labels) {
			out = append(out, l)
		}
	}
	return out
}

// anyToken matches "system|code" or "code" tokens against codings.
func anyToken(tokens []string, cs []coding) bool {
	for _, t := range tokens {
		sys, code, hasSys := strings.Cut(t, "|")
		if !hasSys {
			sys, code = "", t
		}
		for _, c := range cs {
			if c.Code == code && (!hasSys || c.System == sys) {
				return true
			}
		}
	}
	return false
}
