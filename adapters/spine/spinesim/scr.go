package spinesim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

const (
	scrPath       = "/summary-care-record/FHIR/R4"
	systemNHS     = "https://fhir.nhs.uk/Id/nhs-number"
	systemSNOMED  = "http://snomed.info/sct"
	systemSCRUUID = "https://fhir.nhs.uk/Id/nhsSCRUUID"
	scrDate       = "2026-11-20T10:15:00+00:00"
)

// scrUUID is the fixed SCR document id of a person (stable across restarts).
func scrUUID(nhs string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://hjbroker.dev/spinesim/scr/"+nhs)).String()
}

// scrPatient resolves the NHS number a patient=/identifier= search value names.
func scrNumber(v string) (string, bool) {
	nhs, ok := strings.CutPrefix(v, systemNHS+"|")
	return nhs, ok && nhs != ""
}

// scrPointer serves GET /DocumentReference?patient=https://fhir.nhs.uk/Id/nhs-number|N.
func (s *Server) scrPointer(c *call) {
	q := c.r.URL.Query()
	nhs, ok := scrNumber(q.Get("patient"))
	if !ok {
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid patient parameter: expected https://fhir.nhs.uk/Id/nhs-number|{nhsNumber}")
		return
	}
	if t := q.Get("type"); t != "" && t != systemSNOMED+"|196981000000101" {
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid type parameter: only http://snomed.info/sct|196981000000101 is supported")
		return
	}
	if v := q.Get("_sort"); v != "" && v != "date" {
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid _sort parameter: only date is supported")
		return
	}
	if v := q.Get("_count"); v != "" && v != "1" {
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid _count parameter: only 1 is supported")
		return
	}
	if s.injected(c, nhs) {
		return
	}
	p := c.people[nhs]
	if p != nil && p.scrSlow && !s.slow(c) {
		return
	}
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 0}
	if p != nil && p.permission != "" && !p.restricted {
		id := scrUUID(nhs)
		bundleURL := base(c.r) + scrPath + "/Bundle?" + url.Values{
			"composition.identifier":                 {id},
			"composition.subject:Patient.identifier": {systemNHS + "|" + nhs},
		}.Encode()
		dr := map[string]any{
			"resourceType":     "DocumentReference",
			"id":               "dr-" + nhs,
			"masterIdentifier": map[string]any{"system": systemSCRUUID, "value": id},
			"status":           "current",
			"type":             concept(systemSNOMED, "196981000000101", "General Practice Summary"),
			"subject":          map[string]any{"identifier": map[string]any{"system": systemNHS, "value": nhs}},
			"date":             scrDate,
			"author":           []any{map[string]any{"identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": p.gp}}},
			"securityLabel":    []any{concept("https://fhir.nhs.uk/CodeSystem/SCR-ACSPermission", p.permission, p.permission)},
			"content":          []any{map[string]any{"attachment": map[string]any{"contentType": "application/fhir+json", "url": bundleURL}}},
		}
		b["total"] = 1
		b["entry"] = []any{map[string]any{"fullUrl": base(c.r) + scrPath + "/DocumentReference/dr-" + nhs, "search": map[string]any{"mode": "match"}, "resource": dr}}
	}
	writeJSON(c.w, http.StatusOK, b)
}

// scrBundle serves GET /Bundle?composition.identifier=UUID&composition.subject:Patient.identifier=...
func (s *Server) scrBundle(c *call) {
	q := c.r.URL.Query()
	id := q.Get("composition.identifier")
	nhs, ok := scrNumber(q.Get("composition.subject:Patient.identifier"))
	if id == "" || !ok {
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid request: composition.identifier and composition.subject:Patient.identifier are required")
		return
	}
	if s.injected(c, nhs) {
		return
	}
	p := c.people[nhs]
	if p != nil && p.scrGarbage {
		c.w.Header().Set("Content-Type", "application/fhir+json")
		c.w.Write([]byte("\x00\x1f<<SCR BUNDLE TRUNCATED")) //nolint:errcheck // the client went away
		return
	}
	if p == nil || p.permission == "" || p.restricted || id != scrUUID(nhs) {
		// A stale or unknown document id gives an empty Bundle.
		writeJSON(c.w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 0})
		return
	}
	writeJSON(c.w, http.StatusOK, scrDocument(base(c.r)+scrPath, p, id))
}

// Privacy alert codes: type (SCR-AlertType) and subtype (SCR-AlertReason), and the pairs the
// service refuses.
var (
	alertTypes   = map[string]bool{"1": true, "2": true}
	alertReasons = map[string]bool{"1": true, "2": true, "3": true, "4": true, "5": true, "6": true}
	alertRefused = map[string]bool{"1/5": true, "2/4": true, "2/6": true}
)

// scrAlert serves POST /AuditEvent, a privacy alert.
func (s *Server) scrAlert(c *call) {
	raw, err := io.ReadAll(io.LimitReader(c.r.Body, 1<<20))
	var ev map[string]any
	if err != nil || json.Unmarshal(raw, &ev) != nil || ev["resourceType"] != "AuditEvent" {
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid request: the body must be an AuditEvent")
		return
	}
	typ := codeOf(ev["type"], "https://fhir.nhs.uk/CodeSystem/SCR-AlertType")
	var sub string
	if subs, _ := ev["subtype"].([]any); len(subs) > 0 {
		sub = codeOf(subs[0], "https://fhir.nhs.uk/CodeSystem/SCR-AlertReason")
	}
	switch {
	case !alertTypes[typ]:
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid AuditEvent.type: expected SCR-AlertType 1 or 2")
		return
	case !alertReasons[sub]:
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid AuditEvent.subtype: expected SCR-AlertReason 1 to 6")
		return
	case alertRefused[typ+"/"+sub]:
		c.fail(http.StatusBadRequest, "invalid", "", "Invalid combination of AuditEvent.type "+typ+" and subtype "+sub)
		return
	}
	s.mu.Lock()
	ev["id"] = "alert-" + strconv.Itoa(len(s.alerts)+1)
	s.alerts = append(s.alerts, ev)
	s.mu.Unlock()
	writeJSON(c.w, http.StatusCreated, ev)
}

func codeOf(v any, system string) string {
	m, _ := v.(map[string]any)
	if m == nil {
		return ""
	}
	if m["system"] == system {
		s, _ := m["code"].(string)
		return s
	}
	return ""
}

func concept(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code, "display": display}}}
}
