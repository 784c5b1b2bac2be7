package httpapi_test

import (
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func TestSecurityScopes(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000041", "Scopes"))
		task := secCreateAs(t, s, "operator", "Task", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/`+pid+`"}}`)
		cases := []struct {
			name, client, method, path, body string
		}{
			{"court creating an Observation", "court", "POST", "Observation", secObservation(pid)},
			{"court updating a Patient", "court", "PUT", "Patient/" + pid, secPatient("9000000041", "Changed", `"id":"`+pid+`"`)},
			{"court searching Observations", "court", "GET", "Observation?subject=Patient/" + pid, ""},
			{"court reading the system history", "court", "GET", "_history", ""},
			{"probation deleting a Task", "probation", "DELETE", "Task/" + task, ""},
			{"probation creating a Task", "probation", "POST", "Task", `{"resourceType":"Task","status":"requested","intent":"order"}`},
			{"gp deleting a Patient", "gp", "DELETE", "Patient/" + pid, ""},
			{"ld-team deleting an Observation", "ld-team", "DELETE", "Observation?subject=Patient/" + pid, ""},
			{"court in a transaction", "court", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},"resource":` + secObservation(pid) + `}]}`},
		}
		for _, c := range cases {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := s.DoAs(c.client, c.method, c.path, body)
			wantOutcome(t, r, http.StatusForbidden, "")
			if !strings.Contains(r.Str("issue.0.diagnostics"), "scope") {
				t.Errorf("%s: the 403 does not say a scope is missing: %s", c.name, r.Raw)
			}
		}
		// Nothing was written or removed by the refused requests.
		if n := s.Do("GET", "Observation?subject=Patient/"+pid, nil).Want(t, 200).Total(); n != 0 {
			t.Errorf("refused creates stored %d Observations", n)
		}
		s.Do("GET", "Task/"+task, nil).Want(t, 200)
		s.Do("GET", "Patient/"+pid, nil).Want(t, 200)
		if v := s.Do("GET", "Patient/"+pid, nil).Str("meta.versionId"); v != "1" {
			t.Errorf("the refused update changed the Patient to version %s", v)
		}

		// A purpose the client may not claim is refused before anything is read.
		r := s.DoAs("court", "GET", "Patient/"+pid, nil, "X-Purpose-Of-Use: TREAT")
		wantOutcome(t, r, http.StatusForbidden, "")
		if !strings.Contains(r.Str("issue.0.diagnostics"), "purpose") {
			t.Errorf("purpose refusal: %s", r.Raw)
		}
	})
}

// isolationConfig is the demo configuration plus a court client whose scopes cover every type,
// so that what it does not see is withheld by the sharing rules and Consent, not by scopes.
func isolationConfig(t *testing.T) app.Config {
	return app.Config{ConfigFile: secConfigFile(t, func(cfg map[string]any) {
		secAddClient(t, cfg, "court", map[string]any{"id": "court-wide", "purposes": []any{"HLEGAL"}, "scopes": []any{"system/*.rs"}})
	}, nil)}
}

func TestSecurityAgencyIsolation(t *testing.T) {
	t.Parallel()
	secForEach(t, isolationConfig(t), func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000068", "Isolated"))
		oid := secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))
		// A second version, so the Observation has history.
		obs := s.DoAs("custody-hcp", "GET", "Observation/"+oid, nil).Want(t, 200)
		if src := obs.Str("meta.source"); src != "https://hjbroker.dev/agency/custody-hcp" {
			t.Errorf("meta.source %q, want the writing agency", src)
		}
		updated := strings.Replace(secObservation(pid), `"value":128`, `"value":131`, 1)
		updated = `{"id":"` + oid + `",` + updated[1:]
		secWant(t, s.DoAs("custody-hcp", "PUT", "Observation/"+oid, updated), 200, "custody updating its Observation")
		report := secCreateAs(t, s, "ld-team", "Composition", secCourtReport(pid, "Observation/"+oid))

		// Direct care: L&D sees custody's record (implied consent between health agencies).
		secWant(t, s.DoAs("ld-team", "GET", "Observation/"+oid, nil), 200, "ld-team reading custody's Observation")

		type view struct {
			patient, report, observation bool
		}
		// check asserts what each court client sees through every route to the data.
		check := func(t *testing.T, want view) {
			t.Helper()
			for _, client := range []string{"court", "court-wide"} {
				as := func(method, path string) *apptest.Result {
					t.Helper()
					return s.DoAs(client, method, path, nil)
				}
				wantRead := func(path string, visible bool) {
					t.Helper()
					r := as("GET", path)
					if visible && r.Status != 200 || !visible && r.Status != 404 {
						t.Errorf("%s GET %s: status %d, want visible=%v; %s", client, path, r.Status, visible, r.Raw)
					}
				}
				wantRead("Patient/"+pid, want.patient)
				wantRead("Composition/"+report, want.report)
				wantRead("Composition/"+report+"/_history/1", want.report)
				n := 0
				if want.patient {
					n = 1
				}
				ps := secWant(t, as("GET", "Patient?"+nhsQuery("9000000068")), 200, client+" Patient search")
				if ps.Total() != n || len(ps.Entries()) != n {
					t.Errorf("%s Patient search: total %d, %d entries; want %d", client, ps.Total(), len(ps.Entries()), n)
				}
				all := secWant(t, as("GET", "Patient"), 200, client+" Patient search without criteria")
				if all.Total() != n {
					t.Errorf("%s: the unfiltered Patient total %d reveals hidden Patients (want %d)", client, all.Total(), n)
				}
				// _revinclude from the Patient: the report when shared, the Observation never.
				rev := secWant(t, as("GET", "Patient?_id="+pid+"&_revinclude=Observation:subject&_revinclude=Composition:subject"), 200, client+" _revinclude")
				wantIDs := []string{}
				if want.patient {
					wantIDs = append(wantIDs, "Patient/"+pid)
				}
				if want.patient && want.report {
					wantIDs = append(wantIDs, "Composition/"+report)
				}
				if got := secIDs(rev); !sameSet(got, wantIDs) {
					t.Errorf("%s _revinclude: %v, want %v", client, got, wantIDs)
				}
				// _include from the report to what it cites and who it is about.
				inc := secWant(t, as("GET", "Composition?subject=Patient/"+pid+"&_include=Composition:entry&_include=Composition:subject"), 200, client+" _include")
				wantIDs = wantIDs[:0]
				if want.report {
					wantIDs = append(wantIDs, "Composition/"+report)
					if want.patient {
						wantIDs = append(wantIDs, "Patient/"+pid)
					}
				}
				if got := secIDs(inc); !sameSet(got, wantIDs) {
					t.Errorf("%s _include: %v, want %v", client, got, wantIDs)
				}
				if want.report != (inc.Total() == 1) {
					t.Errorf("%s Composition search total %d", client, inc.Total())
				}
				// $everything: 404 for a hidden Patient, never the Observation.
				ev := as("GET", "Patient/"+pid+"/$everything")
				switch {
				case !want.patient && ev.Status != 404:
					t.Errorf("%s $everything of a hidden Patient: %d %s", client, ev.Status, ev.Raw)
				case want.patient && ev.Status != 200:
					t.Errorf("%s $everything: %d %s", client, ev.Status, ev.Raw)
				case want.patient:
					if secHasType(ev, "Observation") || want.report != secHasType(ev, "Composition") {
						t.Errorf("%s $everything: %v", client, secIDs(ev))
					}
					if ev.Total() >= 0 && ev.Total() != len(ev.Entries()) {
						t.Errorf("%s $everything total %d for %d entries", client, ev.Total(), len(ev.Entries()))
					}
				}
				// History of the Patient: its versions only when it is shared.
				h := as("GET", "Patient/"+pid+"/_history")
				if h.Status == 200 && want.patient != (len(h.Entries()) > 0) || h.Status != 200 && h.Status != 404 {
					t.Errorf("%s Patient history: %d %v", client, h.Status, secIDs(h))
				}
				if h.Status == 200 && h.Total() > len(h.Entries()) {
					t.Errorf("%s Patient history total %d > %d entries", client, h.Total(), len(h.Entries()))
				}
			}
			// The wide client reaches the Observation by every route its scopes allow, and it is
			// never there.
			wide := func(path string) *apptest.Result {
				t.Helper()
				return s.DoAs("court-wide", "GET", path, nil)
			}
			for _, p := range []string{"Observation/" + oid, "Observation/" + oid + "/_history/1", "Observation/" + oid + "/_history/2"} {
				if r := wide(p); r.Status != 404 {
					t.Errorf("court-wide GET %s: %d %s", p, r.Status, r.Raw)
				}
			}
			if r := secWant(t, wide("Observation?subject=Patient/"+pid), 200, "court-wide Observation search"); r.Total() != 0 || len(r.Entries()) != 0 {
				t.Errorf("court-wide Observation search: total %d %v", r.Total(), secIDs(r))
			}
			if r := secWant(t, wide("Observation?_summary=count"), 200, "court-wide Observation count"); r.Total() != 0 {
				t.Errorf("court-wide Observation count: %d", r.Total())
			}
			for _, p := range []string{"Observation/" + oid + "/_history", "Observation/_history", "_history", "Patient/" + pid + "/_history"} {
				h := wide(p)
				if h.Status != 200 && h.Status != 404 {
					t.Errorf("court-wide %s: %d %s", p, h.Status, h.Raw)
					continue
				}
				if secHasType(h, "Observation") {
					t.Errorf("court-wide %s shows the Observation: %v", p, secIDs(h))
				}
				if h.Total() > len(h.Entries()) {
					t.Errorf("court-wide %s: total %d counts hidden versions (%d entries)", p, h.Total(), len(h.Entries()))
				}
			}
			// Chained and _has criteria must not test what the client may not see: the
			// Observation's code, reached from the shared report or Patient.
			for _, q := range []string{
				"Patient?_id=" + pid + "&_has:Observation:subject:code=271649006",
				"Composition?entry:Observation.code=271649006",
				"Composition?subject=Patient/" + pid + "&entry:Observation.value-quantity=131",
			} {
				if r := secWant(t, wide(q), 200, "court-wide "+q); r.Total() != 0 || len(r.Entries()) != 0 {
					t.Errorf("court-wide %s: total %d %v: a hidden Observation decided the result", q, r.Total(), secIDs(r))
				}
			}
			sys := secWant(t, wide("_history"), 200, "court-wide system history")
			if want.patient != slices.Contains(secIDs(sys), "Patient/"+pid) {
				t.Errorf("court-wide system history: %v", secIDs(sys))
			}
			// Searching across types and paging through one entry at a time.
			pages := 0
			var seen []string
			next := "Observation?_count=1"
			for next != "" && pages < 10 {
				r := secWant(t, wide(next), 200, "court-wide paging")
				seen = append(seen, secIDs(r)...)
				next = link(r, "next")
				pages++
			}
			if len(seen) != 0 {
				t.Errorf("court-wide paging through Observations: %v", seen)
			}
		}

		t.Run("without consent", func(t *testing.T) { check(t, view{}) })

		consent := secJSON(t, secConsent(pid, "OPTIN", "permit", "court", "court", "HLEGAL"))
		cid := secCreateAs(t, s, "custody-hcp", "Consent", consent)
		t.Run("with consent", func(t *testing.T) { check(t, view{patient: true, report: true}) })

		// Paging over a two-entry result stays within what is shared.
		r := secWant(t, s.DoAs("court-wide", "GET", "Patient?_id="+pid+"&_revinclude=Composition:subject&_count=1", nil), 200, "court paging")
		if r.Total() != 1 {
			t.Errorf("court Patient search total %d", r.Total())
		}

		// Withdrawing the Consent stops disclosure at once.
		withdrawn := strings.Replace(consent, `"status":"active"`, `"status":"inactive"`, 1)
		withdrawn = `{"id":"` + cid + `",` + withdrawn[1:]
		secWant(t, s.DoAs("custody-hcp", "PUT", "Consent/"+cid, withdrawn), 200, "withdrawing the Consent")
		t.Run("after withdrawal", func(t *testing.T) { check(t, view{}) })
	})
}

func TestSecurityRestrictedPatient(t *testing.T) {
	t.Parallel()
	// Custody may also record Organizations, so the registered GP can be a resource it sees.
	cfg := app.Config{ConfigFile: secConfigFile(t, func(cfg map[string]any) {
		for _, a := range cfg["agencies"].([]any) {
			if am := a.(map[string]any); am["id"] == "custody-hcp" {
				cl := am["clients"].([]any)[0].(map[string]any)
				cl["scopes"] = append(cl["scopes"].([]any), "system/Organization.cruds")
			}
		}
	}, nil)}
	secForEach(t, cfg, func(t *testing.T, s *apptest.Server) {
		gpOrg := secCreateAs(t, s, "custody-hcp", "Organization", `{"resourceType":"Organization","name":"Dr Secret's Practice","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"Y99999"}]}`)
		restricted := secPatient("9000000084", "Hidden",
			`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}`,
			`"address":[{"line":["1 Secret Lane"],"city":"Anytown","postalCode":"AN1 1AA"}]`,
			`"telecom":[{"system":"phone","value":"07700900123"}]`,
			`"generalPractitioner":[{"reference":"Organization/`+gpOrg+`","display":"Dr Secret, Anytown Medical Practice"}]`,
			`"contact":[{"name":{"family":"Kin"},"telecom":[{"system":"phone","value":"07700900999"}]}]`,
			`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">1 Secret Lane</div>"}`)
		pid := secCreateAs(t, s, "custody-hcp", "Patient", restricted)
		oid := secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))

		secrets := []string{"Secret Lane", "07700900123", "07700900999", "Dr Secret", "AN1 1AA"}
		clean := func(t *testing.T, what string, r *apptest.Result, wantPatients int) {
			t.Helper()
			for _, sec := range secrets {
				if strings.Contains(string(r.Raw), sec) {
					t.Errorf("%s leaks %q: %s", what, sec, r.Raw)
				}
			}
			var pats []any
			if r.Str("resourceType") == "Patient" {
				pats = append(pats, r.JSON)
			}
			for _, e := range r.Entries() {
				if apptest.Get(e, "resource.resourceType") == "Patient" {
					pats = append(pats, apptest.Get(e, "resource"))
				}
			}
			if len(pats) != wantPatients {
				t.Fatalf("%s: %d Patients, want %d: %s", what, len(pats), wantPatients, r.Raw)
			}
			for _, p := range pats {
				labels, _ := apptest.Get(p, "meta.security").([]any)
				codes := []string{}
				for _, l := range labels {
					c, _ := apptest.Get(l, "code").(string)
					codes = append(codes, c)
				}
				if !slices.Contains(codes, "REDACTED") || !slices.Contains(codes, "R") {
					t.Errorf("%s: labels %v, want R and REDACTED", what, codes)
				}
				if apptest.Get(p, "name.0.family") != "Hidden" {
					t.Errorf("%s: the name should still be there: %v", what, p)
				}
			}
		}
		for _, client := range []string{"custody-hcp", "gp", "ld-team"} {
			as := func(path string) *apptest.Result {
				return secWant(t, s.DoAs(client, "GET", path, nil), 200, client+" GET "+path)
			}
			clean(t, client+" read", as("Patient/"+pid), 1)
			clean(t, client+" vread", as("Patient/"+pid+"/_history/1"), 1)
			clean(t, client+" search", as("Patient?"+nhsQuery("9000000084")), 1)
			clean(t, client+" _include", as("Observation?subject=Patient/"+pid+"&_include=Observation:subject"), 1)
			clean(t, client+" $everything", as("Patient/"+pid+"/$everything"), 1)
			clean(t, client+" history", as("Patient/"+pid+"/_history"), 1)
			// Searching by what was removed must not confirm it either.
			if n := as("Patient?address-postalcode=AN1").Total(); n != 0 {
				t.Errorf("%s: search by the hidden postcode found %d", client, n)
			}
			if n := as("Patient?phone=07700900123").Total(); n != 0 {
				t.Errorf("%s: search by the hidden phone number found %d", client, n)
			}
			if n := as("Patient?general-practitioner=Organization/" + gpOrg).Total(); n != 0 {
				t.Errorf("%s: search by the hidden GP found %d", client, n)
			}
			if n := as("Observation?subject:Patient.address-postalcode=AN1").Total(); n != 0 {
				t.Errorf("%s: a chained search on the hidden postcode found %d", client, n)
			}
			if n := as("Observation?_id=" + oid + "&subject:Patient.name=Hidden").Total(); n != 1 {
				t.Errorf("%s: a chained search on the name (not redacted) found %d, want 1", client, n)
			}
		}
		// Custody may read Organizations, but following the hidden GP link must not reveal it.
		inc := secWant(t, s.DoAs("custody-hcp", "GET", "Patient?_id="+pid+"&_include=Patient:general-practitioner", nil), 200, "custody _include of the GP")
		if secHasType(inc, "Organization") {
			t.Errorf("_include followed the redacted GP link: %v", secIDs(inc))
		}
		secWant(t, s.DoAs("custody-hcp", "GET", "Organization/"+gpOrg, nil), 200, "custody reading the Organization itself")
		// Operators administer the record and see it whole.
		full := s.Do("GET", "Patient/"+pid, nil).Want(t, 200)
		if !strings.Contains(string(full.Raw), "Secret Lane") {
			t.Errorf("operator read lost the address: %s", full.Raw)
		}
	})
}

