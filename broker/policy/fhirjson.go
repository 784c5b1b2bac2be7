package policy

import (
	"strings"
	"time"
)

// Helpers for reading FHIR R4 JSON decoded into map[string]any. They never panic on
// unexpected shapes: a wrong shape reads as absent.

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// list returns v as a list; a single object stands for a list of one, since several elements
// we read are 0..1 in some resource types and 0..* in others (category, type).
func list(v any) []any {
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any:
		return []any{x}
	}
	return nil
}

// path reads a dotted path of objects ("effectivePeriod.start").
func path(m map[string]any, p string) any {
	var cur any = m
	for _, part := range strings.Split(p, ".") {
		o := obj(cur)
		if o == nil {
			return nil
		}
		cur = o[part]
	}
	return cur
}

// coding is a system and code pair.
type coding struct{ System, Code string }

func (c coding) String() string {
	if c.System == "" {
		return c.Code
	}
	return c.System + "|" + c.Code
}

func codingOf(v any) (coding, bool) {
	m := obj(v)
	c := coding{System: str(m, "system"), Code: str(m, "code")}
	return c, c.Code != ""
}

// codings collects Codings from a Coding, a list of Codings, a CodeableConcept or a list of
// CodeableConcepts.
func codings(v any) []coding {
	var out []coding
	for _, e := range list(v) {
		m := obj(e)
		if m == nil {
			continue
		}
		if _, isCC := m["coding"]; isCC {
			for _, c := range list(m["coding"]) {
				if cd, ok := codingOf(c); ok {
					out = append(out, cd)
				}
			}
			continue
		}
		if cd, ok := codingOf(m); ok {
			out = append(out, cd)
		}
	}
	return out
}

// hasCode reports whether any coding has code and, when system is not empty, that system (or
// no system at all).
func hasCode(cs []coding, system, code string) bool {
	for _, c := range cs {
		if c.Code == code && (system == "" || c.System == "" || c.System == system) {
			return true
		}
	}
	return false
}

// ref is a normalised literal reference: "Type/id" with any base URL and version removed.
func ref(s string) string {
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimRight(s, "/"), "/")
	if len(parts) < 2 {
		return s
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

func resourceRef(res map[string]any) string {
	t, id := str(res, "resourceType"), str(res, "id")
	if t == "" || id == "" {
		return ""
	}
	return t + "/" + id
}

// patientOf returns the patient a resource is about, "Patient/id", or "" when it does not say.
func patientOf(res map[string]any) string {
	if str(res, "resourceType") == "Patient" {
		return resourceRef(res)
	}
	for _, k := range []string{"subject", "patient", "for", "beneficiary"} {
		if r := str(obj(res[k]), "reference"); strings.Contains(r, "Patient/") {
			return ref(r)
		}
	}
	return ""
}

// references collects every literal reference inside v.
func references(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "reference" {
				if s, ok := e.(string); ok && s != "" && !strings.HasPrefix(s, "#") {
					out = append(out, ref(s))
				}
				continue
			}
			out = references(e, out)
		}
	case []any:
		for _, e := range x {
			out = references(e, out)
		}
	}
	return out
}

// clone deep-copies JSON values.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clone(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = clone(e)
		}
		return l
	}
	return v
}

// fhirTime parses a FHIR date, dateTime or instant into the interval it denotes: "2024" is
// the whole year. Values without a zone are read as UTC.
func fhirTime(s string) (lo, hi time.Time, ok bool) {
	layouts := []struct {
		layout string
		add    func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01-02T15:04:05Z07:00", func(t time.Time) time.Time { return t.Add(time.Second) }},
		{"2006-01-02T15:04:05.999999999Z07:00", func(t time.Time) time.Time { return t.Add(time.Millisecond) }},
		{"2006-01-02T15:04:05", func(t time.Time) time.Time { return t.Add(time.Second) }},
		{"2006-01-02T15:04", func(t time.Time) time.Time { return t.Add(time.Minute) }},
	}
	for _, l := range layouts {
		if len(s) < len("2006") {
			break
		}
		if t, err := time.Parse(l.layout, s); err == nil {
			return t, l.add(t), true
		}
	}
	return time.Time{}, time.Time{}, false
}

// period is a parsed FHIR Period; zero ends are open.
type period struct{ start, end time.Time }

// parsePeriod reads a Period. ok is false when a bound is present but unreadable.
func parsePeriod(m map[string]any) (p period, ok bool) {
	if s := str(m, "start"); s != "" {
		lo, _, good := fhirTime(s)
		if !good {
			return p, false
		}
		p.start = lo
	}
	if s := str(m, "end"); s != "" {
		_, hi, good := fhirTime(s)
		if !good {
			return p, false
		}
		p.end = hi
	}
	return p, true
}

func (p period) contains(t time.Time) bool {
	if !p.start.IsZero() && t.Before(p.start) {
		return false
	}
	if !p.end.IsZero() && !t.Before(p.end) {
		return false
	}
	return true
}

// relevantDates names, per resource type, the elements giving the clinically relevant date
// used against Consent.provision.dataPeriod, best first.
var relevantDates = map[string][]string{
	"Observation":           {"effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"},
	"Condition":             {"onsetDateTime", "onsetPeriod.start", "recordedDate"},
	"Encounter":             {"period.start"},
	"Composition":           {"date"},
	"DocumentReference":     {"context.period.start", "date"},
	"ServiceRequest":        {"occurrenceDateTime", "authoredOn"},
	"Task":                  {"executionPeriod.start", "authoredOn"},
	"MedicationStatement":   {"effectiveDateTime", "effectivePeriod.start", "dateAsserted"},
	"AllergyIntolerance":    {"onsetDateTime", "recordedDate"},
	"QuestionnaireResponse": {"authored"},
	"Flag":                  {"period.start"},
	"Consent":               {"dateTime"},
	"Procedure":             {"performedDateTime", "performedPeriod.start"},
	"Provenance":            {"recorded"},
	"Immunization":          {"occurrenceDateTime", "recorded"},
}

var fallbackDates = []string{"effectiveDateTime", "effectivePeriod.start", "date", "authoredOn", "recordedDate", "issued", "period.start"}

// relevantDate returns the resource's relevant date, or false when it has none.
func relevantDate(res map[string]any) (time.Time, bool) {
	paths, ok := relevantDates[str(res, "resourceType")]
	if !ok {
		paths = fallbackDates
	}
	for _, p := range paths {
		if s, _ := path(res, p).(string); s != "" {
			if lo, _, ok := fhirTime(s); ok {
				return lo, true
			}
		}
	}
	return time.Time{}, false
}
