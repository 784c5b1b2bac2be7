package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func TestCreateReadSearchSmoke(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		r := s.Do("POST", "Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Smith","given":["Jo"]}],"birthDate":"1980-02-03"}`).Want(t, http.StatusCreated)
		id := r.Str("id")
		if id == "" || r.Header.Get("Location") == "" || r.Header.Get("ETag") != `W/"1"` {
			t.Fatalf("bad create response: %v %s", r.Header, r.Raw)
		}
		s.Do("GET", "Patient/"+id, nil).Want(t, http.StatusOK)
		sr := s.Do("GET", "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", nil).Want(t, http.StatusOK)
		if sr.Total() != 1 || len(sr.Entries()) != 1 {
			t.Fatalf("search by identifier: %s", sr.Raw)
		}
		for q, want := range map[string]int{"family=smi": 1, "family=jones": 0, "birthdate=1980": 1, "birthdate=gt1981": 0, "name=jo": 1, "_id=" + id: 1} {
			if got := s.Do("GET", "Patient?"+q, nil).Want(t, 200).Total(); got != want {
				t.Errorf("%s: total %d, want %d", q, got, want)
			}
		}
	})
}