func TestSecurityBreakGlass(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000076", "Glass"))
		oid := secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))
		// The person has refused sharing with the L&D service.
		secCreateAs(t, s, "custody-hcp", "Consent", secJSON(t, secConsent(pid, "OPTOUT", "deny", "liaison-diversion", "ld-team")))

		secWant(t, s.DoAs("ld-team", "GET", "Observation/"+oid, nil), 404, "ld-team under the refusal")
		if n := secWant(t, s.DoAs("ld-team", "GET", "Observation?subject=Patient/"+pid, nil), 200, "ld-team search").Total(); n != 0 {
			t.Errorf("ld-team search under the refusal: total %d", n)
		}
		before := secMetric(t, s, "hjbroker_break_glass_total")

		// Without a reason: refused, and nothing is disclosed.
		r := s.DoAs("ld-team", "GET", "Observation/"+oid, nil, "X-Purpose-Of-Use: BTG")
		wantOutcome(t, r, http.StatusForbidden, "")
		if !strings.Contains(r.Str("issue.0.diagnostics"), "reason") {
			t.Errorf("break-glass without a reason: %s", r.Raw)
		}
		// A client that may not claim BTG cannot break the glass.
		wantOutcome(t, s.DoAs("gp", "GET", "Observation/"+oid, nil, "X-Purpose-Of-Use: BTG", "X-Break-Glass-Reason: unconscious"), http.StatusForbidden, "")

		const reason = "collapsed in court cells, clinician needs observations"
		btg := []string{"X-Purpose-Of-Use: http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG", "X-Break-Glass-Reason: " + reason}
		secWant(t, s.DoAs("ld-team", "GET", "Observation/"+oid, nil, btg...), 200, "break-glass read")
		if got := secWant(t, s.DoAs("ld-team", "GET", "Observation?subject=Patient/"+pid, nil, btg...), 200, "break-glass search").Total(); got != 1 {
			t.Errorf("break-glass search total %d, want 1", got)
		}
		// The override is per request: the next ordinary request is refused again.
		secWant(t, s.DoAs("ld-team", "GET", "Observation/"+oid, nil), 404, "ld-team after break-glass")

		if after := secMetric(t, s, "hjbroker_break_glass_total"); after-before != 2 {
			t.Errorf("hjbroker_break_glass_total went from %v to %v, want +2", before, after)
		}
		alerts := secAuditEvents(t, s, "action=break-glass", 2)
		if alerts.Total() != 2 {
			t.Fatalf("break-glass AuditEvents: %d, want 2: %s", alerts.Total(), alerts.Raw)
		}
		for _, e := range alerts.Entries() {
			ae := apptest.Get(e, "resource")
			raw := secJSON(t, ae)
			if !strings.Contains(raw, reason) || !strings.Contains(raw, "Patient/"+pid) || !strings.Contains(raw, `"break-glass"`) {
				t.Errorf("break-glass AuditEvent lacks the reason, patient or marker: %s", raw)
			}
			if apptest.Get(ae, "agent.0.who.identifier.value") != "ld-team" || apptest.Get(ae, "purposeOfEvent.0.coding.0.code") != "BTG" {
				t.Errorf("break-glass AuditEvent agent or purpose: %s", raw)
			}
		}
		// Ordinary reads leave no alert.
		if n := secAuditEvents(t, s, "action=break-glass&client=custody-hcp", 0).Total(); n != 0 {
			t.Errorf("%d break-glass alerts for custody's ordinary work", n)
		}
	})
}

