package engine

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

// parseSearch turns a query into a search.Query, with Prefer: handling deciding what happens
// to unknown parameters.
func (e *Engine) parseSearch(req *Request, typ string, q url.Values) (*search.Query, error) {
	strict := strings.EqualFold(preferValue(req.Header, "handling"), "strict")
	sq, err := search.Parse(typ, q, e.cfg.Params, search.Options{
		Strict:       strict,
		DefaultCount: e.cfg.Limits.DefaultCount,
		MaxCount:     e.cfg.Limits.MaxCount,
		BaseURL:      req.Base,
		Now:          e.cfg.Clock(),
	})
	if err != nil {
		return nil, searchError(err)
	}
	return sq, runnable(sq)
}

// runnable rejects what the parser accepts but the store cannot answer, naming the parameter,
// so that any error from the store itself is a server fault and not blamed on the client.
func runnable(sq *search.Query) error {
	for _, c := range sq.Clauses {
		if c.Modifier == search.ModIn || c.Modifier == search.ModNotIn {
			return outcome.At(http.StatusBadRequest, "not-supported", c.Key, "search parameter %q: the :%s modifier needs value set expansion, which this server does not do", c.Key, c.Modifier)
		}
	}
	return nil
}

func searchError(err error) error {
	var se *search.Error
	if errors.As(err, &se) {
		return &outcome.Error{Status: http.StatusBadRequest, Issues: []outcome.Issue{{
			Severity: "error", Code: se.Code, Diagnostics: se.Error(), Expression: []string{se.Param},
		}}}
	}
	return outcome.New(http.StatusBadRequest, "invalid", "%v", err)
}

// criteriaKey canonicalises conditional criteria so equal criteria lock and match alike.
func (e *Engine) criteriaKey(typ, criteria string) (string, error) {
	q, err := url.ParseQuery(criteriaQuery(typ, criteria))
	if err != nil {
		return "", outcome.New(http.StatusBadRequest, "invalid", "criteria %q: %v", criteria, err)
	}
	sq, err := search.Parse(typ, q, e.cfg.Params, search.Options{Strict: true})
	if err != nil {
		return "", searchError(err)
	}
	return sq.CriteriaKey(), nil
}

// criteriaQuery takes the query part of conditional criteria. Clients send "identifier=x",
// "?identifier=x" or "Patient?identifier=x"; all mean the same, so all match and lock alike.
func criteriaQuery(typ, criteria string) string {
	if rest, ok := strings.CutPrefix(criteria, typ+"?"); ok && typ != "" {
		return rest
	}
	return strings.TrimPrefix(criteria, "?")
}

// conditionalMatch finds the one resource matching criteria inside tx: nil when none, 412 when
// several. It first locks the canonical criteria so racing conditional operations with the
// same criteria serialise (PostgreSQL); the embedded store has a single writer anyway.
func (e *Engine) conditionalMatch(ctx context.Context, tx store.Tx, req *Request, typ, criteria, what string) (*store.Resource, error) {
	q, err := url.ParseQuery(criteriaQuery(typ, criteria))
	if err != nil {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "%s criteria %q: %v", what, criteria, err)
	}
	if len(q) == 0 {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "%s has empty criteria", what)
	}
	// Unknown parameters in criteria would silently widen the match: always strict.
	sq, err := search.Parse(typ, q, e.cfg.Params, search.Options{Strict: true, BaseURL: req.Base, Now: e.cfg.Clock()})
	if err != nil {
		return nil, searchError(err)
	}
	if len(sq.Clauses) == 0 {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "%s criteria %q select nothing specific", what, criteria)
	}
	if err := runnable(sq); err != nil {
		return nil, err
	}
	if err := tx.Lock(ctx, sq.CriteriaKey()); err != nil {
		return nil, err
	}
	page, err := tx.Search(ctx, sq, store.SearchOptions{Limit: 2})
	if err != nil {
		return nil, err // as it is: the store retries its transaction on ErrRetry
	}
	switch len(page.Entries) {
	case 0:
		return nil, nil
	case 1:
		return page.Entries[0], nil
	}
	return nil, outcome.New(http.StatusPreconditionFailed, "multiple-matches", "%s criteria %q match more than one %s", what, criteria, typ)
}

