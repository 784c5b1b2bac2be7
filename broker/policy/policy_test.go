package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/config"
)

func withStatus(consent, status string) string {
	return strings.Replace(consent, `"status":"active"`, `"status":"`+status+`"`, 1)
}

func TestDecide(t *testing.T) {
	e, cfg := demoEngine(t)
	custody := clientReq(t, cfg, "custody-hcp", "TREAT")
	gp := clientReq(t, cfg, "gp", "TREAT")
	court := clientReq(t, cfg, "court", "HLEGAL")
	courtLegal := clientReq(t, cfg, "court", "LEGAL")
	probation := clientReq(t, cfg, "probation", "COC")
	btg := clientReq(t, cfg, "custody-hcp", "BTG")
	btg.BreakGlass = "unresponsive in cell; need medication history"
	ldBTG := clientReq(t, cfg, "ld-team", "BTG")
	ldBTG.BreakGlass = "risk of self-harm"
	operator := clientReq(t, cfg, "operator", "HSYSADMIN")
	wrongAgency := clientReq(t, cfg, "court", "HLEGAL")
	wrongAgency.Agency = custody.Agency

	cases := []struct {
		name     string
		req      Request
		resource string
		consents []string
		permit   bool
		kind     ReasonKind // kind of the last reason
		text     string     // in some reason
	}{
		// Direct care between health agencies rests on implied consent.
		{"custody sees clinical data for TREAT", custody, fxObs, nil, true, KindDefault, "implied-direct-care permits"},
		{"custody sees PSY-labelled data for TREAT", custody, fxObsPSY, nil, true, KindDefault, "sharing rule direct-care lets"},
		{"GP sees the court report for direct care", gp, fxReport, nil, true, KindDefault, ""},
		{"GP consent deny stops direct care", gp, fxObs, []string{fxDenyGP}, false, KindConsent, "Consent/no-gp (Consent.provision) denies"},
		{"GP deny does not touch custody", custody, fxObs, []string{fxDenyGP}, true, KindDefault, "Consent/no-gp does not cover"},
		{"blanket objection stops direct care", custody, fxObs, []string{fxDenyAll}, false, KindConsent, "denies"},

		// Court: only the L&D court report, only with consent or a legal basis.
		{"court without consent", court, fxReport, nil, false, KindConsent, "needs the patient's explicit Consent or a recorded legal basis"},
		{"court with consent", court, fxReport, []string{fxConsentCourt}, true, KindConsent, "Consent/court-ok (Consent.provision) permits"},
		{"court with legal basis", court, fxReport, []string{fxLegalBasis}, true, KindConsent, "records a legal basis"},
		{"court never sees the custody Observation", agencyReq(t, cfg, "court", "HLEGAL"), fxObs, []string{fxConsentCourt, fxLegalBasis}, false, KindRule, "no sharing rule lets a court agency see Observation for HLEGAL"},
		{"court never sees V-labelled reports", court, fxReportV, []string{fxConsentCourt}, false, KindLabel, "withholds data labelled V"},
		{"court never sees a V-labelled patient", court, fxPatientV, []string{fxLegalBasis}, false, KindLabel, "labelled V"},
		{"court sees the patient with consent", court, fxPatient, []string{fxConsentCourt}, true, KindConsent, "permits"},
		{"consent for HLEGAL does not cover LEGAL", courtLegal, fxReport, []string{fxConsentCourt}, false, KindConsent, "does not cover disclosure of Composition to court agencies for LEGAL"},
		{"court may not claim TREAT", clientReq(t, cfg, "court", "TREAT"), fxReport, []string{fxConsentCourt}, false, KindScope, "may not claim purpose TREAT"},
		{"withdrawn consent stops disclosure", court, fxReport, []string{withStatus(fxConsentCourt, "inactive")}, false, KindConsent, "inactive (withdrawn)"},
		{"draft consent does not apply", court, fxReport, []string{withStatus(fxConsentCourt, "draft")}, false, KindConsent, `status "draft"`},
		{"rejected consent does not apply", court, fxReport, []string{withStatus(fxConsentCourt, "rejected")}, false, KindConsent, ""},
		{"entered-in-error consent does not apply", court, fxReport, []string{withStatus(fxConsentCourt, "entered-in-error")}, false, KindConsent, ""},
		{"dataPeriod covers the report", court, fxReport, []string{fxConsentCourtQ1}, true, KindConsent, "court-q1"},
		{"dataPeriod excludes a later report", court, fxReportLate, []string{fxConsentCourtQ1}, false, KindConsent, "needs the patient's explicit Consent"},
		{"expired consent period", court, fxReport, []string{fxConsentCourtExpired}, false, KindConsent, "court-old does not cover"},
		{"a patient objection beats a legal basis", court, fxReport, []string{fxLegalBasis, fxDenyAll}, false, KindConsent, "no-sharing"},

		// Probation: its referrals, with consent, never PSY/SUD-labelled data.
		{"probation sees its referral", probation, fxReferral, []string{fxConsentProbation}, true, KindConsent, "probation-ok (Consent.provision) permits"},
		{"probation without consent", probation, fxReferral, nil, false, KindConsent, "probation-referrals needs"},
		{"nested deny exception inside a permit", probation, fxReferralDrug, []string{fxConsentProbation}, false, KindConsent, "Consent/probation-ok (Consent.provision.provision[0]) denies"},
		{"probation never sees SUD data", probation, fxReferralSUD, []string{fxConsentProbation}, false, KindLabel, "labelled SUD"},
		{"probation never sees PSY data, even on a legal basis", probation, fxReferralPSY, []string{fxLegalBasis}, false, KindLabel, "labelled PSY"},
		{"probation is not given clinical observations", agencyReq(t, cfg, "probation", "COC"), fxObs, []string{fxConsentProbation}, false, KindRule, "probation-referrals does not cover it"},
		{"probation consent does not extend to court", court, fxReport, []string{fxConsentProbation}, false, KindConsent, "needs"},

		// Break-glass.
		{"break-glass with reason", btg, fxObsPSY, nil, true, KindBreakGlass, "unresponsive in cell"},
		{"break-glass overrides an objection", ldBTG, fxObs, []string{fxDenyAll}, true, KindBreakGlass, "overrides the patient's Consent denial"},
		{"break-glass without reason", clientReq(t, cfg, "custody-hcp", "BTG"), fxObs, nil, false, KindBreakGlass, "needs a stated reason"},
		{"break-glass with a blank reason", func() Request { r := btg; r.BreakGlass = "  "; return r }(), fxObs, nil, false, KindBreakGlass, "needs a stated reason"},
		{"no break-glass rule for GPs", func() Request { r := agencyReq(t, cfg, "gp", "BTG"); r.BreakGlass = "emergency"; return r }(), fxObs, nil, false, KindBreakGlass, "no break-glass rule lets a gp agency"},
		{"no break-glass for court", func() Request { r := agencyReq(t, cfg, "court", "BTG"); r.BreakGlass = "urgent"; return r }(), fxObs, nil, false, KindBreakGlass, ""},

		// Purpose and client checks.
		{"purpose with no rule", agencyReq(t, cfg, "gp", "HRESCH"), fxObs, nil, false, KindRule, "no sharing rule lets a gp agency see Observation for HRESCH"},
		{"client lacks the scope", clientReq(t, cfg, "court", "HLEGAL"), fxObs, nil, false, KindScope, "no scope to read or search Observation"},
		{"client for another agency", wrongAgency, fxReport, nil, false, KindScope, "acts for agency court"},
		{"unknown client", Request{Agency: court.Agency, ClientID: "nobody", Purpose: "HLEGAL"}, fxReport, nil, false, KindScope, "not configured"},
		{"agency kind mismatch", Request{Agency: Agency{ID: "court", Kind: "gp", ODS: "XCRT01"}, Purpose: "TREAT"}, fxObs, nil, false, KindScope, "configured as court"},
		{"operators administer", operator, fxObsPSY, nil, true, KindDefault, "operators' access rests on the sharing rule"},
		{"implied consent covers only data recorded by health agencies", agencyReq(t, cfg, "gp", "TREAT"),
			`{"resourceType":"Task","id":"t1","meta":{"source":"XPRB01"},"status":"requested","intent":"order","for":{"reference":"Patient/p1"}}`,
			nil, false, KindDefault, "no consent default permits TREAT for gp agencies of data recorded by a probation agency"},
		{"data of unknown origin under implied consent", custody, `{"resourceType":"Flag","id":"f1","status":"active","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`, nil, true, KindDefault, "implied-direct-care"},
		{"another patient's consent is ignored", custody, fxOtherPatientObs, []string{fxDenyAll}, true, KindDefault, ""},
		{"no resourceType", custody, `{"id":"x"}`, nil, false, KindRule, "no resourceType"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := parse(t, tc.resource)
			var consents []map[string]any
			for _, c := range tc.consents {
				consents = append(consents, parse(t, c))
			}
			before, _ := json.Marshal([]any{res, consents})
			d := e.Decide(tc.req, res, consents)
			after, _ := json.Marshal([]any{res, consents})
			if string(before) != string(after) {
				t.Error("Decide modified its inputs")
			}
			if d.Permit != tc.permit {
				t.Fatalf("permit = %v, want %v; reasons:\n%s", d.Permit, tc.permit, reasonsText(d.Reasons))
			}
			if len(d.Reasons) == 0 {
				t.Fatal("no reasons")
			}
			if last := d.Reasons[len(d.Reasons)-1]; last.Kind != tc.kind {
				t.Errorf("last reason kind = %s, want %s; reasons:\n%s", last.Kind, tc.kind, reasonsText(d.Reasons))
			}
			if tc.text != "" && !strings.Contains(reasonsText(d.Reasons), tc.text) {
				t.Errorf("no reason says %q; reasons:\n%s", tc.text, reasonsText(d.Reasons))
			}
			if d.Permit != (d.Resource != nil) {
				t.Errorf("Resource = %v with permit %v", d.Resource != nil, d.Permit)
			}
			if d.BreakGlass != (d.Permit && tc.req.Purpose == PurposeBreakGlass) {
				t.Errorf("BreakGlass = %v", d.BreakGlass)
			}
		})
	}
}

