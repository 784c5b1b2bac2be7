package demo

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/adapters/sink"
)

// Code systems and identifiers the story uses.
const (
	sysNHS       = "https://fhir.nhs.uk/Id/nhs-number"
	sysODS       = "https://fhir.nhs.uk/Id/ods-organization-code"
	sysSNOMED    = "http://snomed.info/sct"
	sysDocType   = "https://hjbroker.dev/fhir/CodeSystem/document-type"
	sysFlagBaRS  = "https://fhir.nhs.uk/CodeSystem/flag-categories-bars"
	sysActReason = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sysActCode   = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

	// NHSNumber is the story's person: 9000000009, the NHS number of the PDS sandbox's
	// first test patient.
	NHSNumber = "9000000009"

	odsCustody   = "XCUST01"
	odsLD        = "XLD001"
	odsCourt     = "XCRT01"
	odsProbation = "XPRB01"
	odsGP        = "XGP001"
)

// Endpoint ids of the demo configuration (broker/config/demo.yaml).
const (
	EndpointLD        = "ld-team-fhir"
	EndpointCourt     = "court-fhir"
	EndpointProbation = "probation-messaging"
	EndpointGP        = "gp-fhir"
)

// story is the pathway, in order. Where the broker offers an operation for a step (the
// clinical-entries ingest, QuestionnaireResponse extraction, the court report, the hand-back)
// the step uses it; the plain FHIR way is the step's fallback.
func story() []scene {
	return []scene{
		{stage: StageArrival, title: "Arrival in custody: the person is looked up and the custody episode opened", client: "custody-hcp", run: arrival},
		{stage: StageSCR, title: "Summary Care Record lookup on the Spine", client: "custody-hcp", needs: opSummary, requires: "patient", run: scrLookup},
		{stage: StageClinical, title: "Clinical entries: observations, NEWS2, problems, medication, allergy", client: "custody-hcp", requires: "patient,encounter", run: clinicalEntries},
		{stage: StageScreening, title: "L&D screening: the team sees the custody record and screens the person", client: "ld-team", requires: "patient,encounter", run: screening},
		{stage: StageReferral, title: "L&D assessment: the person consents to referrals; referrals to probation and housing", client: "ld-team",
			needs: opExtract, requires: "patient,encounter", run: assessmentExtract},
		{stage: StageReferral, title: "The person consents to L&D and probation sharing the referral", client: "ld-team", without: opExtract, requires: "patient", run: consentProbation},
		{stage: StageReferral, title: "Referral to probation: ServiceRequest and Task", client: "ld-team", without: opExtract, requires: "patient,encounter", run: referral},
		{stage: StageProbation, title: "Probation pulls its referrals and accepts the Task", client: "probation", requires: "task", run: probationAccepts},
		{stage: StageProbation, title: "Probation starts work on the referral", client: "probation", requires: "task", run: probationWorks},
		{stage: StageCourt, title: "Court report from the assessment, before the person consented to share it", client: "ld-team",
			needs: opCourtReport, requires: "assessment", run: courtReportDraft},
		{stage: StageCourt, title: "The person consents; L&D issues the court report again", client: "ld-team", needs: opCourtReport, requires: "report", run: courtReportFinal},
		{stage: StageCourt, title: "Court report written before the person consented to share it", client: "ld-team", without: opCourtReport, requires: "patient,encounter", run: courtReportWithheld},
		{stage: StageCourt, title: "The person consents; L&D issues the court report again", client: "ld-team", without: opCourtReport, requires: "report", run: courtReportDelivered},
		{stage: StageRelease, title: "Release from custody: the custody episode ends", client: "custody-hcp", requires: "encounter", run: release},
		{stage: StageGPHandBack, title: "GP hand-back: the practice receives and reads the custody episode", client: "gp", requires: "patient", run: gpHandBack},
		{stage: StageProbation, title: "Probation completes the referral", client: "probation", requires: "task", run: probationCompletes},
	}
}

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, display)}}
}

