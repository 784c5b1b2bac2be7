package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Access is who makes a request and why, as authentication established it. A request without
// Access (nil) is the broker's own (CLI, internal tasks) and is not restricted.
type Access struct {
	ClientID   string
	AgencyID   string
	AgencyKind string
	AgencyODS  string
	// Scopes answers whether SMART scopes allow a permission (c, r, u, d, s) on a type.
	Scopes interface {
		Allows(resourceType string, perm byte) bool
	}
	// Purpose is the purpose of use (v3-ActReason) the request is made for.
	Purpose string
	// BreakGlass is the stated reason of an emergency override (purpose BTG).
	BreakGlass string
}

// Discloser decides, per request, what may leave the broker.
type Discloser interface {
	Session(ctx context.Context, who *Access) DisclosureSession
}

// DisclosureSession decides disclosures within one request (it may cache per patient).
type DisclosureSession interface {
	Disclose(ctx context.Context, body []byte) (Disclosure, error)
}

// Disclosure is the decision on one stored resource.
type Disclosure struct {
	Permit     bool
	Body       []byte // what to return: the stored bytes, or a redacted copy
	Redacted   bool
	BreakGlass bool
	Patient    string
	Reasons    []string
}

// requiredPermission names the SMART permission an interaction needs on a type ("*" for
// system-level interactions).
func requiredPermission(method string, seg []string) (typ string, perm byte, ok bool) {
	if len(seg) == 0 {
		if method == http.MethodGet {
			return "*", 's', true
		}
		return "", 0, false // batch/transaction: checked per entry
	}
	if seg[0] == "metadata" || strings.HasPrefix(seg[0], "$") {
		// System-level operations check what they do themselves ($process-message runs its
		// entries as a transaction, each entry scope-checked).
		return "", 0, false
	}
	switch seg[0] {
	case "_history":
		return "*", 'r', true
	case "_search":
		return "*", 's', true
	}
	typ = seg[0]
	if len(seg) >= 2 && strings.HasPrefix(seg[len(seg)-1], "$") {
		if seg[len(seg)-1] == "$validate" {
			return "", 0, false // validation discloses nothing stored
		}
		return typ, 'r', true
	}
	if len(seg) == 1 || seg[1] == "_search" || (len(seg) == 2 && seg[1] == "_history") {
		switch method {
		case http.MethodGet, http.MethodHead:
			if len(seg) == 2 && seg[1] == "_history" {
				return typ, 'r', true
			}
			return typ, 's', true
		case http.MethodPost:
			if len(seg) == 2 {
				return typ, 's', true
			}
			return typ, 'c', true
		case http.MethodPut, http.MethodPatch:
			return typ, 'u', true
		case http.MethodDelete:
			return typ, 'd', true
		}
		return typ, 'r', true
	}
	switch method {
	case http.MethodPut, http.MethodPatch:
		return typ, 'u', true
	case http.MethodDelete:
		return typ, 'd', true
	}
	return typ, 'r', true
}

// authorize checks the request's scopes before anything is read or written.
func (e *Engine) authorize(req *Request, seg []string) error {
	if req.Access == nil {
		return nil
	}
	typ, perm, ok := requiredPermission(req.Method, seg)
	if !ok {
		return nil
	}
	return checkScope(req.Access, typ, perm)
}

func checkScope(a *Access, typ string, perm byte) error {
	if a == nil {
		return nil
	}
	if a.Scopes == nil || !a.Scopes.Allows(typ, perm) {
		what := typ
		if typ == "*" {
			what = "all resource types"
		}
		return outcome.New(http.StatusForbidden, "forbidden", "the client's scopes do not allow %q on %s (needs system/%s.%c)", string(perm), what, typ, perm)
	}
	return nil
}

// session returns the request's disclosure session (one per request, so each patient's
// Consents are read once), or nil for an unrestricted request.
func (e *Engine) session(ctx context.Context, req *Request) DisclosureSession {
	if req.Access == nil || e.cfg.Discloser == nil {
		return nil
	}
	if req.sess == nil {
		req.sess = e.cfg.Discloser.Session(ctx, req.Access)
	}
	return req.sess
}

// PatientRecorder is implemented by sessions that remember whose data they disclosed, for
// the audit trail.
type PatientRecorder interface {
	Patients() []string
	BreakGlassUsed() bool
}

// disclose filters one stored resource through the session; nil session permits everything.
func disclose(ctx context.Context, s DisclosureSession, r *store.Resource) (*store.Resource, bool, error) {
	if s == nil {
		return r, true, nil
	}
	d, err := s.Disclose(ctx, r.Body)
	if err != nil {
		return nil, false, err
	}
	if !d.Permit {
		return nil, false, nil
	}
	if d.Redacted {
		cp := *r
		cp.Body = d.Body
		return &cp, true, nil
	}
	return r, true, nil
}

