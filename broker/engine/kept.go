package engine

import (
	"context"
	"net/http"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// kept reports whether typ is kept outside the resource store (Config.Searches): the broker
// writes it (the audit trail), clients only read and search it.
func (e *Engine) kept(typ string) bool {
	_, ok := e.cfg.Searches[typ]
	return ok
}

// writable refuses writes of the types the broker keeps outside the store, and of its own
// conformance resources, wherever the write comes from (a Bundle entry included): a copy in
// the resource store would never be found by their searches and could pass for the real one.
func (e *Engine) writable(typ string) error {
	if e.kept(typ) || conformanceTypes[typ] {
		return outcome.New(http.StatusMethodNotAllowed, "not-supported", "%s is read-only: the broker writes it itself", typ)
	}
	return nil
}

// keptElsewhere serves the interactions on a type kept outside the store: search (GET, or
// POST _search) and read; everything else is 405.
func (e *Engine) keptElsewhere(ctx context.Context, req *Request, m string, seg []string, notAllowed func(string) (*Response, error)) (*Response, error) {
	typ := seg[0]
	switch {
	case len(seg) == 1 && m == http.MethodGet, len(seg) == 2 && seg[1] == "_search" && m == http.MethodPost:
		return e.search(ctx, req, typ)
	case len(seg) == 2 && seg[1] != "_search" && seg[1] != "_history" && m == http.MethodGet:
		if err := checkID(seg[1]); err != nil {
			return nil, err
		}
		read, ok := e.cfg.Reads[typ]
		if !ok {
			return nil, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, seg[1])
		}
		resp, err := read(ctx, req, typ, seg[1])
		if resp != nil && resp.Interaction == "" {
			resp.Interaction = "read"
		}
		return resp, err
	}
	return notAllowed(typ + " (read-only)")
}