func orgRef(ods, name string) map[string]any {
	return map[string]any{"identifier": map[string]any{"system": sysODS, "value": ods}, "display": name}
}

func ref(r string) map[string]any { return map[string]any{"reference": r} }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// patient is the person as custody books them in.
func patient() map[string]any {
	return map[string]any{
		"resourceType": "Patient",
		"identifier": []any{map[string]any{
			"system": sysNHS, "value": NHSNumber,
			"extension": []any{map[string]any{
				"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
				"valueCodeableConcept": concept("https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "01",
					"Number present and verified"),
			}},
		}},
		"name":                []any{map[string]any{"use": "official", "family": "Taylor", "given": []any{"Sam"}}},
		"gender":              "male",
		"birthDate":           "1990-04-12",
		"address":             []any{map[string]any{"use": "home", "line": []any{"1 High Street"}, "city": "Anytown", "postalCode": "AT1 1AA"}},
		"generalPractitioner": []any{orgRef(odsGP, "Anytown Medical Practice")},
	}
}

// arrival looks the person up by NHS number (the broker asks the PDS when it has no record
// and a Spine is configured), registers them when nobody knows them, and opens the custody
// episode.
func arrival(ctx context.Context, r *runner) error {
	r.arrived = time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	resp, err := r.call(ctx, http.StatusOK, http.MethodGet, "Patient?"+query("identifier", sysNHS+"|"+NHSNumber), nil)
	if err != nil {
		return err
	}
	if entries := list(resp.JSON["entry"]); len(entries) > 0 {
		p := obj(obj(entries[0])["resource"])
		r.ids.patient = "Patient/" + str(p, "id")
		r.seen[r.ids.patient+"/_history/"+str(obj(p["meta"]), "versionId")] = true
		name := obj(list(p["name"])[0])
		gp := ""
		for _, g := range list(p["generalPractitioner"]) {
			gp = str(obj(obj(g)["identifier"]), "value")
		}
		r.result("found %s %s (NHS number %s, GP practice %s): the broker had no record and took it from the PDS", strings.Join(strs(name["given"]), " "), str(name, "family"), NHSNumber, gp)
	} else {
		r.result("nobody knows NHS number %s yet (no Spine lookup in this build)", NHSNumber)
		if resp, err = r.call(ctx, http.StatusCreated, http.MethodPost, "Patient", patient(), "If-None-Exist: identifier="+sysNHS+"|"+NHSNumber); err != nil {
			return err
		}
		r.ids.patient = "Patient/" + str(resp.JSON, "id")
		r.result("registered: Sam Taylor, NHS number %s, registered with Anytown Medical Practice", NHSNumber)
	}
	r.tl.Patient = r.ids.patient
	if r.has(opIngest) {
		return ingestEpisode(ctx, r)
	}
	enc := map[string]any{
		"resourceType":    "Encounter",
		"status":          "in-progress",
		"class":           coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
		"type":            []any{map[string]any{"text": "Police custody healthcare assessment"}},
		"subject":         ref(r.ids.patient),
		"period":          map[string]any{"start": stamp(r.arrived)},
		"reasonCode":      []any{map[string]any{"text": "Detained under PACE; healthcare assessment on arrival"}},
		"serviceProvider": orgRef(odsCustody, "Anytown Police Custody Healthcare"),
	}
	if resp, err = r.call(ctx, http.StatusCreated, http.MethodPost, "Encounter", enc); err != nil {
		return err
	}
	r.ids.encounter = "Encounter/" + str(resp.JSON, "id")
	r.result("custody episode open (in-progress)")
	r.expect("Encounter", EndpointLD, "delivered")
	return nil
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// clinicalEntries are what the custody HCP records: through the EMR's clinical-entries
// ingest where the broker has it, else as one FHIR transaction.
func clinicalEntries(ctx context.Context, r *runner) error {
	if r.has(opIngest) {
		return ingestClinical(ctx, r)
	}
	now := time.Now().Add(-90 * time.Minute)
	obs := func(code, display string, value map[string]any, category string) map[string]any {
		o := map[string]any{
			"resourceType":      "Observation",
			"status":            "final",
			"category":          []any{concept("http://terminology.hl7.org/CodeSystem/observation-category", category, "")},
			"code":              concept(sysSNOMED, code, display),
			"subject":           ref(r.ids.patient),
			"encounter":         ref(r.ids.encounter),
			"effectiveDateTime": stamp(now),
			"performer":         []any{orgRef(odsCustody, "Anytown Police Custody Healthcare")},
		}
		for k, v := range value {
			o[k] = v
		}
		return o
	}
	qty := func(v float64, unit, code string) map[string]any {
		return map[string]any{"valueQuantity": map[string]any{"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": code}}
	}
	resources := []map[string]any{
		obs("364075005", "Heart rate", qty(96, "beats/minute", "/min"), "vital-signs"),
		obs("86290005", "Respiratory rate", qty(18, "breaths/minute", "/min"), "vital-signs"),
		obs("103228002", "Blood oxygen saturation", qty(97, "%", "%"), "vital-signs"),
		obs("276885007", "Core body temperature", qty(37.1, "degree Celsius", "Cel"), "vital-signs"),
		obs("1104051000000101", "Royal College of Physicians NEWS2 (National Early Warning Score 2) total score",
			map[string]any{"valueInteger": 1}, "survey"),
		{
			"resourceType":       "Condition",
			"clinicalStatus":     concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
			"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
			"category":           []any{concept("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")},
			"code":               concept(sysSNOMED, "35489007", "Depressive disorder"),
			"subject":            ref(r.ids.patient),
			"encounter":          ref(r.ids.encounter),
			"recordedDate":       stamp(now),
		},
		{
			"resourceType":       "Condition",
			"clinicalStatus":     concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
			"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "provisional", "Provisional"),
			"category":           []any{concept("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")},
			"code":               concept(sysSNOMED, "7200002", "Alcoholism"),
			"subject":            ref(r.ids.patient),
			"encounter":          ref(r.ids.encounter),
			"recordedDate":       stamp(now),
		},
		{
			"resourceType":              "MedicationStatement",
			"status":                    "active",
			"medicationCodeableConcept": concept(sysSNOMED, "42011000001103", "Sertraline 50mg tablets"),
			"subject":                   ref(r.ids.patient),
			"context":                   ref(r.ids.encounter),
			"effectivePeriod":           map[string]any{"start": "2025-11-01"},
			"dateAsserted":              stamp(now),
			"dosage":                    []any{map[string]any{"text": "One tablet once a day"}},
		},
		{
			"resourceType":       "AllergyIntolerance",
			"clinicalStatus":     concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
			"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
			"code":               concept(sysSNOMED, "91936005", "Allergy to penicillin"),
			"patient":            ref(r.ids.patient),
			"encounter":          ref(r.ids.encounter),
			"recordedDate":       stamp(now),
		},
	}
	var entries []any
	for _, res := range resources {
		entries = append(entries, map[string]any{"resource": res, "request": map[string]any{"method": "POST", "url": res["resourceType"]}})
	}
	bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries}
	if _, err := r.call(ctx, http.StatusOK, http.MethodPost, "", bundle); err != nil {
		return err
	}
	r.result("one transaction: 4 vital signs, NEWS2 score 1, 2 problems, 1 medication, 1 allergy")
	for _, t := range []string{"Observation", "Condition", "MedicationStatement", "AllergyIntolerance"} {
		r.expect(t, EndpointLD, "delivered")
	}
	return nil
}

