package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/mappings/ld"
)

// loadShipped writes the shipped L&D Questionnaires and support-service directory into the
// store, as the broker's own writes (validated like any other). It is idempotent: each has a
// fixed id; a Questionnaire is written when it is missing or the shipped version is newer
// than the stored one, a directory entry when it is missing or its content differs.
func loadShipped(ctx context.Context, n *Node) error {
	qs, err := ld.Questionnaires()
	if err != nil {
		return err
	}
	dir, err := ld.Directory()
	if err != nil {
		return err
	}
	for _, res := range append(qs, dir...) {
		typ, id := resource.Type(res), resource.ID(res)
		cur, err := n.Store.Current(ctx, typ, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("reading %s/%s: %w", typ, id, err)
		case !cur.Deleted:
			stored, err := resource.Decode(cur.Body, resource.Limits{})
			if err != nil {
				return fmt.Errorf("reading %s/%s: %w", typ, id, err)
			}
			if typ == "Questionnaire" && !ld.NewerVersion(str(res, "version"), str(stored, "version")) {
				continue
			}
			if typ != "Questionnaire" && sameContent(stored, res) {
				continue
			}
		}
		body, err := json.Marshal(res)
		if err != nil {
			return err
		}
		resp := n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPut, Path: typ + "/" + id, Body: body,
			Header: http.Header{"Content-Type": {"application/fhir+json"}, "Prefer": {"return=minimal"}}})
		if resp.Status >= 300 {
			return fmt.Errorf("storing the shipped %s/%s: HTTP %d: %s", typ, id, resp.Status, compactJSON(resp.Resource))
		}
	}
	return nil
}

// sameContent compares two resources ignoring meta and text, which the store manages.
func sameContent(a, b map[string]any) bool {
	strip := func(m map[string]any) string {
		c := make(map[string]any, len(m))
		for k, v := range m {
			if k != "meta" && k != "text" {
				c[k] = v
			}
		}
		raw, _ := json.Marshal(c)
		return string(raw)
	}
	return strip(a) == strip(b)
}

func compactJSON(m map[string]any) string {
	raw, _ := json.Marshal(m)
	return string(raw)
}

// extractOperation serves POST [base]/QuestionnaireResponse/$extract: the body is a
// completed L&D QuestionnaireResponse, or a Parameters with it as parameter
// "questionnaire-response". The response and everything derived from it (ld.Extract) are
// stored in one transaction through the engine, as the caller: scopes, validation (the
// answers against the stored Questionnaire), consent checks, audit and routing apply to
// each. The answer is the transaction-response Bundle. A response that does not fit, or a
// referral to a service the directory does not hold, is a 422 naming the path; nothing is
// stored then.
func extractOperation(n *Node, params search.Params) engine.Operation {
	return func(ctx context.Context, req *engine.Request, _, _ string) (*engine.Response, error) {
		if req.Method != http.MethodPost {
			return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$extract takes a POST of a QuestionnaireResponse (or a Parameters holding one)")
		}
		qr, err := extractInput(req.Body)
		if err != nil {
			return nil, err
		}
		q, err := storedQuestionnaire(ctx, n.Store, params, str(qr, "questionnaire"))
		if err != nil {
			return nil, err
		}
		if id := str(qr, "id"); id != "" {
			cur, err := n.Store.Current(ctx, "QuestionnaireResponse", id)
			if err == nil && !cur.Deleted {
				return nil, outcome.At(http.StatusConflict, "duplicate", "QuestionnaireResponse.id",
					"QuestionnaireResponse/%s is already stored, and was extracted then; extraction runs once per response", id)
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		services, err := directoryServices(ctx, n.Store, ld.ReferencedServices(qr))
		if err != nil {
			return nil, err
		}
		requester, err := requesterParty(ctx, n, params, req.Access)
		if err != nil {
			return nil, err
		}
		res, err := ld.Extract(qr, q, ld.Options{Requester: requester, Services: services, NewID: uuid.NewString, Now: time.Now()})
		if err != nil {
			return nil, err
		}
		entries := make([]any, 0, len(res.Entries))
		for _, e := range res.Entries {
			typ := resource.Type(e.Resource)
			rq := map[string]any{"method": http.MethodPost, "url": typ}
			if id := resource.ID(e.Resource); id != "" {
				rq = map[string]any{"method": http.MethodPut, "url": typ + "/" + id}
			}
			entries = append(entries, map[string]any{"fullUrl": e.FullURL, "resource": e.Resource, "request": rq})
		}
		body, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
		if err != nil {
			return nil, err
		}
		h := http.Header{"Content-Type": {"application/fhir+json"}}
		if p := req.Header.Values("Prefer"); len(p) > 0 {
			h["Prefer"] = p
		}
		resp := n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPost, Body: body, Base: req.Base, Access: req.Access, Header: h})
		resp.Interaction = "extract"
		return resp, nil
	}
}

