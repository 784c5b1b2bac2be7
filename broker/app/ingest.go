package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/mappings/careconnect"
	"github.com/hjbroker/hjbroker/mappings/clinical"
)

// Operation names of the ingest operations (system level: POST [base]/$name).
const (
	OpIngestClinicalEntries = "ingest-clinical-entries"
	OpImportCareConnect     = "import-careconnect"
)

// failed marks a refused ingest, for metrics and audit, as the transaction it would have been.
func failed() *engine.Response { return &engine.Response{Interaction: "transaction"} }

// mapped is what a source mapping gives the ingest path: a transaction Bundle, warnings per
// entry and the input path each entry came from.
type mapped struct {
	bundle   map[string]any
	warnings map[int][]outcome.Issue
	sources  []string
}

// ingest holds the source mappings the ingest operations run.
type ingest struct {
	n           *Node
	clinical    *clinical.Mapper
	careConnect *careconnect.Mapper
	now         func() time.Time
}

func newIngest(n *Node) (*ingest, error) {
	cm, err := clinical.New()
	if err != nil {
		return nil, err
	}
	gpc, err := careconnect.New()
	if err != nil {
		return nil, err
	}
	return &ingest{n: n, clinical: cm, careConnect: gpc, now: time.Now}, nil
}

// importCareConnect serves POST [base]/$import-careconnect: a GP Connect Access Record:
// Structured response (STU3 Bundle of type collection) is converted to UK Core R4 and
// stored like $ingest-clinical-entries, in one transaction. List warnings
// (confidential-items, data-in-transit, data-awaiting-filing) are kept on the Lists and
// reported, with every element the conversion left out, as warnings on the entries.
func (g *ingest) importCareConnect(ctx context.Context, req *engine.Request, _, _ string) (*engine.Response, error) {
	if req.Method != http.MethodPost {
		return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$%s takes a POST of a GP Connect structured record Bundle", OpImportCareConnect)
	}
	if len(req.Body) == 0 {
		return failed(), outcome.New(http.StatusBadRequest, "required", "$%s needs a body: the STU3 structured record Bundle", OpImportCareConnect)
	}
	in, err := resource.Decode(req.Body, resource.Limits{MaxDepth: g.n.Engine.Limits().MaxDepth})
	if err != nil {
		return failed(), err
	}
	opts := careconnect.Options{Recorded: g.now()}
	if a := req.Access; a != nil {
		opts.AgencyODS, opts.Source = a.AgencyODS, a.ClientID
	}
	res, err := g.careConnect.Map(in, opts)
	if err != nil {
		return failed(), err
	}
	m := &mapped{bundle: res.Bundle, warnings: map[int][]outcome.Issue{}, sources: res.Sources}
	for _, w := range res.Warnings {
		m.warnings[w.Entry] = append(m.warnings[w.Entry], w.Issue)
	}
	return g.store(ctx, req, OpImportCareConnect, m)
}

// clinicalEntries serves POST [base]/$ingest-clinical-entries: a clinical-entries document
// (docs/clinical-entries.md; application/json) is checked against its schema, mapped to UK
// Core and stored through the engine's transaction path, so validation, consent checks,
// routing and audit apply as to any transaction, and either everything is stored or nothing.
// It answers the transaction-response; warnings (codes kept untranslated) are in the
// response.outcome of the entries they concern.
func (g *ingest) clinicalEntries(ctx context.Context, req *engine.Request, _, _ string) (*engine.Response, error) {
	if req.Method != http.MethodPost {
		return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$%s takes a POST of clinical entries (application/json)", OpIngestClinicalEntries)
	}
	if len(req.Body) == 0 {
		return failed(), outcome.New(http.StatusBadRequest, "required", "$%s needs a body: clinical entries as JSON (see docs/clinical-entries.md)", OpIngestClinicalEntries)
	}
	opts := clinical.Options{Recorded: g.now(), Source: "hjbroker"}
	if a := req.Access; a != nil {
		opts.AgencyODS, opts.Source = a.AgencyODS, a.ClientID
	}
	res, err := g.clinical.Map(req.Body, opts)
	if err != nil {
		return failed(), err
	}
	m := &mapped{bundle: res.Bundle, warnings: map[int][]outcome.Issue{}, sources: res.Sources}
	for _, w := range res.Warnings {
		m.warnings[w.Entry] = append(m.warnings[w.Entry], w.Issue)
	}
	return g.store(ctx, req, OpIngestClinicalEntries, m)
}