// count searches as the step's client (or another) and returns Bundle.total.
func (r *runner) count(ctx context.Context, clientID, path string) (int, error) {
	resp, err := r.callAs(ctx, clientID, http.StatusOK, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	n, _ := resp.JSON["total"].(float64)
	if _, ok := resp.JSON["total"]; !ok {
		n = float64(len(list(resp.JSON["entry"])))
	}
	return int(n), nil
}

func screening(ctx context.Context, r *runner) error {
	pat := strings.TrimPrefix(r.ids.patient, "Patient/")
	for _, t := range []string{"Observation", "Condition", "MedicationStatement"} {
		n, err := r.count(ctx, r.step.Client, t+"?"+query("patient", pat, "_summary", "count"))
		if err != nil {
			return err
		}
		r.result("L&D sees %d %s(s) recorded in custody (direct care: implied consent between health agencies)", n, t)
	}
	if r.has(opExtract) {
		return screeningExtract(ctx, r)
	}
	r.note("QuestionnaireResponse extraction is not available in this build: L&D records its screening and flag itself")
	qr := map[string]any{
		"resourceType": "QuestionnaireResponse",
		"status":       "completed",
		"subject":      ref(r.ids.patient),
		"encounter":    ref(r.ids.encounter),
		"authored":     stamp(time.Now().Add(-60 * time.Minute)),
		"author":       orgRef(odsLD, "Anytown Liaison and Diversion Service"),
		"item": []any{
			map[string]any{"linkId": "mental-health", "text": "Current mental health concern", "answer": []any{map[string]any{"valueBoolean": true}}},
			map[string]any{"linkId": "learning-disability", "text": "Learning disability or difficulty", "answer": []any{map[string]any{"valueBoolean": false}}},
			map[string]any{"linkId": "alcohol", "text": "Alcohol use affecting daily life", "answer": []any{map[string]any{"valueBoolean": true}}},
			map[string]any{"linkId": "housing", "text": "Housing situation", "answer": []any{map[string]any{"valueString": "Sofa surfing; at risk of homelessness"}}},
			map[string]any{"linkId": "adjustments", "text": "Reasonable adjustments needed", "answer": []any{map[string]any{"valueString": "Information in easy read; extra time to understand questions"}}},
		},
	}
	resp, err := r.call(ctx, http.StatusCreated, http.MethodPost, "QuestionnaireResponse", qr)
	if err != nil {
		return err
	}
	r.ids.assessment = "QuestionnaireResponse/" + str(resp.JSON, "id")
	r.result("screening recorded: mental health and alcohol concerns, housing need, reasonable adjustments")
	flag := map[string]any{
		"resourceType": "Flag",
		"status":       "active",
		"category":     []any{concept(sysFlagBaRS, "RA", "Reasonable Adjustment")},
		"code":         map[string]any{"text": "Needs information in easy read and extra time to understand questions"},
		"subject":      ref(r.ids.patient),
		"encounter":    ref(r.ids.encounter),
		"author":       orgRef(odsLD, "Anytown Liaison and Diversion Service"),
	}
	if _, err := r.call(ctx, http.StatusCreated, http.MethodPost, "Flag", flag); err != nil {
		return err
	}
	r.result("reasonable-adjustment flag raised; the route to probation matches it")
	r.expect("Flag", EndpointProbation, "withheld")
	return nil
}

// consent is a patient-privacy Consent permitting disclosure to one agency for a purpose.
func (r *runner) consent(actors []any, purpose string, classes ...string) map[string]any {
	var class []any
	for _, c := range classes {
		class = append(class, coding("http://hl7.org/fhir/resource-types", c, ""))
	}
	return map[string]any{
		"resourceType": "Consent",
		"status":       "active",
		"scope":        concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent"),
		"category":     []any{concept(sysActCode, "IDSCL", "information disclosure")},
		"patient":      ref(r.ids.patient),
		"dateTime":     stamp(time.Now()),
		"organization": []any{orgRef(odsLD, "Anytown Liaison and Diversion Service")},
		"policyRule":   concept(sysActCode, "OPTIN", "opt-in"),
		"provision": map[string]any{
			"type":    "permit",
			"actor":   actors,
			"action":  []any{concept("http://terminology.hl7.org/CodeSystem/consentaction", "disclose", "Disclose")},
			"purpose": []any{coding(sysActReason, purpose, "")},
			"class":   class,
		},
	}
}

// recipient is a Consent provision actor: the agency with this ODS code receives.
func recipient(ods, name string) map[string]any {
	return map[string]any{
		"role":      concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient"),
		"reference": orgRef(ods, name),
	}
}

// consentProbation records the person's agreement that L&D and probation share the
// referral and its progress with each other: neither direction is implied consent, since
// probation is not a health agency.
func consentProbation(ctx context.Context, r *runner) error {
	actors := []any{recipient(odsProbation, "Probation Service, Anytown region"), recipient(odsLD, "Anytown Liaison and Diversion Service")}
	c := r.consent(actors, "COC", "Patient", "ServiceRequest", "Task", "Flag")
	if _, err := r.call(ctx, http.StatusCreated, http.MethodPost, "Consent", c); err != nil {
		return err
	}
	r.result("permit: probation (XPRB01) and L&D (XLD001) may receive the Patient, referral, Task and flags for continuity of care")
	return nil
}

func referral(ctx context.Context, r *runner) error {
	now := time.Now()
	sr := map[string]any{
		"resourceType": "ServiceRequest",
		"status":       "active",
		"intent":       "order",
		"category":     []any{concept(sysSNOMED, "3457005", "Patient referral")},
		"code":         concept(sysSNOMED, "306206005", "Referral to service"),
		"subject":      ref(r.ids.patient),
		"encounter":    ref(r.ids.encounter),
		"authoredOn":   stamp(now),
		"requester":    orgRef(odsLD, "Anytown Liaison and Diversion Service"),
		"performer":    []any{orgRef(odsProbation, "Probation Service, Anytown region")},
		"reasonCode":   []any{map[string]any{"text": "Housing need and alcohol use; support on release"}},
		"note":         []any{map[string]any{"text": "Reasonable adjustments: easy read information, extra time."}},
	}
	task := map[string]any{
		"resourceType": "Task",
		"status":       "requested",
		"intent":       "order",
		"code":         concept("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request"),
		"focus":        ref("urn:uuid:7b1c2c8e-6f0e-4c55-9d0a-1f1f9f3a0001"),
		"for":          ref(r.ids.patient),
		"authoredOn":   stamp(now),
		"requester":    orgRef(odsLD, "Anytown Liaison and Diversion Service"),
		"owner":        orgRef(odsProbation, "Probation Service, Anytown region"),
		"description":  "Follow up the L&D referral: housing and alcohol support",
	}
	bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": "urn:uuid:7b1c2c8e-6f0e-4c55-9d0a-1f1f9f3a0001", "resource": sr, "request": map[string]any{"method": "POST", "url": "ServiceRequest"}},
		map[string]any{"fullUrl": "urn:uuid:7b1c2c8e-6f0e-4c55-9d0a-1f1f9f3a0002", "resource": task, "request": map[string]any{"method": "POST", "url": "Task"}},
	}}
	resp, err := r.call(ctx, http.StatusOK, http.MethodPost, "", bundle)
	if err != nil {
		return err
	}
	for _, v := range storedVersions(resp) {
		switch ref := refOf(v); {
		case strings.HasPrefix(ref, "ServiceRequest/"):
			r.ids.referral = ref
		case strings.HasPrefix(ref, "Task/"):
			r.ids.task = ref
		}
	}
	r.result("referral %s with its Task %s (status requested, owner probation)", r.ids.referral, r.ids.task)
	r.expect("ServiceRequest", EndpointProbation, "delivered")
	return nil
}

