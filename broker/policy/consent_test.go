package policy

import (
	"testing"
)

// TestConsentProvisions exercises each provision criterion through Decide for the court,
// whose rule requires consent: the report is disclosed only if the Consent permits.
func TestConsentProvisions(t *testing.T) {
	e, cfg := demoEngine(t)
	court := clientReq(t, cfg, "court", "HLEGAL")
	permit := func(body string) string { return consentJSON("c", "active", "OPTIN", `{"type":"permit",`+body+`}`) }
	role := `"role":{"coding":[{"code":"IRCP"}]}`
	cases := []struct {
		name     string
		consent  string
		resource string
		want     bool
	}{
		{"actor Organization/<id>", permit(`"actor":[{` + role + `,"reference":{"reference":"Organization/court"}}]`), fxReport, true},
		{"actor Organization/<ODS>, absolute", permit(`"actor":[{` + role + `,"reference":{"reference":"https://ods.example/fhir/Organization/XCRT01"}}]`), fxReport, true},
		{"actor conditional ODS reference", permit(`"actor":[{` + role + `,"reference":{"reference":"Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|XCRT01"}}]`), fxReport, true},
		{"actor ODS identifier", permit(`"actor":[` + courtActor + `]`), fxReport, true},
		{"actor agency-kind role", permit(`"actor":[{"role":{"coding":[{"system":"https://hjbroker.dev/fhir/CodeSystem/agency-kind","code":"court"}]}}]`), fxReport, true},
		{"actor another organisation", permit(`"actor":[{` + role + `,"reference":{"reference":"Organization/probation"}}]`), fxReport, false},
		{"actor another kind", permit(`"actor":[{"role":{"coding":[{"system":"https://hjbroker.dev/fhir/CodeSystem/agency-kind","code":"probation"}]}}]`), fxReport, false},
		{"actor practitioner is not resolved for a permit", permit(`"actor":[{` + role + `,"reference":{"reference":"Practitioner/x"}}]`), fxReport, false},
		{"action access", permit(`"action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"access"}]}]`), fxReport, true},
		{"action collect only", permit(`"action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"collect"}]}]`), fxReport, false},
		{"purpose matches", permit(`"purpose":[` + hlegal + `]`), fxReport, true},
		{"purpose mismatch", permit(`"purpose":[` + coc + `]`), fxReport, false},
		{"class profile URL", permit(`"class":[{"code":"https://fhir.hl7.org.uk/StructureDefinition/UKCore-Composition"}]`),
			`{"resourceType":"Composition","id":"c1","meta":{"profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Composition"]},"subject":{"reference":"Patient/p1"}}`, true},
		{"class other type", permit(`"class":` + classOf("Observation")), fxReport, false},
		{"code matches the Composition type", permit(`"code":[{"coding":[{"system":"http://snomed.info/sct","code":"371530004"}]}]`), fxReport, true},
		{"code mismatch", permit(`"code":[{"coding":[{"system":"http://snomed.info/sct","code":"1"}]}]`), fxReport, false},
		{"securityLabel matches", permit(`"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]`),
			`{"resourceType":"Composition","id":"c1","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},"subject":{"reference":"Patient/p1"}}`, true},
		{"securityLabel absent from resource", permit(`"securityLabel":[{"code":"PSY"}]`), fxReport, false},
		{"data instance", permit(`"data":[{"meaning":"instance","reference":{"reference":"Composition/c1"}}]`), fxReport, true},
		{"data instance other", permit(`"data":[{"meaning":"instance","reference":{"reference":"Composition/c2"}}]`), fxReport, false},
		{"data authoredby", permit(`"data":[{"meaning":"authoredby","reference":{"reference":"Organization/ld-team"}}]`), fxReport, true},
		{"data dependents", permit(`"data":[{"meaning":"dependents","reference":{"reference":"Patient/p1"}}]`), fxReport, true},
		{"period current", permit(`"period":{"start":"2025-05-31T00:00:00Z","end":"2025-06-02"}`), fxReport, true},
		{"period not yet started", permit(`"period":{"start":"2025-07"}`), fxReport, false},
		{"period ended the day before", permit(`"period":{"end":"2025-05-31"}`), fxReport, false},
		{"dataPeriod whole year", permit(`"dataPeriod":{"start":"2025","end":"2025"}`), fxReport, true},
		{"dataPeriod without a resource date does not permit", permit(`"dataPeriod":{"start":"2025"}`),
			`{"resourceType":"Composition","id":"c9","subject":{"reference":"Patient/p1"}}`, false},
		{"nested deny without a resource date applies", permit(`"provision":[{"type":"deny","dataPeriod":{"start":"2020","end":"2021"}}]`),
			`{"resourceType":"Composition","id":"c9","subject":{"reference":"Patient/p1"}}`, false},
		{"nested deny outside its dataPeriod", permit(`"provision":[{"type":"deny","dataPeriod":{"start":"2020","end":"2021"}}]`), fxReport, true},
		{"deny with permit exception", consentJSON("c", "active", "OPTOUT", `{"type":"deny","provision":[{"type":"permit","actor":[`+courtActor+`],"class":`+classOf("Composition")+`}]}`), fxReport, true},
		{"permit within deny within permit", consentJSON("c", "active", "OPTIN", `{"type":"permit","provision":[{"type":"deny","class":`+classOf("Composition")+`,"provision":[{"type":"permit","data":[{"meaning":"instance","reference":{"reference":"Composition/c1"}}]}]}]}`), fxReport, true},
		{"sibling exceptions: deny wins", permit(`"provision":[{"type":"permit","purpose":[` + hlegal + `]},{"type":"deny","class":` + classOf("Composition") + `}]`), fxReport, false},
		{"no provision, OPTIN policy", consentJSON("c", "active", "OPTIN", ""), fxReport, true},
		{"no provision, OPTOUT policy", consentJSON("c", "active", "OPTOUT", ""), fxReport, false},
		{"no provision, unknown policy", consentJSON("c", "active", "", ""), fxReport, false},
		{"root without type takes the policy", consentJSON("c", "active", "OPTIN", `{"purpose":[`+hlegal+`]}`), fxReport, true},
		{"another patient's consent", `{"resourceType":"Consent","id":"x","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"patient":{"reference":"Patient/p2"},"policyRule":{"coding":[{"code":"OPTIN"}]}}`, fxReport, false},
		{"treatment scope does not govern disclosure", `{"resourceType":"Consent","id":"x","status":"active","scope":{"coding":[{"code":"treatment"}]},"patient":{"reference":"Patient/p1"},"policyRule":{"coding":[{"code":"OPTIN"}]}}`, fxReport, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(court, parse(t, tc.resource), []map[string]any{parse(t, tc.consent)})
			if d.Permit != tc.want {
				t.Errorf("permit = %v, want %v:\n%s", d.Permit, tc.want, reasonsText(d.Reasons))
			}
		})
	}
}

func TestFHIRTime(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi string
	}{
		{"2025", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"2025-02", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"2025-02-28", "2025-02-28T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"2025-02-28T10:00:00+01:00", "2025-02-28T09:00:00Z", "2025-02-28T09:00:01Z"},
		{"2025-02-28T10:00:00.5Z", "2025-02-28T10:00:00.5Z", "2025-02-28T10:00:01.5Z"},
	}
	for _, tc := range cases {
		lo, hi, ok := fhirTime(tc.in)
		if !ok || lo.UTC().Format("2006-01-02T15:04:05.999Z07:00") != tc.lo || hi.UTC().Format("2006-01-02T15:04:05.999Z07:00") != tc.hi {
			t.Errorf("fhirTime(%q) = %v, %v, %v", tc.in, lo, hi, ok)
		}
	}
	for _, bad := range []string{"", "25", "2025-13", "tomorrow", "2025-02-30"} {
		if _, _, ok := fhirTime(bad); ok {
			t.Errorf("fhirTime(%q) accepted", bad)
		}
	}
}
