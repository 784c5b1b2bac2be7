package search_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/searchparam"
)

// FuzzParse feeds arbitrary query strings through the parser with the real R4 registry: it
// must never panic, must fail only with a *search.Error, and what it accepts must have a
// canonical form that parses again to the same criteria.
func FuzzParse(f *testing.F) {
	reg, err := searchparam.NewR4()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009",
		"name:contains=smi&birthdate=ge1980-01&birthdate=lt1990",
		"subject:Patient.identifier=x|y&_sort=-date,code&_count=10",
		"_has:Observation:patient:code=1234-5&_include=Observation:subject:Patient&_revinclude:iterate=Provenance:target",
		"value-quantity=ap5.4|http://unitsofmeasure.org|mg&_total=accurate&_summary=count",
		"code:text=blood\\,pressure&_elements=code,subject&_lastUpdated=sa2024-01-01T10:00:00Z",
		"_id=a,b,c&_tag=|x&status:not=final&_profile:below=https://fhir.hl7.org.uk/",
	} {
		f.Add("Observation", seed)
		f.Add("Patient", seed)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, typ, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for _, strict := range []bool{true, false} {
			sq, err := search.Parse(typ, q, reg, search.Options{Strict: strict, Now: now})
			if err != nil {
				var se *search.Error
				if !errors.As(err, &se) {
					t.Fatalf("Parse(%q, %q) failed with %T, not *search.Error: %v", typ, raw, err, err)
				}
				continue
			}
			again, err := url.ParseQuery(sq.Encode())
			if err != nil {
				t.Fatalf("canonical form %q does not parse as a query: %v", sq.Encode(), err)
			}
			sq2, err := search.Parse(typ, again, reg, search.Options{Strict: strict, Now: now})
			if err != nil {
				t.Fatalf("canonical form %q of %q is rejected: %v", sq.Encode(), raw, err)
			}
			if sq2.CriteriaKey() != sq.CriteriaKey() {
				t.Fatalf("criteria changed through the canonical form: %q → %q", sq.CriteriaKey(), sq2.CriteriaKey())
			}
		}
	})
}
