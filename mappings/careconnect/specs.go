package careconnect

import (
	"fmt"
	"strings"
)

// gpcExt is a GP Connect STU3 extension URL.
func gpcExt(name string) string { return gpcSD + "Extension-CareConnect-GPC-" + name + "-1" }

// ccExt is a CareConnect STU3 extension URL.
func ccExt(name string) string { return ccSD + "Extension-CareConnect-" + name + "-1" }

func keepAll(urls ...string) map[string]rule {
	m := map[string]rule{}
	for _, u := range urls {
		m[u] = keepExtension
	}
	return m
}

func with(m map[string]rule, url string, r rule) map[string]rule {
	m[url] = r
	return m
}

// specs lists, per supported STU3 resource type, every element the mapping knows.
var specs = map[string]spec{
	"Patient": {profile: "UKCore-Patient", elements: map[string]rule{
		"active": keep, "name": keep, "telecom": keep, "gender": keep, "birthDate": keep, "deceased[x]": keep,
		"address": keep, "maritalStatus": keep, "multipleBirth[x]": keep, "contact": keep, "communication": keep,
		"generalPractitioner": keep, "managingOrganization": keep,
		"photo":  drop("photographs are not carried into the custody record"),
		"animal": drop("not a human patient element"),
		"link":   drop("links to other patient records are not carried over"),
	}, extensions: keepAll(ccExt("EthnicCategory"), ccExt("ReligiousAffiliation"), ccExt("ResidentialStatus"),
		ccExt("TreatmentCategory"), ccExt("NHSCommunication"), ccExt("DeathNotificationStatus"), ccExt("BirthPlace"),
		gpcExt("RegistrationDetails"), "http://hl7.org/fhir/StructureDefinition/patient-cadavericDonor")},

	"Organization": {profile: "UKCore-Organization", elements: map[string]rule{
		"active": keep, "type": keep, "name": keep, "alias": keep, "telecom": keep, "address": keep, "partOf": keep,
		"contact": keep, "endpoint": drop("endpoints are resolved through the broker's own directory"),
	}, extensions: keepAll(ccExt("MainLocation"), "http://hl7.org/fhir/StructureDefinition/organization-period")},

	"Practitioner": {profile: "UKCore-Practitioner", elements: map[string]rule{
		"active": keep, "name": keep, "telecom": keep, "address": keep, "gender": keep, "birthDate": keep,
		"qualification": keep, "communication": keep,
		"photo": drop("photographs are not carried into the custody record"),
	}, extensions: keepAll(ccExt("NHSCommunication"))},

	"PractitionerRole": {profile: "UKCore-PractitionerRole", elements: map[string]rule{
		"active": keep, "period": keep, "practitioner": keep, "organization": keep, "code": keep, "specialty": keep,
		"location": drop("locations are not part of the structured record import"),
		"telecom":  keep, "availableTime": keep, "notAvailable": keep, "availabilityExceptions": keep,
		"healthcareService": drop("healthcare services are not part of the structured record import"),
		"endpoint":          drop("endpoints are resolved through the broker's own directory"),
	}},

	"Condition": {profile: "UKCore-Condition", elements: map[string]rule{
		"clinicalStatus": codeToConcept("http://terminology.hl7.org/CodeSystem/condition-clinical",
			same("active", "recurrence", "inactive", "remission", "resolved")),
		"verificationStatus": codeToConcept("http://terminology.hl7.org/CodeSystem/condition-ver-status",
			map[string]string{"provisional": "provisional", "differential": "differential", "confirmed": "confirmed",
				"refuted": "refuted", "entered-in-error": "entered-in-error", "unknown": ""}),
		"category": keep, "severity": keep, "code": keep, "bodySite": keep, "subject": keep,
		"context":      to("encounter"),
		"onset[x]":     keep,
		"abatement[x]": conditionAbatement,
		"assertedDate": to("recordedDate"),
		"asserter":     keep, "stage": toList, "evidence": keep, "note": keep,
	}, extensions: keepAll(gpcExt("ProblemSignificance"), gpcExt("ActualProblem"), gpcExt("RelatedProblemHeader"),
		gpcExt("RelatedClinicalContent"), ccExt("ConditionEpisode"))},

	"AllergyIntolerance": {profile: "UKCore-AllergyIntolerance", elements: map[string]rule{
		"clinicalStatus": codeToConcept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
			same("active", "inactive", "resolved")),
		"verificationStatus": codeToConcept("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
			same("unconfirmed", "confirmed", "refuted", "entered-in-error")),
		"type": keep, "category": keep, "criticality": keep, "code": keep, "patient": keep, "onset[x]": keep,
		"assertedDate": to("recordedDate"),
		"recorder":     keep, "asserter": keep, "lastOccurrence": keep, "note": keep, "reaction": keep,
	}, extensions: keepAll(ccExt("AllergyIntoleranceEnd"), gpcExt("Encounter"), ccExt("Evidence"))},

	"MedicationStatement": {profile: "UKCore-MedicationStatement", elements: map[string]rule{
		"basedOn": keep, "partOf": keep, "context": keep, "status": keep, "category": keep, "medication[x]": keep,
		"effective[x]": keep, "dateAsserted": keep, "informationSource": keep, "subject": keep, "derivedFrom": keep,
		"taken":          statementTaken,
		"reasonNotTaken": to("statusReason"),
		"reasonCode":     keep, "reasonReference": keep, "note": keep,
		"dosage": dosages,
	}, extensions: with(keepAll(gpcExt("MedicationStatementPrescribingAgency"), ccExt("MedicationStatementLastIssueDate")),
		gpcExt("MedicationStatementLastIssueDate"), renameExtension(ukSD+"Extension-UKCore-MedicationStatementLastIssueDate"))},

	"MedicationRequest": {profile: "UKCore-MedicationRequest", elements: map[string]rule{
		"basedOn": keep, "groupIdentifier": keep, "status": keep, "intent": keep, "category": toList, "priority": keep,
		"medication[x]": keep, "subject": keep, "context": to("encounter"), "supportingInformation": keep,
		"authoredOn": keep, "requester": requestRequester, "recorder": keep, "reasonCode": keep, "reasonReference": keep,
		"note": keep, "dosageInstruction": dosages, "dispenseRequest": keep, "substitution": requestSubstitution,
		"priorPrescription": keep, "detectedIssue": keep, "eventHistory": keep,
		"definition": drop("STU3 definition has no R4 equivalent (R4 instantiates a canonical, not a reference)"),
	}, extensions: keepAll(gpcExt("MedicationRepeatInformation"), gpcExt("PrescriptionType"), gpcExt("MedicationStatusReason"),
		ccExt("MedicationRepeatInformation"), ccExt("PrescriptionType"))},

	"Medication": {profile: "UKCore-Medication", elements: map[string]rule{
		"code": keep, "status": keep, "manufacturer": keep, "form": keep,
		"isBrand":          drop("R4 Medication has no isBrand"),
		"isOverTheCounter": drop("R4 Medication has no isOverTheCounter"),
		"ingredient":       medicationIngredient,
		"package":          medicationPackage,
	}},

	"Observation": {profile: "UKCore-Observation", elements: map[string]rule{
		"basedOn": keep, "status": keep, "category": keep, "code": keep, "subject": keep, "context": to("encounter"),
		"effective[x]": keep, "issued": keep, "performer": keep, "value[x]": keep, "dataAbsentReason": keep,
		"interpretation": toList, "comment": observationComment, "bodySite": keep, "method": keep, "specimen": keep,
		"device": keep, "referenceRange": keep, "related": observationRelated, "component": observationComponents,
	}},

	"List": {profile: "UKCore-List", elements: map[string]rule{
		"status": keep, "mode": keep, "title": keep, "code": keep, "subject": keep, "encounter": keep, "date": keep,
		"source": keep, "orderedBy": keep, "note": keep, "entry": keep, "emptyReason": keep,
	}, extensions: with(keepAll(gpcExt("ClinicalSetting")), gpcListWarning, listWarning)},
}

