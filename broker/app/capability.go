package app

import (
	"fmt"
	"sort"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/engine/opdefs"
	"github.com/hjbroker/hjbroker/profiles/ukcore"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// conformanceParts gathers what the CapabilityStatements are made of besides the engine: the
// OperationDefinitions (broker/engine/opdefs) and the UK Core profiles the validator knows,
// per type. The per-agency statements (broker/capability) are added in New, once the
// authenticator exists.
type conformanceParts engine.CapabilityConfig

func conformance(val *validate.Validator) (*conformanceParts, error) {
	defs, err := opdefs.All()
	if err != nil {
		return nil, err
	}
	d, err := validate.LoadFS(ukcore.FS())
	if err != nil {
		return nil, fmt.Errorf("reading the UK Core profiles: %w", err)
	}
	byType := map[string][]string{}
	for _, p := range d.Profiles {
		if val.Known(p.URL) {
			byType[p.Type] = append(byType[p.Type], p.URL)
		}
	}
	for _, l := range byType {
		sort.Strings(l)
	}
	return &conformanceParts{OperationDefinitions: defs, SupportedProfiles: byType, Searches: map[string]engine.ExternalSearch{
		"AuditEvent": auditSearchCapability,
	}}, nil
}

// auditSearchCapability describes GET AuditEvent (auditSearch): the audit trail searched by
// its own parameters, which replace the R4 ones the trail does not index.
var auditSearchCapability = engine.ExternalSearch{
	Documentation: "Searches answer from the tamper-evident audit trail (one AuditEvent per request, in a hash chain), " +
		"by the parameters listed (and _count, _offset) only; any other parameter is a 400.",
	Params: []engine.SearchParamInfo{
		{Name: "patient", Type: "reference", Documentation: "Events that disclosed or changed this patient's data (Patient/{id})."},
		{Name: "agency", Type: "token", Documentation: "Events of requests made for this agency (its id in the configuration)."},
		{Name: "client", Type: "token", Documentation: "Events of requests made by this API client."},
		{Name: "action", Type: "token", Documentation: "What was done: read, vread, search, history, create, update, patch, delete, transaction, disclosure, delivery, denial, break-glass."},
		{Name: "date", Type: "date", Documentation: "When it was recorded; prefixes eq, ge, gt, le and lt; repeat for a range."},
	},
}

// withViews completes the configuration with the per-agency statements.
func (c *conformanceParts) withViews(v engine.CapabilityViews) engine.CapabilityConfig {
	cc := engine.CapabilityConfig(*c)
	cc.Views = v
	return cc
}
