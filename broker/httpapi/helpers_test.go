package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// patient returns a Patient body with an NHS number identifier and the given extra elements.
func patient(nhs string, extra ...string) string {
	fields := []string{`"resourceType":"Patient"`}
	if nhs != "" {
		fields = append(fields, fmt.Sprintf(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}]`, nhs))
	}
	fields = append(fields, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

// nhsQuery is the identifier search for an NHS number.
func nhsQuery(nhs string) string {
	return "identifier=" + url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number|"+nhs)
}

// create POSTs body to typ and returns the new id, failing unless the answer is 201.
func create(t *testing.T, s *apptest.Server, typ, body string) string {
	t.Helper()
	r := s.Do("POST", typ, body).Want(t, 201)
	id := r.Str("id")
	if id == "" {
		t.Fatalf("create %s: no id in %s", typ, r.Raw)
	}
	return id
}

// total runs a search and returns Bundle.total, failing unless the search answers 200.
func total(t *testing.T, s *apptest.Server, query string) int {
	t.Helper()
	return s.Do("GET", query, nil).Want(t, 200).Total()
}

// wantOutcome fails unless r is an OperationOutcome with status want and, when expr is set,
// an issue whose expression contains expr.
func wantOutcome(t *testing.T, r *apptest.Result, want int, expr string) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body: %s", r.Status, want, r.Raw)
	}
	if r.Str("resourceType") != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %s", r.Raw)
	}
	if sev := r.Str("issue.0.severity"); sev != "error" && sev != "fatal" {
		t.Errorf("first issue severity %q, want error", sev)
	}
	if expr == "" {
		return
	}
	if !slices.ContainsFunc(r.IssueExpressions(), func(e string) bool { return strings.Contains(e, expr) }) {
		t.Errorf("no issue expression contains %q: %s", expr, r.Raw)
	}
}

// entryIDs lists "Type/id" of the entries whose search.mode is mode ("" for any).
func entryIDs(r *apptest.Result, mode string) []string {
	var out []string
	for _, e := range r.Entries() {
		if mode != "" && apptest.Get(e, "search.mode") != mode {
			continue
		}
		typ, _ := apptest.Get(e, "resource.resourceType").(string)
		id, _ := apptest.Get(e, "resource.id").(string)
		out = append(out, typ+"/"+id)
	}
	return out
}

// link returns the url of Bundle.link with the relation rel, or "".
func link(r *apptest.Result, rel string) string {
	links, _ := r.JSON["link"].([]any)
	for _, l := range links {
		if apptest.Get(l, "relation") == rel {
			s, _ := apptest.Get(l, "url").(string)
			return s
		}
	}
	return ""
}

// sameSet reports whether a and b hold the same strings, ignoring order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// binaryPatch wraps a JSON Patch document in a Binary resource for a Bundle entry.
func binaryPatch(patch string) map[string]any {
	return map[string]any{
		"resourceType": "Binary",
		"contentType":  "application/json-patch+json",
		"data":         base64.StdEncoding.EncodeToString([]byte(patch)),
	}
}

// raw decodes a JSON literal for embedding in a Bundle built as a Go value.
func raw(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func itoa(i int) string { return strconv.Itoa(i) }
