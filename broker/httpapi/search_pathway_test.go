package httpapi_test

import (
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// pathwayFixture holds the medication records and Lists of a custody episode, with every
// element the R4 search parameters of MedicationRequest, MedicationAdministration and List
// index set on one resource and different on the other.
var pathwayFixture = []string{
	`{"resourceType":"Patient","id":"mp1","name":[{"family":"Ward"}]}`,
	`{"resourceType":"Patient","id":"mp2","name":[{"family":"Hale"}]}`,
	`{"resourceType":"Organization","id":"morg","name":"Custody Pharmacy"}`,
	`{"resourceType":"Practitioner","id":"mpr","name":[{"family":"Shah"}]}`,
	`{"resourceType":"Encounter","id":"menc","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/mp1"}}`,
	`{"resourceType":"MedicationRequest","id":"mr1","status":"active","intent":"order","priority":"urgent",` +
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/medicationrequest-category","code":"inpatient"}]}],` +
		`"medicationCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"322236009","display":"Paracetamol 500mg tablets"}]},` +
		`"subject":{"reference":"Patient/mp1"},"encounter":{"reference":"Encounter/menc"},"authoredOn":"2024-01-10T09:30:00Z",` +
		`"requester":{"reference":"Practitioner/mpr"},"performer":{"reference":"Practitioner/mpr"},` +
		`"performerType":{"coding":[{"system":"http://snomed.info/sct","code":"224535009","display":"Registered nurse"}]},` +
		`"dosageInstruction":[{"text":"One tablet","timing":{"event":["2024-01-11T08:00:00Z"]}}],` +
		`"dispenseRequest":{"performer":{"reference":"Organization/morg"}}}`,
	`{"resourceType":"MedicationRequest","id":"mr2","status":"completed","intent":"plan","priority":"routine",` +
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/medicationrequest-category","code":"community"}]}],` +
		`"medicationCodeableConcept":{"text":"Methadone"},"subject":{"reference":"Patient/mp2"},"authoredOn":"2024-03-01",` +
		`"requester":{"reference":"Organization/morg"}}`,
	`{"resourceType":"MedicationAdministration","id":"ma1","status":"completed",` +
		`"medicationCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"322236009"}]},` +
		`"subject":{"reference":"Patient/mp1"},"context":{"reference":"Encounter/menc"},"effectiveDateTime":"2024-01-11T08:05:00Z",` +
		`"performer":[{"actor":{"reference":"Practitioner/mpr"}}],"request":{"reference":"MedicationRequest/mr1"},"device":[{"reference":"Device/dev1"}],` +
		`"reasonCode":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/reason-medication-given","code":"b"}]}]}`,
	`{"resourceType":"MedicationAdministration","id":"ma2","status":"not-done",` +
		`"statusReason":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/reason-medication-not-given","code":"a"}]}],` +
		`"medicationCodeableConcept":{"text":"Methadone"},"subject":{"reference":"Patient/mp2"},` +
		`"effectivePeriod":{"start":"2024-03-01T08:00:00Z","end":"2024-03-01T09:00:00Z"}}`,
	`{"resourceType":"List","id":"l1","status":"current","mode":"working","title":"Custody medication",` +
		`"subject":{"reference":"Patient/mp1"},"source":{"reference":"Practitioner/mpr"},` +
		`"entry":[{"item":{"reference":"MedicationAdministration/ma1"}}],"note":[{"text":"Checked with the GP surgery"}]}`,
	`{"resourceType":"List","id":"l2","status":"retired","mode":"snapshot","title":"Allergies",` +
		`"subject":{"reference":"Patient/mp2"},"source":{"reference":"Patient/mp2"},` +
		`"emptyReason":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/list-empty-reason","code":"nilknown"}]}}`,
}

// TestSearchPathwayParameters searches by each R4 parameter of MedicationRequest,
// MedicationAdministration and List that the registry once lacked; an unknown parameter
// is ignored in lenient handling and so would match both resources of a type.
func TestSearchPathwayParameters(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		var entries []map[string]any
		for _, r := range pathwayFixture {
			m := raw(t, r)
			entries = append(entries, ent("", "PUT", m["resourceType"].(string)+"/"+m["id"].(string), m))
		}
		s.Do("POST", "", bundle("transaction", entries...)).Want(t, 200)
		mr1, mr2 := "MedicationRequest/mr1", "MedicationRequest/mr2"
		ma1, ma2 := "MedicationAdministration/ma1", "MedicationAdministration/ma2"
		l1, l2 := "List/l1", "List/l2"
		runSearchCases(t, s, []searchCase{
			{"MedicationRequest?intent=order", []string{mr1}},
			{"MedicationRequest?intent=plan,order", []string{mr1, mr2}},
			{"MedicationRequest?intent:not=order", []string{mr2}},
			{"MedicationRequest?category=http://terminology.hl7.org/CodeSystem/medicationrequest-category|inpatient", []string{mr1}},
			{"MedicationRequest?priority=routine", []string{mr2}},
			{"MedicationRequest?authoredon=ge2024-02-01", []string{mr2}},
			{"MedicationRequest?authoredon=2024-01-10", []string{mr1}},
			{"MedicationRequest?date=2024-01-11", []string{mr1}},
			{"MedicationRequest?encounter=Encounter/menc", []string{mr1}},
			{"MedicationRequest?intended-dispenser=Organization/morg", []string{mr1}},
			{"MedicationRequest?intended-performer=Practitioner/mpr", []string{mr1}},
			{"MedicationRequest?intended-performertype=http://snomed.info/sct|224535009", []string{mr1}},
			{"MedicationRequest?requester=Organization/morg", []string{mr2}},
			{"MedicationRequest?subject=Patient/mp2", []string{mr2}},
			{"MedicationRequest?intent=order&status=active&patient=Patient/mp1", []string{mr1}},
			{"MedicationAdministration?context=Encounter/menc", []string{ma1}},
			{"MedicationAdministration?device=Device/dev1", []string{ma1}},
			{"MedicationAdministration?effective-time=2024-03-01", []string{ma2}},
			{"MedicationAdministration?effective-time=lt2024-02-01", []string{ma1}},
			{"MedicationAdministration?performer=Practitioner/mpr", []string{ma1}},
			{"MedicationAdministration?reason-given=b", []string{ma1}},
			{"MedicationAdministration?reason-not-given=http://terminology.hl7.org/CodeSystem/reason-medication-not-given|a", []string{ma2}},
			{"MedicationAdministration?request=MedicationRequest/mr1", []string{ma1}},
			{"MedicationAdministration?subject=Patient/mp2", []string{ma2}},
			{"List?status=current", []string{l1}},
			{"List?title=custody", []string{l1}},
			{"List?title:exact=Allergies", []string{l2}},
			{"List?notes=checked", []string{l1}},
			{"List?source=Practitioner/mpr", []string{l1}},
			{"List?item=MedicationAdministration/ma1", []string{l1}},
			{"List?empty-reason=nilknown", []string{l2}},
			{"List?subject=Patient/mp2", []string{l2}},
		})
	})
}