// searchQuery merges URL parameters and, for POST _search, the form body.
func searchQuery(req *Request) (url.Values, error) {
	q := url.Values{}
	for k, v := range req.Query {
		q[k] = append(q[k], v...)
	}
	if req.Method == http.MethodPost {
		ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
		if len(req.Body) > 0 && ct != "application/x-www-form-urlencoded" {
			return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes application/x-www-form-urlencoded; got %q", ct)
		}
		form, err := url.ParseQuery(string(req.Body))
		if err != nil {
			return nil, outcome.New(http.StatusBadRequest, "invalid", "bad form body: %v", err)
		}
		for k, v := range form {
			q[k] = append(q[k], v...)
		}
	}
	return q, nil
}

func (e *Engine) search(ctx context.Context, req *Request, typ string) (*Response, error) {
	if s, ok := e.cfg.Searches[typ]; ok && typ != "" {
		resp, err := s(ctx, req, typ, "")
		if resp == nil {
			resp = &Response{}
		}
		resp.Interaction = "search-type"
		return resp, err
	}
	if err := e.resolve(ctx, req, typ); err != nil {
		return &Response{Interaction: "search-type"}, err
	}
	return e.searchWith(ctx, e.cfg.Store, req, typ)
}

// searchWith runs a search whose matches come from r: the store, or a transaction so that a
// GET entry sees the entries processed before it. Paging and includes use the store.
func (e *Engine) searchWith(ctx context.Context, r store.Reader, req *Request, typ string) (*Response, error) {
	interaction := "search-type"
	if typ == "" {
		interaction = "search-system"
	}
	fail := &Response{Interaction: interaction}
	q, err := searchQuery(req)
	if err != nil {
		return fail, err
	}
	if id := q.Get("_getpages"); id != "" {
		return e.page(ctx, req, q, id)
	}
	sq, err := e.parseSearch(req, typ, q)
	if err != nil {
		return fail, err
	}
	count := sq.Count
	sess := e.session(ctx, req)
	var entries []*store.Resource
	var rids, visibleRIDs []int64
	total := -1
	scanned := 0 // matches looked at for visibleRIDs
	if sess != nil {
		// What the requester may not see must not count either: match everything (up to the
		// saved-result limit), keep what is disclosed, and page over that.
		visible, vrids, n, err := e.visibleMatches(ctx, r, sq, sess)
		if err != nil {
			return fail, err
		}
		entries, rids, visibleRIDs, scanned = visible, vrids, vrids, n
		if sq.Total != search.TotalNone {
			total = len(visible)
		}
		if len(entries) > count+1 {
			entries, rids = entries[:count+1], rids[:count+1]
		}
	} else {
		page, err := r.Search(ctx, sq, store.SearchOptions{
			Offset: sq.Offset,
			Limit:  count + 1, // one more tells whether there is a next page
			Total:  sq.Total != search.TotalNone,
		})
		if err != nil {
			return fail, err
		}
		entries, rids, total = page.Entries, page.RIDs, page.Total
	}
	more := len(entries) > count
	if more {
		entries, rids = entries[:count], rids[:count]
	}
	if count == 0 {
		more = false // _count=0 and _summary=count ask for the total only: there are no pages
	}
	b := newSearchset(req.Base)
	b.total = total
	b.link("self", sq.SelfLink(req.Base))
	if more {
		// Keep the whole result list so later pages stay consistent while writes happen.
		all := visibleRIDs
		if sess == nil {
			page, err := r.Search(ctx, sq, store.SearchOptions{Offset: sq.Offset, Limit: e.cfg.Limits.MaxSavedResults, KeysOnly: true})
			if err != nil {
				return fail, err
			}
			all, scanned = page.RIDs, len(page.RIDs)
		}
		b.continuation(req.Base, sq, scanned, total, e.cfg.Limits.MaxSavedResults)
		sid := savedSearchID(req, e.cfg.NewID())
		saved := b.total
		if saved < 0 {
			saved = len(all)
		}
		if err := e.cfg.Store.SaveSearch(ctx, sid, all, saved, e.cfg.Clock().Add(e.cfg.Limits.PageTTL)); err != nil {
			return fail, err
		}
		b.pageLinks(req.Base, sid, 0, count, len(all), sq)
	}
	if err := e.fill(ctx, req, b, sq, entries, rids); err != nil {
		return fail, err
	}
	for _, w := range sq.Warnings {
		b.warn(w.Error(), w.Param)
	}
	return &Response{Status: http.StatusOK, Resource: b.resource(), Interaction: interaction}, nil
}

