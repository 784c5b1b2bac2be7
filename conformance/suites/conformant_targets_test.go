package suites_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/conformance/conformancetest"
	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/suites"
)

// startWithSpine runs a broker on b connected to a Spine simulator with its test patients,
// as the spine-lookup suite needs (every other suite runs on it as on any broker).
func startWithSpine(t *testing.T, b storetest.Backend) *apptest.Server {
	t.Helper()
	_, opts := apptest.StartSpine(t, spinesim.Options{SlowDelay: 10 * time.Second})
	opts.Timeout, opts.Attempts = 2*time.Second, 2
	return apptest.Start(t, b, app.Config{Spine: opts})
}

// target starts a broker (with the Spine simulator) for the named shipped suite and returns
// the suite, the server, the header of the suite's client and the token variables of its
// further clients.
func target(t *testing.T, name string) (*suite.Suite, *apptest.Server, http.Header, map[string]string) {
	t.Helper()
	all, err := suite.LoadAll(suites.FS())
	if err != nil {
		t.Fatal(err)
	}
	found, err := suite.Find(all, []string{name})
	if err != nil {
		t.Fatal(err)
	}
	s := found[0]
	srv := startWithSpine(t, storetest.Backends(t)[0])
	vars, err := s.TokenVariables(func(c string) (string, error) { return srv.Token(c), nil })
	if err != nil {
		t.Fatal(err)
	}
	return s, srv, http.Header{"Authorization": {"Bearer " + srv.Token(s.Client)}}, vars
}

// dropEntries removes the Bundle entries drop selects.
func dropEntries(m map[string]any, drop func(e map[string]any) bool) map[string]any {
	list, _ := m["entry"].([]any)
	var kept []any
	for _, e := range list {
		if em, _ := e.(map[string]any); em == nil || !drop(em) {
			kept = append(kept, e)
		}
	}
	m["entry"] = kept
	return m
}

// wantMessages fails the test unless each named test's failure message says what the fault
// broke.
func wantMessages(t *testing.T, res *suite.Result, want map[string]string) {
	t.Helper()
	for _, sc := range res.Scripts {
		for _, tr := range sc.Tests {
			if w, ok := want[sc.File+"/"+tr.Name]; ok && !strings.Contains(tr.Message, w) {
				t.Errorf("%s/%s: message %q does not say %q", sc.File, tr.Name, tr.Message, w)
			}
		}
	}
}

func isInclude(e map[string]any) bool {
	mode, _ := e["search"].(map[string]any)
	return mode != nil && mode["mode"] == "include"
}

var path = regexp.MustCompile

// TestCustodyEMRCatchesNonConformance runs custody-emr through a proxy that breaks one
// behaviour per fault, and checks that exactly the tests of those behaviours fail.
func TestCustodyEMRCatchesNonConformance(t *testing.T) {
	s, srv, hdr, vars := target(t, "custody-emr")
	proxy := conformancetest.NewProxy(t, srv.Base,
		conformancetest.Fault{Name: "conditional create makes a second Patient", Method: "POST", Path: path(`^Patient$`),
			Request: `"Custody"`, Status: http.StatusOK, SetStatus: http.StatusCreated,
			Rewrite: func(m map[string]any) map[string]any { m["id"] = "another-patient"; return m }},
		conformancetest.Fault{Name: "search by NHS number finds nothing", Method: "GET", Path: path(`^Patient$`), Query: "9990100012",
			Rewrite: func(m map[string]any) map[string]any {
				m["total"] = 0
				return dropEntries(m, func(map[string]any) bool { return true })
			}},
		conformancetest.Fault{Name: "a bad check digit is accepted", Method: "POST", Path: path(`^Patient$`), Request: `"Checkdigit"`,
			SetStatus: http.StatusCreated},
		conformancetest.Fault{Name: "transaction references left as urn:uuid", Method: "GET", Path: path(`^Observation/[^/$]+$`),
			Rewrite: func(m map[string]any) map[string]any {
				m["subject"] = map[string]any{"reference": "urn:uuid:3f0c2a9e-1d7b-4c55-8a41-0c9b7e5d2a01"}
				return m
			}},
		conformancetest.Fault{Name: "an invalid transaction answers 200", Method: "POST", Path: path(`^$`), Request: `-bad-enc"`,
			SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "validation errors without expression", Method: "POST", Path: path(`^Observation$`), Status: http.StatusUnprocessableEntity,
			Rewrite: func(m map[string]any) map[string]any {
				for _, is := range m["issue"].([]any) {
					delete(is.(map[string]any), "expression")
				}
				return m
			}},
		conformancetest.Fault{Name: "ingest loses the allergy", Method: "POST", Path: path(`^\$ingest-clinical-entries$`), Status: http.StatusOK,
			Rewrite: func(m map[string]any) map[string]any {
				return dropEntries(m, func(e map[string]any) bool {
					loc, _ := apptest.Get(e, "response.location").(string)
					return path(`^AllergyIntolerance/`).MatchString(loc)
				})
			}},
	)
	res := conformancetest.Run(t, s, proxy.Base, hdr, vars)
	wantMessages(t, res, map[string]string{
		"patient.json/conditional-create":       "HTTP status is 201, expected okay (200)",
		"patient.json/search-by-nhs-number":     "total is 0, expected 1",
		"patient.json/nhs-number-check-digit":   "HTTP status is 201, expected unprocessable (422)",
		"transaction.json/references-rewritten": "subject.reference is urn:uuid:",
		"transaction.json/atomic":               "HTTP status is 200, expected unprocessable (422)",
		"validation.json/missing-required":      "an error at Observation.status",
		"ingest.json/ingest":                    "AllergyIntolerance",
	})
	conformancetest.ExpectFailures(t, res, proxy,
		"patient.json/conditional-create",
		"patient.json/search-by-nhs-number",
		"patient.json/nhs-number-check-digit",
		"transaction.json/references-rewritten",
		"transaction.json/atomic",
		"validation.json/missing-required",
		"ingest.json/ingest",
	)
}

