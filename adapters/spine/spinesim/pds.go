package spinesim

import (
	"net/http"
	"strings"

	"github.com/hjbroker/hjbroker/profiles/validate"
)

// pdsRead serves GET /Patient/{nhs}.
func (s *Server) pdsRead(c *call) {
	nhs := c.r.PathValue("id")
	if s.injected(c, nhs) {
		return
	}
	if ok, _ := validate.ValidNHSNumber(nhs); !ok {
		c.fail(http.StatusBadRequest, "value", "INVALID_RESOURCE_ID", "Resource Id is invalid")
		return
	}
	p, ok := c.people[nhs]
	if !ok {
		c.fail(http.StatusNotFound, "not_found", "RESOURCE_NOT_FOUND", "Patient not found")
		return
	}
	switch {
	case p.pdsSlow:
		if !s.slow(c) {
			return
		}
	case p.pdsGarbage:
		c.w.Header().Set("Content-Type", "application/fhir+json")
		c.w.Write([]byte(`{"resourceType":"Patient","id":"` + nhs + `","name":[{"fam`)) //nolint:errcheck // the client went away
		return
	case p.throttled:
		s.mu.Lock()
		s.seenIDs[c.rec.RequestID]++
		first := s.seenIDs[c.rec.RequestID] == 1
		s.mu.Unlock()
		if first {
			c.w.Header().Set("Retry-After", "1")
			c.fail(http.StatusTooManyRequests, "throttled", "TOO_MANY_REQUESTS", "You have exceeded your application's rate limit")
			return
		}
	}
	if p.supersededBy != "" {
		p = c.people[p.supersededBy]
	}
	c.w.Header().Set("ETag", `W/"2"`)
	writeJSON(c.w, http.StatusOK, p.pdsPatient())
}

// pdsSearch serves the application-restricted GET /Patient: a single unique match on family
// name and birth date (with given name, gender and postcode when sent), or none.
func (s *Server) pdsSearch(c *call) {
	q := c.r.URL.Query()
	if len(q) == 0 {
		c.fail(http.StatusBadRequest, "required", "UNSUPPORTED_SERVICE", "Missing search parameters")
		return
	}
	if q.Get("_max-results") != "1" {
		c.fail(http.StatusForbidden, "forbidden", "INVALID_VALUE", "Invalid value - '"+q.Get("_max-results")+"' in field '_max-results' (application-restricted access returns one match)")
		return
	}
	known := map[string]bool{"family": true, "given": true, "birthdate": true, "gender": true, "address-postalcode": true,
		"general-practitioner": true, "_max-results": true, "_fuzzy-match": true, "_exact-match": true, "_history": true}
	for k := range q {
		if !known[k] {
			c.fail(http.StatusBadRequest, "invalid", "ADDITIONAL_PROPERTIES", "Invalid search parameter "+k)
			return
		}
	}
	family, birth := q.Get("family"), strings.TrimPrefix(q.Get("birthdate"), "eq")
	if family == "" || birth == "" {
		c.fail(http.StatusBadRequest, "invalid", "INVALID_SEARCH_DATA", "Not enough search parameters were provided to be able to make a search (family and birthdate)")
		return
	}
	located := q.Get("address-postalcode") != "" || q.Get("general-practitioner") != ""
	var matches []*patient
	for _, p := range c.people {
		switch {
		case p.supersededBy != "", p.pdsSlow, p.pdsGarbage:
			continue
		case !strings.EqualFold(p.family, family) || p.birthDate != birth:
			continue
		case q.Get("gender") != "" && q.Get("gender") != p.gender:
			continue
		case q.Get("given") != "" && (len(p.given) == 0 || !strings.EqualFold(p.given[0], q.Get("given"))):
			continue
		case located && p.restricted: // restricted people are never found by where they live
			continue
		case q.Get("address-postalcode") != "" && !strings.EqualFold(strings.ReplaceAll(p.postcode, " ", ""), strings.ReplaceAll(q.Get("address-postalcode"), " ", "")):
			continue
		case q.Get("general-practitioner") != "" && q.Get("general-practitioner") != p.gp:
			continue
		}
		matches = append(matches, p)
	}
	if len(matches) > 1 {
		writeOutcome(c.w, http.StatusOK, "multiple-matches", pdsSystem, "TOO_MANY_MATCHES", "Too Many Matches")
		return
	}
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": len(matches), "timestamp": s.opts.Now().UTC().Format("2006-01-02T15:04:05+00:00")}
	if len(matches) == 1 {
		p := matches[0].pdsPatient()
		b["entry"] = []any{map[string]any{"fullUrl": base(c.r) + "/personal-demographics/FHIR/R4/Patient/" + matches[0].nhs,
			"search": map[string]any{"score": 1}, "resource": p}}
	}
	writeJSON(c.w, http.StatusOK, b)
}

func base(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}