// guardWrite refuses a change to an existing resource the writer may not see, answering as
// for an unknown one, so that no agency overwrites or deletes what it cannot read. A deleted
// resource may be written again. It runs before the write transaction: deciding reads the
// patient's Consents, which inside the transaction would need a second connection while the
// transaction holds one.
func (e *Engine) guardWrite(ctx context.Context, req *Request, typ, id string) error {
	sess := e.session(ctx, req)
	if sess == nil || typ == "" || id == "" {
		return nil
	}
	cur, err := e.cfg.Store.Current(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Deleted {
		return nil
	}
	_, ok, err := disclose(ctx, sess, cur)
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound(typ, id)
	}
	return nil
}

// hideDeletion decides on a deletion by the version before it: a requester who could not see
// the resource is told it is unknown, not that it was deleted.
func (e *Engine) hideDeletion(ctx context.Context, req *Request, del *store.Resource, notFound error) error {
	sess := e.session(ctx, req)
	if sess == nil {
		return nil
	}
	prev, err := e.cfg.Store.VRead(ctx, del.Type, del.ID, del.Version-1)
	if err != nil || prev.Deleted {
		return notFound
	}
	if _, ok, err := disclose(ctx, sess, prev); err != nil {
		return err
	} else if !ok {
		return notFound
	}
	return nil
}

// savedSearchID names a saved result list after the client it was computed for, so no other
// client can page through it.
func savedSearchID(req *Request, id string) string {
	if req.Access == nil {
		return id
	}
	return req.Access.ClientID + "." + id
}

func ownsSavedSearch(req *Request, id string) bool {
	if req.Access == nil {
		return true
	}
	return strings.HasPrefix(id, req.Access.ClientID+".")
}

// visibleMatches returns every match (up to the saved-result limit) the requester may see, in
// order, with redacted copies where the policy redacts, and how many matches it looked at
// (the saved-result limit when there may be more).
func (e *Engine) visibleMatches(ctx context.Context, r store.Reader, sq *search.Query, sess DisclosureSession) ([]*store.Resource, []int64, int, error) {
	all, err := r.Search(ctx, sq, store.SearchOptions{Offset: sq.Offset, Limit: e.cfg.Limits.MaxSavedResults, KeysOnly: true})
	if err != nil {
		return nil, nil, 0, err
	}
	const chunk = 500
	var out []*store.Resource
	var rids []int64
	for i := 0; i < len(all.RIDs); i += chunk {
		ids := all.RIDs[i:min(len(all.RIDs), i+chunk)]
		loaded, keys, err := e.cfg.Store.ByRIDs(ctx, ids)
		if err != nil {
			return nil, nil, 0, err
		}
		for j, res := range loaded {
			shown, ok, err := disclose(ctx, sess, res)
			if err != nil {
				return nil, nil, 0, err
			}
			if ok && sess != nil {
				ok, err = e.matchesVisibly(ctx, r, sq, sess, res, shown, keys[j])
				if err != nil {
					return nil, nil, 0, err
				}
			}
			if ok {
				out = append(out, shown)
				rids = append(rids, keys[j])
			}
		}
	}
	return out, rids, len(all.RIDs), nil
}

