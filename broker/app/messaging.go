package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/store"
)

// RouteMessageReply names the deliveries that carry a reply back to the agency that sent
// the message it answers.
const RouteMessageReply = "message-reply"

// messageKey marks, on the context of the write transaction, the inbound message being
// stored, so that OnWrite routes its MessageHeader as a message event.
type messageKey struct{}

// inboundMessage is a message received by $process-message.
type inboundMessage struct {
	headerID, event string
	// patient is the first patient a focus resource is about, learnt as they are written.
	patient string
	// replyTo is the agency that sent the request this message answers ("" for a request).
	replyTo string
	purpose string
}

// replyDeliveries sends a reply to every endpoint of the agency whose request it answers.
func (m *inboundMessage) replyDeliveries(cfg *config.Config, ev routing.Event) []routing.Delivery {
	if m.replyTo == "" || m.replyTo == ev.SourceAgency {
		return nil
	}
	a, ok := cfg.Agency(m.replyTo)
	if !ok {
		return nil
	}
	var out []routing.Delivery
	for _, ep := range a.Endpoints {
		out = append(out, routing.Delivery{
			ID: uuid.NewString(), Route: RouteMessageReply, Destination: ep.ID, Agency: a.ID,
			SourceAgency: ev.SourceAgency, Purpose: m.purpose, Event: string(routing.Message),
			ResourceType: ev.ResourceType, ResourceID: ev.ID, Version: ev.Version, Patient: ev.Patient,
			CreatedAt: time.Now().UTC(),
		})
	}
	return out
}

// errUncorrelated: a reply names a request the broker does not know.
var errUncorrelated = errors.New("no such request message")

