package ld_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/mappings/ld"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

func questionnaires(t *testing.T) map[string]map[string]any {
	t.Helper()
	qs, err := ld.Questionnaires()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, q := range qs {
		out[q["url"].(string)] = q
	}
	return out
}

func services(t *testing.T) map[string]ld.Service {
	t.Helper()
	dir, err := ld.Directory()
	if err != nil {
		t.Fatal(err)
	}
	orgs := map[string]map[string]any{}
	out := map[string]ld.Service{}
	for _, r := range dir {
		switch r["resourceType"] {
		case "Organization":
			orgs["Organization/"+r["id"].(string)] = r
		case "HealthcareService":
			pb := r["providedBy"].(map[string]any)["reference"].(string)
			if orgs[pb] == nil {
				t.Fatalf("HealthcareService/%s: providedBy %s is not in the directory", r["id"], pb)
			}
			s := ld.ServiceFrom(r, orgs[pb])
			out[s.Ref] = s
		}
	}
	return out
}

func options(t *testing.T) ld.Options {
	n := 0
	return ld.Options{
		Requester: ld.Party{Ref: "Organization/org-xld001", ODS: "XLD001", Name: "Anytown Liaison and Diversion Service"},
		Services:  services(t),
		NewID: func() string {
			n++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
		},
		Now: time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC),
	}
}

func readQR(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".qr.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ld.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestShippedResourcesValid: every shipped Questionnaire and directory entry is valid UK Core.
func TestShippedResourcesValid(t *testing.T) {
	v := mappingtest.Validator(t)
	qs, err := ld.Questionnaires()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ld.Directory()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 3 {
		t.Fatalf("%d Questionnaires shipped, want identification, screening and assessment", len(qs))
	}
	for _, r := range append(qs, dir...) {
		mappingtest.Valid(t, v, fmt.Sprintf("%s/%s", r["resourceType"], r["id"]), r, validate.Options{})
	}
	// The court-report feature reads these linkIds of the assessment.
	assess := questionnaires(t)[ld.AssessmentURL]
	var court map[string]any
	for _, it := range assess["item"].([]any) {
		if it.(map[string]any)["linkId"] == "court" {
			court = it.(map[string]any)
		}
	}
	if court == nil {
		t.Fatal("the assessment has no court group")
	}
	got := map[string]string{}
	for _, it := range court["item"].([]any) {
		m := it.(map[string]any)
		got[m["linkId"].(string)] = m["type"].(string)
	}
	if got["court-recommendation"] != "choice" || got["court-summary"] != "text" {
		t.Errorf("court group items %v", got)
	}
}

// TestExtractGolden: each response extracts to its golden resources, and every resource
// (the response included, checked against its Questionnaire) is valid UK Core.
func TestExtractGolden(t *testing.T) {
	qs := questionnaires(t)
	v := mappingtest.Validator(t)
	for _, name := range []string{"assessment", "screening", "identification"} {
		t.Run(name, func(t *testing.T) {
			qr := readQR(t, name)
			canonical, _, _ := strings.Cut(qr["questionnaire"].(string), "|")
			res, err := ld.Extract(qr, qs[canonical], options(t))
			if err != nil {
				t.Fatalf("extract: %v", err)
			}
			for i, e := range res.Entries {
				what := fmt.Sprintf("entry %d (%s)", i, e.Resource["resourceType"])
				r := mappingtest.Valid(t, v, what, e.Resource, validate.Options{Questionnaire: func(c string) (map[string]any, bool) {
					u, _, _ := strings.Cut(c, "|")
					q, ok := qs[u]
					return q, ok
				}})
				// A response must be checked against its Questionnaire, not waved through.
				for _, is := range r.Issues {
					if is.Code == "not-found" && e.Resource["resourceType"] == "QuestionnaireResponse" {
						t.Errorf("%s: %s %s at %v", what, is.Severity, is.Diagnostics, is.Expression)
					}
				}
			}
			mappingtest.GoldenJSON(t, filepath.Join("testdata", name+".golden.json"), res.Entries)
		})
	}
}

// TestExtractCounts pins what the assessment golden must contain, so that a wrong -update
// cannot silently bless a regression.
func TestExtractCounts(t *testing.T) {
	qr := readQR(t, "assessment")
	res, err := ld.Extract(qr, questionnaires(t)[ld.AssessmentURL], options(t))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var task, probationSR map[string]any
	for _, e := range res.Entries {
		rt := e.Resource["resourceType"].(string)
		count[rt]++
		if rt == "Task" {
			task = e.Resource
		}
		if rt == "ServiceRequest" && strings.Contains(fmt.Sprint(e.Resource["performer"]), "XPRB01") {
			probationSR = e.Resource
			if task != nil {
				t.Error("the Task comes after its ServiceRequest")
			}
		}
	}
	want := map[string]int{"QuestionnaireResponse": 1, "Flag": 6, "Observation": 3, "Condition": 2, "ServiceRequest": 4, "Task": 1, "Consent": 2, "Provenance": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %s, want %d (all: %v)", count[k], k, n, count)
		}
	}
	if task == nil || probationSR == nil {
		t.Fatal("no probation ServiceRequest and Task")
	}
	if task["status"] != "requested" || task["intent"] != "order" || task["owner"].(map[string]any)["reference"] != "Organization/org-xprb01" {
		t.Errorf("task %v", task)
	}
	for _, e := range res.Entries {
		if e.Resource["resourceType"] == "Observation" && e.Resource["code"].(map[string]any)["text"] == "AUDIT-C score" {
			if e.Resource["valueInteger"] != 8 { // 3 + 2 + 3
				t.Errorf("AUDIT-C score %v, want 8", e.Resource["valueInteger"])
			}
		}
	}
	prov := res.Entries[len(res.Entries)-1].Resource
	if prov["resourceType"] != "Provenance" || len(prov["target"].([]any)) != len(res.Entries)-2 {
		t.Errorf("provenance %v", prov)
	}
}

