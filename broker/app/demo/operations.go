package demo

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The operations the story uses when the broker offers them, as the CapabilityStatement
// names them.
const (
	opSummary     = "Patient/$summary"
	opIngest      = "$ingest-clinical-entries"
	opExtract     = "QuestionnaireResponse/$extract"
	opCourtReport = "QuestionnaireResponse/$court-report"
	opDocument    = "Composition/$document"
	opHandback    = "Encounter/$handback"
)

// The custody episode as the custody EMR identifies it.
const (
	episodeID        = "EP-DEMO-0001"
	custodySuite     = "XCS01"
	custodySuiteName = "Anytown Central Custody Suite"

	// The shipped L&D Questionnaires (mappings/ld).
	questionnaireScreening  = "https://hjbroker.dev/fhir/Questionnaire/ld-screening|1.0.0"
	questionnaireAssessment = "https://hjbroker.dev/fhir/Questionnaire/ld-assessment|1.0.0"
)

var nurse = map[string]any{"name": "Sam Patel", "role": "nurse", "professionalId": map[string]any{"register": "nmc", "value": "12A3456B"}}

// entries is a clinical-entries document (docs/clinical-entries.md) for the story's episode.
func (r *runner) entries(release time.Time) map[string]any {
	ep := map[string]any{
		"id": episodeID, "custodySuite": custodySuite, "custodySuiteName": custodySuiteName, "provider": odsCustody,
		"arrival": stamp(r.arrived), "reason": "Detained under PACE; healthcare assessment on arrival",
	}
	if !release.IsZero() {
		ep["release"] = stamp(release)
	}
	return map[string]any{"format": "hjbroker-clinical-entries/1", "patient": map[string]any{"nhsNumber": NHSNumber}, "episode": ep}
}

// ingest posts a clinical-entries document and records what the transaction stored.
func (r *runner) ingest(ctx context.Context, doc map[string]any) (*response, error) {
	return r.call(ctx, http.StatusOK, http.MethodPost, opIngest, doc, "Content-Type: application/json")
}

// ingestEpisode opens the custody episode through the EMR's clinical-entries feed.
func ingestEpisode(ctx context.Context, r *runner) error {
	resp, err := r.ingest(ctx, r.entries(time.Time{}))
	if err != nil {
		return err
	}
	for _, v := range storedVersions(resp) {
		if ref := refOf(v); strings.HasPrefix(ref, "Encounter/") {
			r.ids.encounter = ref
		}
	}
	if r.ids.encounter == "" {
		r.problem("the clinical-entries ingest stored no custody Encounter")
		return errStep
	}
	r.result("the custody EMR opens episode %s at %s through $ingest-clinical-entries: the custody Encounter, in progress", episodeID, custodySuiteName)
	r.expect("Encounter", EndpointLD, "delivered")
	return nil
}

func ingestClinical(ctx context.Context, r *runner) error {
	at := stamp(r.arrived.Add(30 * time.Minute))
	doc := r.entries(time.Time{})
	doc["observations"] = []any{map[string]any{
		"id": "OBS-1", "time": at, "author": nurse,
		"heartRate": 96, "respiratoryRate": 18, "bloodPressure": map[string]any{"systolic": 128, "diastolic": 82},
		"temperature": 37.1, "spo2": 97, "acvpu": "A", "news2": 1,
	}}
	doc["problems"] = []any{
		map[string]any{"id": "PRB-1", "code": map[string]any{"system": "snomed", "code": "35489007", "display": "Depressive disorder"},
			"status": "active", "time": at, "author": nurse},
		map[string]any{"id": "PRB-2", "code": map[string]any{"system": "snomed", "code": "7200002", "display": "Alcoholism"},
			"category": "diagnosis", "verification": "provisional", "note": "Drinks daily; last drink reported 8 hours ago", "time": at, "author": nurse},
	}
	doc["medications"] = []any{map[string]any{"id": "MED-1", "kind": "declared",
		"code": map[string]any{"system": "dmd", "code": "321968006", "display": "Sertraline 50mg tablets"},
		"dose": map[string]any{"value": 1, "unit": "{tablet}"}, "route": "oral", "instructions": "One tablet once a day", "status": "active",
		"time": at, "author": nurse}}
	doc["allergies"] = []any{map[string]any{"id": "ALG-1", "code": map[string]any{"system": "snomed", "code": "91936005", "display": "Allergy to penicillin"},
		"type": "allergy", "category": "medication", "criticality": "high",
		"reaction": map[string]any{"description": "Urticarial rash", "severity": "moderate"}, "time": at, "author": nurse}}
	if _, err := r.ingest(ctx, doc); err != nil {
		return err
	}
	r.result("$ingest-clinical-entries: vital signs with NEWS2 score 1, 2 problems, 1 medication, 1 allergy, mapped to UK Core and stored as one transaction")
	for _, t := range []string{"Observation", "Condition", "MedicationStatement", "AllergyIntolerance"} {
		r.expect(t, EndpointLD, "delivered")
	}
	return nil
}

