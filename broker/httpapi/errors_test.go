package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// forEachBackendWith is ForEachBackend with a node configuration.
func forEachBackendWith(t *testing.T, cfg app.Config, fn func(t *testing.T, s *apptest.Server)) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, apptest.Start(t, b, cfg))
		})
	}
}

// versions counts every stored version on the server.
func versions(t *testing.T, s *apptest.Server) int {
	t.Helper()
	return s.Do("GET", "_history", nil).Want(t, 200).Total()
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		id := create(t, s, "Patient", patient("9400000006"))
		put := func(extra ...string) string {
			return patient("9400000006", append([]string{`"id":"` + id + `"`}, extra...)...)
		}
		deep := `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x.example","extension":[`, 40) + strings.Repeat(`]}`, 40) + `]}`
		cases := []struct {
			name, method, path, body string
			headers                  []string
			status                   int
			expr                     string
		}{
			{"malformed JSON", "POST", "Patient", `{"resourceType":"Patient",`, nil, 400, ""},
			{"not an object", "POST", "Patient", `[1,2]`, nil, 400, ""},
			{"trailing data", "POST", "Patient", `{"resourceType":"Patient"} {}`, nil, 400, ""},
			{"empty body", "POST", "Patient", ``, nil, 400, ""},
			{"no resourceType", "POST", "Patient", `{"gender":"male"}`, nil, 400, "resourceType"},
			{"wrong resourceType", "POST", "Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "resourceType"},
			{"unknown element", "POST", "Patient", patient("", `"foo":"bar"`), nil, 400, "Patient.foo"},
			{"nested unknown element", "POST", "Patient", patient("", `"name":[{"family":"X","surname":"Y"}]`), nil, 400, "Patient.name"},
			{"bad primitive", "POST", "Patient", patient("", `"birthDate":"03/02/1980"`), nil, 400, "Patient.birthDate"},
			{"wrong JSON type", "POST", "Patient", patient("", `"birthDate":1980`), nil, 400, "Patient.birthDate"},
			{"bad boolean", "POST", "Patient", patient("", `"active":"yes"`), nil, 400, "Patient.active"},
			{"code outside binding", "POST", "Patient", patient("", `"gender":"M"`), nil, 400, "Patient.gender"},
			{"repeated property", "POST", "Patient", `{"resourceType":"Patient","gender":"male","gender":"female"}`, nil, 400, ""},
			{"repeated nested property", "POST", "Patient", patient("", `"name":[{"family":"A","family":"B"}]`), nil, 400, ""},
			{"empty string", "POST", "Patient", patient("", `"gender":""`), nil, 400, "Patient.gender"},
			{"empty nested string", "POST", "Patient", patient("", `"name":[{"family":""}]`), nil, 400, "Patient.name[0].family"},
			{"empty array", "POST", "Patient", patient("", `"name":[]`), nil, 400, "Patient.name"},
			{"null value", "POST", "Patient", patient("", `"gender":null`), nil, 400, "Patient.gender"},
			{"missing required element", "POST", "Observation", `{"resourceType":"Observation","code":{"text":"x"}}`, nil, 422, "Observation.status"},
			{"not a resource type", "POST", "Patients", patient(""), nil, 404, ""},
			{"too deep", "POST", "Patient", deep, nil, 400, ""},
			{"text/plain", "POST", "Patient", patient(""), []string{"Content-Type: text/plain"}, 415, ""},
			{"xml", "POST", "Patient", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type: application/fhir+xml"}, 415, ""},
			{"no content type", "PUT", "Patient/" + id, put(), []string{"Content-Type:"}, 415, ""},
			{"form on create", "POST", "Patient", "family=x", []string{"Content-Type: application/x-www-form-urlencoded"}, 415, ""},
			{"json patch on PUT", "PUT", "Patient/" + id, `[]`, []string{"Content-Type: application/json-patch+json"}, 415, ""},
			{"accept xml", "GET", "Patient/" + id, "", []string{"Accept: application/fhir+xml"}, 406, ""},
			{"accept html", "GET", "Patient?_id=" + id, "", []string{"Accept: text/html"}, 406, ""},
			{"_format xml", "GET", "Patient/" + id + "?_format=xml", "", nil, 406, "_format"},
			{"update bad primitive", "PUT", "Patient/" + id, put(`"birthDate":"1980-02-30"`), nil, 400, "Patient.birthDate"},
			{"update unknown element", "PUT", "Patient/" + id, put(`"colour":"blue"`), nil, 400, "Patient.colour"},
			{"bad id in URL", "PUT", "Patient/a_b", patient("", `"id":"a_b"`), nil, 400, ""},
			{"id too long", "PUT", "Patient/" + strings.Repeat("a", 65), patient("", `"id":"`+strings.Repeat("a", 65)+`"`), nil, 400, ""},
		}
		before := versions(t, s)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body any
				if c.body != "" {
					body = c.body
				}
				wantOutcome(t, s.Do(c.method, c.path, body, c.headers...), c.status, c.expr)
			})
		}
		if after := versions(t, s); after != before {
			t.Errorf("bad input changed the store: %d versions, was %d", after, before)
		}
		if v := s.Do("GET", "Patient/"+id, nil).Want(t, 200).Str("meta.versionId"); v != "1" {
			t.Errorf("patient is at version %s", v)
		}
		// Accept lists with JSON somewhere are fine.
		s.Do("GET", "Patient/"+id, nil, "Accept: application/fhir+xml;q=0.9, application/fhir+json").Want(t, 200)
		s.Do("GET", "Patient/"+id, nil, "Accept: */*").Want(t, 200)
		for _, f := range []string{"json", "application/fhir%2Bjson", "application/fhir+json", "application/fhir%2Bjson;fhirVersion=4.0"} {
			s.Do("GET", "Patient/"+id+"?_format="+f, nil).Want(t, 200)
		}
	})
}

