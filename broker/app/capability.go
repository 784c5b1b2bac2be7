package app

import (
	"fmt"
	"sort"

	"github.com/hjbroker/hjbroker/broker/engine/opdefs"
	"github.com/hjbroker/hjbroker/profiles/ukcore"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// conformanceParts are what the CapabilityStatements are made of besides the engine itself.
type conformanceParts struct {
	// definitions are the OperationDefinitions (broker/engine/opdefs).
	definitions []map[string]any
	// profiles are the UK Core profiles the validator knows, per type.
	profiles map[string][]string
}

// conformance gathers them. The per-agency statements (broker/capability) are built in New
// from the configuration and the authenticator.
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
	return &conformanceParts{definitions: defs, profiles: byType}, nil
}
