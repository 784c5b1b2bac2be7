package engine

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Resolver looks up outside the broker a resource that a search of its type by one
// identifier (system|value) found nothing for, stores it, and returns the ids of what it
// stored; none when the outside system does not know the identifier either. The search then
// answers with those resources, through the same disclosure checks as any other. An error
// (an *outcome.Error) answers the search instead.
//
// The engine asks only when no stored resource has the identifier, visible to the requester
// or not, so a resolver never duplicates what the broker already holds.
type Resolver interface {
	Resolve(ctx context.Context, req *Request, system, value string) (ids []string, err error)
}

// resolve runs the type's Resolver for a GET search by a single identifier that nothing
// stored matches, and points the search at what it stored.
func (e *Engine) resolve(ctx context.Context, req *Request, typ string) error {
	r, ok := e.cfg.Resolvers[typ]
	if !ok || req.Method != http.MethodGet || req.Query.Get("_getpages") != "" {
		return nil
	}
	sq, err := e.parseSearch(req, typ, req.Query)
	if err != nil {
		return nil // the search itself reports it
	}
	token, ok := singleIdentifier(sq)
	if !ok {
		return nil
	}
	page, err := e.cfg.Store.Search(ctx, sq, store.SearchOptions{Limit: 1, KeysOnly: true})
	if err != nil {
		return err
	}
	if len(page.RIDs) > 0 {
		return nil
	}
	ids, err := r.Resolve(ctx, req, token.System, token.Code)
	if err != nil || len(ids) == 0 {
		return err
	}
	if page, err = e.cfg.Store.Search(ctx, sq, store.SearchOptions{Limit: 1, KeysOnly: true}); err != nil || len(page.RIDs) > 0 {
		return err // the search as asked now finds what was stored
	}
	// A superseded identifier resolves to a resource that no longer carries it: search by id.
	q := cloneValues(req.Query)
	q.Del("identifier")
	q.Set("_id", strings.Join(ids, ","))
	req.Query = q
	return nil
}

// singleIdentifier reports whether a search's only criterion is identifier=system|value.
func singleIdentifier(sq *search.Query) (*search.Token, bool) {
	if len(sq.Clauses) != 1 {
		return nil, false
	}
	c := sq.Clauses[0]
	if c.Param == nil || c.Param.Code != "identifier" || len(c.Chain) > 0 || c.Modifier != search.ModNone || len(c.Values) != 1 {
		return nil, false
	}
	t := c.Values[0].Token
	if t == nil || t.AnySystem || t.System == "" || t.Code == "" {
		return nil, false
	}
	return t, true
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