// setTaskStatus reads the Task and updates its status (and businessStatus) as the step's
// client, with If-Match so that a concurrent change is not overwritten.
func (r *runner) setTaskStatus(ctx context.Context, status, business string) error {
	resp, err := r.call(ctx, http.StatusOK, http.MethodGet, r.ids.task, nil)
	if err != nil {
		return err
	}
	task := resp.JSON
	was := str(task, "status")
	task["status"] = status
	if business != "" {
		task["businessStatus"] = map[string]any{"text": business}
	}
	task["lastModified"] = stamp(time.Now())
	v := str(obj(task["meta"]), "versionId")
	if _, err := r.call(ctx, http.StatusOK, http.MethodPut, r.ids.task, task, fmt.Sprintf(`If-Match: W/"%s"`, v)); err != nil {
		return err
	}
	r.result("Task %s -> %s%s", was, status, map[bool]string{true: " (" + business + ")", false: ""}[business != ""])
	r.expect("Task", EndpointLD, "delivered")
	return nil
}

func probationAccepts(ctx context.Context, r *runner) error {
	n, err := r.count(ctx, r.step.Client, "ServiceRequest?"+query("performer:identifier", sysODS+"|"+odsProbation, "status", "active"))
	if err != nil {
		return err
	}
	r.result("probation's active referrals: %d", n)
	if n != 1 {
		r.problem("probation found %d active referrals, want 1", n)
	}
	if n, err = r.count(ctx, r.step.Client, "Task?"+query("owner:identifier", sysODS+"|"+odsProbation, "status", "requested")); err != nil {
		return err
	}
	r.result("Tasks waiting for probation: %d", n)
	// Probation's scopes do not cover the clinical record at all.
	if _, err := r.call(ctx, http.StatusForbidden, http.MethodGet, "Observation?"+query("patient", strings.TrimPrefix(r.ids.patient, "Patient/")), nil); err != nil {
		return err
	}
	r.result("refused: probation has no scope for Observations (the clinical record stays with health)")
	return r.setTaskStatus(ctx, "accepted", "")
}

