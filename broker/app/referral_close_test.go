package app_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// TestEndingReferralTaskClosesServiceRequest: when probation ends a referral's Task, the
// broker moves the ServiceRequest to the matching request status in the same transaction,
// with a Provenance, although probation may not update ServiceRequests itself; L&D is sent
// both changes by the demo routes.
func TestEndingReferralTaskClosesServiceRequest(t *testing.T) {
	cases := []struct {
		name   string
		steps  []string
		reason string
		want   string
	}{
		{"completed", []string{"received", "accepted", "in-progress", "completed"}, "", "completed"},
		{"rejected", []string{"received", "rejected"}, "The person lives outside the region", "revoked"},
	}
	for _, b := range storetest.Backends(t) {
		for _, tc := range cases {
			t.Run(b.Name+"/"+tc.name, func(t *testing.T) {
				s, sk := startReferralDemo(t, b)
				p := newPatient(t, s, "9000000009")
				s.DoAs("ld-team", http.MethodPost, "QuestionnaireResponse/$extract", assessmentQR(t, p)).Want(t, http.StatusOK)
				tasks := s.DoAs("probation", http.MethodGet, "Task?owner:identifier="+url.QueryEscape(odsProbation)+"&status=requested", nil).Want(t, http.StatusOK)
				if len(tasks.Entries()) != 1 {
					t.Fatalf("probation's open Tasks: %s", tasks.Raw)
				}
				task := apptest.Get(tasks.JSON, "entry.0.resource").(map[string]any)
				taskID := task["id"].(string)
				srRef := tasks.Str("entry.0.resource.focus.reference")
				sr := s.DoAs("ld-team", http.MethodGet, srRef, nil).Want(t, http.StatusOK)
				if sr.Str("status") != "active" {
					t.Fatalf("the referral starts %q", sr.Str("status"))
				}
				// Probation may not change the ServiceRequest itself.
				srBody := sr.JSON
				srBody["status"] = tc.want
				s.DoAs("probation", http.MethodPut, srRef, srBody).Want(t, http.StatusForbidden)

				for i, status := range tc.steps {
					task["status"] = status
					if status == "rejected" {
						task["statusReason"] = map[string]any{"text": tc.reason}
					}
					s.DoAs("probation", http.MethodPut, "Task/"+taskID, task).Want(t, http.StatusOK)
					// Only the Task's final move changes the ServiceRequest.
					wantSR, wantVersion := "active", "1"
					if i == len(tc.steps)-1 {
						wantSR, wantVersion = tc.want, "2"
					}
					got := s.DoAs("ld-team", http.MethodGet, srRef, nil).Want(t, http.StatusOK)
					if got.Str("status") != wantSR || got.Str("meta.versionId") != wantVersion {
						t.Fatalf("after Task %s the ServiceRequest is %s version %s, want %s version %s", status, got.Str("status"), got.Str("meta.versionId"), wantSR, wantVersion)
					}
				}
				// Indexed: the ServiceRequest is found by its new status, and no longer as active.
				if n := len(s.DoAs("ld-team", http.MethodGet, "ServiceRequest?_id="+srRef[len("ServiceRequest/"):]+"&status="+tc.want, nil).Want(t, http.StatusOK).Entries()); n != 1 {
					t.Errorf("ServiceRequest?status=%s finds %d", tc.want, n)
				}
				if n := len(s.DoAs("probation", http.MethodGet, "ServiceRequest?performer:identifier="+url.QueryEscape(odsProbation)+"&status=active", nil).Want(t, http.StatusOK).Entries()); n != 0 {
					t.Errorf("probation still pulls %d active referrals", n)
				}
				// The change is the broker's, recorded with a Provenance naming the Task version.
				taskVersion := fmt.Sprint(len(tc.steps) + 1)
				provs := s.Do(http.MethodGet, "Provenance?entity="+url.QueryEscape("Task/"+taskID+"/_history/"+taskVersion), nil).Want(t, http.StatusOK)
				if len(provs.Entries()) != 1 {
					t.Fatalf("Provenances of the Task change: %s", provs.Raw)
				}
				prov := apptest.Get(provs.JSON, "entry.0.resource").(map[string]any)
				for path, want := range map[string]string{
					"target.0.reference":      srRef + "/_history/2",
					"activity.coding.0.code":  "UPDATE",
					"agent.0.who.display":     "hjbroker",
					"entity.0.what.reference": "Task/" + taskID + "/_history/" + taskVersion,
					"reason.0.text":           fmt.Sprintf("referral Task/%s moved to %s, so its ServiceRequest is %s", taskID, tc.steps[len(tc.steps)-1], tc.want),
				} {
					if got := apptest.Get(prov, path); got != want {
						t.Errorf("Provenance %s = %v, want %q", path, got, want)
					}
				}
				// Both are valid UK Core.
				v, err := app.NewValidator(fhirpath.NewEngine(r4model.Load()), nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, res := range []map[string]any{prov, s.Do(http.MethodGet, srRef, nil).Want(t, http.StatusOK).JSON} {
					if r := v.Validate(res, validate.Options{}); !r.Valid() {
						t.Errorf("%s is not valid: %v", res["resourceType"], r.Issues)
					}
				}
				// The recorder stays L&D: the broker revised L&D's record.
				if src, want := s.Do(http.MethodGet, srRef, nil).Str("meta.source"), sr.Str("meta.source"); src != want {
					t.Errorf("meta.source %q, was %q", src, want)
				}
				// L&D receives the Task's final change and the ServiceRequest's new version.
				if !sk.ld.WaitFor(15*time.Second, func(as []deliverytest.Attempt) bool {
					var gotTask, gotSR bool
					for _, a := range as {
						gotTask = gotTask || (a.Resource == "Task/"+taskID && a.Version == taskVersion && a.Status == http.StatusOK)
						gotSR = gotSR || (a.Resource == srRef && a.Version == "2" && a.Status == http.StatusOK)
					}
					return gotTask && gotSR
				}) {
					t.Fatalf("L&D received %+v; deliveries %v", sk.ld.Attempts(), deliveries(t, s, ""))
				}
				// By the route for probation's changes to a referral, to L&D only: probation, who
				// caused it, is not sent its own change back.
				var srDeliveries []string
				for _, d := range deliveries(t, s, "") {
					if d["resource"] == srRef+"/_history/2" {
						srDeliveries = append(srDeliveries, fmt.Sprint(d["destination"], " by ", d["route"]))
					}
				}
				if len(srDeliveries) != 1 || srDeliveries[0] != "ld-team-fhir by referral-updates-to-referrer" {
					t.Errorf("ServiceRequest version 2 delivered %v; want once, to ld-team-fhir by referral-updates-to-referrer", srDeliveries)
				}
			})
		}
	}
}
