package httpapi_test

import (
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func TestSecExplore(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000009", "Custody"))
		oid := secCreateAs(t, s, "custody-hcp", "Observation", secObservation(pid))
		cid := secCreateAs(t, s, "ld-team", "Composition", secCourtReport(pid, "Observation/"+oid))
		t.Logf("court read: %s", s.DoAs("court", "GET", "Patient/"+pid, nil).Raw)
		t.Logf("court read missing: %s", s.DoAs("court", "GET", "Patient/nope", nil).Raw)
		t.Logf("access-check: %s", s.Do("GET", "Patient/"+pid+"/$access-check?agency=court&purpose=HLEGAL", nil).Raw)
		r := s.DoAs("custody-hcp", "POST", "Consent", secJSON(t, secConsent(pid, "OPTIN", "permit", "court", "court", "HLEGAL")))
		t.Logf("consent: %d %s", r.Status, r.Raw)
		t.Logf("court read: %s", s.DoAs("court", "GET", "Patient/"+pid, nil).Raw)
		t.Logf("court comp: %s", s.DoAs("court", "GET", "Composition/"+cid, nil).Raw)
		t.Logf("court everything: %s", s.DoAs("court", "GET", "Patient/"+pid+"/$everything", nil).Raw)
		t.Logf("access-check: %s", s.Do("GET", "Patient/"+pid+"/$access-check?agency=court&purpose=HLEGAL", nil).Raw)
		t.Logf("audit: %s", secAuditEvents(t, s, "client=court", 3).Raw)
	})
}
