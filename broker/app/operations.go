package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

// accessCheck serves GET /fhir/Patient/{id}/$access-check?agency=ID&purpose=CODE: what the
// agency would see of the patient for the purpose, and why, from the same policy engine that
// enforces disclosure. Operators may ask about any agency (and, with client=ID, one of its
// clients); an agency only about itself, answered for the asking client.
func accessCheck(cfg *config.Config, pol *policy.Engine, st store.Store) engine.Operation {
	return func(ctx context.Context, req *engine.Request, typ, id string) (*engine.Response, error) {
		if req.Method != http.MethodGet {
			return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$access-check is read-only: use GET")
		}
		agencyID := req.Query.Get("agency")
		purpose := req.Query.Get("purpose")
		if agencyID == "" || purpose == "" {
			return nil, outcome.At(http.StatusBadRequest, "required", "agency", "$access-check needs agency (an agency id) and purpose (a v3-ActReason code)")
		}
		if a := req.Access; a != nil && a.AgencyKind != config.KindBroker && a.AgencyID != agencyID {
			return nil, outcome.New(http.StatusForbidden, "forbidden", "an agency may only check its own access; operators may check any agency's")
		}
		ag, ok := cfg.Agency(agencyID)
		if !ok {
			return nil, outcome.At(http.StatusBadRequest, "value", "agency", "no agency has id %q", agencyID)
		}
		// An agency is answered for the client asking, whose scopes and purposes also limit what
		// it sees; operators may name one with client=, or get the agency-level answer.
		clientID := req.Query.Get("client")
		if a := req.Access; a != nil && a.AgencyKind != config.KindBroker {
			clientID = a.ClientID
		}
		if clientID != "" {
			if _, cag, ok := cfg.Client(clientID); !ok || cag.ID != ag.ID {
				return nil, outcome.At(http.StatusBadRequest, "value", "client", "agency %s has no client %q", ag.ID, clientID)
			}
		}
		pat, err := st.Current(ctx, "Patient", id)
		if err != nil || pat.Deleted {
			return nil, outcome.New(http.StatusNotFound, "not-found", "Patient/%s is not known", id)
		}
		related, _, err := st.Referencing(ctx, []store.Key{{Type: "Patient", ID: id}}, "", "")
		if err != nil {
			return nil, err
		}
		var candidates, consents []map[string]any
		for _, r := range append([]*store.Resource{pat}, related...) {
			var m map[string]any
			if err := json.Unmarshal(r.Body, &m); err != nil {
				continue
			}
			candidates = append(candidates, m)
			if r.Type == "Consent" {
				consents = append(consents, m)
			}
		}
		// An agency learns nothing about a patient it may not see: answer as for an unknown one.
		if a := req.Access; a != nil && a.AgencyKind != config.KindBroker {
			d := pol.Decide(policy.Request{Agency: policy.Agency{ID: ag.ID, Kind: ag.Kind, ODS: ag.ODS}, ClientID: clientID, Purpose: a.Purpose}, candidates[0], consents)
			if !d.Permit {
				return nil, outcome.New(http.StatusNotFound, "not-found", "Patient/%s is not known", id)
			}
		}
		report := pol.Explain(policy.Request{
			Agency:     policy.Agency{ID: ag.ID, Kind: ag.Kind, ODS: ag.ODS},
			ClientID:   clientID,
			Purpose:    purpose,
			BreakGlass: req.Query.Get("reason"),
		}, "Patient/"+id, candidates, consents)
		return &engine.Response{Status: http.StatusOK, Resource: reportParameters(report)}, nil
	}
}

// reportParameters renders an access report as a FHIR Parameters resource.
func reportParameters(r policy.AccessReport) map[string]any {
	params := []any{
		map[string]any{"name": "patient", "valueReference": map[string]any{"reference": r.Patient}},
		map[string]any{"name": "agency", "valueString": r.Agency},
		map[string]any{"name": "agencyKind", "valueCode": r.AgencyKind},
		map[string]any{"name": "purpose", "valueCode": r.Purpose},
	}
	for _, c := range r.Classes {
		parts := []any{
			map[string]any{"name": "type", "valueCode": c.Type},
			map[string]any{"name": "outcome", "valueString": c.Outcome},
			map[string]any{"name": "shared", "valueInteger": c.Shared},
			map[string]any{"name": "withheld", "valueInteger": c.Withheld},
		}
		for _, l := range c.Labels {
			parts = append(parts, map[string]any{"name": "label", "valueCode": l})
		}
		if c.Redacted > 0 {
			parts = append(parts, map[string]any{"name": "redacted", "valueInteger": c.Redacted})
		}
		for _, why := range c.Reasons {
			parts = append(parts, map[string]any{"name": "reason", "valueString": string(why.Kind) + " " + why.ID + ": " + why.Text})
		}
		params = append(params, map[string]any{"name": "class", "part": parts})
	}
	return map[string]any{"resourceType": "Parameters", "parameter": params}
}

