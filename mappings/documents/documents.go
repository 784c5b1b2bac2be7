// Package documents assembles UK Core FHIR documents from records already in the broker: the
// Liaison and Diversion court report (from an L&D assessment) and the custody hand-back to
// the person's GP (from a finished custody episode). Each builder is a pure function from
// decoded FHIR resources to a document Bundle (type document, Composition first); it reads
// nothing and decides no disclosure: callers pass only what the recipient is entitled to.
// Only a restricted (R, V) Patient is always carried without its location, whatever is passed.
package documents

import (
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/mappings/nhsnumber"
)

// Code systems and profiles the documents use.
const (
	// SystemDocumentType is the project's document type code system (court-report,
	// custody-handback).
	SystemDocumentType = "https://hjbroker.dev/fhir/CodeSystem/document-type"
	// SystemSection codes the sections of the project's documents.
	SystemSection = "https://hjbroker.dev/fhir/CodeSystem/document-section"
	// SystemCourtRecommendation is the default system of the court recommendation codes
	// (divert | no-divert | further-assessment) when a caller gives only a code.
	SystemCourtRecommendation = "https://hjbroker.dev/fhir/CodeSystem/court-recommendation"
	// ExtensionCourtRecommendation carries the recommendation on the Composition, so a
	// receiving system can read it without parsing the narrative.
	ExtensionCourtRecommendation = "https://hjbroker.dev/fhir/StructureDefinition/court-recommendation"
	SystemSNOMED                 = "http://snomed.info/sct"
	SystemODS                    = "https://fhir.nhs.uk/Id/ods-organization-code"
	SystemNHSNumber              = "https://fhir.nhs.uk/Id/nhs-number"
	SystemListEmptyReason        = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
	ProfileComposition           = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Composition"
	ProfileBundle                = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle"

	CodeCourtReport     = "court-report"
	CodeCustodyHandback = "custody-handback"
	// SNOMEDDischargeSummary is SNOMED CT 373942005 "Discharge summary" (record artifact),
	// the general kind of the hand-back document, coded beside the project's precise code.
	SNOMEDDischargeSummary = "373942005"
)

// Organization names an agency in a document: its ODS code and name.
type Organization struct {
	ODS  string
	Name string
}

func (o Organization) reference() map[string]any {
	r := map[string]any{"display": o.Name}
	if o.ODS != "" {
		r["identifier"] = map[string]any{"system": SystemODS, "value": o.ODS}
	}
	return r
}

// InputError is a problem with the inputs of a document; Expression is the FHIRPath of the
// offending element in the caller's terms (a resource, or an operation parameter).
type InputError struct {
	Expression string
	Message    string
}

func (e *InputError) Error() string { return e.Message }

func inputErr(expr, format string, args ...any) *InputError {
	return &InputError{Expression: expr, Message: fmt.Sprintf(format, args...)}
}

// section is one Composition section before it is rendered to FHIR.
type section struct {
	code, title string
	paragraphs  []string
	items       []string
	entries     []string // references, relative ("Flag/1")
	// empty is the list-empty-reason code used when there are no entries.
	empty string
}

func (s section) fhir() map[string]any {
	var b strings.Builder
	b.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml">`)
	for _, p := range s.paragraphs {
		b.WriteString("<p>" + html.EscapeString(p) + "</p>")
	}
	if len(s.items) > 0 {
		b.WriteString("<ul>")
		for _, it := range s.items {
			b.WriteString("<li>" + html.EscapeString(it) + "</li>")
		}
		b.WriteString("</ul>")
	}
	b.WriteString("</div>")
	out := map[string]any{
		"title": s.title,
		"code":  cc(SystemSection, s.code, s.title),
		"text":  map[string]any{"status": "generated", "div": b.String()},
	}
	if len(s.entries) > 0 {
		refs := make([]any, len(s.entries))
		for i, e := range s.entries {
			refs[i] = map[string]any{"reference": e}
		}
		out["entry"] = refs
	} else if s.empty != "" {
		out["emptyReason"] = cc(SystemListEmptyReason, s.empty, emptyDisplay[s.empty])
	}
	return out
}

var emptyDisplay = map[string]string{
	"nilknown":    "Nil Known",
	"notasked":    "Not Asked",
	"withheld":    "Information Withheld",
	"unavailable": "Unavailable",
}

// document is what every document Bundle shares.
type document struct {
	bundleID, base string
	date           time.Time
	composition    map[string]any
	resources      []map[string]any // after the Composition, in order
}

func (d document) bundle() map[string]any {
	entries := []any{map[string]any{"fullUrl": d.url(d.composition), "resource": d.composition}}
	seen := map[string]bool{}
	for _, r := range d.resources {
		u := d.url(r)
		if r == nil || seen[u] {
			continue
		}
		seen[u] = true
		entries = append(entries, map[string]any{"fullUrl": u, "resource": r})
	}
	return map[string]any{
		"resourceType": "Bundle",
		"id":           d.bundleID,
		"meta":         map[string]any{"profile": []any{ProfileBundle}},
		"identifier":   map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + d.bundleID},
		"type":         "document",
		"timestamp":    instant(d.date),
		"entry":        entries,
	}
}

func (d document) url(r map[string]any) string {
	return strings.TrimRight(d.base, "/") + "/" + str(r, "resourceType") + "/" + str(r, "id")
}

