package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// parallel sends n requests at once (built by mk) and returns their statuses and bodies. It
// uses its own client calls because test failures may not be raised off the test goroutine.
func parallel(t *testing.T, n int, mk func(i int) *http.Request) ([]int, []map[string]any) {
	t.Helper()
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		req := mk(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			_ = json.NewDecoder(resp.Body).Decode(&bodies[i])
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	return statuses, bodies
}

// fhirRequest builds a FHIR request as the harness's default client would send it.
func fhirRequest(t *testing.T, s *apptest.Server, method, u, body string, headers ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+s.Token("operator"))
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return req
}

func TestConcurrentConditionalCreate(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		const n = 20
		body := patient("9000000033", `"name":[{"family":"Racer"}]`)
		statuses, bodies := parallel(t, n, func(int) *http.Request {
			return fhirRequest(t, s, "POST", s.Base+"/Patient", body, "If-None-Exist: "+nhsQuery("9000000033"))
		})
		created := 0
		first, _ := bodies[0]["id"].(string)
		for i, st := range statuses {
			if st != 200 && st != 201 {
				t.Errorf("request %d: status %d %v", i, st, bodies[i])
			}
			if st == 201 {
				created++
			}
			if id, _ := bodies[i]["id"].(string); id != first || id == "" {
				t.Errorf("request %d: id %q, request 0: %q", i, id, first)
			}
		}
		if created != 1 {
			t.Errorf("%d requests created, want 1", created)
		}
		if got := total(t, s, "Patient?"+nhsQuery("9000000033")); got != 1 {
			t.Errorf("%d resources exist, want 1", got)
		}
	})
}

func TestConcurrentConditionalUpdate(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		const n = 10
		statuses, bodies := parallel(t, n, func(i int) *http.Request {
			return fhirRequest(t, s, "PUT", s.Base+"/Patient?"+nhsQuery("9000000041"), patient("9000000041", `"name":[{"family":"Cond`+itoa(i)+`"}]`))
		})
		created := 0
		for i, st := range statuses {
			switch st {
			case 201:
				created++
			case 200:
			default:
				t.Errorf("request %d: status %d %v", i, st, bodies[i])
			}
		}
		if created != 1 {
			t.Errorf("%d conditional updates created, want 1", created)
		}
		r := s.Do("GET", "Patient?"+nhsQuery("9000000041"), nil).Want(t, 200)
		if r.Total() != 1 || apptest.Get(r.JSON, "entry.0.resource.meta.versionId") != itoa(n) {
			t.Errorf("after %d conditional updates: %s", n, r.Raw)
		}
	})
}

func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		id := create(t, s, "Patient", patient("9500000008"))
		const n = 12
		statuses, _ := parallel(t, n, func(i int) *http.Request {
			return fhirRequest(t, s, "PUT", s.Base+"/Patient/"+id, patient("9500000008", `"id":"`+id+`"`, `"name":[{"family":"V`+itoa(i)+`"}]`))
		})
		for i, st := range statuses {
			if st != 200 {
				t.Errorf("update %d: status %d", i, st)
			}
		}
		// Every update got its own version: 1 + n, with no gaps or repeats.
		h := s.Do("GET", "Patient/"+id+"/_history?_count=100", nil).Want(t, 200)
		if h.Total() != n+1 {
			t.Fatalf("history has %d versions, want %d", h.Total(), n+1)
		}
		seen := map[string]bool{}
		for _, e := range h.Entries() {
			seen[apptest.Get(e, "resource.meta.versionId").(string)] = true
		}
		for v := 1; v <= n+1; v++ {
			if !seen[itoa(v)] {
				t.Errorf("version %d missing from history", v)
			}
		}
		if v := s.Do("GET", "Patient/"+id, nil).Want(t, 200).Str("meta.versionId"); v != itoa(n+1) {
			t.Errorf("current version %s, want %d", v, n+1)
		}

		// If-Match races: exactly one writer wins.
		statuses, _ = parallel(t, 8, func(i int) *http.Request {
			return fhirRequest(t, s, "PUT", s.Base+"/Patient/"+id, patient("9500000008", `"id":"`+id+`"`, `"gender":"male"`), `If-Match: W/"`+itoa(n+1)+`"`)
		})
		won := 0
		for i, st := range statuses {
			switch st {
			case 200:
				won++
			case 412, 409:
			default:
				t.Errorf("If-Match race %d: status %d", i, st)
			}
		}
		if won != 1 {
			t.Errorf("%d If-Match writers won, want 1", won)
		}
	})
}

func TestConcurrentConditionalTransactions(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		b := bundle("transaction",
			ent("urn:uuid:c0c0c0c0-0000-4000-8000-000000000001", "POST", "Patient", raw(t, patient("9500000016")), "ifNoneExist", nhsQuery("9500000016")),
			ent("", "POST", "Observation", raw(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:c0c0c0c0-0000-4000-8000-000000000001"}}`)),
		)
		raw, _ := json.Marshal(b)
		const n = 10
		statuses, bodies := parallel(t, n, func(int) *http.Request { return fhirRequest(t, s, "POST", s.Base, string(raw)) })
		var patientLoc string
		for i, st := range statuses {
			if st != 200 {
				t.Fatalf("transaction %d: status %d %v", i, st, bodies[i])
			}
			loc, _ := apptest.Get(bodies[i], "entry.0.response.location").(string)
			if patientLoc == "" {
				patientLoc = loc
			}
			if locID(loc) != locID(patientLoc) {
				t.Errorf("transaction %d resolved the patient to %s, another to %s", i, loc, patientLoc)
			}
		}
		if got := total(t, s, "Patient?"+nhsQuery("9500000016")); got != 1 {
			t.Errorf("%d patients, want 1", got)
		}
		if got := total(t, s, "Observation?subject=Patient/"+locID(patientLoc)); got != n {
			t.Errorf("%d observations on the patient, want %d", got, n)
		}
	})
}
