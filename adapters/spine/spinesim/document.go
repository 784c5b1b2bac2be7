package spinesim

import "strings"

// scrDocument builds a person's SCR as the SCR service sends it: a searchset Bundle with the
// Composition (section codes without a system; allergies and medication only as XHTML
// tables), the Patient, the GP practice and GP, and a coded Condition and Observation.
func scrDocument(scrBase string, p *patient, id string) map[string]any {
	const (
		compID = "composition-1"
		patID  = "patient-1"
		orgID  = "organization-1"
		gpID   = "practitioner-1"
		condID = "condition-1"
		obsID  = "observation-1"
	)
	section := func(code, title, div string, entries ...string) map[string]any {
		s := map[string]any{
			"title": title,
			"code":  map[string]any{"coding": []any{map[string]any{"code": code, "display": title}}},
			"text":  map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">` + div + `</div>`},
		}
		if len(entries) > 0 {
			refs := make([]any, len(entries))
			for i, e := range entries {
				refs[i] = map[string]any{"reference": e}
			}
			s["entry"] = refs
		}
		return s
	}
	comp := map[string]any{
		"resourceType": "Composition",
		"id":           compID,
		"identifier":   map[string]any{"system": "https://tools.ietf.org/html/rfc4122", "value": id},
		"status":       "final",
		"type":         concept(systemSNOMED, "196981000000101", "General Practice Summary"),
		"category":     []any{concept(systemSNOMED, "163171000000105", "Care Professional Documentation")},
		"subject":      map[string]any{"reference": "Patient/" + patID},
		"date":         scrDate,
		"author":       []any{map[string]any{"reference": "Practitioner/" + gpID}, map[string]any{"reference": "Organization/" + orgID}},
		"title":        "GP Summary",
		"section": []any{
			section("AllergiesHeader", "Allergies and Adverse Reactions", table(
				[]string{"Date", "Causative Agent", "Description"},
				[][]string{{"12-Mar-2015", "Penicillin", "Rash; urticaria"}, {"03-Jun-2019", "Peanut", "Anaphylaxis"}})),
			section("AcuteMedsHeader", "Acute Medications", table(
				[]string{"Last Issued", "Medication Item", "Dosage Instruction", "Quantity"},
				[][]string{{"15-Nov-2026", "Amoxicillin 500mg capsules", "One capsule three times a day", "21 capsule"}})),
			section("RepeatMedsHeader", "Current Repeat Medications", table(
				[]string{"Last Issued", "Medication Item", "Dosage Instruction", "Quantity"},
				[][]string{{"01-Nov-2026", "Salbutamol 100micrograms/dose inhaler", "Two puffs when required", "1 inhaler"},
					{"01-Nov-2026", "Sertraline 50mg tablets", "One tablet daily", "28 tablet"}})),
			section("DiagnosesHeader", "Diagnoses", table([]string{"Date", "Diagnosis"}, [][]string{{"01-May-2010", "Asthma"}}), "Condition/"+condID),
			section("ResultsHeader", "Investigation Results", table([]string{"Date", "Test", "Result"}, [][]string{{"10-Oct-2026", "Haemoglobin concentration", "135 g/L"}}), "Observation/"+obsID),
		},
	}
	entry := func(id string, res map[string]any) map[string]any {
		return map[string]any{"fullUrl": scrBase + "/" + res["resourceType"].(string) + "/" + id, "search": map[string]any{"mode": "match"}, "resource": res}
	}
	pat := map[string]any{"resourceType": "Patient", "id": patID,
		"identifier": []any{map[string]any{"system": systemNHS, "value": p.nhs}},
		"name":       []any{map[string]any{"family": p.family, "given": strs(p.given)}}, "gender": p.gender, "birthDate": p.birthDate}
	org := map[string]any{"resourceType": "Organization", "id": orgID,
		"identifier": []any{map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": p.gp}},
		"name":       "Anytown Medical Practice"}
	gp := map[string]any{"resourceType": "Practitioner", "id": gpID,
		"identifier": []any{map[string]any{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "G8133438"}},
		"name":       []any{map[string]any{"family": "Jones", "given": []any{"Rhian"}, "prefix": []any{"Dr"}}}}
	cond := map[string]any{"resourceType": "Condition", "id": condID,
		"clinicalStatus":     concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
		"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
		"category":           []any{concept(systemSNOMED, "163001000000103", "Diagnoses")},
		"code":               concept(systemSNOMED, "195967001", "Asthma"),
		"subject":            map[string]any{"reference": "Patient/" + patID},
		"onsetDateTime":      "2010-05-01", "recordedDate": "2010-05-01"}
	obs := map[string]any{"resourceType": "Observation", "id": obsID,
		"status":            "final",
		"category":          []any{concept(systemSNOMED, "163141000000104", "Investigation Results")},
		"code":              concept(systemSNOMED, "1022431000000105", "Haemoglobin concentration"),
		"subject":           map[string]any{"reference": "Patient/" + patID},
		"effectiveDateTime": "2026-10-10",
		"valueQuantity":     map[string]any{"value": 135, "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"},
		"performer":         []any{map[string]any{"reference": "Organization/" + orgID}}}
	return map[string]any{
		"resourceType": "Bundle",
		"type":         "searchset",
		"total":        1,
		"entry": []any{entry(compID, comp), entry(patID, pat), entry(orgID, org), entry(gpID, gp),
			entry(condID, cond), entry(obsID, obs)},
	}
}

// table renders rows as an XHTML table, the way the SCR sends medication and allergies.
func table(head []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("<table><thead><tr>")
	for _, h := range head {
		b.WriteString("<th>" + h + "</th>")
	}
	b.WriteString("</tr></thead><tbody>")
	for _, r := range rows {
		b.WriteString("<tr>")
		for _, c := range r {
			b.WriteString("<td>" + c + "</td>")
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</tbody></table>")
	return b.String()
}