func reasonsText(rs []Reason) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + string(r.Kind) + " " + r.ID + ": " + r.Text + "\n")
	}
	return b.String()
}

func TestRestrictedPatientIsRedacted(t *testing.T) {
	e, cfg := demoEngine(t)
	in := parse(t, fxPatientR)
	before, _ := json.Marshal(in)
	for _, req := range []Request{clientReq(t, cfg, "custody-hcp", "TREAT"), clientReq(t, cfg, "gp", "COC"), clientReq(t, cfg, "court", "HLEGAL")} {
		d := e.Decide(req, in, []map[string]any{parse(t, fxConsentCourt)})
		if !d.Permit || !d.Redacted {
			t.Fatalf("%s: permit %v redacted %v:\n%s", req.ClientID, d.Permit, d.Redacted, reasonsText(d.Reasons))
		}
		for _, k := range []string{"address", "telecom", "generalPractitioner", "text"} {
			if _, ok := d.Resource[k]; ok {
				t.Errorf("%s: %s disclosed for a restricted patient", req.ClientID, k)
			}
		}
		contact := d.Resource["contact"].([]any)[0].(map[string]any)
		if _, ok := contact["address"]; ok {
			t.Errorf("contact address disclosed")
		}
		if _, ok := contact["telecom"]; ok {
			t.Errorf("contact telecom disclosed")
		}
		if contact["name"] == nil || d.Resource["name"] == nil || d.Resource["birthDate"] != "1990-01-01" {
			t.Errorf("redaction removed more than location: %v", d.Resource)
		}
		labels := codings(obj(d.Resource["meta"])["security"])
		if !hasCode(labels, SystemObservationValue, "REDACTED") || !hasCode(labels, SystemConfidentiality, "R") {
			t.Errorf("labels = %v, want R kept and REDACTED added", labels)
		}
	}
	if after, _ := json.Marshal(in); string(after) != string(before) {
		t.Error("the input patient was modified")
	}
}