// page serves a later page of a saved search.
func (e *Engine) page(ctx context.Context, req *Request, q url.Values, id string) (*Response, error) {
	fail := &Response{Interaction: "search-type"}
	offset, err := strconv.Atoi(q.Get("_getpagesoffset"))
	if err != nil || offset < 0 {
		return fail, outcome.New(http.StatusBadRequest, "invalid", "_getpagesoffset must be a non-negative integer")
	}
	count, err := strconv.Atoi(q.Get("_count"))
	if err != nil || count <= 0 {
		count = e.cfg.Limits.DefaultCount
	}
	count = min(count, e.cfg.Limits.MaxCount)
	if !ownsSavedSearch(req, id) {
		err = store.ErrNotFound // another client's result set is not this client's to page
	}
	var res []*store.Resource
	var total, saved int
	if err == nil {
		res, total, saved, err = e.cfg.Store.LoadSearch(ctx, id, offset, count)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fail, outcome.New(http.StatusGone, "not-found", "the search result set %q has expired or never existed; run the search again", id)
	}
	if err != nil {
		return fail, err
	}
	// The original query's result parameters (_include, _summary, _elements) ride along.
	typ := q.Get("_type")
	q.Del("_getpages")
	q.Del("_getpagesoffset")
	q.Del("_count")
	q.Del("_type")
	sq, err := e.parseSearch(req, typ, q)
	if err != nil {
		return fail, err
	}
	b := newSearchset(req.Base)
	b.total = total
	b.pageLinks(req.Base, id, offset, count, saved, sq)
	// Consent may have changed since the first page: decide again.
	if sess := e.session(ctx, req); sess != nil {
		kept := res[:0]
		for _, r := range res {
			shown, ok, err := disclose(ctx, sess, r)
			if err != nil {
				return fail, err
			}
			if ok {
				kept = append(kept, shown)
			}
		}
		res = kept
	}
	if err := e.fill(ctx, req, b, sq, res, nil); err != nil {
		return fail, err
	}
	return &Response{Status: http.StatusOK, Resource: b.resource(), Interaction: "search-type"}, nil
}