// scrLookup records the person's permission for custody healthcare to view their Summary
// Care Record, then reads it from the Spine through the broker.
func scrLookup(ctx context.Context, r *runner) error {
	pid := strings.TrimPrefix(r.ids.patient, "Patient/")
	c := map[string]any{
		"resourceType": "Consent",
		"status":       "active",
		"scope":        concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent"),
		"category":     []any{concept(sysActCode, "INFA", "information access")},
		"patient":      ref(r.ids.patient),
		"dateTime":     stamp(time.Now()),
		"policyRule":   concept(sysActCode, "OPTIN", "opt-in"),
		"provision": map[string]any{
			"type":   "permit",
			"actor":  []any{recipient(odsCustody, "Anytown Police Custody Healthcare")},
			"action": []any{concept("http://terminology.hl7.org/CodeSystem/consentaction", "access", "Access")},
		},
	}
	if _, err := r.call(ctx, http.StatusCreated, http.MethodPost, "Consent", c); err != nil {
		return err
	}
	r.result("the person agrees that custody healthcare may view their Summary Care Record")
	resp, err := r.call(ctx, http.StatusOK, http.MethodGet, "Patient/"+pid+"/$summary", nil)
	if err != nil {
		return err
	}
	var sections, coded []string
	for i, e := range list(resp.JSON["entry"]) {
		res := obj(obj(e)["resource"])
		switch t := str(res, "resourceType"); {
		case i == 0 && t == "Composition":
			for _, s := range list(res["section"]) {
				sections = append(sections, str(obj(s), "title"))
			}
		case t == "Condition" || t == "Observation":
			code := obj(res["code"])
			name := str(code, "text")
			if name == "" && len(list(code["coding"])) > 0 {
				name = str(obj(list(code["coding"])[0]), "display")
			}
			coded = append(coded, fmt.Sprintf("%s %q", t, name))
		}
	}
	r.result("SCR read afresh from the Spine (not stored): sections %s; coded: %s", strings.Join(sections, ", "), strings.Join(coded, ", "))
	return nil
}

// qr builds QuestionnaireResponse items: group and answer helpers.
func answerItem(linkID string, answers ...map[string]any) map[string]any {
	as := make([]any, len(answers))
	for i, a := range answers {
		as[i] = a
	}
	return map[string]any{"linkId": linkID, "answer": as}
}

func group(linkID string, items ...map[string]any) map[string]any {
	is := make([]any, len(items))
	for i, it := range items {
		is[i] = it
	}
	return map[string]any{"linkId": linkID, "item": is}
}

func yes() map[string]any {
	return map[string]any{"valueCoding": coding(sysSNOMED, "373066001", "Yes")}
}
func no() map[string]any { return map[string]any{"valueCoding": coding(sysSNOMED, "373067005", "No")} }
func vcode(system, code string) map[string]any {
	return map[string]any{"valueCoding": coding(system, code, "")}
}
func vbool(b bool) map[string]any     { return map[string]any{"valueBoolean": b} }
func vstring(s string) map[string]any { return map[string]any{"valueString": s} }

const (
	sysAuditC   = "https://hjbroker.dev/fhir/CodeSystem/audit-c"
	sysHousing  = "https://hjbroker.dev/fhir/CodeSystem/ld-housing-status"
	sysPathway  = "https://hjbroker.dev/fhir/CodeSystem/ld-referral-pathway"
	sysRisk     = "https://hjbroker.dev/fhir/CodeSystem/ld-risk-level"
	sysPriority = "http://hl7.org/fhir/request-priority"
	sysCourtRec = "https://hjbroker.dev/fhir/CodeSystem/ld-court-recommendation"
)