// secMetric reads one unlabelled sample from /metrics.
func secMetric(t *testing.T, s *apptest.Server, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSecurityAccessCheck(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000092", "Explained"))
		secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))
		secCreateAs(t, s, "ld-team", "Composition", secCourtReport(pid, ""))
		check := func(client string) map[string]secClass {
			t.Helper()
			r := secWant(t, s.DoAs(client, "GET", "Patient/"+pid+"/$access-check?agency=court&purpose=HLEGAL", nil), 200, client+" $access-check")
			if r.Str("resourceType") != "Parameters" {
				t.Fatalf("$access-check answered %s", r.Raw)
			}
			return secClasses(r)
		}
		sees := func(path string) bool {
			return s.DoAs("court", "GET", path, nil).Status == 200
		}
		courtView := func() map[string]bool {
			return map[string]bool{
				"Patient":     sees("Patient/" + pid),
				"Composition": s.DoAs("court", "GET", "Composition?subject=Patient/"+pid, nil).Want(t, 200).Total() == 1,
			}
		}

		before := check("operator")
		for _, typ := range []string{"Patient", "Composition", "Observation"} {
			if before[typ].outcome != "withheld" {
				t.Errorf("without consent %s: %+v", typ, before[typ])
			}
		}
		if !before["Patient"].says("consent", "court-reports") {
			t.Errorf("Patient withheld without naming the consent requirement: %v", before["Patient"].reasons)
		}
		if !before["Observation"].says("rule", "court-reports") {
			t.Errorf("Observation withheld without naming the sharing rule: %v", before["Observation"].reasons)
		}
		for typ, seen := range courtView() {
			if seen {
				t.Errorf("the court sees the %s that $access-check says is withheld", typ)
			}
		}

		cid := secCreateAs(t, s, "custody-hcp", "Consent", secJSON(t, secConsent(pid, "OPTIN", "permit", "court", "court", "HLEGAL")))
		after := check("operator")
		for typ, want := range map[string]string{"Patient": "shared", "Composition": "shared", "Observation": "withheld"} {
			if after[typ].outcome != want {
				t.Errorf("with consent %s: %+v, want %s", typ, after[typ], want)
			}
		}
		if !after["Patient"].says("consent", "Consent/"+cid) || !after["Composition"].says("consent", "Consent/"+cid) {
			t.Errorf("shared classes do not cite the Consent: %v / %v", after["Patient"].reasons, after["Composition"].reasons)
		}
		if !after["Observation"].says("rule", "court-reports") {
			t.Errorf("Observation withheld without naming the rule: %v", after["Observation"].reasons)
		}
		for typ, seen := range courtView() {
			if seen != (after[typ].outcome == "shared") {
				t.Errorf("court sees %s: %v, but $access-check says %s", typ, seen, after[typ].outcome)
			}
		}
		// An agency may ask about itself, and is answered for its own client: the Consent is
		// shareable with courts, but this client has no scope to read Consents.
		self := check("court")
		for typ, c := range after {
			want := c.outcome
			if typ == "Consent" {
				want = "withheld"
				if !self[typ].says("scope", "court") {
					t.Errorf("Consent withheld from the court client without naming its scopes: %v", self[typ].reasons)
				}
			}
			if self[typ].outcome != want {
				t.Errorf("court asking about itself, %s: %s, want %s", typ, self[typ].outcome, want)
			}
		}
		if sees("Consent/"+cid) || after["Consent"].outcome != "shared" {
			t.Errorf("Consent: the court client reads it %v; agency-level answer %q", sees("Consent/"+cid), after["Consent"].outcome)
		}
		// Operators may ask the same for one client; a client of another agency is refused.
		op := secClasses(secWant(t, s.Do("GET", "Patient/"+pid+"/$access-check?agency=court&purpose=HLEGAL&client=court", nil), 200, "operator asking for a client"))
		if op["Consent"].outcome != "withheld" || op["Patient"].outcome != "shared" {
			t.Errorf("operator asking for the court client: %+v", op)
		}
		wantOutcome(t, s.Do("GET", "Patient/"+pid+"/$access-check?agency=court&purpose=HLEGAL&client=gp", nil), http.StatusBadRequest, "client")
		// ... but not about another agency.
		r := s.DoAs("court", "GET", "Patient/"+pid+"/$access-check?agency=ld-team&purpose=TREAT", nil)
		wantOutcome(t, r, http.StatusForbidden, "")
		wantOutcome(t, s.Do("GET", "Patient/"+pid+"/$access-check?agency=court", nil), http.StatusBadRequest, "")
		wantOutcome(t, s.Do("GET", "Patient/"+pid+"/$access-check?agency=nobody&purpose=HLEGAL", nil), http.StatusBadRequest, "agency")
	})
}

