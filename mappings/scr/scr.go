// Package scr normalises a Summary Care Record, as the SCR FHIR API returns it, to a UK Core
// document Bundle. It is a pure mapping: JSON in, JSON out, no I/O, no clock, no randomness
// (ids are derived from the SCR document id, so the same SCR maps to the same document).
//
// What it does with the SCR:
//   - the Composition becomes a UK Core Composition about the broker's Patient; every
//     section keeps its title and XHTML narrative exactly, and its code (which the SCR sends
//     without a system) gets SectionSystem;
//   - allergies and medication arrive only as XHTML tables and stay narrative: no
//     AllergyIntolerance or MedicationStatement is invented from them;
//   - coded entries (Condition, Observation, ...) and the authors (Practitioner,
//     Organization, ...) become UK Core resources with references rewritten to the document's
//     entries, and the SCR's own Patient is replaced by the broker's;
//   - a Provenance names the Spine SCR, and the SCR document id, as the source.
package scr

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/audit"
)

// Systems and names the mapping writes.
const (
	// SectionSystem codes the SCR section headings (AllergiesHeader, AcuteMedsHeader, ...),
	// which the SCR sends without a system.
	SectionSystem = "https://hjbroker.dev/fhir/CodeSystem/scr-section-heading"
	SystemSCRUUID = "https://fhir.nhs.uk/Id/nhsSCRUUID"
	// SourceSystem names the Spine SCR service in Provenance.entity.
	SourceSystem = "spine-scr"
	// MappingName names this mapping in Provenance.policy.
	MappingName = "scr-summary"

	profileBase = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"
)

// ErrNoRecord is returned for an SCR Bundle without a Composition (a stale document id).
var ErrNoRecord = errors.New("scr: the SCR Bundle holds no Composition")

// ukCore lists the types with a UK Core profile the mapping claims.
var ukCore = map[string]bool{
	"Composition": true, "Condition": true, "Observation": true, "Organization": true, "Practitioner": true,
	"PractitionerRole": true, "Encounter": true, "AllergyIntolerance": true, "MedicationStatement": true,
	"Medication": true, "Procedure": true, "Immunization": true, "RelatedPerson": true, "Device": true,
	"Location": true, "Bundle": true, "Provenance": true, "Patient": true, "Flag": true,
}

// Input is what the mapping needs.
type Input struct {
	// Bundle is the SCR Bundle (a searchset) as the SCR service returned it.
	Bundle map[string]any
	// DocumentID is the SCR document UUID (the DocumentReference's masterIdentifier).
	DocumentID string
	// Patient is the broker's Patient the record is about, as the requester may see it; its
	// id must be set. It is the document's subject and is carried as an entry.
	Patient map[string]any
	// Base is the broker's FHIR base URL, for the Patient entry's fullUrl.
	Base string
	// Retrieved is when the SCR was read (Provenance.recorded).
	Retrieved time.Time
}

// Summary maps an SCR to a UK Core document Bundle.
func Summary(in Input) (map[string]any, error) {
	patientID, _ := in.Patient["id"].(string)
	if patientID == "" {
		return nil, errors.New("scr: the broker's Patient has no id")
	}
	if in.DocumentID == "" {
		return nil, errors.New("scr: the SCR document id is missing")
	}
	m := &mapper{doc: in.DocumentID, refs: map[string]string{}, patient: "Patient/" + patientID}
	var comp map[string]any
	var others []map[string]any
	// First pass: give every SCR entry its document fullUrl.
	for _, e := range list(in.Bundle["entry"]) {
		res := obj(obj(e)["resource"])
		typ, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		if typ == "" {
			continue
		}
		full, _ := obj(e)["fullUrl"].(string)
		switch typ {
		case "Patient":
			m.alias(typ, id, full, m.patient)
			continue
		case "Composition":
			if comp != nil {
				return nil, errors.New("scr: the SCR Bundle holds more than one Composition")
			}
			comp = res
		case "OperationOutcome":
			continue
		default:
			others = append(others, res)
		}
		m.alias(typ, id, full, m.urn(typ+"/"+id))
	}
	if comp == nil {
		return nil, ErrNoRecord
	}
	compURL := m.refs["Composition/"+str(comp, "id")]
	doc := m.composition(comp)
	entries := []any{map[string]any{"fullUrl": compURL, "resource": doc}}
	base := strings.TrimSuffix(in.Base, "/")
	entries = append(entries, map[string]any{"fullUrl": base + "/Patient/" + patientID, "resource": in.Patient})
	sort.SliceStable(others, func(i, j int) bool { return str(others[i], "resourceType") < str(others[j], "resourceType") })
	for _, r := range others {
		key := str(r, "resourceType") + "/" + str(r, "id")
		entries = append(entries, map[string]any{"fullUrl": m.refs[key], "resource": m.resource(r)})
	}
	prov := audit.ProvenanceFor([]string{compURL}, SourceSystem, "", MappingName, "transform", in.Retrieved)
	prov["entity"] = append(list(prov["entity"]), map[string]any{
		"role": "source",
		"what": map[string]any{"identifier": map[string]any{"system": SystemSCRUUID, "value": in.DocumentID},
			"display": "NHS Spine Summary Care Record " + in.DocumentID},
	})
	prov["agent"] = append(list(prov["agent"]), map[string]any{
		"type": map[string]any{"coding": []any{map[string]any{"system": audit.SystemProvAgentType, "code": "custodian", "display": "Custodian"}}},
		"who":  map[string]any{"type": "Device", "display": "NHS Spine Summary Care Record service"},
	})
	entries = append(entries, map[string]any{"fullUrl": m.urn("Provenance"), "resource": prov})
	date, _ := comp["date"].(string)
	if date == "" || !strings.Contains(date, "T") {
		date = in.Retrieved.UTC().Format(time.RFC3339)
	}
	return map[string]any{
		"resourceType": "Bundle",
		"meta":         map[string]any{"profile": []any{profileBase + "Bundle"}},
		"identifier":   map[string]any{"system": "urn:ietf:rfc:3986", "value": m.urn("Bundle")},
		"type":         "document",
		"timestamp":    date,
		"entry":        entries,
	}, nil
}