// auditSearch serves GET /fhir/AuditEvent from the tamper-evident trail, by patient,
// agency, client, action and date (ge/gt/le/lt).
func auditSearch(trail *audit.Trail) engine.Operation {
	return func(ctx context.Context, req *engine.Request, typ, id string) (*engine.Response, error) {
		var f audit.Filter
		for k, vs := range req.Query {
			v := vs[0]
			switch k {
			case "patient":
				f.Patient = v
			case "agency":
				f.Agency = v
			case "client":
				f.Client = v
			case "action":
				f.Action = audit.Action(v)
			case "_count":
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return nil, outcome.At(http.StatusBadRequest, "invalid", "_count", "_count must be a non-negative integer")
				}
				f.Limit = n
			case "_offset":
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return nil, outcome.At(http.StatusBadRequest, "invalid", "_offset", "_offset must be a non-negative integer")
				}
				f.Offset = n
			case "date":
				for _, d := range vs {
					if err := dateBound(&f, d); err != nil {
						return nil, err
					}
				}
			case "_format", "_pretty":
			default:
				return nil, outcome.At(http.StatusBadRequest, "not-supported", k,
					"AuditEvent is searched by patient, agency, client, action, date, _count and _offset; %q is not supported", k)
			}
		}
		res, err := trail.Search(ctx, f)
		if err != nil {
			return nil, err
		}
		entries := make([]any, 0, len(res.Events))
		for _, ev := range res.Events {
			var m map[string]any
			if err := json.Unmarshal(ev, &m); err != nil {
				continue
			}
			id, _ := m["id"].(string)
			entries = append(entries, map[string]any{
				"fullUrl":  req.Base + "/AuditEvent/" + id,
				"resource": json.RawMessage(ev),
				"search":   map[string]any{"mode": "match"},
			})
		}
		b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": res.Total,
			"link": []any{map[string]any{"relation": "self", "url": req.Base + "/AuditEvent?" + req.Query.Encode()}}}
		if len(entries) > 0 {
			b["entry"] = entries
		}
		return &engine.Response{Status: http.StatusOK, Resource: b}, nil
	}
}

// auditRead serves GET /fhir/AuditEvent/{id} from the tamper-evident trail.
func auditRead(trail *audit.Trail) engine.Operation {
	return func(ctx context.Context, req *engine.Request, typ, id string) (*engine.Response, error) {
		ae, found, err := trail.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, outcome.New(http.StatusNotFound, "not-found", "AuditEvent/%s is not known", id)
		}
		return &engine.Response{Status: http.StatusOK, Body: ae, Interaction: "read"}, nil
	}
}

// dateBound applies one date=<prefix><date> value to the filter.
func dateBound(f *audit.Filter, v string) error {
	prefix := "eq"
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	r, err := search.DateRange(v)
	if err != nil {
		return outcome.At(http.StatusBadRequest, "value", "date", "date: %v", err)
	}
	lo, hi := time.UnixMicro(r.Low), time.UnixMicro(r.High)
	switch prefix {
	case "ge":
		f.Since = lo
	case "gt":
		f.Since = hi
	case "le":
		f.Until = hi
	case "lt":
		f.Until = lo
	case "eq":
		f.Since, f.Until = lo, hi
	default:
		return outcome.At(http.StatusBadRequest, "not-supported", "date", "date prefix %q: use eq, ge, gt, le or lt", prefix)
	}
	return nil
}

// consentCheck rejects badly formed Consents before they can steer disclosure.
func consentCheck(typ string, res map[string]any) []outcome.Issue {
	if typ != "Consent" {
		return nil
	}
	issues := policy.CheckConsent(res)
	for i := range issues {
		for j, e := range issues[i].Expression {
			if !strings.HasPrefix(e, "Consent") {
				issues[i].Expression[j] = "Consent." + e
			}
		}
	}
	return issues
}
