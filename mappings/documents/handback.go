package documents

import (
	"fmt"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/policy"
)

// HandbackInput is what a GP hand-back is assembled from: one custody episode. Callers pass
// only what the GP is entitled to see (the sharing rules and the person's Consents applied).
type HandbackInput struct {
	// ID is the Composition id; BundleID the document Bundle id (also its identifier).
	ID, BundleID string
	// Date is when the hand-back was composed.
	Date time.Time
	// Base is the FHIR base URL of the entries' fullUrls.
	Base string
	// Author is the custody healthcare service; GP the registered practice it goes to.
	Author, GP Organization
	Patient    map[string]any
	// Encounter is the custody episode.
	Encounter map[string]any
	// The episode's record: Observations, MedicationStatements, Conditions,
	// AllergyIntolerances, L&D assessments (QuestionnaireResponses) and Flags, and the
	// referrals made (ServiceRequests).
	Observations, Medications, Conditions, Allergies, Assessments, Flags, Referrals []map[string]any
}

// RegisteredGP is the ODS code of the person's registered GP practice: the identifier of the
// first Patient.generalPractitioner reference that has an ODS one, or of the Organization it
// refers to (resolve may be nil). "" when none is known.
func RegisteredGP(patient map[string]any, resolve func(reference string) map[string]any) (ods, name string) {
	for _, g := range list(patient["generalPractitioner"]) {
		r := obj(g)
		if id := obj(r["identifier"]); str(id, "system") == SystemODS && str(id, "value") != "" {
			return str(id, "value"), str(r, "display")
		}
		if resolve == nil || str(r, "reference") == "" {
			continue
		}
		org := resolve(str(r, "reference"))
		for _, id := range list(org["identifier"]) {
			if str(obj(id), "system") == SystemODS && str(obj(id), "value") != "" {
				return str(obj(id), "value"), orText(str(org, "name"), str(r, "display"))
			}
		}
	}
	return "", ""
}

// HandbackBlock says why a hand-back cannot go to a GP electronically ("" when it can),
// and the GP's ODS code when it can. A restricted (PDS sensitive, S-flag) person's GP is
// never disclosed and GP2GP is unavailable for them; a person with no registered GP has no
// practice to send to. Either way the custody team must transfer the record by other means.
func HandbackBlock(patient map[string]any, resolve func(reference string) map[string]any) (ods, reason string) {
	p := ref(patient)
	if policy.Restricted(patient) {
		return "", p + " is a restricted (PDS sensitive) record: the registered practice is not disclosed and GP2GP " +
			"is unavailable, so the hand-back is not sent to a GP electronically; the custody team must arrange a manual transfer"
	}
	ods, _ = RegisteredGP(patient, resolve)
	if ods == "" {
		return "", p + " has no registered GP practice (no ODS code in Patient.generalPractitioner), so the hand-back " +
			"has no GP to go to; the custody team must find the practice or arrange a manual transfer"
	}
	return ods, ""
}

// Handback assembles the custody hand-back document for the GP: a UK Core Composition typed
// SNOMED CT 373942005 "Discharge summary" and document-type|custody-handback, with sections
// for the custody episode, observations, medication, problems, allergies, the L&D outcome
// and referrals, followed by those resources. Bad inputs give an *InputError.
func Handback(in HandbackInput) (map[string]any, error) {
	if in.ID == "" || in.BundleID == "" {
		return nil, inputErr("id", "the hand-back needs a Composition id and a Bundle id")
	}
	if err := checkResource(in.Patient, "Patient", "Patient"); err != nil {
		return nil, err
	}
	patient := ref(in.Patient)
	if err := checkAll([]map[string]any{in.Encounter}, "Encounter", "Encounter", patient); err != nil {
		return nil, err
	}
	lists := []struct {
		list      []map[string]any
		typ, expr string
	}{
		{in.Observations, "Observation", "Observation"}, {in.Medications, "MedicationStatement", "MedicationStatement"},
		{in.Conditions, "Condition", "Condition"}, {in.Allergies, "AllergyIntolerance", "AllergyIntolerance"},
		{in.Assessments, "QuestionnaireResponse", "QuestionnaireResponse"}, {in.Flags, "Flag", "Flag"},
		{in.Referrals, "ServiceRequest", "ServiceRequest"},
	}
	for _, l := range lists {
		if err := checkAll(l.list, l.typ, l.expr, patient); err != nil {
			return nil, err
		}
	}
	person := disclosablePatient(in.Patient)
	var res []map[string]any
	build := func(sectionCode, title, none string, items []map[string]any, line func(map[string]any) string) section {
		s := section{code: sectionCode, title: title, empty: "nilknown"}
		for _, r := range items {
			if str(r, "status") == "entered-in-error" || code(r["verificationStatus"]) == "entered-in-error" {
				continue
			}
			s.items = append(s.items, line(r))
			s.entries = append(s.entries, ref(r))
			res = append(res, r)
		}
		if len(s.items) == 0 {
			s.paragraphs = []string{none}
		}
		return s
	}
	episode := section{code: "custody-episode", title: "Custody episode", paragraphs: []string{encounterLine(in.Encounter, in.Author)},
		entries: []string{ref(in.Encounter)}}
	res = append(res, person, in.Encounter)
	// Built in section order, so the entries follow the sections.
	observations := build("observations", "Observations", "No observations were recorded.", in.Observations, observationLine)
	medications := build("medications", "Medication", "No medication was recorded.", in.Medications, medicationLine)
	problems := build("problems", "Problems and diagnoses", "No problems or diagnoses were recorded.", in.Conditions,
		func(c map[string]any) string {
			return orText(Display(c["code"]), "uncoded condition") + conditionNote(c)
		})
	allergies := build("allergies", "Allergies and adverse reactions", "No allergies were recorded.", in.Allergies, allergyLine)
	ld := build("ld-outcome", "Liaison and diversion outcome", "The person was not assessed by liaison and diversion.",
		in.Assessments, func(qr map[string]any) string {
			_, summary := CourtAnswers(qr)
			return strings.TrimSuffix(assessmentLine(qr), ".") + orText(prefix(": ", summary), "")
		})
	for _, f := range in.Flags {
		if str(f, "status") != "active" {
			continue
		}
		ld.items = append(ld.items, "Flag: "+orText(Display(f["code"]), "uncoded flag")+categoryNote(f))
		ld.entries = append(ld.entries, ref(f))
		res = append(res, f)
	}
	if len(ld.items) > 0 {
		ld.paragraphs = nil
	}
	referrals := build("referrals", "Referrals made", "No referrals were made.", in.Referrals, referralLine)
	sections := []section{
		{code: "person", title: "The person", paragraphs: []string{personLine(person)}, entries: []string{patient}},
		episode, observations, medications, problems, allergies, ld, referrals,
	}
	title := "Custody healthcare hand-back to the GP"
	if in.GP.Name != "" {
		title += ": " + in.GP.Name
	}
	comp := map[string]any{
		"resourceType": "Composition",
		"id":           in.ID,
		"meta":         map[string]any{"profile": []any{ProfileComposition}},
		"text":         compositionText(title, "final", PersonName(person)),
		"status":       "final",
		"type": map[string]any{"coding": []any{
			map[string]any{"system": SystemSNOMED, "code": SNOMEDDischargeSummary, "display": "Discharge summary"},
			map[string]any{"system": SystemDocumentType, "code": CodeCustodyHandback, "display": "Custody healthcare hand-back to the GP"},
		}},
		"subject":         map[string]any{"reference": patient, "display": PersonName(person)},
		"encounter":       map[string]any{"reference": ref(in.Encounter)},
		"date":            instant(in.Date),
		"author":          []any{in.Author.reference()},
		"title":           title,
		"confidentiality": "N",
		"custodian":       in.Author.reference(),
		"section":         renderSections(sections),
	}
	return document{bundleID: in.BundleID, base: in.Base, date: in.Date, composition: comp, resources: res}.bundle(), nil
}