func (r *runner) questionnaireResponse(questionnaire string, authored time.Time, items ...map[string]any) map[string]any {
	is := make([]any, len(items))
	for i, it := range items {
		is[i] = it
	}
	return map[string]any{
		"resourceType":  "QuestionnaireResponse",
		"questionnaire": questionnaire,
		"status":        "completed",
		"subject":       ref(r.ids.patient),
		"encounter":     ref(r.ids.encounter),
		"authored":      stamp(authored),
		"author":        orgRef(odsLD, "Anytown Liaison and Diversion Service"),
		"item":          is,
	}
}

// extract posts a completed L&D QuestionnaireResponse to $extract and summarises what the
// extraction stored.
func (r *runner) extract(ctx context.Context, qr map[string]any) (*response, error) {
	resp, err := r.call(ctx, http.StatusOK, http.MethodPost, opExtract, qr)
	if err != nil {
		return nil, err
	}
	r.result("the answers, checked against the shipped Questionnaire, extracted to UK Core resources in one transaction")
	return resp, nil
}

func screeningExtract(ctx context.Context, r *runner) error {
	at := time.Now().Add(-70 * time.Minute)
	qr := r.questionnaireResponse(questionnaireScreening, at,
		group("screening", answerItem("screening.consent", vbool(true)), answerItem("screening.datetime", map[string]any{"valueDateTime": stamp(at)})),
		group("mh", answerItem("mh.contact", yes()), answerItem("mh.diagnosis", map[string]any{"valueCoding": coding(sysSNOMED, "35489007", "Depressive disorder")}),
			answerItem("mh.self-harm", no()), answerItem("mh.suicidal-ideation", no())),
		group("neuro", answerItem("neuro.learning-disability", no()), answerItem("neuro.autism", no()), answerItem("neuro.adhd", no()),
			answerItem("neuro.slcn", yes())),
		group("substance", answerItem("substance.drug-use", no()),
			group("alcohol", answerItem("alcohol.frequency", vcode(sysAuditC, "frequency-4")), answerItem("alcohol.units", vcode(sysAuditC, "units-2")),
				answerItem("alcohol.binge", vcode(sysAuditC, "binge-3")))),
		group("safeguarding", answerItem("safeguarding.adult-concern", no()), answerItem("trauma.domestic-abuse", no()), answerItem("trauma.sexual-abuse", no())),
		group("social", answerItem("housing.status", vcode(sysHousing, "at-risk")), answerItem("finance.debt", no()), answerItem("veteran.status", no()),
			answerItem("gambling.problem", no()), answerItem("physical.concern", no())),
		group("specific", answerItem("specific.under-18", vbool(false))),
		group("outcome", answerItem("outcome.assessment-needed", vbool(true)), answerItem("outcome.urgency", vcode(sysPriority, "urgent"))),
	)
	if _, err := r.extract(ctx, qr); err != nil {
		return err
	}
	r.note("the screening: mental health contact, speech, language and communication needs, alcohol (AUDIT-C), housing at risk; a full assessment is needed")
	r.expect("Flag", EndpointProbation, "withheld")
	return nil
}