func probationWorks(ctx context.Context, r *runner) error {
	return r.setTaskStatus(ctx, "in-progress", "Initial appointment booked")
}

func probationCompletes(ctx context.Context, r *runner) error {
	return r.setTaskStatus(ctx, "completed", "Housing support in place; alcohol service engaged")
}

// courtReport is the L&D report to the court, typed for the court-report route.
func (r *runner) courtReport(issued time.Time, note string) map[string]any {
	c := map[string]any{
		"resourceType": "Composition",
		"status":       "final",
		"type":         concept(sysDocType, "court-report", "Liaison and diversion court report"),
		"subject":      ref(r.ids.patient),
		"encounter":    ref(r.ids.encounter),
		"date":         stamp(issued),
		"author":       []any{orgRef(odsLD, "Anytown Liaison and Diversion Service")},
		"title":        "Liaison and Diversion report to Anytown Magistrates' Court",
		"section": []any{map[string]any{
			"title": "Recommendation",
			"text": map[string]any{"status": "generated",
				"div": `<div xmlns="http://www.w3.org/1999/xhtml"><p>Depressive disorder and alcohol use; at risk of homelessness. ` +
					`Referred to probation for housing and alcohol support. Diversion to community support is recommended.</p>` + note + `</div>`},
		}},
	}
	if r.ids.report != "" {
		c["id"] = strings.TrimPrefix(r.ids.report, "Composition/")
	}
	return c
}

