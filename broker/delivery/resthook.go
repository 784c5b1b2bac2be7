package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
)

// Payload modes of a rest-hook channel. R4 knows a payload mime type (the resource is sent)
// or none (an empty notification); the R4 Subscriptions backport adds id-only through the
// backport-payload-content extension on channel.payload.
const (
	PayloadEmpty  = "empty"
	PayloadIDOnly = "id-only"
	PayloadFull   = "full-resource"
)

// ExtPayloadContent is the backport extension that chooses empty, id-only or full-resource.
const ExtPayloadContent = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"

// HookOptions configure the rest-hook adapter.
type HookOptions struct {
	HTTPOptions
	// BaseURL is the broker's FHIR base, for the fullUrl of id-only notifications.
	BaseURL string
}

// NewRestHook returns the rest-hook adapter for R4 Subscription channels:
//   - empty: a POST to the channel endpoint with no body;
//   - id-only: a POST of a history Bundle whose entry has the resource's fullUrl, request and
//     response but no resource;
//   - full-resource: as R4 says for a channel with a payload, the endpoint is taken as a
//     service base and the resource is PUT to {endpoint}/{type}/{id} (a deletion is a DELETE).
//
// The channel headers go on every request.
func NewRestHook(o HookOptions) Adapter {
	o.HTTPOptions = o.HTTPOptions.withDefaults()
	return AdapterFunc(func(ctx context.Context, ep config.Endpoint, p Payload) (Result, error) {
		req, err := hookRequest(o, ep, p)
		if err != nil {
			return Result{}, err
		}
		return o.send(ctx, ep, req, p)
	})
}

func hookRequest(o HookOptions, ep config.Endpoint, p Payload) (*http.Request, error) {
	mime := orDefault(p.MimeType, "application/fhir+json")
	if p.PayloadMode != PayloadEmpty && !strings.Contains(mime, "json") {
		return nil, Permanentf("rest-hook payload %q is not supported: only JSON is sent", mime)
	}
	d := p.Delivery
	var method, target string
	var body []byte
	switch p.PayloadMode {
	case PayloadEmpty, "":
		method, target = http.MethodPost, ep.URL
	case PayloadIDOnly:
		b, err := json.Marshal(IDOnlyBundle(o.BaseURL, p, o.Now()))
		if err != nil {
			return nil, Permanentf("encoding the notification: %v", err)
		}
		method, target, body = http.MethodPost, ep.URL, b
	case PayloadFull:
		target = strings.TrimRight(ep.URL, "/") + "/" + d.ResourceType + "/" + d.ResourceID
		if p.Deleted || p.Resource == nil {
			method = http.MethodDelete
			break
		}
		b, err := json.Marshal(p.Resource)
		if err != nil {
			return nil, Permanentf("encoding the resource: %v", err)
		}
		method, body = http.MethodPut, b
	default:
		return nil, Permanentf("rest-hook payload mode %q is not known", p.PayloadMode)
	}
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		return nil, Permanentf("channel endpoint %q: %v", target, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", mime)
	} else {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	return req, nil
}

// IDOnlyBundle is an id-only notification: a history Bundle naming the changed version.
func IDOnlyBundle(base string, p Payload, now time.Time) map[string]any {
	d := p.Delivery
	ref := d.ResourceType + "/" + d.ResourceID
	method, status := http.MethodPut, "200 OK"
	switch {
	case p.Deleted:
		method, status = http.MethodDelete, "204 No Content"
	case d.Event == "create":
		method, status = http.MethodPost, "201 Created"
	}
	reqURL := ref
	if method == http.MethodPost {
		reqURL = d.ResourceType
	}
	full := ref
	if base != "" {
		full = strings.TrimRight(base, "/") + "/" + ref
	}
	return map[string]any{
		"resourceType": "Bundle",
		"type":         "history",
		"timestamp":    now.UTC().Format(time.RFC3339Nano),
		"entry": []any{map[string]any{
			"fullUrl":  full,
			"request":  map[string]any{"method": method, "url": reqURL},
			"response": map[string]any{"status": status, "etag": fmt.Sprintf(`W/"%d"`, d.Version)},
		}},
	}
}
