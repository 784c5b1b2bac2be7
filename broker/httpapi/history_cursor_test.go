package httpapi_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// TestHistoryCursorLinks follows type history's next links to the end and its previous
// links back: the links continue from the sequence number of the entry shown last (first),
// and a malformed cursor is refused naming _cursor.
func TestHistoryCursorLinks(t *testing.T) {
	t.Parallel()
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		var want []string
		for _, visit := range []string{"v1", "v2", "v3", "v4", "v5"} {
			id := create(t, s, "Encounter", `{"resourceType":"Encounter","status":"planned","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"identifier":[{"value":"`+visit+`"}]}`)
			want = append(want, "Encounter/"+id)
		}
		slices.Reverse(want) // newest first
		ids := func(r *apptest.Result) []string {
			var out []string
			for _, e := range r.Entries() {
				u := apptest.Get(e, "fullUrl").(string)
				out = append(out, u[strings.Index(u, "Encounter/"):])
			}
			return out
		}
		page := s.Do("GET", "Encounter/_history?_count=2", nil).Want(t, 200)
		if link(page, "previous") != "" {
			t.Errorf("the first page has a previous link: %s", link(page, "previous"))
		}
		seen := ids(page)
		var pages []*apptest.Result
		pages = append(pages, page)
		for link(page, "next") != "" && len(pages) < 10 {
			next := link(page, "next")
			if !strings.Contains(next, "_cursor=lt") {
				t.Errorf("next link %s does not continue from a sequence number", next)
			}
			page = s.Do("GET", next, nil).Want(t, 200)
			if page.Total() != 5 {
				t.Errorf("total %d on a later page, want 5", page.Total())
			}
			seen = append(seen, ids(page)...)
			pages = append(pages, page)
		}
		if !slices.Equal(seen, want) || len(pages) != 3 {
			t.Fatalf("paged forward %v in %d pages, want %v in 3", seen, len(pages), want)
		}
		// Back from the last page: each previous link gives the page before it.
		for i := len(pages) - 1; i > 0; i-- {
			prev := link(pages[i], "previous")
			if !strings.Contains(prev, "_cursor=gt") {
				t.Fatalf("page %d's previous link %q", i, prev)
			}
			if got, w := ids(s.Do("GET", prev, nil).Want(t, 200)), ids(pages[i-1]); !slices.Equal(got, w) {
				t.Errorf("previous of page %d: %v, want %v", i, got, w)
			}
		}
		for _, bad := range []string{"12", "lt", "ltx", "gt-3", "eq5", "lt0"} {
			wantOutcome(t, s.Do("GET", "Encounter/_history?_cursor="+bad, nil), 400, "_cursor")
		}
	})
}
