package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/adapters/spine"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/mappings/pds"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// pdsSourceSystem names the PDS in Provenance.entity.
const pdsSourceSystem = "spine-pds"

// pdsResolver is the engine's fallback for Patient searches by NHS number that nothing
// stored matches: it reads the PDS, stores the record normalised to UK Core with a Provenance
// naming the PDS, and hands its id back to the search.
type pdsResolver struct{ sp *spineParts }

func (r pdsResolver) Resolve(ctx context.Context, req *engine.Request, system, value string) ([]string, error) {
	if system != spine.SystemNHSNumber {
		return nil, nil
	}
	if ok, why := validate.ValidNHSNumber(value); !ok {
		return nil, outcome.At(http.StatusBadRequest, "value", "identifier", "%s is not an NHS number: %s", value, why)
	}
	// The broker looks a person up only for a requester who could see them once stored.
	if a := req.Access; a != nil {
		if d := r.sp.pol.Decide(policyRequest(a), map[string]any{"resourceType": "Patient"}, nil); !d.Permit {
			return nil, nil
		}
	}
	p, err := r.sp.client.ReadPatient(spineContext(ctx, req), value)
	if err != nil {
		var se *spine.Error
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			// Not known nationally either: the search finds nothing. An invalidated record
			// is not known either.
			return nil, nil
		}
		r.sp.auditSpineFailure(ctx, req, "", err)
		if errors.As(err, &se) && se.Status == http.StatusBadRequest {
			se.Expression = "identifier"
		}
		return nil, err
	}
	current := pds.NHSNumber(p)
	// A superseded number: the person may already be known by the new one.
	if current != value {
		if id, err := r.sp.localPatient(ctx, current); err != nil || id != "" {
			if id == "" {
				return nil, err
			}
			return []string{id}, nil
		}
	}
	norm, err := pds.Patient(p)
	if err != nil {
		return nil, outcome.New(http.StatusBadGateway, "exception", "the Personal Demographics Service record cannot be read: %v", err)
	}
	id, err := r.sp.storeFromPDS(ctx, req, norm, value, current)
	if err != nil {
		return nil, err
	}
	return []string{id}, nil
}

// localPatient finds the stored Patient with an NHS number ("" when none).
func (sp *spineParts) localPatient(ctx context.Context, nhs string) (string, error) {
	// POST _search: a stored-only lookup, which the engine never resolves outside.
	form := url.Values{"identifier": {spine.SystemNHSNumber + "|" + nhs}, "_elements": {"id"}}
	resp := sp.node.Engine.Handle(ctx, &engine.Request{Method: http.MethodPost, Path: "Patient/_search",
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(form.Encode())})
	if resp.Status != http.StatusOK {
		return "", fmt.Errorf("searching the store for NHS number %s: status %d", nhs, resp.Status)
	}
	entries, _ := resp.Resource["entry"].([]any)
	for _, e := range entries {
		raw, _ := json.Marshal(e)
		var x struct {
			Resource struct {
				ResourceType, ID string
			}
		}
		if json.Unmarshal(raw, &x) == nil && x.Resource.ResourceType == "Patient" && x.Resource.ID != "" {
			return x.Resource.ID, nil
		}
	}
	return "", nil
}

// storeFromPDS stores a normalised PDS Patient and its Provenance in one transaction (a
// conditional create on the NHS number, so a racing lookup stores one Patient) and returns
// the Patient's id.
func (sp *spineParts) storeFromPDS(ctx context.Context, req *engine.Request, patient map[string]any, asked, current string) (string, error) {
	urn := "urn:uuid:" + uuid.NewString()
	prov := audit.ProvenanceFor([]string{urn}, pdsSourceSystem, "", pds.MappingName, "transform", sp.now())
	what := "NHS Spine Personal Demographics Service record " + current
	if asked != current {
		what += fmt.Sprintf(" (read as %s, which it supersedes)", asked)
	}
	prov["entity"] = append(prov["entity"].([]any), map[string]any{"role": "source", "what": map[string]any{
		"identifier": map[string]any{"system": spine.SystemNHSNumber, "value": current}, "display": what}})
	prov["agent"] = append(prov["agent"].([]any), map[string]any{
		"type": map[string]any{"coding": []any{map[string]any{"system": audit.SystemProvAgentType, "code": "custodian", "display": "Custodian"}}},
		"who":  map[string]any{"type": "Device", "display": "NHS Spine Personal Demographics Service"},
	})
	tx := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": urn, "resource": patient, "request": map[string]any{"method": "POST", "url": "Patient",
			"ifNoneExist": "identifier=" + spine.SystemNHSNumber + "|" + current}},
		map[string]any{"fullUrl": "urn:uuid:" + uuid.NewString(), "resource": prov, "request": map[string]any{"method": "POST", "url": "Provenance"}},
	}}
	body, err := json.Marshal(tx)
	if err != nil {
		return "", err
	}
	resp := sp.node.Engine.Handle(ctx, &engine.Request{Method: http.MethodPost, Base: req.Base, Body: body,
		Header: http.Header{"Content-Type": {"application/fhir+json"}}})
	res := resp.Resource
	if res == nil && len(resp.Body) > 0 {
		json.Unmarshal(resp.Body, &res) //nolint:errcheck // checked below
	}
	if resp.Status != http.StatusOK {
		raw, _ := json.Marshal(res)
		return "", outcome.New(http.StatusBadGateway, "processing", "the Personal Demographics Service record of %s could not be stored: %s", current, raw)
	}
	entries, _ := res["entry"].([]any)
	if len(entries) > 0 {
		if e, _ := entries[0].(map[string]any); e != nil {
			loc, _ := e["response"].(map[string]any)["location"].(string)
			if rest, ok := strings.CutPrefix(loc, "Patient/"); ok {
				id, _, _ := strings.Cut(rest, "/")
				return id, nil
			}
		}
	}
	return "", fmt.Errorf("storing the PDS record of %s: no Patient location in the transaction response", current)
}
