package spine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// SCR permission codes (SCR-ACSPermission): No is an opt-out; Ask means permission to view
// must be sought; Yes is legacy and is treated exactly like Ask.
const (
	PermissionYes = "Yes"
	PermissionNo  = "No"
	PermissionAsk = "Ask"
)

// SCRPointer is the DocumentReference that locates a person's current SCR.
type SCRPointer struct {
	// UUID is the SCR document id (masterIdentifier, system nhsSCRUUID).
	UUID string
	// Permission is the patient's SCR-ACSPermission: Yes, No or Ask.
	Permission string
	// BundleURL is where the SCR Bundle is read (content[0].attachment.url).
	BundleURL string
	// Date is the DocumentReference date.
	Date string
	// DocumentReference is the resource as the SCR service sent it.
	DocumentReference map[string]any
}

// SCRPointer finds the current SCR of an NHS number (GET /DocumentReference?patient=...). It
// returns nil when the person has no SCR.
func (c *Client) SCRPointer(ctx context.Context, nhsNumber string) (*SCRPointer, error) {
	q := url.Values{
		"patient": {SystemNHSNumber + "|" + nhsNumber},
		"type":    {"http://snomed.info/sct|" + SCRDocumentType},
		"_sort":   {"date"},
		"_count":  {"1"},
	}
	u := c.cfg.BaseURL + SCRPath + "/DocumentReference?" + q.Encode()
	status, body, err := c.do(ctx, call{service: "scr", method: http.MethodGet, url: u})
	if err != nil {
		return nil, err
	}
	b, err := decodeResource("scr", status, body, "Bundle")
	if err != nil {
		return nil, err
	}
	entries, _ := b["entry"].([]any)
	if len(entries) == 0 {
		return nil, nil
	}
	e, _ := entries[0].(map[string]any)
	dr, _ := e["resource"].(map[string]any)
	if dr == nil || dr["resourceType"] != "DocumentReference" {
		return nil, garbage("scr", status, "a search match that is not a DocumentReference", "")
	}
	p := &SCRPointer{DocumentReference: dr}
	if mi, _ := dr["masterIdentifier"].(map[string]any); mi != nil {
		p.UUID, _ = mi["value"].(string)
	}
	p.Date, _ = dr["date"].(string)
	for _, l := range list(dr["securityLabel"]) {
		for _, c := range list(obj(l)["coding"]) {
			if cm := obj(c); cm["system"] == SystemACSPermission {
				p.Permission, _ = cm["code"].(string)
			}
		}
	}
	if cs := list(dr["content"]); len(cs) > 0 {
		p.BundleURL, _ = obj(obj(cs[0])["attachment"])["url"].(string)
	}
	switch {
	case p.UUID == "":
		return nil, garbage("scr", status, "a DocumentReference without the SCR document id (masterIdentifier)", "")
	case p.Permission != PermissionYes && p.Permission != PermissionNo && p.Permission != PermissionAsk:
		return nil, garbage("scr", status, fmt.Sprintf("SCR permission %q, not Yes, No or Ask", p.Permission), "")
	}
	return p, nil
}

// SCRBundle reads the SCR the pointer locates. The attachment URL is followed only when it
// lies under the SCR service (the bearer token goes nowhere else); otherwise the Bundle query
// is built from the document id. A stale document id gives a Bundle without entries.
func (c *Client) SCRBundle(ctx context.Context, p *SCRPointer, nhsNumber string) (map[string]any, error) {
	base := c.cfg.BaseURL + SCRPath + "/"
	u := p.BundleURL
	if !strings.HasPrefix(u, base) {
		q := url.Values{
			"composition.identifier":                 {p.UUID},
			"composition.subject:Patient.identifier": {SystemNHSNumber + "|" + nhsNumber},
		}
		u = base + "Bundle?" + q.Encode()
	}
	status, body, err := c.do(ctx, call{service: "scr", method: http.MethodGet, url: u})
	if err != nil {
		return nil, err
	}
	return decodeResource("scr", status, body, "Bundle")
}

// PrivacyAlert sends an SCR privacy alert (POST /AuditEvent) and returns the id the service
// gave it, if any.
func (c *Client) PrivacyAlert(ctx context.Context, event map[string]any) (string, error) {
	raw, err := json.Marshal(event)
	if err != nil {
		return "", fmt.Errorf("encoding the privacy alert: %w", err)
	}
	status, body, err := c.do(ctx, call{service: "scr", method: http.MethodPost, url: c.cfg.BaseURL + SCRPath + "/AuditEvent",
		body: raw, contentType: "application/fhir+json"})
	if err != nil {
		return "", err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	m, err := decodeResource("scr", status, body, "AuditEvent")
	if err != nil {
		return "", err
	}
	id, _ := m["id"].(string)
	return id, nil
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func list(v any) []any { l, _ := v.([]any); return l }
