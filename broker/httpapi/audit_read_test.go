package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// The audit trail is served as AuditEvent: every event a search finds can be read by its id,
// and nobody (operators included) can write, version or delete one, directly or in a Bundle.
func TestAuditEventsAreReadOnly(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := create(t, s, "Patient", patient("9000000009"))
		s.Do("GET", "Patient/"+pid, nil).Want(t, 200)

		found := secAuditEvents(t, s, "patient=Patient/"+pid, 2)
		for _, e := range found.Entries() {
			full, _ := apptest.Get(e, "fullUrl").(string)
			id := full[strings.LastIndex(full, "/")+1:]
			r := s.Do("GET", "AuditEvent/"+id, nil).Want(t, 200)
			if r.Str("id") != id || r.Str("resourceType") != "AuditEvent" {
				t.Fatalf("AuditEvent/%s read as %s", id, r.Raw)
			}
			if got, want := canonicalJSON(t, r.JSON), canonicalJSON(t, apptest.Get(e, "resource")); got != want {
				t.Errorf("AuditEvent/%s read differs from the search entry:\n%s\n%s", id, got, want)
			}
		}
		wantOutcome(t, s.Do("GET", "AuditEvent/no-such-event", nil), http.StatusNotFound, "")
		// Reading the trail needs the AuditEvent scope, like searching it.
		wantOutcome(t, s.DoAs("custody-hcp", "GET", "AuditEvent/no-such-event", nil), http.StatusForbidden, "")

		ae := `{"resourceType":"AuditEvent","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110"},` +
			`"recorded":"2025-01-01T00:00:00Z","agent":[{"requestor":true,"who":{"display":"forger"}}],"source":{"observer":{"display":"x"}}}`
		before := secAuditEvents(t, s, "client=operator", 1).Total()
		for _, c := range []struct{ method, path, body string }{
			{"POST", "AuditEvent", ae},
			{"PUT", "AuditEvent/forged", strings.Replace(ae, `{"resourceType":"AuditEvent",`, `{"resourceType":"AuditEvent","id":"forged",`, 1)},
			{"DELETE", "AuditEvent/forged", ""},
			{"GET", "AuditEvent/forged/_history", ""},
			{"GET", "AuditEvent/_history", ""},
		} {
			var body any
			if c.body != "" {
				body = c.body
			}
			wantOutcome(t, s.Do(c.method, c.path, body), http.StatusMethodNotAllowed, "")
		}
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"resource":` + patient("9000000017") + `,"request":{"method":"POST","url":"Patient"}},` +
			`{"resource":` + ae + `,"request":{"method":"POST","url":"AuditEvent"}}]}`
		wantOutcome(t, s.Do("POST", "", tx), http.StatusMethodNotAllowed, "")
		if n := total(t, s, "Patient?"+nhsQuery("9000000017")); n != 0 {
			t.Errorf("the rejected transaction stored %d Patients", n)
		}
		// Nothing forged reached the trail: its events are the broker's, one per request.
		if n := secAuditEvents(t, s, "client=operator", before).Total(); n < before {
			t.Errorf("operator events went from %d to %d", before, n)
		}

		// The CapabilityStatement says so.
		for _, r := range s.Do("GET", "metadata", nil).Want(t, 200).JSON["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
			m := r.(map[string]any)
			if m["type"] != "AuditEvent" {
				continue
			}
			var codes []string
			for _, in := range m["interaction"].([]any) {
				codes = append(codes, in.(map[string]any)["code"].(string))
			}
			if strings.Join(codes, ",") != "read,search-type" || m["versioning"] != "no-version" {
				t.Errorf("AuditEvent interactions %v, versioning %v", codes, m["versioning"])
			}
		}
	})
}

// canonicalJSON re-encodes a decoded JSON value with sorted keys, for comparison.
func canonicalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