// store checks the client may write every resource type the Bundle holds, runs it as one
// transaction and adds the mapping's warnings to the transaction-response.
func (g *ingest) store(ctx context.Context, req *engine.Request, op string, m *mapped) (*engine.Response, error) {
	if err := checkWriteScopes(req.Access, op, m.bundle); err != nil {
		return &engine.Response{Interaction: "authorization"}, err
	}
	body, err := json.Marshal(m.bundle)
	if err != nil {
		return failed(), fmt.Errorf("encoding the mapped Bundle: %w", err)
	}
	h := http.Header{"Content-Type": {"application/fhir+json"}}
	for _, p := range req.Header.Values("Prefer") {
		h.Add("Prefer", p)
	}
	resp := g.n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPost, Body: body, Base: req.Base, Access: req.Access, Header: h})
	if resp.Status >= 300 {
		nameSources(resp, m.sources)
		return resp, nil
	}
	if entries, ok := resp.Resource["entry"].([]any); ok {
		for i, e := range entries {
			issues := m.warnings[i]
			if len(issues) == 0 {
				continue
			}
			rsp, _ := e.(map[string]any)["response"].(map[string]any)
			if rsp == nil {
				continue
			}
			if prev, ok := rsp["outcome"].(map[string]any); ok && prev["resourceType"] == "OperationOutcome" {
				list, _ := prev["issue"].([]any)
				for _, is := range outcome.Resource(issues)["issue"].([]any) {
					list = append(list, is)
				}
				prev["issue"] = list
			} else {
				rsp["outcome"] = outcome.Resource(issues)
			}
		}
	}
	resp.Interaction = "transaction"
	return resp, nil
}

// nameSources adds, to every issue that names a Bundle entry, the input path the entry was
// mapped from, so the sender can find what to correct.
func nameSources(resp *engine.Response, sources []string) {
	issues, _ := resp.Resource["issue"].([]any)
	for _, x := range issues {
		is, _ := x.(map[string]any)
		exprs, _ := is["expression"].([]any)
		for _, e := range exprs {
			s, _ := e.(string)
			var i int
			if _, err := fmt.Sscanf(s, "Bundle.entry[%d]", &i); err != nil || i < 0 || i >= len(sources) || sources[i] == "" {
				continue
			}
			is["expression"] = append(exprs, sources[i])
			if d, _ := is["diagnostics"].(string); d != "" {
				is["diagnostics"] = d + " (mapped from " + sources[i] + ")"
			}
			break
		}
	}
}

// checkWriteScopes is the ingest operations' own scope requirement: the client must be
// allowed to create (and, for conditional updates, update) every type the mapped Bundle
// writes. The engine checks each entry again; this answers with every missing scope at once.
func checkWriteScopes(a *engine.Access, op string, bundle map[string]any) error {
	if a == nil {
		return nil
	}
	missing := map[string]bool{}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		en, _ := e.(map[string]any)
		res, _ := en["resource"].(map[string]any)
		rq, _ := en["request"].(map[string]any)
		typ, _ := res["resourceType"].(string)
		perms := "c"
		if rq["method"] == http.MethodPut {
			perms = "cu"
		}
		for _, p := range []byte(perms) {
			if a.Scopes == nil || !a.Scopes.Allows(typ, p) {
				missing["system/"+typ+"."+string(p)] = true
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	list := make([]string, 0, len(missing))
	for s := range missing {
		list = append(list, s)
	}
	sort.Strings(list)
	return outcome.New(http.StatusForbidden, "forbidden", "$%s writes resources the client's scopes do not allow; it needs %s", op, strings.Join(list, ", "))
}
