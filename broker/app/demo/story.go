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

// story is the pathway, in order, through the broker's own operations (the clinical-entries
// ingest, QuestionnaireResponse extraction, the court report, the hand-back); a step whose
// operation the broker lacks reports the failed request as a problem.
func story() []scene {
	return []scene{
		{stage: StageArrival, title: "Arrival in custody: the person is looked up and the custody episode opened", client: "custody-hcp", run: arrival},
		{stage: StageSCR, title: "Summary Care Record lookup on the Spine", client: "custody-hcp", needs: opSummary, requires: "patient", run: scrLookup},
		{stage: StageClinical, title: "Clinical entries: observations, NEWS2, problems, medication, allergy", client: "custody-hcp", requires: "patient,encounter", run: ingestClinical},
		{stage: StageScreening, title: "L&D screening: the team sees the custody record and screens the person", client: "ld-team", requires: "patient,encounter", run: screening},
		{stage: StageReferral, title: "L&D assessment: the person consents to referrals; referrals to probation and housing", client: "ld-team",
			needs: opExtract, requires: "patient,encounter", run: assessmentExtract},
		{stage: StageProbation, title: "Probation pulls its referrals and accepts the Task", client: "probation", requires: "task", run: probationAccepts},
		{stage: StageProbation, title: "Probation starts work on the referral", client: "probation", requires: "task", run: probationWorks},
		{stage: StageCourt, title: "Court report from the assessment, before the person consented to share it", client: "ld-team",
			needs: opCourtReport, requires: "assessment", run: courtReportDraft},
		{stage: StageCourt, title: "The person consents; L&D issues the court report again", client: "ld-team", needs: opCourtReport, requires: "report", run: courtReportFinal},
		{stage: StageRelease, title: "Release from custody: the custody episode ends", client: "custody-hcp", requires: "encounter", run: releaseHandback},
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
	return ingestEpisode(ctx, r)
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
	return screeningExtract(ctx, r)
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

func (r *runner) courtSees(ctx context.Context) (int, error) {
	return r.count(ctx, "court", "Composition?"+query("subject", r.ids.patient, "type", sysDocType+"|court-report"))
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
