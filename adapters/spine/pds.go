package spine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// ReadPatient reads the PDS record of an NHS number (GET /Patient/{nhs}). For a superseded
// number the PDS answers with the record now in use, whose id is the new NHS number: callers
// must take that as the person's identity. A restricted (R) record comes without address,
// telecom and registered GP, and with meta.security R.
func (c *Client) ReadPatient(ctx context.Context, nhsNumber string) (map[string]any, error) {
	u := c.cfg.BaseURL + PDSPath + "/Patient/" + url.PathEscape(nhsNumber)
	status, body, err := c.do(ctx, call{service: "pds", method: http.MethodGet, url: u})
	if err != nil {
		return nil, err
	}
	p, err := decodeResource("pds", status, body, "Patient")
	if err != nil {
		return nil, err
	}
	if id, _ := p["id"].(string); id == "" {
		return nil, garbage("pds", status, "a Patient without an id", "")
	}
	return p, nil
}

// SearchPatient runs an application-restricted PDS search, which answers with at most one
// unique match: the Patient, or nil when none matches. More than one match is an error
// (TOO_MANY_MATCHES), never a list.
func (c *Client) SearchPatient(ctx context.Context, query url.Values) (map[string]any, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("_max-results", "1")
	u := c.cfg.BaseURL + PDSPath + "/Patient?" + q.Encode()
	status, body, err := c.do(ctx, call{service: "pds", method: http.MethodGet, url: u})
	if err != nil {
		return nil, err
	}
	res, err := decodeResource("pds", status, body, "")
	if err != nil {
		return nil, err
	}
	switch res["resourceType"] {
	case "OperationOutcome":
		// TOO_MANY_MATCHES comes as an OperationOutcome with status 200.
		return nil, responseError("pds", status, body, "")
	case "Bundle":
	default:
		return nil, garbage("pds", status, fmt.Sprintf("a %v where a searchset Bundle was expected", res["resourceType"]), "")
	}
	entries, _ := res["entry"].([]any)
	switch len(entries) {
	case 0:
		return nil, nil
	case 1:
		e, _ := entries[0].(map[string]any)
		p, _ := e["resource"].(map[string]any)
		if p == nil || p["resourceType"] != "Patient" {
			return nil, garbage("pds", status, "a search match that is not a Patient", "")
		}
		return p, nil
	}
	return nil, &Error{Status: http.StatusUnprocessableEntity, IssueCode: "multiple-matches", Service: "pds", HTTPStatus: status,
		Code: "TOO_MANY_MATCHES", Message: fmt.Sprintf("the Personal Demographics Service found %d people; refine the search", len(entries))}
}

// decodeResource parses a 2xx body as a FHIR resource, of type want when want is set.
func decodeResource(service string, status int, body []byte, want string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, garbage(service, status, "a body that is not JSON", "")
	}
	typ, _ := m["resourceType"].(string)
	if typ == "" {
		return nil, garbage(service, status, "JSON that is not a FHIR resource", "")
	}
	if want != "" && typ != want {
		return nil, garbage(service, status, fmt.Sprintf("a %s where a %s was expected", typ, want), "")
	}
	return m, nil
}