// extractInput reads the QuestionnaireResponse of an $extract request.
func extractInput(body []byte) (map[string]any, error) {
	if len(body) == 0 {
		return nil, outcome.New(http.StatusBadRequest, "required", "$extract needs a QuestionnaireResponse in the body")
	}
	m, err := resource.Decode(body, resource.Limits{})
	if err != nil {
		return nil, err
	}
	if resource.Type(m) == "Parameters" {
		for i, p := range list(m["parameter"]) {
			if str(obj(p), "name") == "questionnaire-response" {
				qr := obj(obj(p)["resource"])
				if resource.Type(qr) != "QuestionnaireResponse" {
					return nil, outcome.At(http.StatusBadRequest, "invalid", fmt.Sprintf("Parameters.parameter[%d].resource", i),
						"parameter questionnaire-response must hold a QuestionnaireResponse")
				}
				return qr, nil
			}
		}
		return nil, outcome.At(http.StatusBadRequest, "required", "Parameters.parameter", "the Parameters has no parameter named questionnaire-response")
	}
	if resource.Type(m) != "QuestionnaireResponse" {
		return nil, outcome.At(http.StatusBadRequest, "invalid", "resourceType", "$extract takes a QuestionnaireResponse, not a %q", resource.Type(m))
	}
	return m, nil
}

// storedQuestionnaire finds the Questionnaire a response answers ("url" or "url|version").
func storedQuestionnaire(ctx context.Context, st store.Store, params search.Params, canonical string) (map[string]any, error) {
	if canonical == "" {
		return nil, outcome.At(http.StatusUnprocessableEntity, "required", "QuestionnaireResponse.questionnaire", "the response names no Questionnaire")
	}
	u, version, _ := strings.Cut(canonical, "|")
	q := url.Values{"url": {u}}
	if version != "" {
		q.Set("version", version)
	}
	found, err := searchOne(ctx, st, params, "Questionnaire", q)
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, outcome.At(http.StatusUnprocessableEntity, "not-found", "QuestionnaireResponse.questionnaire",
			"Questionnaire %s is not stored on this broker", canonical)
	}
	return found, nil
}

func searchOne(ctx context.Context, st store.Store, params search.Params, typ string, q url.Values) (map[string]any, error) {
	sq, err := search.Parse(typ, q, params, search.Options{Strict: true})
	if err != nil {
		return nil, err
	}
	page, err := st.Search(ctx, sq, store.SearchOptions{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", typ, err)
	}
	if len(page.Entries) == 0 {
		return nil, nil
	}
	return resource.Decode(page.Entries[0].Body, resource.Limits{})
}

// directoryServices reads the named HealthcareServices and their providers from the store;
// names it does not hold are left out (the extraction reports them).
func directoryServices(ctx context.Context, st store.Store, refs []string) (map[string]ld.Service, error) {
	out := map[string]ld.Service{}
	for _, ref := range refs {
		typ, id, ok := strings.Cut(ref, "/")
		if !ok || typ != "HealthcareService" || id == "" || strings.Contains(id, "/") {
			continue
		}
		hs, err := readCurrent(ctx, st, typ, id)
		if err != nil || hs == nil {
			return nil, err
		}
		var org map[string]any
		if t, oid, ok := strings.Cut(str(obj(hs["providedBy"]), "reference"), "/"); ok && t == "Organization" {
			if org, err = readCurrent(ctx, st, t, oid); err != nil {
				return nil, err
			}
		}
		out[ref] = ld.ServiceFrom(hs, org)
	}
	return out, nil
}

// readCurrent reads a resource's current version; nil when it is unknown or deleted.
func readCurrent(ctx context.Context, st store.Reader, typ, id string) (map[string]any, error) {
	cur, err := st.Current(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && cur.Deleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, err)
	}
	return resource.Decode(cur.Body, resource.Limits{})
}

// requesterParty is the caller's agency, with its Organization in the store when there is
// one with its ODS code.
func requesterParty(ctx context.Context, n *Node, params search.Params, a *engine.Access) (ld.Party, error) {
	var p ld.Party
	if a == nil || a.AgencyID == "" {
		return p, nil
	}
	ag, ok := n.Config.Agency(a.AgencyID)
	if !ok {
		return p, nil
	}
	p.ODS, p.Name = ag.ODS, ag.Name
	if ag.ODS == "" {
		return p, nil
	}
	org, err := searchOne(ctx, n.Store, params, "Organization", url.Values{"identifier": {ld.SystemODS + "|" + ag.ODS}})
	if err != nil {
		return p, err
	}
	if org != nil {
		p.Ref = "Organization/" + str(org, "id")
	}
	return p, nil
}