// secClass is one class of an $access-check answer.
type secClass struct {
	outcome string
	reasons []string
}

// says reports whether a reason of kind names id.
func (c secClass) says(kind, id string) bool {
	return slices.ContainsFunc(c.reasons, func(r string) bool { return strings.HasPrefix(r, kind+" "+id+":") })
}

// secClasses reads the classes of an $access-check Parameters, by type (unlabelled classes).
func secClasses(r *apptest.Result) map[string]secClass {
	out := map[string]secClass{}
	params, _ := r.JSON["parameter"].([]any)
	for _, p := range params {
		if apptest.Get(p, "name") != "class" {
			continue
		}
		var typ string
		var c secClass
		parts, _ := apptest.Get(p, "part").([]any)
		for _, part := range parts {
			switch apptest.Get(part, "name") {
			case "type":
				typ, _ = apptest.Get(part, "valueCode").(string)
			case "outcome":
				c.outcome, _ = apptest.Get(part, "valueString").(string)
			case "reason":
				why, _ := apptest.Get(part, "valueString").(string)
				c.reasons = append(c.reasons, why)
			}
		}
		out[typ] = c
	}
	return out
}

func TestSecurityBadConsent(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000106", "Consenting"))
		base := func() map[string]any { return secConsent(pid, "OPTIN", "permit", "court", "court", "HLEGAL") }
		cases := []struct {
			name string
			edit func(c map[string]any)
			expr string
		}{
			{"unknown action", func(c map[string]any) {
				c["provision"].(map[string]any)["action"] = []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "sell"}}}}
			}, "Consent.provision.action[0].coding[0].code"},
			{"period ends before it starts", func(c map[string]any) {
				c["provision"].(map[string]any)["period"] = map[string]any{"start": "2025-06-01", "end": "2025-01-01"}
			}, "Consent.provision.period"},
			{"nested provision without type", func(c map[string]any) {
				c["provision"].(map[string]any)["provision"] = []any{map[string]any{"purpose": []any{map[string]any{"system": secActReasonSystem, "code": "TREAT"}}}}
			}, "Consent.provision.provision[0].type"},
			{"unknown purpose", func(c map[string]any) {
				c["provision"].(map[string]any)["purpose"] = []any{map[string]any{"system": secActReasonSystem, "code": "GOSSIP"}}
			}, "Consent.provision.purpose[0].code"},
			{"unresolvable actor", func(c map[string]any) {
				c["provision"].(map[string]any)["actor"] = []any{map[string]any{
					"role":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}},
					"reference": map[string]any{"reference": "Practitioner/someone"},
				}}
			}, "Consent.provision.actor[0].reference"},
		}
		for _, c := range cases {
			body := base()
			c.edit(body)
			r := s.DoAs("custody-hcp", "POST", "Consent", secJSON(t, body))
			t.Run(c.name, func(t *testing.T) { wantOutcome(t, r, http.StatusUnprocessableEntity, c.expr) })
		}
		// The same checks guard updates, and nothing invalid was stored.
		good := base()
		cid := secCreateAs(t, s, "custody-hcp", "Consent", secJSON(t, good))
		good["id"] = cid
		good["provision"].(map[string]any)["period"] = map[string]any{"start": "2025-06-01", "end": "2025-01-01"}
		wantOutcome(t, s.DoAs("custody-hcp", "PUT", "Consent/"+cid, secJSON(t, good)), http.StatusUnprocessableEntity, "Consent.provision.period")
		if n := s.Do("GET", "Consent?patient=Patient/"+pid, nil).Want(t, 200).Total(); n != 1 {
			t.Errorf("%d Consents stored, want only the valid one", n)
		}
	})
}

