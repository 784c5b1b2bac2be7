package careconnect

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode"
)

// rule converts one element of an STU3 resource into the R4 resource being built.
type rule func(c *conv, out map[string]any, key string, v any, path string)

// spec is how one resource type converts: its UK Core profile, the rule per element (exact
// JSON name, or "stem[x]" for a choice) and what becomes of each resource-level extension.
type spec struct {
	profile    string
	elements   map[string]rule
	extensions map[string]rule
}

// keep carries an element over unchanged (references and code systems are still rewritten).
func keep(c *conv, out map[string]any, key string, v any, path string) {
	out[key] = c.value(v, path)
}

// to carries an element over under its R4 name.
func to(name string) rule {
	return func(c *conv, out map[string]any, key string, v any, path string) {
		out[name] = c.value(v, path)
	}
}

// drop leaves out an element R4 has no place for, with a warning saying so.
func drop(why string) rule {
	return func(c *conv, out map[string]any, key string, v any, path string) {
		c.warn(path, "not carried over: %s", why)
	}
}

// codeToConcept turns an STU3 code into an R4 CodeableConcept of system; codes maps each
// STU3 code to its R4 code, "" meaning it has none (dropped with a warning).
func codeToConcept(system string, codes map[string]string) rule {
	return func(c *conv, out map[string]any, key string, v any, path string) {
		s, ok := v.(string)
		if !ok {
			c.fail("structure", path, "STU3 %s is a code; got %T", key, v)
			return
		}
		r4, known := codes[s]
		switch {
		case !known:
			c.fail("code-invalid", path, "%q is not an STU3 %s code", s, key)
		case r4 == "":
			c.warn(path, "STU3 %s %q has no R4 equivalent; left out", key, s)
		default:
			out[key] = cc(system, r4, "")
		}
	}
}

func same(codes ...string) map[string]string {
	m := map[string]string{}
	for _, x := range codes {
		m[x] = x
	}
	return m
}

var common = map[string]rule{
	"id":         func(*conv, map[string]any, string, any, string) {}, // new ids are assigned; references follow
	"meta":       convertMeta,
	"text":       keep,
	"language":   keep,
	"identifier": keep,
}

// convertMeta keeps security labels and tags; the STU3 profile gives way to UK Core's, and
// versionId/lastUpdated are the broker's to set.
func convertMeta(c *conv, out map[string]any, key string, v any, path string) {
	m, _ := v.(map[string]any)
	mt := out["meta"].(map[string]any)
	for _, k := range sortedKeys(m) {
		x := m[k]
		switch k {
		case "security", "tag":
			mt[k] = c.value(x, path+"."+k)
		case "profile", "versionId", "lastUpdated", "source":
		default:
			c.fail("not-supported", path+"."+k, "meta.%s is not supported", k)
		}
	}
}

// resource converts one STU3 resource by its spec.
func (c *conv) resource(typ string, in map[string]any, path string) map[string]any {
	sp := specs[typ]
	out := map[string]any{"resourceType": typ, "meta": map[string]any{"profile": []any{ukSD + sp.profile}}}
	for _, k := range sortedKeys(in) {
		v := in[k]
		p := path + "." + k
		switch {
		case k == "resourceType":
			continue
		case k == "extension":
			c.extensions(sp, out, v, p)
			continue
		case k == "modifierExtension":
			c.fail("not-supported", p, "modifier extensions change the meaning of the resource and cannot be converted")
			continue
		case strings.HasPrefix(k, "_"):
			// A primitive's id/extensions go with it when the primitive is carried over as is.
			if r := lookup(sp, k[1:]); r != nil && isKeep(r) {
				out[k] = c.value(v, p)
				continue
			}
			c.fail("not-supported", p, "extensions on %s cannot be carried over", k[1:])
			continue
		}
		r := lookup(sp, k)
		if r == nil {
			c.fail("not-supported", p, "STU3 %s.%s is not supported by this mapping", typ, k)
			continue
		}
		r(c, out, k, v, p)
	}
	return out
}

// isKeep reports whether r is keep, whose primitive extensions (_name) can follow it.
func isKeep(r rule) bool {
	return reflect.ValueOf(r).Pointer() == reflect.ValueOf(keep).Pointer()
}

// lookup finds the rule for a JSON name: exact, common, or a choice stem[x].
func lookup(sp spec, k string) rule {
	if r, ok := sp.elements[k]; ok {
		return r
	}
	if r, ok := common[k]; ok {
		return r
	}
	for name, r := range sp.elements {
		stem, ok := strings.CutSuffix(name, "[x]")
		if ok && len(k) > len(stem) && strings.HasPrefix(k, stem) && unicode.IsUpper(rune(k[len(stem)])) {
			return r
		}
	}
	return nil
}

