package delivery

import (
	"context"
	"fmt"
	"net/url"

	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

// maxConsents bounds the Consents read for one patient.
const maxConsents = 1000

// resourceStore reads deliveries' versions and Consents from the broker's store.
type resourceStore struct {
	s      store.Store
	params search.Params
}

// FromStore adapts the broker's store to Store: Consents searches Consent?patient=.
func FromStore(s store.Store, params search.Params) Store {
	return &resourceStore{s: s, params: params}
}

func (r *resourceStore) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	return r.s.VRead(ctx, typ, id, version)
}

func (r *resourceStore) Consents(ctx context.Context, patient string) ([]map[string]any, error) {
	q, err := search.Parse("Consent", url.Values{"patient": {patient}}, r.params, search.Options{Strict: true, MaxCount: maxConsents})
	if err != nil {
		return nil, fmt.Errorf("Consent search for %s: %w", patient, err)
	}
	return store.SearchJSON(ctx, r.s, q, maxConsents)
}
