package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// A retired NHS number verification spelling is stored in its current form, and a Provenance
// records that the broker changed what it was sent, naming the client and the agency.
func TestNormalisationLeavesProvenance(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		const retired = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
		r := s.DoAs("custody-hcp", "POST", "Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009",
			"extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
			"valueCodeableConcept":{"coding":[{"system":"`+retired+`","code":"number-present-and-verified"}]}}]}]}`).Want(t, http.StatusCreated)
		id := r.Str("id")
		stored := string(s.Do("GET", "Patient/"+id, nil).Want(t, http.StatusOK).Raw)
		if strings.Contains(stored, "number-present-and-verified") || !strings.Contains(stored, `"code":"01"`) {
			t.Fatalf("not normalised: %s", stored)
		}
		prov := s.Do("GET", "Provenance?target=Patient/"+id, nil).Want(t, http.StatusOK)
		if prov.Total() != 1 {
			t.Fatalf("want one Provenance for the normalised Patient: %s", prov.Raw)
		}
		body := string(prov.Raw)
		for _, want := range []string{"XCUST01", "custody-hcp", "nhs-number-verification-status", "Patient/" + id + "/_history/1"} {
			if !strings.Contains(body, want) {
				t.Errorf("Provenance does not mention %q: %s", want, body)
			}
		}
		// A resource sent in its current form gets no Provenance.
		plain := s.DoAs("custody-hcp", "POST", "Patient", `{"resourceType":"Patient","name":[{"family":"Plain"}]}`).Want(t, http.StatusCreated)
		if n := s.Do("GET", "Provenance?target=Patient/"+plain.Str("id"), nil).Want(t, http.StatusOK).Total(); n != 0 {
			t.Fatalf("unchanged resource has %d Provenances", n)
		}
	})
}