func conditionAbatement(c *conv, out map[string]any, key string, v any, path string) {
	if key == "abatementBoolean" {
		c.warn(path, "R4 has no abatementBoolean; the clinical status says whether the condition has abated")
		return
	}
	out[key] = c.value(v, path)
}

// statementTaken: R4 has no MedicationStatement.taken; "n" becomes status not-taken.
func statementTaken(c *conv, out map[string]any, key string, v any, path string) {
	switch v {
	case "n":
		out["status"] = "not-taken"
	case "y":
		// Taken is what an active or completed statement says already.
	case "unk", "na":
		c.warn(path, "taken %q has no R4 equivalent; left out", v)
	default:
		c.fail("code-invalid", path, "%v is not an STU3 MedicationStatement.taken code (y, n, unk, na)", v)
	}
}

// dosages converts STU3 Dosage: dose[x] and rate[x] move into R4 doseAndRate.
func dosages(c *conv, out map[string]any, key string, v any, path string) {
	list, _ := v.([]any)
	conv := make([]any, 0, len(list))
	for i, x := range list {
		d, _ := x.(map[string]any)
		p := fmt.Sprintf("%s[%d]", path, i)
		r4 := map[string]any{}
		dr := map[string]any{}
		for _, k := range sortedKeys(d) {
			val := d[k]
			switch {
			case k == "doseSimpleQuantity":
				dr["doseQuantity"] = c.value(val, p+"."+k)
			case k == "rateSimpleQuantity":
				dr["rateQuantity"] = c.value(val, p+"."+k)
			case k == "doseRange" || k == "doseQuantity" || k == "rateRatio" || k == "rateRange" || k == "rateQuantity":
				dr[k] = c.value(val, p+"."+k)
			case k == "sequence" || k == "text" || k == "additionalInstruction" || k == "patientInstruction" || k == "timing" ||
				strings.HasPrefix(k, "asNeeded") || k == "site" || k == "route" || k == "method" ||
				k == "maxDosePerPeriod" || k == "maxDosePerAdministration" || k == "maxDosePerLifetime" || k == "extension" || k == "_text":
				r4[k] = c.value(val, p+"."+k)
			default:
				c.fail("not-supported", p+"."+k, "STU3 Dosage.%s is not supported by this mapping", k)
			}
		}
		if len(dr) > 0 {
			r4["doseAndRate"] = []any{dr}
		}
		conv = append(conv, r4)
	}
	out[key] = conv
}