func TestRedact(t *testing.T) {
	plain := parse(t, fxPatient)
	if out, ok := Redact(plain); ok || !reflect.DeepEqual(out, plain) {
		t.Errorf("an unrestricted patient was redacted")
	}
	obs := parse(t, fxObs)
	if _, ok := Redact(obs); ok {
		t.Errorf("an Observation was redacted")
	}
	v := parse(t, fxPatientV)
	out, ok := Redact(v)
	if !ok || out["address"] != nil {
		t.Fatalf("V patient not redacted: %v", out)
	}
	if v["address"] == nil {
		t.Fatal("input modified")
	}
	again, _ := Redact(out)
	n := 0
	for _, c := range codings(obj(again["meta"])["security"]) {
		if c.Code == "REDACTED" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("redacting twice gives %d REDACTED labels", n)
	}
}

func TestContainedRestrictedPatientIsRedacted(t *testing.T) {
	e, cfg := demoEngine(t)
	report := parse(t, fxReport)
	report["contained"] = []any{parse(t, fxPatientR)}
	d := e.Decide(clientReq(t, cfg, "court", "HLEGAL"), report, []map[string]any{parse(t, fxConsentCourt)})
	if !d.Permit || !d.Redacted {
		t.Fatalf("permit %v redacted %v", d.Permit, d.Redacted)
	}
	if p := d.Resource["contained"].([]any)[0].(map[string]any); p["address"] != nil {
		t.Error("contained restricted patient disclosed with address")
	}
	if report["contained"].([]any)[0].(map[string]any)["address"] == nil {
		t.Error("input modified")
	}
}

