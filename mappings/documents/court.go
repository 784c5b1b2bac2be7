package documents

import (
	"fmt"
	"strings"
	"time"
)

// Linkids of the L&D assessment Questionnaire read by the court report: the group "court"
// holds the recommendation (valueCoding) and the summary for the court (text).
const (
	LinkCourt               = "court"
	LinkCourtRecommendation = "court-recommendation"
	LinkCourtSummary        = "court-summary"
)

// Recommendations are the court recommendation codes and how the report states them.
var Recommendations = map[string]string{
	"divert":             "Divert: refer the person to health or social care support instead of, or alongside, prosecution",
	"no-divert":          "Do not divert: no diversion is recommended",
	"further-assessment": "Further assessment is needed before a recommendation can be made",
}

// CourtReportInput is what a court report is assembled from.
type CourtReportInput struct {
	// ID is the Composition id; BundleID the document Bundle id (also its identifier).
	ID, BundleID string
	// Date is when the report was composed.
	Date time.Time
	// Base is the FHIR base URL of the entries' fullUrls.
	Base string
	// Author is the L&D service writing the report; Court the court it is for.
	Author, Court Organization
	Patient       map[string]any
	// Assessment is the L&D assessment QuestionnaireResponse.
	Assessment map[string]any
	// Flags (active ones are reported) and Conditions (active, not refuted) are the
	// person's vulnerabilities; Referrals the ServiceRequests L&D made.
	Flags, Conditions, Referrals []map[string]any
	// Recommendation (a Coding) and Summary, when set, take the place of the assessment's
	// court-recommendation and court-summary answers.
	Recommendation map[string]any
	Summary        string
	// Consent is the active Consent, or recorded legal basis, that permits disclosure of the
	// report to the court; nil when none does. With it the report is final (and so routed to
	// the court); without it, preliminary: a draft for the L&D team only.
	Consent map[string]any
}

// CourtAnswers reads the court recommendation (a Coding) and summary from an assessment
// QuestionnaireResponse: the answers of court-recommendation and court-summary, in the
// group court or anywhere in the response. Either is nil/"" when not answered.
func CourtAnswers(qr map[string]any) (recommendation map[string]any, summary string) {
	var walk func(items []any)
	walk = func(items []any) {
		for _, it := range items {
			item := obj(it)
			switch str(item, "linkId") {
			case LinkCourtRecommendation:
				for _, a := range list(item["answer"]) {
					if c := obj(obj(a)["valueCoding"]); c != nil && recommendation == nil {
						recommendation = c
					}
				}
			case LinkCourtSummary:
				for _, a := range list(item["answer"]) {
					if s := str(obj(a), "valueString"); s != "" && summary == "" {
						summary = s
					}
				}
			}
			walk(list(item["item"]))
			for _, a := range list(item["answer"]) {
				walk(list(obj(a)["item"]))
			}
		}
	}
	walk(list(qr["item"]))
	return recommendation, summary
}