// requestRequester: STU3 requester.agent is R4 requester; onBehalfOf has no place.
func requestRequester(c *conv, out map[string]any, key string, v any, path string) {
	m, _ := v.(map[string]any)
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch k {
		case "agent":
			out["requester"] = c.value(val, path+".agent")
		case "onBehalfOf":
			c.warn(path+".onBehalfOf", "R4 MedicationRequest.requester has no onBehalfOf; the requesting organisation is left out")
		default:
			c.fail("not-supported", path+"."+k, "STU3 MedicationRequest.requester.%s is not supported", k)
		}
	}
}

// requestSubstitution: STU3 substitution.allowed (boolean) is R4 allowedBoolean.
func requestSubstitution(c *conv, out map[string]any, key string, v any, path string) {
	m, _ := v.(map[string]any)
	r4 := map[string]any{}
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch k {
		case "allowed":
			r4["allowedBoolean"] = val
		case "reason":
			r4["reason"] = c.value(val, path+".reason")
		default:
			c.fail("not-supported", path+"."+k, "STU3 MedicationRequest.substitution.%s is not supported", k)
		}
	}
	out[key] = r4
}

// medicationIngredient: STU3 amount is R4 strength.
func medicationIngredient(c *conv, out map[string]any, key string, v any, path string) {
	list, _ := v.([]any)
	r4 := make([]any, 0, len(list))
	for i, x := range list {
		m, _ := x.(map[string]any)
		p := fmt.Sprintf("%s[%d]", path, i)
		ing := map[string]any{}
		for _, k := range sortedKeys(m) {
			val := m[k]
			switch {
			case strings.HasPrefix(k, "item") || k == "isActive":
				ing[k] = c.value(val, p+"."+k)
			case k == "amount":
				ing["strength"] = c.value(val, p+"."+k)
			default:
				c.fail("not-supported", p+"."+k, "STU3 Medication.ingredient.%s is not supported", k)
			}
		}
		r4 = append(r4, ing)
	}
	out[key] = r4
}

