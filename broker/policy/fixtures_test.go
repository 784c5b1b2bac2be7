package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
)

// The demo pathway: patient p1 held in custody, assessed by L&D, reported to court and
// referred to probation. Dates are in 2025; the clock stands at 1 June 2025.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func demoEngine(t testing.TB) (*Engine, *config.Config) {
	t.Helper()
	cfg, err := config.Demo()
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, func() time.Time { return testNow }), cfg
}

// clientReq builds the request a configured client makes.
func clientReq(t testing.TB, cfg *config.Config, client, purpose string) Request {
	t.Helper()
	_, ag, ok := cfg.Client(client)
	if !ok {
		t.Fatalf("no client %s", client)
	}
	return Request{Agency: Agency{ID: ag.ID, Kind: ag.Kind, ODS: ag.ODS}, ClientID: client, Purpose: purpose}
}

// agencyReq builds a request made by the broker itself on an agency's behalf (routing).
func agencyReq(t testing.TB, cfg *config.Config, agency, purpose string) Request {
	t.Helper()
	ag, ok := cfg.Agency(agency)
	if !ok {
		t.Fatalf("no agency %s", agency)
	}
	return Request{Agency: Agency{ID: ag.ID, Kind: ag.Kind, ODS: ag.ODS}, Purpose: purpose}
}

func parse(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad fixture: %v\n%s", err, s)
	}
	return m
}

const (
	fxPatient = `{"resourceType":"Patient","id":"p1","meta":{"source":"XCUST01"},
		"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],
		"name":[{"family":"Smith","given":["Jo"]}],"birthDate":"1990-01-01",
		"address":[{"line":["1 High Street"],"city":"Anytown","postalCode":"AT1 1AA"}],
		"telecom":[{"system":"phone","value":"01234 567890"}],
		"generalPractitioner":[{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"XGP001"}}]}`
	fxPatientR = `{"resourceType":"Patient","id":"p1",
		"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},
		"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jo Smith, 1 High Street</div>"},
		"name":[{"family":"Smith","given":["Jo"]}],"birthDate":"1990-01-01",
		"address":[{"line":["1 High Street"],"city":"Anytown"}],
		"telecom":[{"system":"phone","value":"01234 567890"}],
		"generalPractitioner":[{"reference":"Organization/gp"}],
		"contact":[{"name":{"family":"Smith"},"address":{"line":["2 Low Road"]},"telecom":[{"system":"phone","value":"0777"}]}]}`
	fxPatientV = `{"resourceType":"Patient","id":"p1",
		"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"V"}]},
		"name":[{"family":"Smith"}],"address":[{"city":"Anytown"}]}`
	fxObs = `{"resourceType":"Observation","id":"o1","meta":{"source":"https://custody.example/fhir#custody-hcp"},
		"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2025-03-01T10:00:00Z"}`
	fxObsPSY = `{"resourceType":"Observation","id":"o2","meta":{"source":"XLD001",
		"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
		"status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"35489007"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2025-03-01T11:00:00Z"}`
	fxReport = `{"resourceType":"Composition","id":"c1","meta":{"source":"ld-team"},"status":"final",
		"type":{"coding":[{"system":"http://snomed.info/sct","code":"371530004","display":"Clinical consultation report"}]},
		"subject":{"reference":"Patient/p1"},"date":"2025-03-02","author":[{"reference":"Organization/ld-team"}],"title":"L&D court report"}`
	fxReportLate = `{"resourceType":"Composition","id":"c2","meta":{"source":"ld-team"},"status":"final",
		"type":{"coding":[{"system":"http://snomed.info/sct","code":"371530004"}]},
		"subject":{"reference":"Patient/p1"},"date":"2025-05-01","author":[{"reference":"Organization/ld-team"}],"title":"L&D court report (update)"}`
	fxReportV = `{"resourceType":"Composition","id":"c3","meta":{"source":"ld-team",
		"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"V"}]},"status":"final",
		"type":{"coding":[{"system":"http://snomed.info/sct","code":"371530004"}]},
		"subject":{"reference":"Patient/p1"},"date":"2025-03-02","author":[{"reference":"Organization/ld-team"}],"title":"Safeguarding"}`
	fxReferral = `{"resourceType":"ServiceRequest","id":"sr1","meta":{"source":"ld-team"},"status":"active","intent":"order",
		"code":{"coding":[{"system":"http://snomed.info/sct","code":"306206005","display":"Referral to service"}]},
		"subject":{"reference":"Patient/p1"},"authoredOn":"2025-03-02","performer":[{"reference":"Organization/probation"}]}`
	fxReferralDrug = `{"resourceType":"ServiceRequest","id":"sr2","meta":{"source":"ld-team"},"status":"active","intent":"order",
		"code":{"coding":[{"system":"http://snomed.info/sct","code":"201521000000104","display":"Referral to drug service"}]},
		"subject":{"reference":"Patient/p1"},"authoredOn":"2025-03-02"}`
	fxReferralSUD = `{"resourceType":"ServiceRequest","id":"sr3","meta":{"source":"ld-team",
		"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}]},"status":"active","intent":"order",
		"code":{"coding":[{"system":"http://snomed.info/sct","code":"306206005"}]},
		"subject":{"reference":"Patient/p1"},"authoredOn":"2025-03-02"}`
	fxReferralPSY = `{"resourceType":"ServiceRequest","id":"sr4","meta":{"source":"ld-team",
		"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},"status":"active","intent":"order",
		"code":{"coding":[{"system":"http://snomed.info/sct","code":"306206005"}]},
		"subject":{"reference":"Patient/p1"},"authoredOn":"2025-03-02"}`
	fxOtherPatientObs = `{"resourceType":"Observation","id":"o9","status":"final","code":{"text":"x"},
		"subject":{"reference":"Patient/p2"},"effectiveDateTime":"2025-03-01"}`
)