// TestCRCCaseSystemCatchesNonConformance does the same for crc-case-system.
func TestCRCCaseSystemCatchesNonConformance(t *testing.T) {
	s, srv, hdr, vars := target(t, "crc-case-system")
	dropIncludes := func(m map[string]any) map[string]any { return dropEntries(m, isInclude) }
	proxy := conformancetest.NewProxy(t, srv.Base,
		conformancetest.Fault{Name: "_include ignored", Method: "GET", Path: path(`^ServiceRequest$`), Query: "_include=ServiceRequest:subject",
			Rewrite: dropIncludes},
		conformancetest.Fault{Name: "_lastUpdated=gt ignored", Method: "GET", Path: path(`^ServiceRequest$`), Query: "_lastUpdated=gt",
			Rewrite: func(m map[string]any) map[string]any { m["total"] = 1; return m }},
		conformancetest.Fault{Name: "_revinclude ignored", Method: "GET", Path: path(`^ServiceRequest$`), Query: "_revinclude=Task:focus",
			Rewrite: dropIncludes},
		conformancetest.Fault{Name: "a withheld referral is disclosed", Method: "GET", Path: path(`^ServiceRequest/[^/$]+$`), Status: http.StatusNotFound,
			SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "an illegal transition is stored", Method: "PUT", Path: path(`^Task/[^/]+$`), Request: `"requested"`,
			Status: http.StatusConflict, SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "anyone may move the work on", Method: "PUT", Path: path(`^Task/[^/]+$`), Status: http.StatusForbidden,
			SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "a rejection without reason is stored", Method: "PUT", Path: path(`^Task/[^/]+$`),
			Status: http.StatusUnprocessableEntity, SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "JSON Patch not applied", Method: "PATCH", Path: path(`^Task/[^/]+$`),
			Rewrite: func(m map[string]any) map[string]any { m["status"] = "accepted"; return m }},
	)
	res := conformancetest.Run(t, s, proxy.Base, hdr, vars)
	wantMessages(t, res, map[string]string{
		"referrals.json/active-referrals": "its Patient included",
		"referrals.json/withheld":         "HTTP status is 200, expected notFound (404)",
		"referrals.json/poll-since":       "total is 1, expected 0",
		"referrals.json/with-tasks":       "the Task included",
		"tasks.json/illegal-transition":   "HTTP status is 200, expected conflict (409)",
		"tasks.json/owner-only":           "HTTP status is 200, expected forbidden (403)",
		"tasks.json/start-by-patch":       "status is accepted, expected in-progress",
		"tasks.json/reject-needs-reason":  "HTTP status is 200, expected unprocessable (422)",
	})
	conformancetest.ExpectFailures(t, res, proxy,
		"referrals.json/active-referrals",
		"referrals.json/poll-since",
		"referrals.json/with-tasks",
		"referrals.json/withheld",
		"tasks.json/illegal-transition",
		"tasks.json/owner-only",
		"tasks.json/start-by-patch",
		"tasks.json/reject-needs-reason",
	)
}