func TestLimits(t *testing.T) {
	t.Parallel()
	cfg := app.Config{Limits: engine.Limits{MaxBodyBytes: 1000, MaxDepth: 10, MaxEntries: 3}}
	forEachBackendWith(t, cfg, func(t *testing.T, s *apptest.Server) {
		shipped := versions(t, s) // the L&D resources every node loads at start
		big := patient("", `"name":[{"family":"`+strings.Repeat("x", 1200)+`"}]`)
		wantOutcome(t, s.Do("POST", "Patient", big), 413, "")

		// Without Content-Length the limit still holds while reading.
		req, _ := http.NewRequest("POST", s.Base+"/Patient", io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+s.Token("operator"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 || resp.ContentLength == 0 {
			t.Errorf("chunked oversized body: status %d", resp.StatusCode)
		}

		deep := `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x.example","extension":[`, 6) + strings.Repeat(`]}`, 6) + `]}`
		wantOutcome(t, s.Do("POST", "Patient", deep), 400, "")

		four := bundle("batch",
			ent("", "GET", "metadata", nil), ent("", "GET", "metadata", nil),
			ent("", "GET", "metadata", nil), ent("", "GET", "metadata", nil))
		wantOutcome(t, s.Do("POST", "", four), 413, "Bundle.entry")
		four["type"] = "transaction"
		wantOutcome(t, s.Do("POST", "", four), 413, "Bundle.entry")

		// Within the limits all is well, and nothing was stored by the rejected requests.
		if n := versions(t, s) - shipped; n != 0 {
			t.Errorf("rejected requests stored %d versions", n)
		}
		create(t, s, "Patient", patient("9400000014"))
	})
}

func TestObservability(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	forEachBackendWith(t, app.Config{Logger: zap.New(core)}, func(t *testing.T, s *apptest.Server) {
		logs.TakeAll()
		r := s.Do("GET", "metadata", nil, "X-Request-ID: req-123", "X-Correlation-ID: corr-456")
		if r.Header.Get("X-Request-ID") != "req-123" || r.Header.Get("X-Correlation-ID") != "corr-456" {
			t.Errorf("ids not echoed: %v", r.Header)
		}
		a := s.Do("GET", "Patient/nobody", nil).Header.Get("X-Request-ID")
		b := s.Do("GET", "Patient/nobody", nil).Header.Get("X-Request-ID")
		if a == "" || a == b {
			t.Errorf("generated request ids %q and %q", a, b)
		}
		if got := s.Do("GET", "metadata", nil, "X-Request-ID: "+strings.Repeat("r", 300)).Header.Get("X-Request-ID"); len(got) > 200 || got == "" {
			t.Errorf("oversized request id was echoed or dropped: %d chars", len(got))
		}

		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(s.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") == "" {
				t.Errorf("%s: status %d", path, resp.StatusCode)
			}
		}

		create(t, s, "Patient", patient("9400000022"))
		resp, err := http.Get(s.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`hjbroker_fhir_requests_total{code="201",interaction="create",method="POST"} 1`,
			`hjbroker_fhir_requests_total{code="404",interaction="read",method="GET"} 2`,
			`hjbroker_fhir_requests_total{code="200",interaction="capabilities",method="GET"}`,
			`hjbroker_fhir_request_duration_seconds_bucket{interaction="create"`,
			"hjbroker_fhir_requests_in_flight",
			"go_goroutines",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}

		// Access logs carry the ids, the request and what became of it.
		var found bool
		for _, e := range logs.FilterMessage("request").All() {
			f := e.ContextMap()
			if f["request_id"] == "req-123" {
				found = true
				if f["correlation_id"] != "corr-456" || f["method"] != "GET" || f["path"] != "/fhir/metadata" ||
					f["status"] != int64(200) || f["interaction"] != "capabilities" || f["latency"] == nil {
					t.Errorf("access log fields: %v", f)
				}
			}
		}
		if !found {
			t.Errorf("no access log line for request req-123 among %d", logs.Len())
		}

		// Outside /fhir: an OperationOutcome 404.
		wantOutcome(t, s.Do("GET", s.URL+"/nothing-here", nil), 404, "")
		// _pretty indents.
		if p := s.Do("GET", "metadata?_pretty=true", nil).Want(t, 200); !strings.Contains(string(p.Raw[:40]), "\n  ") {
			t.Errorf("_pretty=true is not indented: %.40s", p.Raw)
		}
	})
}
