package engine

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Consequence is a change the broker makes to another resource because of a write: a
// referral Task that ends closes its ServiceRequest. It is made in the write's transaction,
// as the broker's own write (the writer needs no scope on the target), and recorded with a
// Provenance naming the version that caused it.
type Consequence struct {
	Type, ID string
	// Change edits the target's current version in place. It reports false when the target
	// needs no change (it is already as it should be); nothing is written then.
	Change func(res map[string]any) bool
	// Reason says why, in words, for the Provenance ("Task/t1 moved to completed").
	Reason string
}

// maxConsequenceDepth bounds chains of consequences (a consequence's own consequences), so
// that hooks that feed each other cannot loop.
const maxConsequenceDepth = 4

// causeKey marks a context in which a consequence is written; its value is the chain of
// versions that caused it, the first the client's write.
type causeKey struct{}

func causeOf(ctx context.Context) []*store.Resource {
	c, _ := ctx.Value(causeKey{}).([]*store.Resource)
	return c
}

// consequences runs the Consequences hook of stored's type and writes what it asks for.
func (e *Engine) consequences(ctx context.Context, tx store.Tx, stored, cur *store.Resource, res map[string]any) error {
	hook := e.cfg.Consequences[stored.Type]
	if hook == nil {
		return nil
	}
	var prev map[string]any
	if cur != nil && !cur.Deleted {
		var err error
		if prev, err = resource.Decode(cur.Body, resource.Limits{}); err != nil {
			return fmt.Errorf("reading %s/%s version %d: %w", cur.Type, cur.ID, cur.Version, err)
		}
	}
	cs := hook(prev, res)
	if len(cs) == 0 {
		return nil
	}
	chain := causeOf(ctx)
	if len(chain) >= maxConsequenceDepth {
		return fmt.Errorf("writing %s/%s: consequences nest deeper than %d", stored.Type, stored.ID, maxConsequenceDepth)
	}
	cctx := context.WithValue(ctx, causeKey{}, append(chain[:len(chain):len(chain)], stored))
	for _, c := range cs {
		if err := e.applyConsequence(cctx, tx, stored, c); err != nil {
			return fmt.Errorf("updating %s/%s after %s/%s: %w", c.Type, c.ID, stored.Type, stored.ID, err)
		}
	}
	return nil
}

func (e *Engine) applyConsequence(ctx context.Context, tx store.Tx, cause *store.Resource, c Consequence) error {
	cur, err := currentOrNil(ctx, tx, c.Type, c.ID)
	if err != nil || cur == nil || cur.Deleted {
		return err
	}
	res, err := resource.Decode(cur.Body, resource.Limits{})
	if err != nil {
		return err
	}
	if !c.Change(res) {
		return nil
	}
	if err := e.checkResource(res, nil, c.Type, ""); err != nil {
		return err
	}
	out, err := e.write(ctx, tx, c.Type, c.ID, res, http.MethodPut, cur)
	if err != nil {
		return err
	}
	prov := consequenceProvenance(out, cause, c.Reason)
	_, err = e.write(ctx, tx, "Provenance", e.cfg.NewID(), prov, http.MethodPost, nil)
	return err
}

// consequenceProvenance records that the broker revised target because cause was written:
// activity UPDATE (v3 DataOperation), the broker as the performing agent, the causing
// version as the source entity, and reason in words.
func consequenceProvenance(target, cause *store.Resource, reason string) map[string]any {
	version := func(r *store.Resource) string {
		return r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
	}
	coding := func(system, code, display string) map[string]any {
		return map[string]any{"coding": []any{map[string]any{"system": system, "code": code, "display": display}}}
	}
	p := map[string]any{
		"resourceType": "Provenance",
		"meta":         map[string]any{"profile": []any{"https://fhir.hl7.org.uk/StructureDefinition/UKCore-Provenance"}},
		"target":       []any{map[string]any{"reference": version(target)}},
		"recorded":     instant(target.LastUpdated),
		"activity":     coding("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "UPDATE", "revise"),
		"agent": []any{map[string]any{
			"type": coding("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "performer", "Performer"),
			"who":  map[string]any{"type": "Device", "display": "hjbroker"},
		}},
		"entity": []any{map[string]any{"role": "source", "what": map[string]any{"reference": version(cause)}}},
	}
	if reason != "" {
		p["reason"] = []any{map[string]any{"text": reason}}
	}
	return p
}
