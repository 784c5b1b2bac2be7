package documents_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/mappings/documents"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

type org struct {
	ODS  string `json:"ods"`
	Name string `json:"name"`
}

func (o org) doc() documents.Organization { return documents.Organization{ODS: o.ODS, Name: o.Name} }

// input is a golden case's input file: the builder's inputs as JSON.
type input struct {
	ID             string           `json:"id"`
	BundleID       string           `json:"bundleId"`
	Date           time.Time        `json:"date"`
	Base           string           `json:"base"`
	Author         org              `json:"author"`
	Court          org              `json:"court"`
	GP             org              `json:"gp"`
	Patient        map[string]any   `json:"patient"`
	Assessment     map[string]any   `json:"assessment"`
	Encounter      map[string]any   `json:"encounter"`
	Recommendation map[string]any   `json:"recommendation"`
	Summary        string           `json:"summary"`
	Consent        map[string]any   `json:"consent"`
	Flags          []map[string]any `json:"flags"`
	Conditions     []map[string]any `json:"conditions"`
	Referrals      []map[string]any `json:"referrals"`
	Observations   []map[string]any `json:"observations"`
	Medications    []map[string]any `json:"medications"`
	Allergies      []map[string]any `json:"allergies"`
	Assessments    []map[string]any `json:"assessments"`
}

func (in input) court() documents.CourtReportInput {
	return documents.CourtReportInput{ID: in.ID, BundleID: in.BundleID, Date: in.Date, Base: in.Base, Author: in.Author.doc(), Court: in.Court.doc(),
		Patient: in.Patient, Assessment: in.Assessment, Flags: in.Flags, Conditions: in.Conditions, Referrals: in.Referrals,
		Recommendation: in.Recommendation, Summary: in.Summary, Consent: in.Consent}
}

func (in input) handback() documents.HandbackInput {
	return documents.HandbackInput{ID: in.ID, BundleID: in.BundleID, Date: in.Date, Base: in.Base, Author: in.Author.doc(), GP: in.GP.doc(),
		Patient: in.Patient, Encounter: in.Encounter, Observations: in.Observations, Medications: in.Medications, Conditions: in.Conditions,
		Allergies: in.Allergies, Assessments: in.Assessments, Flags: in.Flags, Referrals: in.Referrals}
}

func load(t *testing.T, name string) input {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".input.json"))
	if err != nil {
		t.Fatal(err)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return in
}

// checkGolden compares got with testdata/name.expected.json (rewritten under -update) and
// validates the document and every entry with the UK Core validator: no errors allowed.
func checkGolden(t *testing.T, v *validate.Validator, name string, got map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	mappingtest.Golden(t, filepath.Join("testdata", name+".expected.json"), buf.Bytes())
	// Validate as stored and sent: through JSON, numbers as json.Number.
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	mappingtest.ValidBundle(t, v, doc)
}

func TestCourtReportGolden(t *testing.T) {
	v := mappingtest.Validator(t)
	for _, tc := range []struct {
		name, status, recommendation string
		consent                      bool
	}{
		{"court-consented", "final", "divert", true},
		{"court-draft-restricted", "preliminary", "further-assessment", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := documents.CourtReport(load(t, tc.name).court())
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, v, tc.name, doc)
			comp := entry(doc, 0)
			if comp["status"] != tc.status {
				t.Errorf("status %v, want %s", comp["status"], tc.status)
			}
			ext := comp["extension"].([]any)[0].(map[string]any)
			if c := ext["valueCoding"].(map[string]any)["code"]; c != tc.recommendation {
				t.Errorf("recommendation %v, want %s", c, tc.recommendation)
			}
			hasConsent := false
			for _, e := range doc["entry"].([]any) {
				if e.(map[string]any)["resource"].(map[string]any)["resourceType"] == "Consent" {
					hasConsent = true
				}
			}
			if hasConsent != tc.consent {
				t.Errorf("Consent in the document: %v, want %v", hasConsent, tc.consent)
			}
		})
	}
}

// TestCourtReportRestrictedPatient: a restricted person's location never enters the report.
func TestCourtReportRestrictedPatient(t *testing.T) {
	doc, err := documents.CourtReport(load(t, "court-draft-restricted").court())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(doc)
	for _, leak := range []string{"Secret Lane", "ZZ1 1ZZ", "07700"} {
		if bytes.Contains(raw, []byte(leak)) {
			t.Errorf("the report of a restricted patient contains %q", leak)
		}
	}
	if !bytes.Contains(raw, []byte(`"REDACTED"`)) {
		t.Error("the Patient in the report is not labelled REDACTED")
	}
}