func TestExplainAgreesWithDecide(t *testing.T) {
	e, cfg := demoEngine(t)
	var candidates []map[string]any
	for _, s := range []string{fxPatient, fxObs, fxObsPSY, fxReport, fxReportLate, fxReportV, fxReferral, fxReferralDrug, fxReferralSUD, fxReferralPSY, fxOtherPatientObs} {
		candidates = append(candidates, parse(t, s))
	}
	var consents []map[string]any
	for _, s := range []string{fxConsentCourtQ1, fxConsentProbation} {
		consents = append(consents, parse(t, s))
	}
	btg := clientReq(t, cfg, "ld-team", "BTG")
	btg.BreakGlass = "risk of self-harm"
	reqs := []Request{
		agencyReq(t, cfg, "custody-hcp", "TREAT"), agencyReq(t, cfg, "court", "HLEGAL"),
		agencyReq(t, cfg, "probation", "COC"), agencyReq(t, cfg, "gp", "COC"), btg,
	}
	for _, req := range reqs {
		rep := e.Explain(req, "p1", candidates, consents)
		seen := map[string]bool{}
		for _, cr := range rep.Classes {
			for _, ro := range cr.Resources {
				seen[ro.Reference] = true
				var res map[string]any
				for _, c := range candidates {
					if resourceRef(c) == ro.Reference {
						res = c
					}
				}
				d := e.Decide(req, res, consents)
				if d.Permit != ro.Permit {
					t.Errorf("%s %s: Explain says %v, Decide says %v", req.Agency.ID, ro.Reference, ro.Permit, d.Permit)
				}
				for _, r := range d.Reasons {
					if !containsReason(cr.Reasons, r) {
						t.Errorf("%s %s: reason %q missing from the class report", req.Agency.ID, ro.Reference, r.Text)
					}
				}
				if typ, labels := ClassOf(res); typ != cr.Type || !reflect.DeepEqual(labels, cr.Labels) {
					t.Errorf("%s in class %s %v", ro.Reference, cr.Type, cr.Labels)
				}
			}
		}
		if seen["Observation/o9"] {
			t.Errorf("%s: another patient's resource reported", req.Agency.ID)
		}
		if len(seen) != len(candidates)-1 {
			t.Errorf("%s: %d resources reported, want %d", req.Agency.ID, len(seen), len(candidates)-1)
		}
		if rep.BreakGlass != (req.Purpose == "BTG") {
			t.Errorf("%s: BreakGlass = %v", req.Agency.ID, rep.BreakGlass)
		}
	}

	// The court's view, class by class.
	rep := e.Explain(agencyReq(t, cfg, "court", "HLEGAL"), "Patient/p1", candidates, consents)
	want := map[string]string{
		"Composition|":  OutcomePartial, // the Q1 report is covered by consent, the May update is not
		"Composition|V": OutcomeWithheld,
		"Observation|":  OutcomeWithheld,
		"Patient|":      OutcomeWithheld, // the Q1 consent covers Compositions only
	}
	for _, cr := range rep.Classes {
		key := cr.Type + "|" + strings.Join(cr.Labels, ",")
		if w, ok := want[key]; ok && cr.Outcome != w {
			t.Errorf("court %s: %s, want %s; reasons:\n%s", key, cr.Outcome, w, reasonsText(cr.Reasons))
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("classes missing from the report: %v", want)
	}
}

func TestSelectors(t *testing.T) {
	c := classify(parse(t, fxObsPSY))
	cases := []struct {
		sel  config.Selector
		want bool
	}{
		{config.Selector{}, false},
		{config.Selector{Types: []string{"*"}}, true},
		{config.Selector{Types: []string{"Condition"}}, false},
		{config.Selector{Categories: []string{"35489007"}}, true},
		{config.Selector{Categories: []string{"http://snomed.info/sct|35489007"}}, true},
		{config.Selector{Categories: []string{"http://loinc.org|35489007"}}, false},
		{config.Selector{Labels: []string{"PSY"}}, true},
		{config.Selector{Labels: []string{SystemActCode + "|PSY"}}, true},
		{config.Selector{Labels: []string{SystemConfidentiality + "|PSY"}}, false},
		{config.Selector{Types: []string{"Observation"}, Labels: []string{"SUD"}}, false},
		{config.Selector{Types: []string{"Observation"}, Labels: []string{"SUD", "PSY"}}, true},
	}
	for _, tc := range cases {
		if got := selects(tc.sel, c); got != tc.want {
			t.Errorf("selects(%+v) = %v, want %v", tc.sel, got, tc.want)
		}
	}
}