// medicationPackage: only its batches have an R4 place (Medication.batch, first batch).
func medicationPackage(c *conv, out map[string]any, key string, v any, path string) {
	m, _ := v.(map[string]any)
	for _, k := range sortedKeys(m) {
		val := m[k]
		if k != "batch" {
			c.warn(path+"."+k, "R4 Medication has no package; package.%s is left out", k)
			continue
		}
		list, _ := val.([]any)
		if len(list) > 1 {
			c.warn(path+".batch", "R4 Medication holds one batch; only the first is kept")
		}
		if len(list) > 0 {
			out["batch"] = c.value(list[0], path+".batch[0]")
		}
	}
}

// toList: STU3 0..1 elements that R4 repeats (Condition.stage, MedicationRequest.category,
// Observation.interpretation).
func toList(c *conv, out map[string]any, key string, v any, path string) {
	out[key] = []any{c.value(v, path)}
}

func observationComment(c *conv, out map[string]any, key string, v any, path string) {
	out["note"] = []any{map[string]any{"text": v}}
}

// observationRelated: has-member and derived-from become hasMember and derivedFrom.
func observationRelated(c *conv, out map[string]any, key string, v any, path string) {
	list, _ := v.([]any)
	for i, x := range list {
		m, _ := x.(map[string]any)
		p := fmt.Sprintf("%s[%d]", path, i)
		target := c.value(m["target"], p+".target")
		switch m["type"] {
		case "has-member":
			l, _ := out["hasMember"].([]any)
			out["hasMember"] = append(l, target)
		case "derived-from":
			l, _ := out["derivedFrom"].([]any)
			out["derivedFrom"] = append(l, target)
		default:
			c.warn(p, "related type %v has no R4 element; left out", m["type"])
		}
	}
}

func observationComponents(c *conv, out map[string]any, key string, v any, path string) {
	list, _ := v.([]any)
	r4 := make([]any, 0, len(list))
	for i, x := range list {
		m, _ := x.(map[string]any)
		comp := c.value(m, fmt.Sprintf("%s[%d]", path, i)).(map[string]any)
		if in, ok := comp["interpretation"].(map[string]any); ok {
			comp["interpretation"] = []any{in}
		}
		r4 = append(r4, comp)
	}
	out[key] = r4
}

// listWarning turns the GP Connect list warning (a code) into UK Core's (a CodeableConcept
// of UKCore-ListWarningCode), and tells the reader the list may be incomplete.
func listWarning(c *conv, out map[string]any, key string, v any, path string) {
	m, _ := v.(map[string]any)
	code, _ := m["valueCode"].(string)
	display := map[string]string{
		"confidential-items":   "Confidential Items",
		"data-in-transit":      "Data in Transit",
		"data-awaiting-filing": "Data Awaiting Filing",
	}[code]
	if display == "" {
		c.fail("code-invalid", path+".valueCode", "%q is not a list warning code (confidential-items, data-in-transit, data-awaiting-filing)", code)
		return
	}
	out[key] = map[string]any{"url": ukListWarning, "valueCodeableConcept": cc(ukListWarningCS, code, display)}
	c.warn(path, "the GP record list may be incomplete: %s", map[string]string{
		"confidential-items":   "items were withheld for confidentiality or at the patient's request",
		"data-in-transit":      "some data is in transit from a previous practice",
		"data-awaiting-filing": "some data is awaiting filing at the practice",
	}[code])
}