func (r *runner) courtSees(ctx context.Context) (int, error) {
	return r.count(ctx, "court", "Composition?"+query("subject", r.ids.patient, "type", sysDocType+"|court-report"))
}

// courtReportWithheld and courtReportDelivered write the report as a Composition where the
// broker does not build court reports itself.
func courtReportWithheld(ctx context.Context, r *runner) error {
	resp, err := r.call(ctx, http.StatusCreated, http.MethodPost, "Composition", r.courtReport(time.Now(), ""))
	if err != nil {
		return err
	}
	r.ids.report = "Composition/" + str(resp.JSON, "id")
	r.result("final court report; the court-report route matches it")
	r.expect("Composition", EndpointCourt, "withheld")
	n, err := r.courtSees(ctx)
	if err != nil {
		return err
	}
	r.result("the court searches for the report and finds %d: without the person's consent it is withheld from reads too", n)
	if n != 0 {
		r.problem("the court sees %d court reports before consent, want 0", n)
	}
	return nil
}

func courtReportDelivered(ctx context.Context, r *runner) error {
	c := r.consent([]any{recipient(odsCourt, "Anytown Magistrates' Court")}, "HLEGAL", "Patient", "Composition")
	if _, err := r.call(ctx, http.StatusCreated, http.MethodPost, "Consent", c); err != nil {
		return err
	}
	r.result("permit: disclose Patient and Composition to the court (XCRT01) for legal proceedings")
	if _, err := r.call(ctx, http.StatusOK, http.MethodPut, r.ids.report,
		r.courtReport(time.Now(), "<p>Issued again after the person consented to share it with the court.</p>")); err != nil {
		return err
	}
	r.result("the report is issued again as a new version")
	r.expect("Composition", EndpointCourt, "delivered")
	n, err := r.courtSees(ctx)
	if err != nil {
		return err
	}
	r.result("the court searches again and finds %d report(s)", n)
	if n != 1 {
		r.problem("the court sees %d court reports after consent, want 1", n)
	}
	return nil
}