// matchesVisibly reports whether a disclosed match still matches on what the requester may
// see. A criterion on an element a redaction removed, or a chained or _has criterion met only
// by resources the requester may not see, would otherwise confirm the hidden data (a
// restricted patient's phone number, the code of another agency's Observation).
func (e *Engine) matchesVisibly(ctx context.Context, r store.Reader, sq *search.Query, sess DisclosureSession, stored, shown *store.Resource, rid int64) (bool, error) {
	hidden, err := e.redactedParams(stored, shown)
	if err != nil {
		return false, err
	}
	for _, c := range sq.Clauses {
		if len(c.Chain) == 0 {
			if hidden[c.Param.Code] {
				return false, nil
			}
			continue
		}
		ok, err := e.chainVisible(ctx, r, sess, c, stored, shown, rid)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// redactedParams names the search parameters whose index differs between a stored resource and
// the copy disclosed; nil when nothing was redacted.
func (e *Engine) redactedParams(stored, shown *store.Resource) (map[string]bool, error) {
	if shown == stored || string(shown.Body) == string(stored.Body) {
		return nil, nil
	}
	before, err := e.indexBody(stored)
	if err != nil {
		return nil, err
	}
	after, err := e.indexBody(shown)
	if err != nil {
		return nil, err
	}
	a, b := indexRows(before), indexRows(after)
	out := map[string]bool{}
	for p, rows := range a {
		if !slices.Equal(rows, b[p]) {
			out[p] = true
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out[p] = true
		}
	}
	return out, nil
}

func (e *Engine) indexBody(r *store.Resource) (store.Index, error) {
	m, err := resource.Decode(r.Body, resource.Limits{})
	if err != nil {
		return store.Index{}, fmt.Errorf("reading %s/%s: %w", r.Type, r.ID, err)
	}
	return e.cfg.Indexer.Index(r.Type, m)
}

// indexRows renders index rows per parameter, in a comparable form.
func indexRows(ix store.Index) map[string][]string {
	out := map[string][]string{}
	put := func(p string, row any) { out[p] = append(out[p], fmt.Sprintf("%+v", row)) }
	for _, x := range ix.Tokens {
		put(x.Param, x)
	}
	for _, x := range ix.Strings {
		put(x.Param, x)
	}
	for _, x := range ix.Dates {
		put(x.Param, x)
	}
	for _, x := range ix.Refs {
		put(x.Param, x)
	}
	for _, x := range ix.Numbers {
		put(x.Param, x)
	}
	for _, x := range ix.URIs {
		put(x.Param, x)
	}
	for p := range out {
		slices.Sort(out[p])
	}
	return out
}

// chainBatch bounds the ids tested in one query at the end of a chain.
const chainBatch = 100

// chainVisible walks a chained or _has clause from one match through resources the requester
// may see (never through a link their disclosed copy lacks) and reports whether one reached
// at the end meets the clause.
func (e *Engine) chainVisible(ctx context.Context, r store.Reader, sess DisclosureSession, c search.Clause, stored, shown *store.Resource, rid int64) (bool, error) {
	type node struct {
		stored, shown *store.Resource
		rid           int64
	}
	front := []node{{stored, shown, rid}}
	for _, l := range c.Chain {
		var found []*store.Resource
		var frids []int64
		var err error
		if l.Reverse {
			keys := make([]store.Key, len(front))
			for i, n := range front {
				keys[i] = store.Key{Type: n.stored.Type, ID: n.stored.ID}
			}
			found, frids, err = e.cfg.Store.Referencing(ctx, keys, l.Type, l.Param.Code)
		} else {
			var from []int64
			for _, n := range front {
				hidden, err := e.redactedParams(n.stored, n.shown)
				if err != nil {
					return false, err
				}
				if !hidden[l.Param.Code] {
					from = append(from, n.rid)
				}
			}
			if len(from) > 0 {
				found, frids, err = e.cfg.Store.Referenced(ctx, from, l.Param.Code, l.Type)
			}
		}
		if err != nil {
			return false, err
		}
		front = front[:0:0]
		for i, f := range found {
			sh, ok, err := disclose(ctx, sess, f)
			if err != nil {
				return false, err
			}
			if !ok {
				continue
			}
			if l.Reverse {
				// The link is the found resource's own reference: it must survive redaction.
				hidden, err := e.redactedParams(f, sh)
				if err != nil {
					return false, err
				}
				if hidden[l.Param.Code] {
					continue
				}
			}
			front = append(front, node{f, sh, frids[i]})
		}
		if len(front) == 0 {
			return false, nil
		}
	}
	var ids []string
	for _, n := range front {
		hidden, err := e.redactedParams(n.stored, n.shown)
		if err != nil {
			return false, err
		}
		if !hidden[c.Param.Code] {
			ids = append(ids, n.stored.ID)
		}
	}
	typ := c.Chain[len(c.Chain)-1].Type
	for i := 0; i < len(ids); i += chainBatch {
		batch := ids[i:min(len(ids), i+chainBatch)]
		q, err := search.Parse(typ, url.Values{"_id": {strings.Join(batch, ",")}}, e.cfg.Params, search.Options{Strict: true, MaxCount: chainBatch, DefaultCount: chainBatch})
		if err != nil {
			return false, err
		}
		q.Clauses = append(q.Clauses, search.Clause{Key: c.Key, Param: c.Param, Modifier: c.Modifier, Values: c.Values})
		page, err := r.Search(ctx, q, store.SearchOptions{Limit: len(batch), KeysOnly: true})
		if err != nil {
			return false, err
		}
		if len(page.RIDs) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// visiblyLinked keeps of the resources an _include found those that the disclosed copies of
// its sources still refer to through param ("" for any), so that a link a redaction removed
// (a restricted patient's registered GP) is not followed through the stored index.
func (e *Engine) visiblyLinked(sources []*store.Resource, param string, found []*store.Resource, frids []int64) ([]*store.Resource, []int64, error) {
	linked := map[string]bool{}
	for _, s := range sources {
		ix, err := e.indexBody(s)
		if err != nil {
			return nil, nil, err
		}
		for _, ref := range ix.Refs {
			if param == "" || ref.Param == param {
				linked[ref.TargetType+"/"+ref.TargetID] = true
			}
		}
	}
	var keep []*store.Resource
	var keepRIDs []int64
	for i, f := range found {
		if linked[f.Type+"/"+f.ID] {
			keep = append(keep, f)
			keepRIDs = append(keepRIDs, frids[i])
		}
	}
	return keep, keepRIDs, nil
}

// authorizeEntry checks one transaction entry's scope before anything runs.
func (e *Engine) authorizeEntry(req *Request, en *entry) error {
	if req.Access == nil {
		return nil
	}
	path := strings.Trim(strings.SplitN(en.url, "?", 2)[0], "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	typ, perm, ok := requiredPermission(en.method, seg)
	if !ok {
		return nil
	}
	return checkScope(req.Access, typ, perm)
}

// accessKey carries the request's Access through the context to the write path.
type accessKey struct{}

// SourcePrefix starts the meta.source the broker stamps on resources written by an agency's
// client; the agency id follows.
const SourcePrefix = "https://hjbroker.dev/agency/"

// Operation serves a named operation or a search of a type kept outside the store.
type Operation func(ctx context.Context, req *Request, typ, id string) (*Response, error)

// OperationKey names an operation for Config.Operations: "$name" at system level,
// "Type/$name" at type level and "Type/{id}/$name" at instance level.
func OperationKey(typ string, instance bool, name string) string {
	return operationKey(typ, instance, name)
}

func operationKey(typ string, instance bool, name string) string {
	switch {
	case typ == "":
		return "$" + name
	case instance:
		return typ + "/{id}/$" + name
	}
	return typ + "/$" + name
}

// runChecks applies the configured extra checks to a resource about to be written.
func (e *Engine) runChecks(typ string, res map[string]any, at string) error {
	var issues []outcome.Issue
	for _, c := range e.cfg.Checks {
		issues = append(issues, c(typ, res)...)
	}
	errs := 0
	for i := range issues {
		if at != "" {
			for j, x := range issues[i].Expression {
				issues[i].Expression[j] = at + "." + x
			}
		}
		if issues[i].Severity == "error" || issues[i].Severity == "fatal" {
			errs++
		}
	}
	if errs == 0 {
		return nil
	}
	return &outcome.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
}

// WriteEvent is a stored change, reported inside its write transaction so that routing work
// commits with it (transactional outbox).
type WriteEvent struct {
	// Stored is the new version (Deleted for a deletion); Previous the version before, nil
	// for a create.
	Stored, Previous *store.Resource
	// Resource is the stored JSON (nil for a deletion).
	Resource map[string]any
	// Access is who wrote it, or, for a consequence, whose write brought it about; nil for
	// the broker's own writes.
	Access *Access
	// Cause, for a consequence (Config.Consequences), is the version whose write brought it
	// about; nil for a write a client asked for.
	Cause *store.Resource
}

// notify reports a stored change to the configured OnWrite hook.
func (e *Engine) notify(ctx context.Context, tx store.Tx, stored, prev *store.Resource, res map[string]any) error {
	if e.cfg.OnWrite == nil {
		return nil
	}
	a, _ := ctx.Value(accessKey{}).(*Access)
	ev := WriteEvent{Stored: stored, Previous: prev, Resource: res, Access: a}
	if chain := causeOf(ctx); len(chain) > 0 {
		ev.Cause = chain[len(chain)-1]
	}
	return e.cfg.OnWrite(ctx, tx, ev)
}

// writeTx runs a write transaction and, once it has committed, the AfterCommit hook.
func (e *Engine) writeTx(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := e.cfg.Store.Update(ctx, fn); err != nil {
		return err
	}
	if e.cfg.AfterCommit != nil {
		e.cfg.AfterCommit()
	}
	return nil
}

// provenance records, in the same transaction, that the broker changed what it was sent
// (normalised it with the named mapping), naming the source client and agency.
func (e *Engine) provenance(ctx context.Context, tx store.Tx, target *store.Resource, mapping string) error {
	source, ods := "hjbroker", ""
	if a, ok := ctx.Value(accessKey{}).(*Access); ok && a != nil {
		source, ods = a.ClientID, a.AgencyODS
	}
	ref := target.Type + "/" + target.ID + "/_history/" + strconv.FormatInt(target.Version, 10)
	prov := audit.ProvenanceFor([]string{ref}, source, ods, mapping, "transform", target.LastUpdated)
	_, err := e.write(ctx, tx, "Provenance", e.cfg.NewID(), prov, http.MethodPost, nil)
	return err
}