// extensions converts resource-level extensions: each URL must be known to the spec.
func (c *conv) extensions(sp spec, out map[string]any, v any, path string) {
	list, _ := v.([]any)
	for i, x := range list {
		ext, _ := x.(map[string]any)
		p := fmt.Sprintf("%s[%d]", path, i)
		url, _ := ext["url"].(string)
		r, ok := sp.extensions[url]
		if !ok {
			c.fail("not-supported", p, "extension %s is not supported on %s by this mapping", url, out["resourceType"])
			continue
		}
		tmp := map[string]any{}
		r(c, tmp, "extension", ext, p)
		if e, ok := tmp["extension"]; ok {
			l, _ := out["extension"].([]any)
			out["extension"] = append(l, e)
		}
	}
}

// keepExtension carries a CareConnect/GP Connect extension over verbatim: its URL names the
// STU3 definition, which still describes it.
func keepExtension(c *conv, out map[string]any, key string, v any, path string) {
	out[key] = c.value(v, path)
}

// renameExtension carries an extension over under its UK Core URL (same value type).
func renameExtension(url string) rule {
	return func(c *conv, out map[string]any, key string, v any, path string) {
		e := c.value(v, path).(map[string]any)
		e["url"] = url
		out[key] = e
	}
}

// value copies an element's value: references to resources of the Bundle become their
// fullUrls, code systems that moved in R4 get their R4 URIs, and the CareConnect NHS number
// verification extension becomes UK Core's with the England code system.
func (c *conv) value(v any, path string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range sortedKeys(x) {
			val := x[k]
			p := path + "." + k
			switch k {
			case "modifierExtension":
				c.fail("not-supported", p, "modifier extensions change the meaning of the element and cannot be converted")
			case "reference":
				s, _ := val.(string)
				switch {
				case strings.HasPrefix(s, "#"):
					out[k] = s
				case c.refs[s] != "":
					out[k] = c.refs[s]
				default:
					c.fail("not-found", p, "reference %q names no resource in the Bundle", s)
				}
			case "system":
				if s, ok := val.(string); ok {
					out[k] = r4System(s)
				} else {
					out[k] = val
				}
			case "extension":
				out[k] = c.nestedExtensions(val, p)
			default:
				out[k] = c.value(val, p)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = c.value(val, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	}
	return v
}

func (c *conv) nestedExtensions(v any, path string) any {
	list, _ := v.([]any)
	out := make([]any, 0, len(list))
	for i, x := range list {
		ext, _ := x.(map[string]any)
		p := fmt.Sprintf("%s[%d]", path, i)
		if ext["url"] == stu3VerifExt {
			out = append(out, c.verification(ext, p))
			continue
		}
		out = append(out, c.value(x, p))
	}
	return out
}

// verification converts the CareConnect NHS number verification status extension.
func (c *conv) verification(ext map[string]any, path string) any {
	concept, _ := ext["valueCodeableConcept"].(map[string]any)
	codings, _ := concept["coding"].([]any)
	var out []any
	for i, x := range codings {
		cd, _ := x.(map[string]any)
		sys, _ := cd["system"].(string)
		code, _ := cd["code"].(string)
		if sys == stu3Verification {
			sys = ""
		}
		r4, ok := c.m.nhs.Coding(sys, code)
		if !ok {
			c.fail("code-invalid", fmt.Sprintf("%s.valueCodeableConcept.coding[%d]", path, i), "%v|%s is not an NHS number verification status", cd["system"], code)
			continue
		}
		out = append(out, r4)
	}
	return map[string]any{"url": c.m.nhs.Extension(), "valueCodeableConcept": map[string]any{"coding": out}}
}

// moved are the STU3 code system URIs that R4 publishes under terminology.hl7.org.
var moved = map[string]string{
	"http://hl7.org/fhir/observation-category":          "http://terminology.hl7.org/CodeSystem/observation-category",
	"http://hl7.org/fhir/condition-category":            "http://terminology.hl7.org/CodeSystem/condition-category",
	"http://hl7.org/fhir/list-empty-reason":             "http://terminology.hl7.org/CodeSystem/list-empty-reason",
	"http://hl7.org/fhir/list-order":                    "http://terminology.hl7.org/CodeSystem/list-order",
	"http://hl7.org/fhir/medication-statement-category": "http://terminology.hl7.org/CodeSystem/medication-statement-category",
	"http://hl7.org/fhir/medication-request-category":   "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
	"http://hl7.org/fhir/data-absent-reason":            "http://terminology.hl7.org/CodeSystem/data-absent-reason",
	"http://hl7.org/fhir/observation-interpretation":    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
	"http://hl7.org/fhir/reaction-event-certainty":      "http://terminology.hl7.org/CodeSystem/reaction-event-certainty",
}

func r4System(s string) string {
	if r, ok := moved[s]; ok {
		return r
	}
	if rest, ok := strings.CutPrefix(s, "http://hl7.org/fhir/v3/"); ok {
		return "http://terminology.hl7.org/CodeSystem/v3-" + rest
	}
	if rest, ok := strings.CutPrefix(s, "http://hl7.org/fhir/v2/"); ok {
		return "http://terminology.hl7.org/CodeSystem/v2-" + strings.ReplaceAll(rest, "/", "-")
	}
	return s
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