// assessmentExtract is the full L&D assessment: the person consents to referrals (not yet
// to a report to the court), and the extraction makes the referrals, probation's Task and
// the Consent.
func assessmentExtract(ctx context.Context, r *runner) error {
	at := time.Now().Add(-50 * time.Minute)
	referral := func(pathway, service, reason, priority string) map[string]any {
		return group("referrals", answerItem("referral.pathway", vcode(sysPathway, pathway)),
			answerItem("referral.service", map[string]any{"valueReference": ref("HealthcareService/" + service)}),
			answerItem("referral.reason", vstring(reason)), answerItem("referral.priority", vcode(sysPriority, priority)))
	}
	qr := r.questionnaireResponse(questionnaireAssessment, at,
		group("assessment", answerItem("assessment.consent", vbool(true)), answerItem("assessment.datetime", map[string]any{"valueDateTime": stamp(at)})),
		group("mh", answerItem("mh.contact", yes()), answerItem("mh.diagnosis", map[string]any{"valueCoding": coding(sysSNOMED, "35489007", "Depressive disorder")}),
			answerItem("mh.self-harm-risk", vcode(sysRisk, "low")), answerItem("mh.suicide-risk", vcode(sysRisk, "low")),
			answerItem("mh.notes", vstring("Low mood since losing their job; takes sertraline."))),
		group("neuro", answerItem("neuro.learning-disability", no()), answerItem("neuro.autism", no()), answerItem("neuro.adhd", no()),
			answerItem("neuro.slcn", yes())),
		group("substance", answerItem("substance.drug-use", no()),
			group("alcohol", answerItem("alcohol.frequency", vcode(sysAuditC, "frequency-4")), answerItem("alcohol.units", vcode(sysAuditC, "units-2")),
				answerItem("alcohol.binge", vcode(sysAuditC, "binge-3")))),
		group("safeguarding", answerItem("safeguarding.adult-concern", no()), answerItem("trauma.domestic-abuse", no()), answerItem("trauma.sexual-abuse", no())),
		group("social", answerItem("housing.status", vcode(sysHousing, "at-risk")), answerItem("finance.debt", no()), answerItem("veteran.status", no()),
			answerItem("gambling.problem", no()), answerItem("physical.concern", no())),
		group("specific", answerItem("specific.under-18", vbool(false))),
		referral("probation", "svc-probation", "Supervision planning and support on release", "urgent"),
		referral("housing", "svc-housing-options", "At risk of homelessness on release", "routine"),
		group("consent", answerItem("consent.share-referrals", vbool(true)), answerItem("consent.share-court", vbool(false))),
		group("court", answerItem("court-recommendation", vcode(sysCourtRec, "divert")),
			answerItem("court-summary", vstring("Depressive disorder and alcohol dependence; at risk of homelessness. Referred to probation and housing support. Diversion to community support is recommended."))),
	)
	resp, err := r.extract(ctx, qr)
	if err != nil {
		return err
	}
	for _, v := range storedVersions(resp) {
		switch ref := refOf(v); {
		case strings.HasPrefix(ref, "QuestionnaireResponse/"):
			r.ids.assessment = ref
		case strings.HasPrefix(ref, "Task/") && r.ids.task == "":
			r.ids.task = ref
		}
	}
	r.ids.referral = r.probationReferral(ctx)
	r.note("the person consents to the referrals being shared, not yet to a report to the court")
	r.expect("ServiceRequest", EndpointProbation, "delivered")
	r.expect("Flag", EndpointProbation, "delivered")
	return nil
}

// probationReferral finds the referral made to probation among the step's stored versions.
func (r *runner) probationReferral(ctx context.Context) string {
	for _, v := range r.step.stored {
		if !strings.HasPrefix(v, "ServiceRequest/") {
			continue
		}
		resp, err := r.call(ctx, http.StatusOK, http.MethodGet, refOf(v), nil)
		if err != nil {
			continue
		}
		for _, p := range list(resp.JSON["performer"]) {
			if str(obj(obj(p)["identifier"]), "value") == odsProbation {
				r.result("the referral to probation is %s", refOf(v))
				return refOf(v)
			}
		}
	}
	r.problem("the assessment made no referral to probation")
	return ""
}

// explainAccess asks the broker, as the operator, what an agency would see of the person for
// a purpose and why ($access-check), and notes it for the types given.
func (r *runner) explainAccess(ctx context.Context, agency, purpose string, types ...string) error {
	pid := strings.TrimPrefix(r.ids.patient, "Patient/")
	resp, err := r.callAs(ctx, r.env.Operator, http.StatusOK, http.MethodGet,
		"Patient/"+pid+"/$access-check?"+query("agency", agency, "purpose", purpose), nil)
	if err != nil {
		return err
	}
	var parts []string
	done := map[string]bool{}
	for _, p := range list(resp.JSON["parameter"]) {
		if str(obj(p), "name") != "class" {
			continue
		}
		var typ, outcome, reason string
		for _, part := range list(obj(p)["part"]) {
			m := obj(part)
			switch str(m, "name") {
			case "type":
				typ = str(m, "valueCode")
			case "outcome":
				outcome = str(m, "valueString")
			case "reason":
				reason = str(m, "valueString") // the last reason is the deciding one
			}
		}
		for _, t := range types {
			if t == typ && !done[typ] {
				done[typ] = true
				parts = append(parts, fmt.Sprintf("%s %s: %s", typ, outcome, reason))
			}
		}
	}
	r.result("$access-check, %s for %s: %s", agency, purpose, strings.Join(parts, "; "))
	return nil
}