// TestSpineLookupCatchesNonConformance does the same for spine-lookup. The Patients are
// looked up first, so that the faults can name each one's $summary.
func TestSpineLookupCatchesNonConformance(t *testing.T) {
	s, srv, hdr, vars := target(t, "spine-lookup")
	idOf := func(nhs string) string {
		r := srv.DoAs("custody-hcp", "GET", "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhs, nil).Want(t, 200)
		return regexp.QuoteMeta(r.Str("entry.0.resource.id"))
	}
	ask, optedOut, restricted, normal := idOf(spinesim.AskPatient), idOf(spinesim.OptedOutPatient), idOf(spinesim.RestrictedPatient), idOf(spinesim.NormalPatient)
	summary := func(id string) *regexp.Regexp { return path(`^Patient/` + id + `/\$summary$`) }
	proxy := conformancetest.NewProxy(t, srv.Base,
		conformancetest.Fault{Name: "PDS fallback answers nothing", Method: "GET", Path: path(`^Patient$`), Query: "_summary=false",
			Rewrite: func(m map[string]any) map[string]any {
				m["total"] = 0
				return dropEntries(m, func(map[string]any) bool { return true })
			}},
		conformancetest.Fault{Name: "a restricted record keeps its address", Method: "GET", Path: path(`^Patient$`), Query: spinesim.RestrictedPatient,
			Rewrite: func(m map[string]any) map[string]any {
				if p, ok := apptest.Get(m, "entry.0.resource").(map[string]any); ok {
					p["address"] = []any{map[string]any{"postalCode": "LS1 6AE"}}
				}
				return m
			}},
		conformancetest.Fault{Name: "a superseded number answered as asked", Method: "GET", Path: path(`^Patient$`), Query: spinesim.SupersededNumber,
			Rewrite: func(m map[string]any) map[string]any {
				if ids, ok := apptest.Get(m, "entry.0.resource.identifier").([]any); ok && len(ids) > 0 {
					ids[0].(map[string]any)["value"] = spinesim.SupersededNumber
				}
				return m
			}},
		conformancetest.Fault{Name: "an invalid number is looked up", Method: "GET", Path: path(`^Patient$`), Query: spinesim.InvalidNumber,
			Status: http.StatusBadRequest, SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "the summary is not a document", Method: "GET", Path: summary(normal), Status: http.StatusOK,
			Rewrite: func(m map[string]any) map[string]any { m["type"] = "collection"; return m }},
		conformancetest.Fault{Name: "Ask answered without Consent or emergency", Method: "GET", Path: summary(ask), Status: http.StatusForbidden,
			SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "an opted-out SCR is read in an emergency", Method: "GET", Path: summary(optedOut), Status: http.StatusForbidden,
			SetStatus: http.StatusOK},
		conformancetest.Fault{Name: "a restricted person's summary is answered", Method: "GET", Path: summary(restricted), Status: http.StatusNotFound,
			SetStatus: http.StatusOK},
	)
	res := conformancetest.Run(t, s, proxy.Base, hdr, vars)
	wantMessages(t, res, map[string]string{
		"pds.json/normal":                  "total is 0, expected 1",
		"pds.json/restricted":              "no address, telecom or GP",
		"pds.json/superseded":              "the current number",
		"pds.json/invalid-number":          "HTTP status is 200, expected bad (400)",
		"summary.json/with-consent":        "type is collection, expected document",
		"summary.json/ask-without-consent": "HTTP status is 200, expected forbidden (403)",
		"summary.json/break-glass":         "HTTP status is 200, expected forbidden (403)",
		"summary.json/opted-out":           "HTTP status is 200, expected forbidden (403)",
		"summary.json/restricted":          "HTTP status is 200, expected notFound (404)",
	})
	conformancetest.ExpectFailures(t, res, proxy,
		"pds.json/normal",
		"pds.json/restricted",
		"pds.json/superseded",
		"pds.json/invalid-number",
		"summary.json/with-consent",
		"summary.json/ask-without-consent",
		"summary.json/break-glass",
		"summary.json/opted-out",
		"summary.json/restricted",
	)
}
