package httpapi_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/engine"
)

// condition returns a Condition about patient with the given clinical status code.
func condition(id, patient, clinical string) string {
	fields := []string{`"resourceType":"Condition"`,
		`"subject":{"reference":"Patient/` + patient + `"}`,
		`"code":{"coding":[{"system":"http://snomed.info/sct","code":"35489007","display":"Depressive disorder"}]}`,
		`"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"` + clinical + `"}]}`,
	}
	if id != "" {
		fields = append(fields, `"id":"`+id+`"`)
	}
	return "{" + strings.Join(fields, ",") + "}"
}

// codeInvalidAt reports whether r's OperationOutcome has a code-invalid error at expr.
func codeInvalidAt(r *apptest.Result, expr string) bool {
	issues, _ := r.JSON["issue"].([]any)
	for _, is := range issues {
		if apptest.Get(is, "code") != "code-invalid" || apptest.Get(is, "severity") != "error" {
			continue
		}
		ex, _ := apptest.Get(is, "expression").([]any)
		if slices.Contains(ex, any(expr)) {
			return true
		}
	}
	return false
}

// wantBindingError fails unless r is a 422 OperationOutcome with a code-invalid error at expr.
func wantBindingError(t *testing.T, r *apptest.Result, expr string) {
	t.Helper()
	wantOutcome(t, r, 422, "")
	if !codeInvalidAt(r, expr) {
		t.Errorf("no code-invalid error at %s: %s", expr, r.Raw)
	}
}

// TestRequiredBindings checks that a coded element outside its base R4 required binding is
// rejected on create, update and in a transaction, in every validating mode (reject, tag and
// quarantine alike), and that nothing is stored; with validation off it is not checked on
// write, but $validate reports it.
func TestRequiredBindings(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{engine.ValidationReject, engine.ValidationTag, engine.ValidationQuarantine} {
		t.Run(mode, func(t *testing.T) {
			forEachBackendWith(t, app.Config{Validation: mode}, func(t *testing.T, s *apptest.Server) {
				pat := create(t, s, "Patient", patient("9400000006"))
				good := create(t, s, "Condition", condition("", pat, "active"))
				before := versions(t, s)

				t.Run("create", func(t *testing.T) {
					wantBindingError(t, s.Do("POST", "Condition", condition("", pat, "current")), "Condition.clinicalStatus")
					text := `{"resourceType":"Condition","subject":{"reference":"Patient/` + pat + `"},"verificationStatus":{"text":"confirmed"}}`
					wantBindingError(t, s.Do("POST", "Condition", text), "Condition.verificationStatus")
					allergy := `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/` + pat + `"},"code":{"text":"peanut"},` +
						`"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}`
					wantBindingError(t, s.Do("POST", "AllergyIntolerance", allergy), "AllergyIntolerance.clinicalStatus")
				})
				t.Run("update", func(t *testing.T) {
					wantBindingError(t, s.Do("PUT", "Condition/"+good, condition(good, pat, "cured")), "Condition.clinicalStatus")
					if v := s.Do("GET", "Condition/"+good, nil).Want(t, 200).Str("meta.versionId"); v != "1" {
						t.Errorf("Condition/%s changed to version %s", good, v)
					}
				})
				t.Run("transaction", func(t *testing.T) {
					b := bundle("transaction",
						ent("urn:uuid:2d0c8f3e-5b1a-4c3e-9f7a-000000000001", "POST", "Patient", raw(t, patient("9400000014"))),
						ent("", "POST", "Condition", raw(t, condition("", pat, "current"))),
					)
					wantBindingError(t, s.Do("POST", "", b), "Bundle.entry[1].resource.clinicalStatus")
					if n := total(t, s, "Patient?"+nhsQuery("9400000014")); n != 0 {
						t.Errorf("the transaction's good entry was stored (%d)", n)
					}
				})
				if after := versions(t, s); after != before {
					t.Errorf("rejected writes changed the store: %d versions, was %d", after, before)
				}
				if n := total(t, s, "Condition"); n != 1 {
					t.Errorf("%d Conditions stored, want the one good one", n)
				}
				if n := total(t, s, "Basic"); n != 0 {
					t.Errorf("%d resources quarantined", n)
				}
			})
		})
	}
	t.Run("off", func(t *testing.T) {
		forEachBackendWith(t, app.Config{Validation: engine.ValidationOff}, func(t *testing.T, s *apptest.Server) {
			pat := create(t, s, "Patient", patient("9400000006"))
			id := create(t, s, "Condition", condition("", pat, "current"))
			// $validate still reports what the write did not check.
			r := s.Do("GET", "Condition/"+id+"/$validate", nil).Want(t, 200)
			if !codeInvalidAt(r, "Condition.clinicalStatus") {
				t.Errorf("$validate does not report the clinicalStatus: %s", r.Raw)
			}
		})
	})
}