// processMessage serves POST [base]/$process-message: a FHIR message Bundle (MessageHeader
// first, BaRS style). Its focus resources and its MessageHeader are stored in one
// transaction; the MessageHeader is routed as a "message" event with its event code. A reply
// (MessageHeader.response.identifier) must name a request the broker knows: a MessageHeader
// it received, or a message it sent (whose MessageHeader id is the delivery id); it also
// goes back to the agency that made that request. A message received again (same
// MessageHeader id) is acknowledged without being stored or routed twice.
func processMessage(n *Node) engine.Operation {
	return func(ctx context.Context, req *engine.Request, _, _ string) (*engine.Response, error) {
		if req.Method != http.MethodPost {
			return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$process-message takes a POST of a message Bundle")
		}
		var b map[string]any
		if err := json.Unmarshal(req.Body, &b); err != nil {
			return nil, outcome.New(http.StatusBadRequest, "structure", "the body is not JSON: %v", err)
		}
		if b["resourceType"] != "Bundle" || b["type"] != "message" {
			return nil, outcome.At(http.StatusBadRequest, "invalid", "Bundle.type", "$process-message takes a Bundle of type message")
		}
		entries, _ := b["entry"].([]any)
		first, _ := entryResource(entries, 0)
		if first["resourceType"] != "MessageHeader" {
			return nil, outcome.At(http.StatusBadRequest, "invalid", "Bundle.entry[0].resource", "the first entry of a message must be its MessageHeader")
		}
		mh := first
		event := str(obj(mh["eventCoding"]), "code")
		if event == "" {
			event = str(mh, "eventUri")
		}
		if event == "" {
			return nil, outcome.At(http.StatusBadRequest, "required", "Bundle.entry[0].resource.event[x]", "the MessageHeader names no event")
		}
		id := str(mh, "id")
		if id == "" {
			id = uuid.NewString()
			mh["id"] = id
		}
		cur, err := n.Store.Current(ctx, "MessageHeader", id)
		switch {
		case err == nil && !cur.Deleted:
			return acknowledge(n, mh, id), nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		msg := &inboundMessage{headerID: id, event: event, purpose: "COC"}
		if req.Access != nil && req.Access.Purpose != "" {
			msg.purpose = req.Access.Purpose
		}
		if rid := str(obj(mh["response"]), "identifier"); rid != "" {
			msg.replyTo, err = n.correlate(ctx, rid)
			if errors.Is(err, errUncorrelated) {
				return nil, outcome.At(http.StatusUnprocessableEntity, "processing", "Bundle.entry[0].resource.response.identifier",
					"the message answers %q, which is not a message this broker received or sent", rid)
			}
			if err != nil {
				return nil, err
			}
		}
		// The focus resources first and the MessageHeader last, so that by the time the
		// MessageHeader is written the patient the message is about is known.
		var tx []any
		for i := 1; i < len(entries); i++ {
			res, full := entryResource(entries, i)
			if res == nil {
				continue
			}
			typ, rid := str(res, "resourceType"), str(res, "id")
			en := map[string]any{"resource": res, "request": map[string]any{"method": http.MethodPost, "url": typ}}
			if rid != "" {
				en["request"] = map[string]any{"method": http.MethodPut, "url": typ + "/" + rid}
			}
			if full != "" {
				en["fullUrl"] = full
			}
			tx = append(tx, en)
		}
		// A BaRS referral comes with the Task its receiver works (docs/ld-and-referrals.md).
		if tx, err = referralEntries(ctx, n, event, entries, tx, req.Access); err != nil {
			return nil, err
		}
		_, full := entryResource(entries, 0)
		if full == "" {
			full = "urn:uuid:" + id
		}
		tx = append(tx, map[string]any{"fullUrl": full, "resource": mh,
			"request": map[string]any{"method": http.MethodPut, "url": "MessageHeader/" + id}})
		body, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": tx})
		if err != nil {
			return nil, err
		}
		resp := n.Engine.Handle(context.WithValue(ctx, messageKey{}, msg), &engine.Request{
			Method: http.MethodPost, Body: body, Base: req.Base, Access: req.Access,
			Header: http.Header{"Content-Type": {"application/fhir+json"}},
		})
		if resp.Status >= 300 {
			return resp, nil
		}
		return acknowledge(n, mh, id), nil
	}
}

// correlate finds the agency that sent the request a reply answers.
func (n *Node) correlate(ctx context.Context, id string) (string, error) {
	cur, err := n.Store.Current(ctx, "MessageHeader", id)
	if err == nil && !cur.Deleted {
		return sourceAgency(cur.Body), nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if n.routing == nil {
		return "", errUncorrelated
	}
	e, err := n.routing.log.Get(ctx, id)
	if err != nil {
		return "", errUncorrelated
	}
	// The message the broker sent carried a resource version; whoever recorded it asked.
	typ, rest, _ := strings.Cut(e.Resource, "/")
	rid, ver, _ := strings.Cut(rest, "/_history/")
	var v int64
	for _, c := range ver {
		v = v*10 + int64(c-'0')
	}
	res, err := n.Store.VRead(ctx, typ, rid, v)
	if err != nil {
		return "", errUncorrelated
	}
	return sourceAgency(res.Body), nil
}

func sourceAgency(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	src := str(obj(m["meta"]), "source")
	if !strings.HasPrefix(src, engine.SourcePrefix) {
		return ""
	}
	return strings.TrimPrefix(src, engine.SourcePrefix)
}

// acknowledge is the response message: a MessageHeader answering the request with "ok".
func acknowledge(n *Node, mh map[string]any, id string) *engine.Response {
	ackID := uuid.NewString()
	header := map[string]any{
		"resourceType": "MessageHeader",
		"id":           ackID,
		"source":       map[string]any{"name": "hjbroker", "software": "hjbroker", "version": Version, "endpoint": n.cfg.baseURL() + "/$process-message"},
		"response":     map[string]any{"identifier": id, "code": "ok"},
	}
	if ec := mh["eventCoding"]; ec != nil {
		header["eventCoding"] = ec
	} else {
		header["eventUri"] = mh["eventUri"]
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	return &engine.Response{Status: http.StatusOK, Interaction: "process-message", Resource: map[string]any{
		"resourceType": "Bundle", "id": uuid.NewString(), "type": "message", "timestamp": now,
		"entry": []any{map[string]any{"fullUrl": "urn:uuid:" + ackID, "resource": header}},
	}}
}

func entryResource(entries []any, i int) (map[string]any, string) {
	if i >= len(entries) {
		return nil, ""
	}
	e := obj(entries[i])
	return obj(e["resource"]), str(e, "fullUrl")
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