func TestSecurityNoExistenceLeak(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000114", "Unseen"))
		oid := secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))
		flag := secCreateAs(t, s, "custody-hcp", "Flag", `{"resourceType":"Flag","status":"active","code":{"text":"Self-harm risk"},"subject":{"reference":"Patient/`+pid+`"}}`)
		gone := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000122", "Deleted"))
		secWant(t, s.DoAs("custody-hcp", "DELETE", "Patient/"+gone, nil), 204, "custody deleting a Patient")
		// The person refuses sharing with L&D, so ld-team (which has the scopes) may not see.
		secCreateAs(t, s, "custody-hcp", "Consent", secJSON(t, secConsent(pid, "OPTOUT", "deny", "liaison-diversion", "ld-team")))
		const missing = "00000000-0000-4000-8000-000000000000"

		same := func(t *testing.T, client, hidden, absent string, hiddenID, absentID string) {
			t.Helper()
			a := s.DoAs(client, "GET", hidden, nil)
			b := s.DoAs(client, "GET", absent, nil)
			if a.Status != b.Status || a.Status < 400 {
				t.Errorf("%s: %s answers %d, %s answers %d", client, hidden, a.Status, absent, b.Status)
				return
			}
			ta := strings.ReplaceAll(string(a.Raw), hiddenID, "ID")
			tb := strings.ReplaceAll(string(b.Raw), absentID, "ID")
			if ta != tb {
				t.Errorf("%s: the answers differ:\n hidden: %s\n absent: %s", client, a.Raw, b.Raw)
			}
			for _, h := range []string{"ETag", "Last-Modified", "Location"} {
				if a.Header.Get(h) != b.Header.Get(h) {
					t.Errorf("%s %s: header %s %q vs %q", client, hidden, h, a.Header.Get(h), b.Header.Get(h))
				}
			}
		}
		for _, c := range []struct{ client, hidden, absent, hid string }{
			{"court", "Patient/" + pid, "Patient/" + missing, pid},
			{"court", "Patient/" + pid + "/_history/1", "Patient/" + missing + "/_history/1", pid},
			{"court", "Patient/" + pid + "/$everything", "Patient/" + missing + "/$everything", pid},
			{"court", "Patient/" + gone, "Patient/" + missing, gone},
			{"court", "Observation/" + oid, "Observation/" + missing, oid},
			{"probation", "Patient/" + pid, "Patient/" + missing, pid},
			{"ld-team", "Observation/" + oid, "Observation/" + missing, oid},
			{"ld-team", "Observation/" + oid + "/_history/1", "Observation/" + missing + "/_history/1", oid},
			{"ld-team", "Flag/" + flag, "Flag/" + missing, flag},
			{"ld-team", "Patient/" + pid, "Patient/" + missing, pid},
		} {
			t.Run(c.client+" "+c.hidden, func(t *testing.T) { same(t, c.client, c.hidden, c.absent, c.hid, missing) })
		}
		// A client that may write the type still cannot overwrite or delete what it may not see.
		upd := `{"resourceType":"Flag","id":"` + flag + `","status":"inactive","code":{"text":"overwritten"},"subject":{"reference":"Patient/` + pid + `"}}`
		if r := s.DoAs("ld-team", "PUT", "Flag/"+flag, upd); r.Status < 400 {
			t.Errorf("ld-team overwrote a Flag it may not see: %d %s", r.Status, r.Raw)
		}
		if r := s.DoAs("ld-team", "DELETE", "Flag/"+flag, nil); r.Status < 400 && r.Status != 204 || r.Status == 204 && s.Do("GET", "Flag/"+flag, nil).Status != 200 {
			t.Errorf("ld-team deleted a Flag it may not see: %d %s", r.Status, r.Raw)
		}
		patch := `[{"op":"replace","path":"/status","value":"inactive"}]`
		if r := s.DoAs("ld-team", "PATCH", "Flag/"+flag, patch, "Content-Type: application/json-patch+json"); r.Status != 404 {
			t.Errorf("ld-team patching a Flag it may not see: %d %s", r.Status, r.Raw)
		}
		for _, kind := range []string{"transaction", "batch"} {
			b := `{"resourceType":"Bundle","type":"` + kind + `","entry":[{"request":{"method":"PUT","url":"Flag/` + flag + `"},"resource":` + upd + `},` +
				`{"request":{"method":"DELETE","url":"Flag/` + flag + `"}}]}`
			r := s.DoAs("ld-team", "POST", "", b)
			if kind == "transaction" && r.Status < 400 {
				t.Errorf("ld-team %s on a hidden Flag: %d %s", kind, r.Status, r.Raw)
			}
			if kind == "batch" && (!strings.HasPrefix(r.Str("entry.0.response.status"), "404") || !strings.HasPrefix(r.Str("entry.1.response.status"), "404")) {
				t.Errorf("ld-team batch on a hidden Flag: %s", r.Raw)
			}
		}
		if got := s.Do("GET", "Flag/"+flag, nil).Want(t, 200); got.Str("code.text") != "Self-harm risk" || got.Str("meta.versionId") != "1" {
			t.Errorf("the hidden Flag changed: %s", got.Raw)
		}
	})
}

