package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/routing"
)

// HTTPOptions configure the HTTP adapters.
type HTTPOptions struct {
	// Client sends requests (a plain client when nil; the worker bounds each attempt with a
	// context deadline).
	Client *http.Client
	// Tokens gets bearer tokens for endpoints with a token URL (a new source over Client
	// when nil).
	Tokens *Tokens
	Now    func() time.Time
}

func (o HTTPOptions) withDefaults() HTTPOptions {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tokens == nil {
		o.Tokens = NewTokens(o.Client, o.Now)
	}
	return o
}

// send authorises req for ep when the endpoint has a token URL and sends it. A 401 to a
// request that carried a token drops the token and is retried, since tokens can be revoked
// or keys rotated on the receiver's side.
func (o HTTPOptions) send(ctx context.Context, ep config.Endpoint, req *http.Request, p Payload) (Result, error) {
	tok, err := o.Tokens.Token(ctx, ep)
	if err != nil {
		return Result{}, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := do(ctx, o.Client, req, p, o.Now)
	var e *Error
	if tok != "" && errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized {
		o.Tokens.Forget(ep)
		e.Permanent = false
	}
	return res, err
}

// NewFHIRRest returns the fhir-rest adapter: each delivery is a transaction Bundle POSTed to
// the endpoint's base URL, with a PUT of the resource version (or a DELETE).
func NewFHIRRest(o HTTPOptions) Adapter {
	o = o.withDefaults()
	return AdapterFunc(func(ctx context.Context, ep config.Endpoint, p Payload) (Result, error) {
		body, err := json.Marshal(TransactionBundle(strings.TrimRight(ep.URL, "/"), p))
		if err != nil {
			return Result{}, Permanentf("encoding the transaction Bundle: %v", err)
		}
		req, err := fhirRequest(strings.TrimRight(ep.URL, "/"), body)
		if err != nil {
			return Result{}, err
		}
		return o.send(ctx, ep, req, p)
	})
}

// TransactionBundle is the transaction a fhir-rest delivery sends: one entry that puts the
// resource under its own id at the receiver (so repeated deliveries are idempotent), or
// deletes it.
func TransactionBundle(base string, p Payload) map[string]any {
	d := p.Delivery
	ref := d.ResourceType + "/" + d.ResourceID
	// A transform may send another resource than the one routed (a document Bundle for an
	// Encounter): it goes under its own type and id.
	if typ, _ := p.Resource["resourceType"].(string); typ != "" && typ != d.ResourceType && !p.Deleted {
		if id, _ := p.Resource["id"].(string); id != "" {
			ref = typ + "/" + id
		}
	}
	entry := map[string]any{"fullUrl": base + "/" + ref}
	if p.Deleted || p.Resource == nil {
		entry["request"] = map[string]any{"method": "DELETE", "url": ref}
	} else {
		entry["resource"] = p.Resource
		entry["request"] = map[string]any{"method": "PUT", "url": ref}
	}
	return map[string]any{
		"resourceType": "Bundle",
		"type":         "transaction",
		"entry":        []any{entry},
	}
}

// Code systems of the message adapter.
const (
	// SystemDeliveryEvent codes MessageHeader.eventCoding for deliveries the broker routes:
	// the code is the routing event kind (create, update, delete, message, task-status).
	SystemDeliveryEvent = "https://hjbroker.dev/fhir/CodeSystem/delivery-event"
	// SystemMessageReasonBaRS is the BaRS message reason system (new, update, delete).
	SystemMessageReasonBaRS = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
	systemODS               = "https://fhir.nhs.uk/Id/ods-organization-code"
)

// MessageOptions configure the fhir-message adapter.
type MessageOptions struct {
	HTTPOptions
	// Source is the broker's own $process-message base, sent as MessageHeader.source.endpoint
	// so replies come back to it.
	Source string
	// SenderODS names the broker's organisation as MessageHeader.sender (omitted when empty).
	SenderODS string
	// Software and Version name the broker in MessageHeader.source.
	Software, Version string
}

// NewFHIRMessage returns the fhir-message adapter: a FHIR message Bundle (MessageHeader
// first, BaRS style) POSTed to {url}/$process-message.
func NewFHIRMessage(o MessageOptions) Adapter {
	o.HTTPOptions = o.HTTPOptions.withDefaults()
	return AdapterFunc(func(ctx context.Context, ep config.Endpoint, p Payload) (Result, error) {
		body, err := json.Marshal(MessageBundle(o, ep, p, o.Now()))
		if err != nil {
			return Result{}, Permanentf("encoding the message Bundle: %v", err)
		}
		req, err := fhirRequest(strings.TrimRight(ep.URL, "/")+"/$process-message", body)
		if err != nil {
			return Result{}, err
		}
		return o.send(ctx, ep, req, p)
	})
}

// stableUUID turns a delivery id into a UUID (itself when it is one), so that a retried
// message carries the same Bundle and MessageHeader ids.
func stableUUID(s string) string {
	if u, err := uuid.Parse(s); err == nil {
		return u.String()
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("hjbroker:delivery:"+s)).String()
}

// MessageBundle builds the message for one delivery. The Bundle id and the MessageHeader id
// are both derived from the delivery id: replies name either in MessageHeader.response
// .identifier (R4 says the MessageHeader id, BaRS the Bundle id), and a retry sends the same
// message.
func MessageBundle(o MessageOptions, ep config.Endpoint, p Payload, now time.Time) map[string]any {
	d := p.Delivery
	id := stableUUID(d.ID)
	resURL := "urn:uuid:" + uuid.NewSHA1(uuid.MustParse(id), []byte(d.ResourceType+"/"+d.ResourceID)).String()
	source := map[string]any{"endpoint": orDefault(o.Source, "urn:hjbroker")}
	if o.Software != "" {
		source["software"] = o.Software
		source["name"] = o.Software
	}
	if o.Version != "" {
		source["version"] = o.Version
	}
	dest := map[string]any{"endpoint": ep.URL}
	if a := p.Agency; a != nil {
		dest["name"] = a.Name
		if a.ODS != "" {
			dest["receiver"] = map[string]any{"identifier": map[string]any{"system": systemODS, "value": a.ODS}, "display": a.Name}
		}
	}
	mh := map[string]any{
		"resourceType": "MessageHeader",
		"id":           id,
		"eventCoding":  map[string]any{"system": SystemDeliveryEvent, "code": orDefault(d.Event, "update")},
		"destination":  []any{dest},
		"source":       source,
	}
	if o.SenderODS != "" {
		mh["sender"] = map[string]any{"identifier": map[string]any{"system": systemODS, "value": o.SenderODS}}
	}
	if r := barsReason(routing.EventKind(d.Event)); r != "" {
		mh["reason"] = map[string]any{"coding": []any{map[string]any{"system": SystemMessageReasonBaRS, "code": r}}}
	}
	entries := []any{map[string]any{"fullUrl": "urn:uuid:" + id, "resource": mh}}
	if p.Deleted || p.Resource == nil {
		// Nothing to carry: the focus names what the receiver should remove.
		mh["focus"] = []any{map[string]any{"reference": d.ResourceType + "/" + d.ResourceID}}
	} else {
		mh["focus"] = []any{map[string]any{"reference": resURL}}
		entries = append(entries, map[string]any{"fullUrl": resURL, "resource": p.Resource})
	}
	return map[string]any{
		"resourceType": "Bundle",
		"id":           id,
		"meta":         map[string]any{"lastUpdated": now.UTC().Format(time.RFC3339Nano)},
		"identifier":   map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + id},
		"type":         "message",
		"timestamp":    now.UTC().Format(time.RFC3339Nano),
		"entry":        entries,
	}
}

func barsReason(k routing.EventKind) string {
	switch k {
	case routing.Create:
		return "new"
	case routing.Update, routing.TaskStatus:
		return "update"
	case routing.Delete:
		return "delete"
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
