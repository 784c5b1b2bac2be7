package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func runDemo(t *testing.T, args ...string) (string, time.Duration, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"demo"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	start := time.Now()
	err := root.ExecuteContext(context.Background())
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), time.Since(start), err
}

func TestDemoCommandPrintsTheTimeline(t *testing.T) {
	out, took, err := runDemo(t)
	if err != nil {
		t.Fatalf("hjbroker demo: %v\n%s", err, out)
	}
	if took > time.Minute {
		t.Errorf("the demo took %s, more than a minute", took)
	}
	t.Logf("hjbroker demo took %s", took)
	for _, want := range []string{
		"Arrival in custody",
		"Summary Care Record lookup",
		"Clinical entries",
		"L&D screening",
		"Probation pulls its referrals and accepts the Task",
		"The person consents; L&D issues the court report again",
		"Release from custody",
		"GP hand-back",
		"Probation completes the referral",
		"Summary",
		"no problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the timeline lacks %q", want)
		}
	}
	// The facts: who received what, by which route and purpose, and what was withheld and why.
	for _, want := range []string{
		"to Anytown Liaison and Diversion Service (ld-team-fhir)\n                  route custody-clinical-to-ld, purpose TREAT",
		"to Probation Service, Anytown region (probation-messaging)\n                  route probation-referral, purpose COC",
		"to Anytown Liaison and Diversion Service (ld-team-fhir)\n                  route task-status-to-referrer, purpose COC",
		"to Anytown Medical Practice (gp-fhir)\n                  route custody-discharge-to-gp, purpose COC",
		"to Anytown Magistrates' Court (court-fhir)\n                  route court-report, purpose HLEGAL",
		"xx withheld   Flag/",
		"route probation-referral-flags, purpose COC; ",
		"Anytown Magistrates' Court                   received 1",
		// The court's access explained before and after the person's consent.
		"$access-check, court for HLEGAL: Composition withheld: ",
		"$access-check, court for HLEGAL: Composition shared: consent Consent/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the timeline lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("timeline:\n%s", out)
	}
}

func TestDemoCommandJSON(t *testing.T) {
	out, _, err := runDemo(t, "--json")
	if err != nil {
		t.Fatalf("hjbroker demo --json: %v\n%s", err, out)
	}
	var tl struct {
		Patient string `json:"patient"`
		Steps   []struct {
			Stage, Title, Client, Skipped string
			Deliveries                    []struct {
				Resource, Route, Purpose, Endpoint, State, Reason string
				Received                                          bool
			}
		}
		Summary struct {
			Delivered, Withheld, Failed int
			ReceivedBy                  map[string]int
		}
		Problems []string
	}
	if err := json.Unmarshal([]byte(out), &tl); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(tl.Problems) > 0 || tl.Summary.Failed != 0 {
		t.Fatalf("problems: %v", tl.Problems)
	}
	// Per stage, the deliveries by endpoint and state.
	got := map[string][]string{}
	stages := map[string]bool{}
	for _, s := range tl.Steps {
		stages[s.Stage] = true
		for _, d := range s.Deliveries {
			if d.State == "delivered" && !d.Received {
				t.Errorf("delivered but not received: %+v", d)
			}
			if d.State == "withheld" && d.Reason == "" {
				t.Errorf("withheld without a reason: %+v", d)
			}
			got[s.Stage] = append(got[s.Stage], strings.SplitN(d.Resource, "/", 2)[0]+">"+d.Endpoint+":"+d.State)
		}
	}
	for _, st := range []string{"arrival", "scr-lookup", "clinical-entries", "ld-screening", "referral", "probation", "court-report", "release", "gp-hand-back"} {
		if !stages[st] {
			t.Errorf("no step of stage %s", st)
		}
	}
	// The court gets the report once, after the person's consent, and nothing before.
	if got := strings.Join(got["court-report"], " "); !strings.HasSuffix(got, "Composition>court-fhir:delivered") || strings.Count(got, ":delivered") != 1 {
		t.Errorf("court-report stage deliveries %q: want the report delivered once, last", got)
	}
	for stage, want := range map[string][]string{
		"arrival": {"Encounter>ld-team-fhir:delivered"},
		"release": {"Encounter>ld-team-fhir:delivered", "Encounter>gp-fhir:delivered"},
	} {
		if strings.Join(got[stage], " ") != strings.Join(want, " ") {
			t.Errorf("stage %s: deliveries %v, want %v", stage, got[stage], want)
		}
	}
	if !strings.Contains(strings.Join(got["referral"], " "), "ServiceRequest>probation-messaging:delivered") {
		t.Errorf("referral stage: deliveries %v, want the referral delivered to probation", got["referral"])
	}
	if n := tl.Summary.ReceivedBy["Anytown Magistrates' Court"]; n != 1 {
		t.Errorf("the court received %d deliveries, want the one report after consent", n)
	}
	if tl.Patient == "" || tl.Summary.Delivered == 0 || tl.Summary.Withheld == 0 {
		t.Errorf("summary %+v, patient %q", tl.Summary, tl.Patient)
	}
}

func TestDemoCommandVerbose(t *testing.T) {
	out, _, err := runDemo(t, "--verbose")
	if err != nil {
		t.Fatalf("hjbroker demo --verbose: %v\n%s", err, out)
	}
	// Every delivery on its own with its id and attempts, and ids whole.
	if !regexp.MustCompile(`delivery [0-9a-f-]{36}, 1 attempt\(s\), received by the agency: true`).MatchString(out) {
		t.Errorf("no delivery ids in the verbose timeline:\n%s", out)
	}
	if !regexp.MustCompile(`stored    Encounter/[0-9a-f-]{36} v1`).MatchString(out) {
		t.Errorf("ids are shortened in the verbose timeline:\n%s", out)
	}
}

func TestDemoCommandRefusesABadWait(t *testing.T) {
	for _, w := range []string{"0s", "-1s"} {
		if _, _, err := runDemo(t, "--wait", w); err == nil || !strings.Contains(err.Error(), "--wait must be a positive duration") {
			t.Errorf("--wait %s: %v", w, err)
		}
	}
	if _, _, err := runDemo(t, "--wait", "soon"); err == nil {
		t.Error("--wait soon was accepted")
	}
}