// consentJSON builds a Consent for p1 with the given status, policyRule codes and provision.
func consentJSON(id, status, policyRule, provision string) string {
	s := `{"resourceType":"Consent","id":"` + id + `","status":"` + status + `",
		"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IDSCL"}]}],
		"patient":{"reference":"Patient/p1"},"dateTime":"2025-03-01"`
	if policyRule != "" {
		s += `,"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + policyRule + `"}]}`
	} else {
		s += `,"policy":[{"uri":"https://www.england.nhs.uk/ld-information-sharing"}]`
	}
	if provision != "" {
		s += `,"provision":` + provision
	}
	return s + "}"
}

const (
	courtActor     = `{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"XCRT01"}}}`
	probationActor = `{"role":{"coding":[{"system":"https://hjbroker.dev/fhir/CodeSystem/agency-kind","code":"probation"}]}}`
	discloseAction = `{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"disclose"}]}`
	hlegal         = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HLEGAL"}`
	coc            = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"COC"}`
)

func classOf(types ...string) string {
	s := "["
	for i, t := range types {
		if i > 0 {
			s += ","
		}
		s += `{"system":"http://hl7.org/fhir/resource-types","code":"` + t + `"}`
	}
	return s + "]"
}

var (
	// The person agrees that L&D may share court reports with the court.
	fxConsentCourt = consentJSON("court-ok", "active", "OPTIN",
		`{"type":"permit","actor":[`+courtActor+`],"action":[`+discloseAction+`],"purpose":[`+hlegal+`],"class":`+classOf("Composition", "Patient")+`}`)
	// A court order recorded as the legal basis.
	fxLegalBasis = consentJSON("court-order", "active", "HLEGAL", "")
	// The person agrees to share referrals with probation, except the drug service referral.
	fxConsentProbation = consentJSON("probation-ok", "active", "OPTIN",
		`{"type":"permit","actor":[`+probationActor+`],"action":[`+discloseAction+`],"purpose":[`+coc+`],"class":`+classOf("ServiceRequest", "Patient")+`,
		  "provision":[{"type":"deny","code":[{"coding":[{"system":"http://snomed.info/sct","code":"201521000000104"}]}]}]}`)
	// Court reports about the first quarter only.
	fxConsentCourtQ1 = consentJSON("court-q1", "active", "OPTIN",
		`{"type":"permit","actor":[`+courtActor+`],"purpose":[`+hlegal+`],"class":`+classOf("Composition")+`,"dataPeriod":{"start":"2025-01-01","end":"2025-03-31"}}`)
	// Consent given for a period that has ended.
	fxConsentCourtExpired = consentJSON("court-old", "active", "OPTIN",
		`{"type":"permit","period":{"start":"2024-01-01","end":"2025-01-01"},"actor":[`+courtActor+`],"class":`+classOf("Composition")+`}`)
	// The person objects to sharing with the GP.
	fxDenyGP = consentJSON("no-gp", "active", "OPTOUT",
		`{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/gp"}}]}`)
	// The person objects to all sharing.
	fxDenyAll = consentJSON("no-sharing", "active", "OPTOUT", `{"type":"deny"}`)
)