// mapper rewrites references from the SCR's ids to the document's fullUrls.
type mapper struct {
	doc     string
	patient string
	refs    map[string]string // SCR "Type/id" and fullUrl -> document reference
}

// urn derives a stable urn:uuid from the SCR document id and a key.
func (m *mapper) urn(key string) string {
	return "urn:uuid:" + uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://hjbroker.dev/scr/"+m.doc+"/"+key)).String()
}

func (m *mapper) alias(typ, id, full, to string) {
	if id != "" {
		m.refs[typ+"/"+id] = to
	}
	if full != "" {
		m.refs[full] = to
	}
}

// ref rewrites one reference string; one the document does not hold is kept as it is.
func (m *mapper) ref(r string) string {
	if to, ok := m.refs[r]; ok {
		return to
	}
	// An absolute URL ending in Type/id.
	parts := strings.Split(r, "/")
	if n := len(parts); n >= 2 {
		if to, ok := m.refs[parts[n-2]+"/"+parts[n-1]]; ok {
			return to
		}
	}
	return r
}

// rewrite copies a JSON value, rewriting every Reference.reference.
func (m *mapper) rewrite(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			if k == "reference" {
				if s, ok := c.(string); ok {
					out[k] = m.ref(s)
					continue
				}
			}
			out[k] = m.rewrite(c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = m.rewrite(c)
		}
		return out
	}
	return v
}

// resource maps a coded entry or an author: references rewritten, the SCR id dropped (the
// fullUrl identifies it), the UK Core profile claimed.
func (m *mapper) resource(r map[string]any) map[string]any {
	out := m.rewrite(r).(map[string]any)
	delete(out, "id")
	typ := str(r, "resourceType")
	if ukCore[typ] {
		meta := obj(out["meta"])
		if meta == nil {
			meta = map[string]any{}
		}
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		meta["profile"] = []any{profileBase + typ}
		out["meta"] = meta
	}
	return out
}

// composition maps the SCR Composition: sections keep title and narrative, codes get a
// system, entries point into the document.
func (m *mapper) composition(c map[string]any) map[string]any {
	out := m.resource(c)
	out["subject"] = map[string]any{"reference": m.patient}
	out["identifier"] = map[string]any{"system": SystemSCRUUID, "value": m.doc}
	if str(out, "title") == "" {
		out["title"] = "Summary Care Record"
	}
	if len(list(out["author"])) == 0 {
		out["author"] = []any{map[string]any{"display": "NHS Spine Summary Care Record"}}
	}
	out["section"] = m.sections(list(c["section"]))
	if out["section"] == nil {
		delete(out, "section")
	}
	return out
}

func (m *mapper) sections(in []any) []any {
	var out []any
	for _, s := range in {
		sm := m.rewrite(s).(map[string]any)
		if code := obj(sm["code"]); code != nil {
			var cs []any
			for _, c := range list(code["coding"]) {
				cm := obj(c)
				if cm["system"] == nil || cm["system"] == "" {
					cm["system"] = SectionSystem
				}
				cs = append(cs, cm)
			}
			if len(cs) > 0 {
				code["coding"] = cs
			}
		}
		if sub := list(sm["section"]); len(sub) > 0 {
			sm["section"] = m.sections(sub)
		}
		out = append(out, sm)
	}
	return out
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func list(v any) []any { l, _ := v.([]any); return l }

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }
