package policy

import (
	"encoding/json"
	"testing"
)

// FuzzDecide feeds arbitrary JSON as a patient's Consent. Whatever it says, evaluation must
// not panic or modify its inputs, must never permit what the sharing rules, labels, client
// checks or break-glass conditions deny, must ignore a Consent that is not active, and must
// never disclose a restricted patient's address.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{
		fxConsentCourt, fxLegalBasis, fxConsentProbation, fxConsentCourtQ1, fxConsentCourtExpired, fxDenyGP, fxDenyAll,
		withStatus(fxConsentCourt, "inactive"),
		consentJSON("deep", "active", "", `{"provision":[{"type":"permit","provision":[{"type":"deny","provision":[{"type":"permit"}]}]}]}`),
		consentJSON("odd", "active", "OPTIN", `{"type":"permit","actor":{"reference":"Organization/court"},"class":"Observation","data":[{"meaning":"related","reference":{"reference":"Patient/p1"}}]}`),
		consentJSON("labels", "active", "OPTIN", `{"type":"permit","securityLabel":[{"code":"V"},{"code":"PSY"}],"code":[{"coding":[{"code":"371530004"}]}],"dataPeriod":{"start":"2025"}}`),
		`{"resourceType":"Consent","status":"active","provision":null}`,
		`{"resourceType":"Consent","status":"active","scope":"patient-privacy","patient":{"reference":"Patient/p1"},"provision":{"provision":[1,"x",null,{"type":7}]}}`,
		`[]`, `null`, `"x"`, `{}`,
	} {
		for i := range 4 {
			f.Add([]byte(s), uint8(i*3), uint8(i*5+1))
		}
	}
	e, cfg := demoEngine(f)
	btg := clientReq(f, cfg, "custody-hcp", "BTG")
	btg.BreakGlass = "collapsed"
	reqs := []Request{
		clientReq(f, cfg, "custody-hcp", "TREAT"), clientReq(f, cfg, "court", "HLEGAL"),
		agencyReq(f, cfg, "court", "LEGAL"), clientReq(f, cfg, "probation", "COC"),
		agencyReq(f, cfg, "gp", "COC"), btg, clientReq(f, cfg, "custody-hcp", "BTG"),
		agencyReq(f, cfg, "probation", "HLEGAL"), clientReq(f, cfg, "court", "TREAT"),
	}
	resources := []string{fxPatient, fxPatientR, fxPatientV, fxObs, fxObsPSY, fxReport, fxReportLate, fxReportV, fxReferral, fxReferralDrug, fxReferralSUD, fxReferralPSY}
	ruleKinds := map[ReasonKind]bool{KindRule: true, KindLabel: true, KindScope: true, KindBreakGlass: true}

	f.Fuzz(func(t *testing.T, data []byte, ri, xi uint8) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		consent, _ := v.(map[string]any)
		if consent == nil {
			consent = map[string]any{"resourceType": "Consent", "provision": v}
		}
		CheckConsent(consent)
		req := reqs[int(ri)%len(reqs)]
		res := parse(t, resources[int(xi)%len(resources)])
		before, _ := json.Marshal([]any{res, consent})

		base := e.Decide(req, res, nil)
		for _, consents := range [][]map[string]any{{consent}, {consent, parse(t, fxLegalBasis)}} {
			d := e.Decide(req, res, consents)
			if !base.Permit && ruleKinds[base.Reasons[len(base.Reasons)-1].Kind] && d.Permit {
				t.Fatalf("a Consent permitted what the rules deny:\nrules: %s\nwith consent: %s", reasonsText(base.Reasons), reasonsText(d.Reasons))
			}
			if consent["status"] != "active" && len(consents) == 1 && d.Permit != base.Permit {
				t.Fatalf("a %v Consent changed the decision: %s", consent["status"], reasonsText(d.Reasons))
			}
			if d.Permit && Restricted(res) && res["resourceType"] == "Patient" && (d.Resource["address"] != nil || d.Resource["telecom"] != nil) {
				t.Fatal("restricted patient disclosed with address or telecom")
			}
			if d.Permit && d.BreakGlass != (req.Purpose == PurposeBreakGlass) {
				t.Fatal("break-glass flag wrong")
			}
		}
		if after, _ := json.Marshal([]any{res, consent}); string(after) != string(before) {
			t.Fatal("Decide modified its inputs")
		}
	})
}