// CourtReport assembles the court report document: a UK Core Composition typed
// document-type|court-report with sections for the person, the assessment summary, the
// vulnerabilities, the referrals made, the recommendation and the consent it rests on,
// followed by those resources. Bad inputs give an *InputError.
func CourtReport(in CourtReportInput) (map[string]any, error) {
	if in.ID == "" || in.BundleID == "" {
		return nil, inputErr("id", "the report needs a Composition id and a Bundle id")
	}
	if err := checkResource(in.Patient, "Patient", "Patient"); err != nil {
		return nil, err
	}
	patient := ref(in.Patient)
	if err := checkResource(in.Assessment, "QuestionnaireResponse", "QuestionnaireResponse"); err != nil {
		return nil, err
	}
	if p := patientOf(in.Assessment); p != patient {
		return nil, inputErr("QuestionnaireResponse.subject", "the assessment is about %q, not %s", p, patient)
	}
	for _, l := range []struct {
		list      []map[string]any
		typ, expr string
	}{{in.Flags, "Flag", "Flag"}, {in.Conditions, "Condition", "Condition"}, {in.Referrals, "ServiceRequest", "ServiceRequest"}} {
		if err := checkAll(l.list, l.typ, l.expr, patient); err != nil {
			return nil, err
		}
	}
	if in.Consent != nil {
		if err := checkAll([]map[string]any{in.Consent}, "Consent", "Consent", patient); err != nil {
			return nil, err
		}
	}
	rec, summary := CourtAnswers(in.Assessment)
	if in.Recommendation != nil {
		rec = in.Recommendation
	}
	if strings.TrimSpace(in.Summary) != "" {
		summary = in.Summary
	}
	if rec == nil {
		return nil, inputErr("recommendation", "no court recommendation: answer %s in the assessment or pass the recommendation parameter", LinkCourtRecommendation)
	}
	recCode := str(rec, "code")
	statement, ok := Recommendations[recCode]
	if !ok {
		return nil, inputErr("recommendation", "court recommendation %q is not one of divert, no-divert, further-assessment", recCode)
	}
	recCoding := map[string]any{"system": orText(str(rec, "system"), SystemCourtRecommendation), "code": recCode}
	if d := str(rec, "display"); d != "" {
		recCoding["display"] = d
	}

	person := disclosablePatient(in.Patient)
	status := "preliminary"
	if in.Consent != nil {
		status = "final"
	}
	var vulnerable section
	vulnerable = section{code: "vulnerabilities", title: "Vulnerabilities", empty: "nilknown"}
	var flags, conditions []map[string]any
	for _, f := range in.Flags {
		if str(f, "status") != "active" {
			continue
		}
		flags = append(flags, f)
		vulnerable.items = append(vulnerable.items, "Flag: "+orText(Display(f["code"]), "uncoded flag")+categoryNote(f))
		vulnerable.entries = append(vulnerable.entries, ref(f))
	}
	for _, c := range in.Conditions {
		if !activeCondition(c) {
			continue
		}
		conditions = append(conditions, c)
		vulnerable.items = append(vulnerable.items, "Condition: "+orText(Display(c["code"]), "uncoded condition")+conditionNote(c))
		vulnerable.entries = append(vulnerable.entries, ref(c))
	}
	if len(vulnerable.items) == 0 {
		vulnerable.paragraphs = []string{"No active vulnerability flags or conditions are recorded."}
	}
	referrals := section{code: "referrals", title: "Referrals made", empty: "nilknown"}
	var srs []map[string]any
	for _, sr := range in.Referrals {
		if str(sr, "status") == "entered-in-error" {
			continue
		}
		srs = append(srs, sr)
		referrals.items = append(referrals.items, referralLine(sr))
		referrals.entries = append(referrals.entries, ref(sr))
	}
	if len(srs) == 0 {
		referrals.paragraphs = []string{"No referrals have been made."}
	}
	assessment := section{code: "assessment-summary", title: "Assessment summary",
		paragraphs: []string{orText(summary, "No summary was written for the court."), assessmentLine(in.Assessment)},
		entries:    []string{ref(in.Assessment)}}
	consent := section{code: "consent", title: "Consent to share with the court"}
	if in.Consent != nil {
		consent.paragraphs = []string{consentLine(in.Consent, in.Court)}
		consent.entries = []string{ref(in.Consent)}
	} else {
		consent.paragraphs = []string{"No active Consent or recorded legal basis permits disclosure of this report to the court. " +
			"It is a draft for the liaison and diversion team and is not sent to the court."}
		consent.empty = "unavailable"
	}
	sections := []section{
		{code: "person", title: "The person", paragraphs: []string{personLine(person)}, entries: []string{patient}},
		assessment,
		vulnerable,
		referrals,
		{code: "recommendation", title: "Recommendation to the court", paragraphs: []string{statement}},
		consent,
	}
	title := "Liaison and diversion report to the court"
	if in.Court.Name != "" {
		title += ": " + in.Court.Name
	}
	comp := map[string]any{
		"resourceType": "Composition",
		"id":           in.ID,
		"meta":         map[string]any{"profile": []any{ProfileComposition}},
		"text":         compositionText(title, status, PersonName(person)),
		"extension":    []any{map[string]any{"url": ExtensionCourtRecommendation, "valueCoding": recCoding}},
		"status":       status,
		"type":         cc(SystemDocumentType, CodeCourtReport, "Liaison and diversion court report"),
		"subject":      map[string]any{"reference": patient, "display": PersonName(person)},
		"date":         instant(in.Date),
		"author":       []any{in.Author.reference()},
		"title":        title,
		// R: the report carries health information disclosed for a legal purpose only.
		"confidentiality": "R",
		"custodian":       in.Author.reference(),
		"section":         renderSections(sections),
	}
	res := []map[string]any{person, in.Assessment}
	res = append(res, flags...)
	res = append(res, conditions...)
	res = append(res, srs...)
	if in.Consent != nil {
		res = append(res, in.Consent)
	}
	return document{bundleID: in.BundleID, base: in.Base, date: in.Date, composition: comp, resources: res}.bundle(), nil
}

