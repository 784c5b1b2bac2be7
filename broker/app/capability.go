package app

import (
	"fmt"
	"sort"

	"github.com/hjbroker/hjbroker/broker/capability"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/engine/opdefs"
	"github.com/hjbroker/hjbroker/profiles/ukcore"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// withConformance adds to an engine configuration what the CapabilityStatements are made of
// besides the engine itself: the OperationDefinitions (broker/engine/opdefs), the UK Core
// profiles the validator knows, per type, and the per-agency statements.
func (n *Node) withConformance(ec *engine.Config, val *validate.Validator) error {
	defs, err := opdefs.All()
	if err != nil {
		return err
	}
	d, err := validate.LoadFS(ukcore.FS())
	if err != nil {
		return fmt.Errorf("reading the UK Core profiles: %w", err)
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
	ec.OperationDefinitions = defs
	ec.SupportedProfiles = byType
	ec.Capabilities = capability.New(n.Config, n.Auth.Registry(), ec.Security)
	return nil
}