func release(ctx context.Context, r *runner) error {
	if r.has(opHandback) {
		return releaseHandback(ctx, r)
	}
	resp, err := r.call(ctx, http.StatusOK, http.MethodGet, r.ids.encounter, nil)
	if err != nil {
		return err
	}
	enc := resp.JSON
	enc["status"] = "finished"
	period := obj(enc["period"])
	period["end"] = stamp(time.Now())
	enc["hospitalization"] = map[string]any{"dischargeDisposition": map[string]any{"text": "Released on bail to home address"}}
	v := str(obj(enc["meta"]), "versionId")
	if _, err := r.call(ctx, http.StatusOK, http.MethodPut, r.ids.encounter, enc, fmt.Sprintf(`If-Match: W/"%s"`, v)); err != nil {
		return err
	}
	r.result("custody episode finished: released on bail")
	r.expect("Encounter", EndpointLD, "delivered")
	r.expect("Encounter", EndpointGP, "delivered")
	return nil
}

func gpHandBack(ctx context.Context, r *runner) error {
	if gp := r.env.Receivers[EndpointGP]; gp != nil {
		for _, rec := range gp.Received() {
			for _, res := range rec.Resources {
				if str(res, "resourceType") == "Bundle" && str(res, "type") == "document" {
					r.note("the practice's system received the hand-back document: %s", describeDocument(res))
					continue
				}
				r.note("the practice's system received %s (%s)", sink.Ref(res), str(res, "status"))
			}
		}
	}
	pat := strings.TrimPrefix(r.ids.patient, "Patient/")
	for _, t := range []string{"Encounter", "Observation", "Condition", "MedicationStatement", "AllergyIntolerance"} {
		n, err := r.count(ctx, r.step.Client, t+"?"+query("patient", pat, "_summary", "count"))
		if err != nil {
			return err
		}
		r.result("the GP reads %d %s(s) of the custody episode (continuity of care)", n, t)
	}
	return nil
}

// describeDocument names a document Bundle's Composition and its sections.
func describeDocument(doc map[string]any) string {
	entries := list(doc["entry"])
	if len(entries) == 0 {
		return "an empty document"
	}
	comp := obj(obj(entries[0])["resource"])
	var sections []string
	for _, s := range list(comp["section"]) {
		sections = append(sections, str(obj(s), "title"))
	}
	return fmt.Sprintf("%q, %d entries; sections: %s", str(comp, "title"), len(entries), strings.Join(sections, ", "))
}
