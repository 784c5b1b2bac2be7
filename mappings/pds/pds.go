// Package pds normalises Personal Demographics Service records to UK Core. It is a pure
// mapping: JSON in, JSON out, no I/O.
package pds

import (
	"errors"
	"fmt"
	"strings"
)

// Code systems and URLs the mapping reads and writes.
const (
	SystemNHSNumber       = "https://fhir.nhs.uk/Id/nhs-number"
	SystemODS             = "https://fhir.nhs.uk/Id/ods-organization-code"
	SystemConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	ExtVerification       = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
	SystemVerification    = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
	ProfilePatient        = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
	// MappingName names the mapping in Provenance.policy.
	MappingName = "pds-patient"

	retiredVerification = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
	ukCoreExtPrefix     = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-"
)

var verificationDisplay = map[string]string{
	"01": "Number present and verified",
	"02": "Number present but not traced",
	"03": "Trace required",
	"04": "Trace attempted - No match or multiple match found",
	"05": "Trace needs to be resolved - (NHS number or patient detail conflict)",
	"06": "Trace in progress",
	"07": "Number not present and trace not required",
	"08": "Trace postponed (baby under six weeks old)",
}

// retiredCodes are the string codes of the retired verification status code system.
var retiredCodes = map[string]string{
	"number-present-and-verified":               "01",
	"number-present-but-not-traced":             "02",
	"trace-required":                            "03",
	"trace-attempted":                           "04",
	"trace-needs-to-be-resolved":                "05",
	"trace-in-progress":                         "06",
	"number-not-present-and-trace-not-required": "07",
	"trace-postponed":                           "08",
}

// Patient maps a PDS Patient to a UK Core Patient (without id: the broker gives its own):
//   - the NHS number identifier (the record's id, which for a superseded number is the new
//     number) with its verification status in the England code system, whichever of the
//     three spellings the PDS used;
//   - meta.security kept as the PDS sent it (U, R or V), and for a restricted (R or V)
//     record no address, telecom, registered GP or contact location, even if the PDS sent
//     them;
//   - names, gender, birth and death dates, addresses, telecoms, the registered GP as an
//     Organization reference by ODS code, and the UK Core extensions; PDS element ids and
//     extensions outside UK Core are dropped.
func Patient(in map[string]any) (map[string]any, error) {
	if in["resourceType"] != "Patient" {
		return nil, fmt.Errorf("pds: a %v is not a Patient", in["resourceType"])
	}
	nhs, _ := in["id"].(string)
	var ident map[string]any
	for _, x := range list(in["identifier"]) {
		if m := obj(x); m["system"] == SystemNHSNumber {
			ident = m
			if v, _ := m["value"].(string); v != "" {
				nhs = v
			}
		}
	}
	if nhs == "" {
		return nil, errors.New("pds: the Patient has no NHS number")
	}
	id := map[string]any{"system": SystemNHSNumber, "value": nhs}
	if v := verification(ident); v != nil {
		id["extension"] = []any{v}
	}
	out := map[string]any{
		"resourceType": "Patient",
		"meta":         map[string]any{"profile": []any{ProfilePatient}},
		"identifier":   []any{id},
	}
	restricted := false
	if sec := list(obj(in["meta"])["security"]); len(sec) > 0 {
		out["meta"].(map[string]any)["security"] = clean(sec)
		for _, s := range sec {
			if m := obj(s); m["system"] == SystemConfidentiality && (m["code"] == "R" || m["code"] == "V") {
				restricted = true
			}
		}
	}
	for _, k := range []string{"name", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime", "multipleBirthBoolean",
		"multipleBirthInteger", "communication"} {
		if v, ok := in[k]; ok {
			out[k] = clean(v)
		}
	}
	if ext := ukCoreExtensions(in["extension"]); len(ext) > 0 {
		out["extension"] = ext
	}
	if restricted {
		return out, nil
	}
	for _, k := range []string{"address", "telecom", "contact"} {
		if v, ok := in[k]; ok {
			out[k] = clean(v)
		}
	}
	var gps []any
	for _, g := range list(in["generalPractitioner"]) {
		gm := obj(g)
		ods := obj(gm["identifier"])
		code, _ := ods["value"].(string)
		if code == "" {
			continue
		}
		ref := map[string]any{"type": "Organization", "identifier": clean(ods)}
		if ods["system"] == nil {
			ref["identifier"].(map[string]any)["system"] = SystemODS
		}
		if d, _ := gm["display"].(string); d != "" {
			ref["display"] = d
		}
		gps = append(gps, ref)
	}
	if len(gps) > 0 {
		out["generalPractitioner"] = gps
	}
	return out, nil
}

// NHSNumber returns the NHS number of a PDS Patient (its id, or its identifier).
func NHSNumber(p map[string]any) string {
	for _, x := range list(p["identifier"]) {
		if m := obj(x); m["system"] == SystemNHSNumber {
			if v, _ := m["value"].(string); v != "" {
				return v
			}
		}
	}
	id, _ := p["id"].(string)
	return id
}

// verification maps the verification status extension of the PDS identifier to the England
// code system.
func verification(ident map[string]any) map[string]any {
	for _, e := range list(ident["extension"]) {
		em := obj(e)
		if em["url"] != ExtVerification {
			continue
		}
		for _, c := range list(obj(em["valueCodeableConcept"])["coding"]) {
			cm := obj(c)
			code, _ := cm["code"].(string)
			switch cm["system"] {
			case SystemVerification:
			case retiredVerification:
				if mapped, ok := retiredCodes[code]; ok {
					code = mapped
				}
			default:
				continue
			}
			if d, ok := verificationDisplay[code]; ok {
				return map[string]any{"url": ExtVerification, "valueCodeableConcept": map[string]any{"coding": []any{
					map[string]any{"system": SystemVerification, "code": code, "display": d}}}}
			}
		}
	}
	return nil
}

// ukCoreExtensions keeps the UK Core extensions of a list.
func ukCoreExtensions(v any) []any {
	var out []any
	for _, e := range list(v) {
		if u, _ := obj(e)["url"].(string); strings.HasPrefix(u, ukCoreExtPrefix) {
			out = append(out, clean(e))
		}
	}
	return out
}

// clean copies a JSON value without the PDS's element ids.
func clean(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, c := range x {
			if k != "id" {
				m[k] = clean(c)
			}
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, c := range x {
			l[i] = clean(c)
		}
		return l
	}
	return v
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func list(v any) []any { l, _ := v.([]any); return l }