func TestCourtReportInputErrors(t *testing.T) {
	base := load(t, "court-consented")
	for _, tc := range []struct {
		name, expr, msg string
		edit            func(in *documents.CourtReportInput)
	}{
		{"no patient", "Patient", "Patient is required", func(in *documents.CourtReportInput) { in.Patient = nil }},
		{"assessment of someone else", "QuestionnaireResponse.subject", "not Patient/p1", func(in *documents.CourtReportInput) {
			in.Assessment = clone(in.Assessment)
			in.Assessment["subject"] = map[string]any{"reference": "Patient/other"}
		}},
		{"no recommendation", "recommendation", "no court recommendation", func(in *documents.CourtReportInput) {
			in.Assessment = clone(in.Assessment)
			delete(in.Assessment, "item")
		}},
		{"unknown recommendation", "recommendation", `"maybe" is not one of`, func(in *documents.CourtReportInput) {
			in.Recommendation = map[string]any{"code": "maybe"}
		}},
		{"flag about someone else", "Flag[0]", "is about Patient/other", func(in *documents.CourtReportInput) {
			in.Flags = []map[string]any{{"resourceType": "Flag", "id": "x", "status": "active", "subject": map[string]any{"reference": "Patient/other"}}}
		}},
		{"referral that is not a ServiceRequest", "ServiceRequest[0]", "must be a ServiceRequest", func(in *documents.CourtReportInput) {
			in.Referrals = []map[string]any{{"resourceType": "Task", "id": "t"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base.court()
			tc.edit(&in)
			_, err := documents.CourtReport(in)
			var ie *documents.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v, want an InputError", err)
			}
			if ie.Expression != tc.expr || !strings.Contains(ie.Message, tc.msg) {
				t.Errorf("got %s: %s; want %s: ...%s...", ie.Expression, ie.Message, tc.expr, tc.msg)
			}
		})
	}
}

func TestCourtAnswers(t *testing.T) {
	qr := load(t, "court-consented").Assessment
	rec, summary := documents.CourtAnswers(qr)
	if rec["code"] != "divert" || !strings.HasPrefix(summary, "Ms Smith has") {
		t.Errorf("got %v, %q", rec, summary)
	}
	rec, summary = documents.CourtAnswers(map[string]any{"item": []any{}})
	if rec != nil || summary != "" {
		t.Errorf("an empty response gave %v, %q", rec, summary)
	}
}

func TestHandbackGolden(t *testing.T) {
	v := mappingtest.Validator(t)
	for _, name := range []string{"handback-episode", "handback-minimal"} {
		t.Run(name, func(t *testing.T) {
			in := load(t, name)
			doc, err := documents.Handback(in.handback())
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, v, name, doc)
			comp := entry(doc, 0)
			if comp["encounter"].(map[string]any)["reference"] != "Encounter/"+in.Encounter["id"].(string) {
				t.Errorf("Composition.encounter = %v", comp["encounter"])
			}
			for _, e := range doc["entry"].([]any) {
				if r := e.(map[string]any)["resource"].(map[string]any); r["status"] == "entered-in-error" {
					t.Errorf("%s/%s entered in error is in the hand-back", r["resourceType"], r["id"])
				}
			}
		})
	}
}

func TestHandbackBlock(t *testing.T) {
	gp := map[string]any{"identifier": map[string]any{"system": documents.SystemODS, "value": "XGP001"}}
	orgs := map[string]map[string]any{"Organization/g": {"resourceType": "Organization", "id": "g", "name": "Linked Practice",
		"identifier": []any{map[string]any{"system": documents.SystemODS, "value": "XGP777"}}}}
	resolve := func(r string) map[string]any { return orgs[r] }
	restricted := map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
	for _, tc := range []struct {
		name    string
		patient map[string]any
		ods     string
		reason  string
	}{
		{"GP by identifier", map[string]any{"resourceType": "Patient", "id": "a", "generalPractitioner": []any{gp}}, "XGP001", ""},
		{"GP by reference", map[string]any{"resourceType": "Patient", "id": "b", "generalPractitioner": []any{map[string]any{"reference": "Organization/g"}}}, "XGP777", ""},
		{"no GP", map[string]any{"resourceType": "Patient", "id": "c"}, "", "has no registered GP practice"},
		{"GP reference that does not resolve", map[string]any{"resourceType": "Patient", "id": "d", "generalPractitioner": []any{map[string]any{"reference": "Organization/x"}}}, "", "has no registered GP practice"},
		{"restricted, even with a GP", map[string]any{"resourceType": "Patient", "id": "e", "meta": map[string]any{"security": []any{restricted}},
			"generalPractitioner": []any{gp}}, "", "restricted (PDS sensitive) record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ods, reason := documents.HandbackBlock(tc.patient, resolve)
			if ods != tc.ods || (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
				t.Errorf("got %q, %q; want %q, ...%s...", ods, reason, tc.ods, tc.reason)
			}
		})
	}
}

func TestHandbackInputErrors(t *testing.T) {
	base := load(t, "handback-episode")
	for _, tc := range []struct {
		name, expr string
		edit       func(in *documents.HandbackInput)
	}{
		{"no encounter", "Encounter[0]", func(in *documents.HandbackInput) { in.Encounter = nil }},
		{"encounter of someone else", "Encounter[0]", func(in *documents.HandbackInput) {
			in.Encounter = clone(in.Encounter)
			in.Encounter["subject"] = map[string]any{"reference": "Patient/other"}
		}},
		{"observation without id", "Observation[0].id", func(in *documents.HandbackInput) {
			in.Observations = []map[string]any{{"resourceType": "Observation"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base.handback()
			tc.edit(&in)
			_, err := documents.Handback(in)
			var ie *documents.InputError
			if !errors.As(err, &ie) || ie.Expression != tc.expr {
				t.Fatalf("error %v, want an InputError at %s", err, tc.expr)
			}
		})
	}
}

func entry(doc map[string]any, i int) map[string]any {
	return doc["entry"].([]any)[i].(map[string]any)["resource"].(map[string]any)
}

func clone(m map[string]any) map[string]any {
	raw, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}
