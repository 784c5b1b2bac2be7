package engine_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
)

const nhsSystem = "https://fhir.nhs.uk/Id/nhs-number"

// fakeResolver stands in for the PDS: it knows some numbers, one superseded, one failing.
type fakeResolver struct {
	e     *engine.Engine
	mu    sync.Mutex
	calls []string
}

func (f *fakeResolver) Resolve(ctx context.Context, req *engine.Request, system, value string) ([]string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, system+"|"+value)
	f.mu.Unlock()
	stored := value
	switch value {
	case "9000000009":
	case "9000000025": // superseded by 9000000033
		stored = "9000000033"
	case "9000000106":
		return nil, outcome.New(http.StatusGatewayTimeout, "timeout", "the outside system did not answer")
	default:
		return nil, nil
	}
	resp := f.e.Handle(ctx, &engine.Request{Method: http.MethodPost, Path: "Patient", Base: "http://test/fhir",
		Header: http.Header{"Content-Type": {"application/fhir+json"}}, Body: []byte(patientJSON(stored, ""))})
	if resp.Status != http.StatusCreated {
		return nil, outcome.New(http.StatusInternalServerError, "exception", "storing: %d", resp.Status)
	}
	res, _ := resource.Decode(resp.Body, resource.Limits{})
	if res == nil {
		res = resp.Resource
	}
	return []string{res["id"].(string)}, nil
}

func (f *fakeResolver) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// denyAll hides every resource from every requester.
type denyAll struct{}

func (denyAll) Session(context.Context, *engine.Access) engine.DisclosureSession { return denyAll{} }
func (denyAll) Disclose(context.Context, []byte) (engine.Disclosure, error) {
	return engine.Disclosure{}, nil
}

type allScopes struct{}

func (allScopes) Allows(string, byte) bool { return true }

func resolverEngine(t *testing.T, disc engine.Discloser) (*engine.Engine, *fakeResolver) {
	t.Helper()
	f := &fakeResolver{}
	cfg := testConfig(t)
	cfg.Discloser, cfg.Resolvers = disc, map[string]engine.Resolver{"Patient": f}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.e = e
	return e, f
}

func searchAs(e *engine.Engine, a *engine.Access, typ string, q url.Values) *engine.Response {
	return e.Handle(context.Background(), &engine.Request{Method: http.MethodGet, Path: typ, Query: q, Base: "http://test/fhir", Access: a})
}

func TestResolverFallback(t *testing.T) {
	e, f := resolverEngine(t, nil)
	byNHS := func(v string) url.Values { return url.Values{"identifier": {nhsSystem + "|" + v}} }
	for _, tc := range []struct {
		name      string
		typ       string
		q         url.Values
		status    int
		entries   int
		calls     int // resolver calls after this step, in all
		wantIdent string
		selfHas   string
	}{
		{"unknown locally: resolved and stored", "Patient", byNHS("9000000009"), 200, 1, 1, "9000000009", "identifier="},
		{"known now: not resolved again", "Patient", byNHS("9000000009"), 200, 1, 1, "9000000009", ""},
		{"unknown outside too", "Patient", byNHS("9000000076"), 200, 0, 2, "", ""},
		{"superseded: the new record", "Patient", byNHS("9000000025"), 200, 1, 3, "9000000033", "_id="},
		{"failure answers the search", "Patient", byNHS("9000000106"), 504, 0, 4, "", ""},
		{"more criteria: no fallback", "Patient", url.Values{"identifier": {nhsSystem + "|9000000122"}, "family": {"Smith"}}, 200, 0, 4, "", ""},
		{"no system: no fallback", "Patient", url.Values{"identifier": {"9000000122"}}, 200, 0, 4, "", ""},
		{"two values: no fallback", "Patient", url.Values{"identifier": {nhsSystem + "|9000000122," + nhsSystem + "|9000000130"}}, 200, 0, 4, "", ""},
		{"other types: no fallback", "Observation", url.Values{"identifier": {nhsSystem + "|9000000122"}}, 200, 0, 4, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := searchAs(e, nil, tc.typ, tc.q)
			if resp.Status != tc.status {
				t.Fatalf("status %d, want %d: %v", resp.Status, tc.status, resp.Resource)
			}
			if tc.status == 200 && entries(resp.Resource) != tc.entries {
				t.Errorf("%d entries, want %d", entries(resp.Resource), tc.entries)
			}
			if f.count() != tc.calls {
				t.Errorf("resolver called %d times in all, want %d (%v)", f.count(), tc.calls, f.calls)
			}
			if tc.selfHas != "" {
				self := resp.Resource["link"].([]any)[0].(map[string]any)["url"].(string)
				if !strings.Contains(self, tc.selfHas) {
					t.Errorf("self link %s, want it to contain %s", self, tc.selfHas)
				}
			}
			if tc.wantIdent != "" {
				got := resp.Resource["entry"].([]any)[0].(map[string]any)["resource"]
				if v := mustMap(got)["identifier"].([]any)[0].(map[string]any)["value"]; v != tc.wantIdent {
					t.Errorf("identifier %v, want %s", v, tc.wantIdent)
				}
			}
		})
	}
	// Nothing is stored when the resolver fails.
	if resp := searchAs(e, nil, "Patient", url.Values{}); entries(resp.Resource) != 2 {
		t.Errorf("%d Patients stored, want 2", entries(resp.Resource))
	}
}

func TestResolverSkipsHiddenPatients(t *testing.T) {
	e, f := resolverEngine(t, denyAll{})
	resp := e.Handle(context.Background(), &engine.Request{Method: http.MethodPost, Path: "Patient", Base: "http://test/fhir",
		Header: http.Header{"Content-Type": {"application/fhir+json"}}, Body: []byte(patientJSON("9000000122", ""))})
	if resp.Status != http.StatusCreated {
		t.Fatalf("create: %d", resp.Status)
	}
	who := &engine.Access{ClientID: "c", AgencyID: "a", Scopes: allScopes{}, Purpose: "TREAT"}
	resp = searchAs(e, who, "Patient", url.Values{"identifier": {nhsSystem + "|9000000122"}})
	if resp.Status != 200 || entries(resp.Resource) != 0 {
		t.Fatalf("status %d, %d entries: a hidden Patient must not show", resp.Status, entries(resp.Resource))
	}
	if f.count() != 0 {
		t.Errorf("the resolver was asked about a Patient the broker holds (hidden from the requester): %v", f.calls)
	}
}

func mustMap(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return x
	case []byte:
		m, _ := resource.Decode(x, resource.Limits{})
		return m
	}
	b, _ := v.(interface{ MarshalJSON() ([]byte, error) })
	if b != nil {
		raw, _ := b.MarshalJSON()
		m, _ := resource.Decode(raw, resource.Limits{})
		return m
	}
	return nil
}