// courtReportOp asks the broker for the court report of the assessment.
func (r *runner) courtReportOp(ctx context.Context, want int) (map[string]any, error) {
	resp, err := r.call(ctx, want, http.MethodPost, r.ids.assessment+"/$court-report", nil)
	if err != nil {
		return nil, err
	}
	entries := list(resp.JSON["entry"])
	if len(entries) == 0 {
		r.problem("$court-report answered without a document")
		return nil, errStep
	}
	comp := obj(obj(entries[0])["resource"])
	r.ids.report = "Composition/" + str(comp, "id")
	return comp, nil
}

func courtReportDraft(ctx context.Context, r *runner) error {
	comp, err := r.courtReportOp(ctx, http.StatusCreated)
	if err != nil {
		return err
	}
	r.result("$court-report builds the report from the assessment: status %s, since no Consent lets the court see it", str(comp, "status"))
	if str(comp, "status") == "final" {
		r.problem("the court report is final before the person consented")
	}
	n, err := r.courtSees(ctx)
	if err != nil {
		return err
	}
	r.result("the court searches for the report and finds %d", n)
	if n != 0 {
		r.problem("the court sees %d court reports before consent, want 0", n)
	}
	r.note("a preliminary report does not match the court-report route (final reports only): nothing is sent to the court")
	return r.explainAccess(ctx, "court", "HLEGAL", "Composition", "Observation")
}

func courtReportFinal(ctx context.Context, r *runner) error {
	c := r.consent([]any{recipient(odsCourt, "Anytown Magistrates' Court")}, "HLEGAL", "Patient", "Composition", "DocumentReference")
	if _, err := r.call(ctx, http.StatusCreated, http.MethodPost, "Consent", c); err != nil {
		return err
	}
	r.result("permit: the court (XCRT01) may receive the report for the proceedings (HLEGAL)")
	comp, err := r.courtReportOp(ctx, http.StatusOK)
	if err != nil {
		return err
	}
	r.result("$court-report again: the same Composition, now %s, citing the Consent", str(comp, "status"))
	r.expect("Composition", EndpointCourt, "delivered")
	n, err := r.courtSees(ctx)
	if err != nil {
		return err
	}
	r.result("the court searches again and finds %d report(s)", n)
	if n != 1 {
		r.problem("the court sees %d court reports after consent, want 1", n)
	}
	if err := r.explainAccess(ctx, "court", "HLEGAL", "Composition", "Observation"); err != nil {
		return err
	}
	doc, err := r.callAs(ctx, "court", http.StatusOK, http.MethodGet, r.ids.report+"/$document", nil)
	if err != nil {
		return err
	}
	r.result("the court reads the report as a document Bundle of %d entries", len(list(doc.JSON["entry"])))
	pdf, err := r.callAs(ctx, "court", http.StatusOK, http.MethodGet, r.ids.report+"/$document?_format=pdf", nil)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(pdf.Raw), "%PDF") {
		r.problem("the court's PDF rendering is not a PDF")
	}
	r.result("and as a PDF of %d bytes (%s)", len(pdf.Raw), pdf.Header.Get("Content-Type"))
	return nil
}

// releaseHandback ends the custody episode with $handback, which finishes the Encounter and
// so hands the episode back to the GP.
func releaseHandback(ctx context.Context, r *runner) error {
	resp, err := r.call(ctx, http.StatusOK, http.MethodPost, r.ids.encounter+"/$handback", nil)
	if err != nil {
		return err
	}
	var parts []string
	for _, p := range list(resp.JSON["parameter"]) {
		m := obj(p)
		for k, v := range m {
			if strings.HasPrefix(k, "value") {
				if s, ok := v.(string); ok {
					parts = append(parts, str(m, "name")+" "+s)
				}
			}
		}
	}
	r.result("custody episode finished: %s", strings.Join(parts, ", "))
	// The answer names no version: read the Encounter to follow the deliveries its update made.
	v, err := r.call(ctx, http.StatusOK, http.MethodGet, r.ids.encounter, nil)
	if err != nil {
		return err
	}
	if str(v.JSON, "status") != "finished" {
		r.problem("after $handback the Encounter is %s, not finished", str(v.JSON, "status"))
	}
	r.stored(r.ids.encounter + "/_history/" + str(obj(v.JSON["meta"]), "versionId"))
	r.expect("Encounter", EndpointLD, "delivered")
	r.expect("Encounter", EndpointGP, "delivered")
	return nil
}