// fill adds the matches and their _include/_revinclude resources to the Bundle.
func (e *Engine) fill(ctx context.Context, req *Request, b *searchset, sq *search.Query, matches []*store.Resource, rids []int64) error {
	if sq.Summary == search.SummaryCount {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range matches {
		seen[r.Type+"/"+r.ID] = true
		if err := b.add(r, "match", e, sq); err != nil {
			return err
		}
	}
	if len(sq.Includes) == 0 && len(sq.RevIncludes) == 0 {
		return nil
	}
	if rids == nil {
		// A saved page: look the keys up again by searching on _id.
		rids = make([]int64, 0, len(matches))
		for _, r := range matches {
			one, err := e.ridOf(ctx, r)
			if err != nil {
				return err
			}
			rids = append(rids, one)
		}
	}
	// Iterate: included resources may include further ones when :iterate is set.
	sess := e.session(ctx, req)
	frontier, frontKeys, frontRes := rids, keysOf(matches), matches
	for round := 0; round < 4 && (len(frontier) > 0 || len(frontKeys) > 0); round++ {
		var nextRIDs []int64
		var nextKeys []store.Key
		var nextRes []*store.Resource
		// add keeps the resources not yet in the Bundle that the requester may see.
		add := func(found []*store.Resource, frids []int64) error {
			for i, r := range found {
				k := r.Type + "/" + r.ID
				if seen[k] {
					continue
				}
				seen[k] = true
				shown, ok, err := disclose(ctx, sess, r)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if err := b.add(shown, "include", e, sq); err != nil {
					return err
				}
				nextRIDs = append(nextRIDs, frids[i])
				nextKeys = append(nextKeys, store.Key{Type: r.Type, ID: r.ID})
				nextRes = append(nextRes, shown)
			}
			return nil
		}
		for _, inc := range sq.Includes {
			if round > 0 && !inc.Iterate {
				continue
			}
			found, frids, err := e.cfg.Store.Referenced(ctx, frontier, includeParam(inc), inc.TargetType)
			if err == nil && sess != nil {
				found, frids, err = e.visiblyLinked(frontRes, includeParam(inc), found, frids)
			}
			if err != nil {
				return err
			}
			if err := add(found, frids); err != nil {
				return err
			}
		}
		for _, inc := range sq.RevIncludes {
			if round > 0 && !inc.Iterate {
				continue
			}
			found, frids, err := e.cfg.Store.Referencing(ctx, frontKeys, inc.Type, includeParam(inc))
			if err != nil {
				return err
			}
			if err := add(found, frids); err != nil {
				return err
			}
		}
		frontier, frontKeys, frontRes = nextRIDs, nextKeys, nextRes
	}
	return nil
}

// includeParam is the reference parameter an _include follows, "" for a wildcard.
func includeParam(inc search.Include) string {
	if inc.Wildcard || inc.Param == nil {
		return ""
	}
	return inc.Param.Code
}

func keysOf(rs []*store.Resource) []store.Key {
	out := make([]store.Key, len(rs))
	for i, r := range rs {
		out[i] = store.Key{Type: r.Type, ID: r.ID}
	}
	return out
}

// ridOf finds the internal key of a resource by an _id search.
func (e *Engine) ridOf(ctx context.Context, r *store.Resource) (int64, error) {
	sq, err := search.Parse(r.Type, url.Values{"_id": {r.ID}}, e.cfg.Params, search.Options{Strict: true})
	if err != nil {
		return 0, err
	}
	page, err := e.cfg.Store.Search(ctx, sq, store.SearchOptions{Limit: 1, KeysOnly: true})
	if err != nil || len(page.RIDs) == 0 {
		return 0, err
	}
	return page.RIDs[0], nil
}

// searchset builds a searchset or history Bundle.
type searchset struct {
	kind    string
	base    string
	total   int
	links   []any
	entries []any
	issues  []outcome.Issue
}

func newSearchset(base string) *searchset {
	return &searchset{kind: "searchset", base: base, total: -1}
}

func (b *searchset) link(rel, u string) {
	b.links = append(b.links, map[string]any{"relation": rel, "url": u})
}

func (b *searchset) warn(msg, param string) {
	is := outcome.Issue{Severity: "warning", Code: "not-supported", Diagnostics: msg}
	if param != "" {
		is.Expression = []string{param}
	}
	b.issues = append(b.issues, is)
}

// continuation tells the client when the saved result list does not reach the last match
// (its paging links end after limit matches) and how to go on: the same search from the
// first match after the list. scanned is how many matches the list was taken from; total is
// -1 when not counted.
func (b *searchset) continuation(base string, sq *search.Query, scanned, total, limit int) {
	if scanned < limit || (total >= 0 && sq.Offset+scanned >= total) {
		return
	}
	next := *sq
	next.Offset = sq.Offset + scanned
	b.issues = append(b.issues, outcome.Issue{
		Severity: "information", Code: "incomplete", Expression: []string{"_offset"},
		Diagnostics: "the paging links of this search end after matches " + strconv.Itoa(sq.Offset+1) + "-" +
			strconv.Itoa(next.Offset) + "; the search goes on from match " + strconv.Itoa(next.Offset+1) +
			" at " + next.SelfLink(base),
	})
}

// pageLinks adds first/previous/next/last links over a saved result list of n ids.
func (b *searchset) pageLinks(base, id string, offset, count, n int, sq *search.Query) {
	extra := url.Values{}
	for _, inc := range sq.Includes {
		key := "_include"
		if inc.Iterate {
			key += ":iterate"
		}
		extra.Add(key, inc.String())
	}
	for _, inc := range sq.RevIncludes {
		key := "_revinclude"
		if inc.Iterate {
			key += ":iterate"
		}
		extra.Add(key, inc.String())
	}
	if sq.Summary != search.SummaryDefault {
		extra.Set("_summary", string(sq.Summary))
	}
	if len(sq.Elements) > 0 {
		extra.Set("_elements", strings.Join(sq.Elements, ","))
	}
	if sq.Type != "" {
		extra.Set("_type", sq.Type)
	}
	mk := func(off int) string {
		v := url.Values{}
		for k, vs := range extra {
			v[k] = vs
		}
		v.Set("_getpages", id)
		v.Set("_getpagesoffset", strconv.Itoa(off))
		v.Set("_count", strconv.Itoa(count))
		return base + "?" + v.Encode()
	}
	if offset > 0 {
		b.link("first", mk(0))
		b.link("previous", mk(max(0, offset-count)))
	}
	if offset+count < n {
		b.link("next", mk(offset+count))
		last := ((n - 1) / count) * count
		b.link("last", mk(last))
	}
	if offset > 0 {
		// The self link of a later page names the page itself.
		b.links = append([]any{map[string]any{"relation": "self", "url": mk(offset)}}, b.links...)
	}
}

func (b *searchset) add(r *store.Resource, mode string, e *Engine, sq *search.Query) error {
	item := map[string]any{"fullUrl": b.base + "/" + r.Type + "/" + r.ID}
	var body any
	if sq != nil && (sq.Summary != search.SummaryDefault && sq.Summary != search.SummaryFalse || len(sq.Elements) > 0) && mode == "match" {
		m, err := resource.Decode(r.Body, resource.Limits{})
		if err != nil {
			return err
		}
		v := url.Values{}
		if sq.Summary != search.SummaryDefault {
			v.Set("_summary", string(sq.Summary))
		}
		if len(sq.Elements) > 0 {
			v.Set("_elements", strings.Join(sq.Elements, ","))
		}
		sub, err := e.subset(m, v)
		if err != nil {
			return err
		}
		body = sub
	} else {
		body = rawJSON(r.Body)
	}
	item["resource"] = body
	if b.kind == "searchset" {
		item["search"] = map[string]any{"mode": mode}
	}
	b.entries = append(b.entries, item)
	return nil
}

func (b *searchset) resource() map[string]any {
	m := map[string]any{"resourceType": "Bundle", "type": b.kind}
	if b.total >= 0 {
		m["total"] = jsonInt(b.total)
	}
	if len(b.links) > 0 {
		m["link"] = b.links
	}
	if len(b.issues) > 0 {
		b.entries = append(b.entries, map[string]any{
			"resource": outcome.Resource(b.issues),
			"search":   map[string]any{"mode": "outcome"},
		})
	}
	if len(b.entries) > 0 {
		m["entry"] = b.entries
	}
	return m
}