// TestExtractRejects: bad responses fail with 422 naming the path, and extract nothing.
func TestExtractRejects(t *testing.T) {
	qs := questionnaires(t)
	cases := []struct {
		name   string
		change func(qr map[string]any)
		path   string
	}{
		{"unknown service", func(qr map[string]any) {
			setAnswer(qr, "referrals", "referral.service", map[string]any{"valueReference": map[string]any{"reference": "HealthcareService/nowhere"}})
		}, "QuestionnaireResponse.item[7].item[1].answer[0].valueReference"},
		{"service not on the pathway", func(qr map[string]any) {
			setAnswer(qr, "referrals", "referral.service", map[string]any{"valueReference": map[string]any{"reference": "HealthcareService/svc-housing-options"}})
		}, "QuestionnaireResponse.item[7].item[1].answer[0].valueReference"},
		{"answer not an option", func(qr map[string]any) {
			setAnswer(qr, "mh", "mh.self-harm-risk", map[string]any{"valueCoding": map[string]any{"system": ld.SystemRisk, "code": "extreme"}})
		}, "QuestionnaireResponse.item[1].item[2].answer[0]"},
		{"in progress", func(qr map[string]any) { qr["status"] = "in-progress" }, "QuestionnaireResponse.status"},
		{"no subject", func(qr map[string]any) { delete(qr, "subject") }, "QuestionnaireResponse.subject"},
		{"required court summary missing", func(qr map[string]any) {
			items := qr["item"].([]any)
			court := items[len(items)-1].(map[string]any)
			court["item"] = court["item"].([]any)[:1]
		}, "QuestionnaireResponse.item[12]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			qr := readQR(t, "assessment")
			tc.change(qr)
			res, err := ld.Extract(qr, qs[ld.AssessmentURL], options(t))
			if err == nil {
				t.Fatalf("extracted %d entries from a bad response", len(res.Entries))
			}
			oe, ok := err.(*outcome.Error)
			if !ok || oe.Status != http.StatusUnprocessableEntity {
				t.Fatalf("error %v, want a 422 OperationOutcome", err)
			}
			var paths []string
			for _, is := range oe.Issues {
				paths = append(paths, is.Expression...)
			}
			found := false
			for _, p := range paths {
				found = found || strings.HasPrefix(p, tc.path)
			}
			if !found {
				t.Errorf("issues name %v, want %s (%v)", paths, tc.path, oe.Issues)
			}
		})
	}
}

// setAnswer replaces the answer of child linkId in the first top-level group group.
func setAnswer(qr map[string]any, group, linkID string, answer map[string]any) {
	for _, it := range qr["item"].([]any) {
		g := it.(map[string]any)
		if g["linkId"] != group {
			continue
		}
		for _, c := range g["item"].([]any) {
			if c.(map[string]any)["linkId"] == linkID {
				c.(map[string]any)["answer"] = []any{answer}
				return
			}
		}
	}
	panic("no item " + group + "/" + linkID)
}

func TestNewerVersion(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1.0.1", "1.0.0", true}, {"1.0.0", "1.0.0", false}, {"1.10.0", "1.9.9", true}, {"1.0", "1.0.1", false},
		{"2.0.0", "", true},
	} {
		if got := ld.NewerVersion(tc.a, tc.b); got != tc.want {
			t.Errorf("NewerVersion(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