func prefix(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func encounterLine(e map[string]any, author Organization) string {
	where := orText(str(obj(e["serviceProvider"]), "display"), author.Name)
	s := "Seen by custody healthcare"
	if where != "" {
		s += " (" + where + ")"
	}
	per := obj(e["period"])
	if st := str(per, "start"); st != "" {
		s += " from " + st
	}
	if en := str(per, "end"); en != "" {
		s += " to " + en
	}
	s += "; episode " + orText(str(e, "status"), "status unknown")
	var why []string
	for _, r := range list(e["reasonCode"]) {
		if d := Display(r); d != "" {
			why = append(why, d)
		}
	}
	if len(why) > 0 {
		s += "; reason: " + strings.Join(why, ", ")
	}
	return s + "."
}

func observationLine(o map[string]any) string {
	s := orText(Display(o["code"]), "uncoded observation")
	if v := observationValue(o); v != "" {
		s += ": " + v
	}
	var comps []string
	for _, c := range list(o["component"]) {
		if v := observationValue(obj(c)); v != "" {
			comps = append(comps, orText(Display(obj(c)["code"]), "component")+" "+v)
		}
	}
	if len(comps) > 0 {
		s += " (" + strings.Join(comps, ", ") + ")"
	}
	if d := str(o, "effectiveDateTime"); d != "" {
		s += ", " + d
	}
	return s
}

func observationValue(o map[string]any) string {
	if q := obj(o["valueQuantity"]); q != nil {
		return strings.TrimSpace(fmt.Sprint(q["value"]) + " " + orText(str(q, "unit"), str(q, "code")))
	}
	if s := str(o, "valueString"); s != "" {
		return s
	}
	if c := o["valueCodeableConcept"]; c != nil {
		return Display(c)
	}
	if b, ok := o["valueBoolean"].(bool); ok {
		return fmt.Sprint(b)
	}
	if v, ok := o["valueInteger"]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

func medicationLine(m map[string]any) string {
	s := Display(m["medicationCodeableConcept"])
	if s == "" {
		s = orText(str(obj(m["medicationReference"]), "display"), "unnamed medication")
	}
	var dose []string
	for _, d := range list(m["dosage"]) {
		if t := str(obj(d), "text"); t != "" {
			dose = append(dose, t)
		}
	}
	if len(dose) > 0 {
		s += ": " + strings.Join(dose, "; ")
	}
	return s + " (" + orText(str(m, "status"), "status unknown") + ")"
}

func allergyLine(a map[string]any) string {
	s := orText(Display(a["code"]), "uncoded allergy")
	var reacts []string
	for _, r := range list(a["reaction"]) {
		for _, m := range list(obj(r)["manifestation"]) {
			if d := Display(m); d != "" {
				reacts = append(reacts, d)
			}
		}
	}
	if len(reacts) > 0 {
		s += ": " + strings.Join(reacts, ", ")
	}
	if c := code(a["clinicalStatus"]); c != "" {
		s += " (" + c + ")"
	}
	return s
}