// Document assembles a document Bundle from a stored Composition and the resources it
// refers to that the reader may see (others are left out; the Composition's narrative still
// tells the reader what it says). bundleID names the Bundle and at is its timestamp.
func Document(composition map[string]any, resources []map[string]any, bundleID, base string, at time.Time) (map[string]any, error) {
	if str(composition, "resourceType") != "Composition" || str(composition, "id") == "" {
		return nil, inputErr("Composition", "a document needs a Composition with an id")
	}
	if bundleID == "" {
		return nil, inputErr("id", "the document needs a Bundle id")
	}
	return document{bundleID: bundleID, base: base, date: at, composition: composition, resources: resources}.bundle(), nil
}

// References lists the resources a Composition refers to, in order: its subject, its
// encounter and its sections' entries (nested sections too), each once. Only relative
// references ("Type/id") are listed.
func References(composition map[string]any) []string {
	var out []string
	seen := map[string]bool{}
	add := func(v any) {
		r := str(obj(v), "reference")
		if parts := strings.Split(r, "/"); len(parts) == 2 && parts[0] != "" && parts[1] != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	add(composition["subject"])
	add(composition["encounter"])
	var walk func(sections []any)
	walk = func(sections []any) {
		for _, s := range sections {
			for _, e := range list(obj(s)["entry"]) {
				add(e)
			}
			walk(list(obj(s)["section"]))
		}
	}
	walk(list(composition["section"]))
	return out
}

// compositionText is the Composition's own narrative: what it is, about whom, its status.
func compositionText(title, status, person string) map[string]any {
	return map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml"><p>` +
		html.EscapeString(title+" about "+person+" ("+status+")") + `</p></div>`}
}

func instant(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func cc(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return map[string]any{"coding": []any{c}}
}

// ref is the relative reference of a resource ("Flag/1").
func ref(r map[string]any) string { return str(r, "resourceType") + "/" + str(r, "id") }

// checkResource requires a resource of the given type with an id.
func checkResource(r map[string]any, typ, expr string) error {
	if r == nil {
		return inputErr(expr, "%s is required", typ)
	}
	if str(r, "resourceType") != typ {
		return inputErr(expr, "%s must be a %s, not %q", expr, typ, str(r, "resourceType"))
	}
	if str(r, "id") == "" {
		return inputErr(expr+".id", "the %s has no id", typ)
	}
	return nil
}

// checkAll requires every resource of a list to be of the type, with an id, and about the
// patient when it names one.
func checkAll(list []map[string]any, typ, expr, patient string) error {
	for i, r := range list {
		at := fmt.Sprintf("%s[%d]", expr, i)
		if err := checkResource(r, typ, at); err != nil {
			return err
		}
		if p := patientOf(r); p != "" && p != patient {
			return inputErr(at, "%s/%s is about %s, not %s", typ, str(r, "id"), p, patient)
		}
	}
	return nil
}

// patientOf is the relative patient reference a resource is about ("" when none).
func patientOf(r map[string]any) string {
	for _, k := range []string{"subject", "patient", "for"} {
		s := str(obj(r[k]), "reference")
		if i := strings.Index(s, "Patient/"); i >= 0 {
			return strings.TrimSuffix(s[i:], "/")
		}
	}
	return ""
}

// disclosablePatient is the Patient as a document may carry it: a restricted (R, V)
// Patient without its location (address, telecom, GP), never re-added from elsewhere.
func disclosablePatient(p map[string]any) map[string]any {
	out, _ := policy.Redact(p)
	return out
}

// PersonName is a Patient's name for display: name.text, or given names and family name.
func PersonName(p map[string]any) string {
	names := list(p["name"])
	if len(names) == 0 {
		return "name not recorded"
	}
	n := obj(names[0])
	for _, x := range names {
		if str(obj(x), "use") == "official" {
			n = obj(x)
			break
		}
	}
	if t := str(n, "text"); t != "" {
		return t
	}
	var parts []string
	for _, g := range list(n["given"]) {
		if s, ok := g.(string); ok {
			parts = append(parts, s)
		}
	}
	if f := str(n, "family"); f != "" {
		parts = append(parts, strings.ToUpper(f))
	}
	if len(parts) == 0 {
		return "name not recorded"
	}
	return strings.Join(parts, " ")
}

// NHSNumber is the Patient's NHS number, "" when it has none.
func NHSNumber(p map[string]any) string {
	for _, id := range list(p["identifier"]) {
		if str(obj(id), "system") == SystemNHSNumber {
			return str(obj(id), "value")
		}
	}
	return ""
}

// personLine describes the person in one line: name, NHS number and date of birth.
func personLine(p map[string]any) string {
	s := PersonName(p)
	if n := NHSNumber(p); n != "" {
		s += ", NHS number " + nhsnumber.Format(n)
	}
	if d := str(p, "birthDate"); d != "" {
		s += ", born " + d
	}
	return s
}

// Display is the text of a CodeableConcept: its text, else the first coding's display, else
// its code.
func Display(v any) string {
	if t := ConceptText(v); t != "" {
		return t
	}
	return code(v)
}

// ConceptText is what a CodeableConcept says in words: its text, else the first coding's
// display; "" when it has neither.
func ConceptText(v any) string {
	c := obj(v)
	if t := str(c, "text"); t != "" {
		return t
	}
	for _, cd := range list(c["coding"]) {
		if d := str(obj(cd), "display"); d != "" {
			return d
		}
	}
	return ""
}

// code is the first code of a CodeableConcept (its first coding's code).
func code(v any) string {
	for _, cd := range list(obj(v)["coding"]) {
		if c := str(obj(cd), "code"); c != "" {
			return c
		}
	}
	return ""
}

func orText(s, fallback string) string {
	if strings.TrimSpace(s) == "" {
		return fallback
	}
	return s
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
