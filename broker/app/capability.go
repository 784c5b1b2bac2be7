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
	return &conformanceParts{OperationDefinitions: defs, SupportedProfiles: byType}, nil
}

// withViews completes the configuration with the per-agency statements.
func (c *conformanceParts) withViews(v engine.CapabilityViews) engine.CapabilityConfig {
	cc := engine.CapabilityConfig(*c)
	cc.Views = v
	return cc
}
