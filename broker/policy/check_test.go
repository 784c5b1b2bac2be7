package policy

import (
	"strings"
	"testing"
)

func TestCheckConsentAcceptsWellFormedConsents(t *testing.T) {
	for _, s := range []string{fxConsentCourt, fxLegalBasis, fxConsentProbation, fxConsentCourtQ1, fxConsentCourtExpired, fxDenyGP, fxDenyAll} {
		if issues := CheckConsent(parse(t, s)); len(issues) > 0 {
			t.Errorf("issues for a good Consent: %+v\n%s", issues, s)
		}
	}
}

func TestCheckConsent(t *testing.T) {
	good := parse(t, fxConsentProbation)
	cases := []struct {
		name       string
		consent    string
		severity   string
		expression string
		text       string
	}{
		{"not a consent", `{"resourceType":"Patient"}`, "error", "Consent.resourceType", "expected a Consent"},
		{"no status", strings.Replace(fxDenyAll, `"status":"active",`, "", 1), "error", "Consent.status", "status is required"},
		{"bad status", withStatus(fxDenyAll, "withdrawn"), "error", "Consent.status", `unknown status "withdrawn"`},
		{"no scope", strings.Replace(fxDenyAll, `"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},`, "", 1), "error", "Consent.scope", "scope is required"},
		{"missing patient", strings.Replace(fxDenyAll, `"patient":{"reference":"Patient/p1"},`, "", 1), "error", "Consent.patient", "required when scope is patient-privacy"},
		{"no policy", strings.Replace(fxDenyAll, `,"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}]}`, "", 1), "error", "Consent", "ppc-1"},
		{"unknown action", consentJSON("x", "active", "OPTIN", `{"type":"permit","action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"share"}]}]}`),
			"error", "Consent.provision.action[0].coding[0].code", `unknown consent action "share"`},
		{"unknown purpose", consentJSON("x", "active", "OPTIN", `{"type":"permit","provision":[{"type":"deny","purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"GOSSIP"}]}]}`),
			"error", "Consent.provision.provision[0].purpose[0].code", `unknown purpose of use "GOSSIP"`},
		{"period ends before it starts", consentJSON("x", "active", "OPTIN", `{"type":"permit","period":{"start":"2025-05-01","end":"2025-04-01"}}`),
			"error", "Consent.provision.period", "ends (2025-04-01) before it starts (2025-05-01)"},
		{"dataPeriod ends before it starts", consentJSON("x", "active", "OPTIN", `{"type":"permit","provision":[{"type":"deny","dataPeriod":{"start":"2025-05-01T10:00:00Z","end":"2025-05-01T09:00:00Z"}}]}`),
			"error", "Consent.provision.provision[0].dataPeriod", "before it starts"},
		{"bad date", consentJSON("x", "active", "OPTIN", `{"type":"permit","period":{"start":"yesterday"}}`),
			"error", "Consent.provision.period.start", "not a FHIR dateTime"},
		{"practitioner actor", consentJSON("x", "active", "OPTIN", `{"type":"permit","actor":[{"role":{"coding":[{"code":"IRCP"}]},"reference":{"reference":"Practitioner/dr-who"}}]}`),
			"error", "Consent.provision.actor[0].reference", `unsupported provision.actor form "Practitioner/dr-who"`},
		{"actor identifier from another system", consentJSON("x", "active", "OPTIN", `{"type":"permit","actor":[{"role":{"coding":[{"code":"IRCP"}]},"reference":{"identifier":{"system":"urn:x","value":"1"}}}]}`),
			"error", "Consent.provision.actor[0].reference", "unsupported provision.actor form"},
		{"actor without role", consentJSON("x", "active", "OPTIN", `{"type":"permit","actor":[{"reference":{"reference":"Organization/court"}}]}`),
			"warning", "Consent.provision.actor[0].role", "actor.role is required"},
		{"nested provision without type", consentJSON("x", "active", "OPTIN", `{"type":"permit","provision":[{"purpose":[`+hlegal+`]}]}`),
			"error", "Consent.provision.provision[0].type", "treated as deny"},
		{"bad provision type", consentJSON("x", "active", "OPTIN", `{"type":"allow"}`),
			"error", "Consent.provision.type", `unknown provision type "allow"`},
		{"bad class", consentJSON("x", "active", "OPTIN", `{"type":"permit","class":[{"system":"http://hl7.org/fhir/resource-types","code":"observation"}]}`),
			"error", "Consent.provision.class[0].code", "not a resource type name"},
		{"bad data meaning", consentJSON("x", "active", "OPTIN", `{"type":"permit","data":[{"meaning":"all","reference":{"reference":"Composition/c1"}}]}`),
			"error", "Consent.provision.data[0].meaning", `unknown data meaning "all"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			issues := CheckConsent(parse(t, tc.consent))
			for _, is := range issues {
				if is.Severity == tc.severity && len(is.Expression) == 1 && is.Expression[0] == tc.expression && strings.Contains(is.Diagnostics, tc.text) {
					return
				}
			}
			t.Errorf("no %s at %s saying %q in %+v", tc.severity, tc.expression, tc.text, issues)
		})
	}
	if issues := CheckConsent(good); len(issues) != 0 {
		t.Errorf("the cases modified a shared fixture: %+v", issues)
	}
}