func TestSecurityAudit(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		start := time.Now().UTC().Add(-time.Second)
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000130", "Audited"))
		secWant(t, s.DoAs("custody-hcp", "GET", "Patient/"+pid, nil), 200, "read")
		secWant(t, s.DoAs("custody-hcp", "GET", "Patient?_id="+pid, nil), 200, "search")
		secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))
		wantOutcome(t, s.DoAs("court", "POST", "Observation", secObservation(pid)), http.StatusForbidden, "")
		wantOutcome(t, s.DoAs("court", "GET", "Patient/"+pid, nil), http.StatusNotFound, "")
		wantOutcome(t, s.Do("GET", "Patient/"+pid, nil, "Authorization: Bearer forged"), http.StatusUnauthorized, "")

		// Every request left an event: by client, with its action and outcome.
		custody := secAuditEvents(t, s, "client=custody-hcp", 4)
		actions := map[string]int{}
		for _, e := range custody.Entries() {
			actions[secAuditAction(apptest.Get(e, "resource"))]++
		}
		for _, a := range []string{"create", "read", "search"} {
			if actions[a] == 0 {
				t.Errorf("no %s event for custody-hcp: %v", a, actions)
			}
		}
		if actions["create"] != 2 {
			t.Errorf("custody-hcp create events: %d, want 2 (%v)", actions["create"], actions)
		}
		court := secAuditEvents(t, s, "agency=court", 2)
		var denied, notFound bool
		for _, e := range court.Entries() {
			ae := apptest.Get(e, "resource")
			desc, _ := apptest.Get(ae, "outcomeDesc").(string)
			switch {
			case strings.Contains(desc, "403"):
				denied = apptest.Get(ae, "outcome") != "0"
			case strings.Contains(desc, "404"):
				notFound = true
			}
			if apptest.Get(ae, "agent.1.who.identifier.value") != "XCRT01" {
				t.Errorf("court event without the court's ODS code: %s", secJSON(t, ae))
			}
		}
		if !denied || !notFound {
			t.Errorf("court events: denial %v, not-found read %v: %s", denied, notFound, court.Raw)
		}
		if n := secAuditEvents(t, s, "action=denial", 2).Total(); n < 2 {
			t.Errorf("denial events: %d, want the 401 and the 403", n)
		}
		// By patient: the read, the search that returned them, and the writes about them.
		byPatient := secAuditEvents(t, s, "patient=Patient/"+pid, 4)
		pa := map[string]int{}
		for _, e := range byPatient.Entries() {
			pa[secAuditAction(apptest.Get(e, "resource"))]++
		}
		for _, a := range []string{"read", "search", "create"} {
			if pa[a] == 0 {
				t.Errorf("no %s event found by patient: %v", a, pa)
			}
		}
		// By date: everything is after start; nothing before it.
		if n := secAuditEvents(t, s, "date=ge"+start.Format(time.RFC3339)+"&client=custody-hcp", 4).Total(); n != custody.Total() {
			t.Errorf("date=ge start: %d events, by client %d", n, custody.Total())
		}
		if n := secAuditEvents(t, s, "date=lt"+start.Format(time.RFC3339), 0).Total(); n != 0 {
			t.Errorf("date=lt start: %d events", n)
		}
		wantOutcome(t, s.Do("GET", "AuditEvent?colour=red", nil), http.StatusBadRequest, "colour")
		// Agencies do not read the trail.
		wantOutcome(t, s.DoAs("court", "GET", "AuditEvent?agency=court", nil), http.StatusForbidden, "")

		// Let the trail settle, then verify, tamper and verify again.
		settled := secAuditEvents(t, s, "", 0).Total()
		for range 50 {
			time.Sleep(20 * time.Millisecond)
			n := secAuditEvents(t, s, "_count=0", 0).Total()
			if n == settled+1 { // only the counting search itself was added
				break
			}
			settled = n
		}
		if ok, brk, _ := secVerify(t, s); !ok {
			t.Fatalf("untouched trail does not verify: %s", brk)
		}
		db := s.Node.Store.DB()
		var first, last int64
		if err := db.QueryRow(`SELECT MIN(seq), MAX(seq) FROM audit_events`).Scan(&first, &last); err != nil {
			t.Fatal(err)
		}
		if last-first < 6 {
			t.Fatalf("only %d audit rows", last-first+1)
		}
		edited, removed := first+2, first+4
		res, err := db.Exec(s.Node.Store.Rebind(`UPDATE audit_events SET body = REPLACE(body, '"outcome":"success"', '"outcome":"error"') WHERE seq = ?`), edited)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("edited %d rows", n)
		}
		if _, err := db.Exec(s.Node.Store.Rebind(`DELETE FROM audit_events WHERE seq = ?`), removed); err != nil {
			t.Fatal(err)
		}
		ok, brk, seq := secVerify(t, s)
		if ok || seq != edited {
			t.Fatalf("after editing seq %d and deleting seq %d: ok=%v, first break %q", edited, removed, ok, brk)
		}
		// With the edit undone, the deletion is the first break.
		if _, err := db.Exec(s.Node.Store.Rebind(`UPDATE audit_events SET body = REPLACE(body, '"outcome":"error"', '"outcome":"success"') WHERE seq = ?`), edited); err != nil {
			t.Fatal(err)
		}
		if ok, brk, seq := secVerify(t, s); ok || seq != removed {
			t.Errorf("after deleting seq %d: ok=%v, first break %q", removed, ok, brk)
		}
	})
}

// secAuditAction reads the broker action code of an AuditEvent.
func secAuditAction(ae any) string {
	subs, _ := apptest.Get(ae, "subtype").([]any)
	for _, s := range subs {
		if apptest.Get(s, "system") == "https://hjbroker.dev/fhir/CodeSystem/audit-action" {
			c, _ := apptest.Get(s, "code").(string)
			return c
		}
	}
	return ""
}