func renderSections(ss []section) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s.fhir()
	}
	return out
}

// activeCondition: clinically active (or no status recorded) and neither refuted nor
// entered in error.
func activeCondition(c map[string]any) bool {
	switch code(c["verificationStatus"]) {
	case "refuted", "entered-in-error":
		return false
	}
	switch code(c["clinicalStatus"]) {
	case "", "active", "recurrence", "relapse":
		return true
	}
	return false
}

func categoryNote(f map[string]any) string {
	var cats []string
	for _, c := range list(f["category"]) {
		if d := Display(c); d != "" {
			cats = append(cats, d)
		}
	}
	if len(cats) == 0 {
		return ""
	}
	return " (" + strings.Join(cats, ", ") + ")"
}

func conditionNote(c map[string]any) string {
	var parts []string
	if s := code(c["clinicalStatus"]); s != "" {
		parts = append(parts, s)
	}
	if d := str(c, "onsetDateTime"); d != "" {
		parts = append(parts, "since "+d)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func referralLine(sr map[string]any) string {
	s := "Referral: " + orText(Display(sr["code"]), "unspecified service")
	var to []string
	for _, p := range list(sr["performer"]) {
		if d := str(obj(p), "display"); d != "" {
			to = append(to, d)
		} else if v := str(obj(obj(p)["identifier"]), "value"); v != "" {
			to = append(to, "ODS "+v)
		}
	}
	if len(to) > 0 {
		s += " to " + strings.Join(to, ", ")
	}
	s += " (" + orText(str(sr, "status"), "status unknown")
	if d := str(sr, "authoredOn"); d != "" {
		s += ", made " + d
	}
	return s + ")"
}

func assessmentLine(qr map[string]any) string {
	s := fmt.Sprintf("From the liaison and diversion assessment %s (%s", ref(qr), orText(str(qr, "status"), "status unknown"))
	if d := str(qr, "authored"); d != "" {
		s += ", " + d
	}
	if a := str(obj(qr["author"]), "display"); a != "" {
		s += ", by " + a
	}
	return s + ")."
}

// legalPolicies are the policyRule codes that record a legal basis rather than consent.
var legalPolicies = map[string]bool{"HLEGAL": true, "LEGAL": true}

func consentLine(c map[string]any, court Organization) string {
	to := "the court"
	if court.Name != "" {
		to = court.Name
	}
	basis := "the person's consent"
	if legalPolicies[code(c["policyRule"])] {
		basis = "a recorded legal basis"
	}
	s := fmt.Sprintf("Disclosure of this report to %s rests on %s, %s (%s", to, basis, ref(c), orText(str(c, "status"), "status unknown"))
	if d := str(c, "dateTime"); d != "" {
		s += ", recorded " + d
	}
	return s + ")."
}
