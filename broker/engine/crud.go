package engine

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// parseBody decodes and structurally checks a resource body for typ. The checks run before
// any transaction starts so that bad input never holds a lock.
func (e *Engine) parseBody(body []byte, typ string) (map[string]any, error) {
	if len(body) == 0 {
		return nil, outcome.New(http.StatusBadRequest, "required", "the request has no body; send a %s resource", typ)
	}
	res, err := resource.Decode(body, resource.Limits{MaxDepth: e.cfg.Limits.MaxDepth})
	if err != nil {
		return nil, err
	}
	return res, e.checkResource(res, body, typ, "")
}

// checkResource checks resourceType and R4 structure. at prefixes expressions for Bundle
// entries ("Bundle.entry[3].resource").
func (e *Engine) checkResource(res map[string]any, raw []byte, typ, at string) error {
	rt, ok := res["resourceType"].(string)
	if !ok || rt == "" {
		return outcome.At(http.StatusBadRequest, "required", join(at, "resourceType"), "the resource has no resourceType")
	}
	if typ != "" && rt != typ {
		return outcome.At(http.StatusBadRequest, "invalid", join(at, "resourceType"), "resourceType %q does not match the URL, which names %q", rt, typ)
	}
	if !e.cfg.Types.IsResource(rt) {
		return outcome.At(http.StatusBadRequest, "not-supported", join(at, "resourceType"), "%q is not an R4 resource type", rt)
	}
	if raw == nil {
		raw = resource.Encode(res)
	}
	oe := resource.EmptyValues(res)
	if oe == nil {
		oe = e.cfg.Checker.Check(raw)
	}
	if oe != nil {
		if at != "" {
			for i := range oe.Issues {
				for j, x := range oe.Issues[i].Expression {
					// The checker names elements from the resource root ("Patient.birthDate");
					// inside a Bundle the path continues from the entry's resource.
					if rest, ok := strings.CutPrefix(x, rt+"."); ok {
						x = rest
					} else if x == rt {
						oe.Issues[i].Expression[j] = at
						continue
					}
					oe.Issues[i].Expression[j] = at + "." + x
				}
			}
		}
		return oe
	}
	if err := e.runChecks(rt, res, at); err != nil {
		return err
	}
	return e.validateWrite(res, raw, rt, at)
}

func join(at, path string) string {
	if at == "" {
		return path
	}
	return at + "." + path
}

// write stores res as the next version after cur (nil when the resource never existed).
func (e *Engine) write(ctx context.Context, tx store.Tx, typ, id string, res map[string]any, method string, cur *store.Resource) (*store.Resource, error) {
	var version int64 = 1
	if cur != nil {
		version = cur.Version + 1
	}
	if err := e.writable(typ); err != nil {
		return nil, err
	}
	if err := e.checkTransition(ctx, typ, cur, res); err != nil {
		return nil, err
	}
	now := e.cfg.Clock().UTC().Truncate(time.Microsecond)
	res["id"] = id
	// Retired spellings (NHS number verification status) are stored in their current form,
	// with a Provenance saying so (below).
	normalised := e.cfg.Validator != nil && typ != "Provenance" && e.cfg.Validator.Normalize(res)
	meta := resource.Meta(res)
	meta["versionId"] = strconv.FormatInt(version, 10)
	meta["lastUpdated"] = instant(now)
	if a, ok := ctx.Value(accessKey{}).(*Access); ok && a != nil && a.AgencyID != "" && causeOf(ctx) == nil {
		// The recording agency, which consent defaults key on; never the client's own claim.
		// A consequence keeps its target's: the broker revised the record, the recorder is
		// unchanged.
		meta["source"] = SourcePrefix + a.AgencyID
	}
	ix, err := e.cfg.Indexer.Index(typ, res)
	if err != nil {
		return nil, err
	}
	body := resource.Encode(res)
	w := &store.Write{Type: typ, ID: id, Version: version, LastUpdated: now, Method: method, Body: body, Index: ix}
	if err := tx.Put(ctx, w); err != nil {
		return nil, err
	}
	out := &store.Resource{Type: typ, ID: id, Version: version, LastUpdated: now, Method: method, Body: body}
	if err := e.notify(ctx, tx, out, cur, res); err != nil {
		return nil, err
	}
	if err := e.consequences(ctx, tx, out, cur, res); err != nil {
		return nil, err
	}
	if normalised {
		if err := e.provenance(ctx, tx, out, "nhs-number-verification-status"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkTransition runs the Transitions hooks on a change from cur to res.
func (e *Engine) checkTransition(ctx context.Context, typ string, cur *store.Resource, res map[string]any) error {
	check := e.cfg.Transitions[typ]
	if check == nil {
		return nil
	}
	var prev map[string]any
	if cur != nil && !cur.Deleted {
		var err error
		if prev, err = resource.Decode(cur.Body, resource.Limits{}); err != nil {
			return fmt.Errorf("reading %s/%s version %d: %w", typ, cur.ID, cur.Version, err)
		}
	}
	a, _ := ctx.Value(accessKey{}).(*Access)
	return check(a, prev, res)
}

// remove stores a deletion as the next version after cur.
func (e *Engine) remove(ctx context.Context, tx store.Tx, cur *store.Resource) (*store.Resource, error) {
	if err := e.writable(cur.Type); err != nil {
		return nil, err
	}
	now := e.cfg.Clock().UTC().Truncate(time.Microsecond)
	w := &store.Write{Type: cur.Type, ID: cur.ID, Version: cur.Version + 1, LastUpdated: now, Method: http.MethodDelete, Deleted: true}
	if err := tx.Put(ctx, w); err != nil {
		return nil, err
	}
	out := &store.Resource{Type: cur.Type, ID: cur.ID, Version: w.Version, LastUpdated: now, Method: http.MethodDelete, Deleted: true}
	if err := e.notify(ctx, tx, out, cur, nil); err != nil {
		return nil, err
	}
	if err := e.consequences(ctx, tx, out, cur, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// currentOrNil reads the current version; nil when the resource never existed.
func currentOrNil(ctx context.Context, r store.Reader, typ, id string) (*store.Resource, error) {
	cur, err := r.Current(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return cur, err
}

// stored builds the response for a stored version: headers plus the body chosen by Prefer.
func (e *Engine) stored(req *Request, res *store.Resource, status int, interaction string) *Response {
	r := &Response{Status: status, Interaction: interaction}
	r.setHeader("ETag", etag(res.Version))
	r.setHeader("Last-Modified", res.LastUpdated.UTC().Format(http.TimeFormat))
	if status == http.StatusCreated || interaction == "update" || interaction == "patch" {
		r.setHeader("Location", req.Base+"/"+res.Type+"/"+res.ID+"/_history/"+strconv.FormatInt(res.Version, 10))
	}
	switch preferReturn(req.Header) {
	case "minimal":
	case "OperationOutcome":
		r.Resource = outcome.Resource(outcome.Info("%s %s/%s version %d", interaction, res.Type, res.ID, res.Version))
	default:
		r.Body = res.Body
	}
	return r
}

// preferReturn reads Prefer: return=...
func preferReturn(h http.Header) string {
	return preferValue(h, "return")
}

func preferValue(h http.Header, key string) string {
	for _, v := range h.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			for _, kv := range strings.Split(part, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), key) {
					return strings.Trim(strings.TrimSpace(val), `"`)
				}
			}
		}
	}
	return ""
}

func (e *Engine) read(ctx context.Context, req *Request, typ, id string) (*Response, error) {
	res, err := e.cfg.Store.Current(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return &Response{Interaction: "read"}, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
	}
	if err != nil {
		return nil, err
	}
	if res.Deleted {
		if err := e.hideDeletion(ctx, req, res, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)); err != nil {
			return &Response{Interaction: "read"}, err
		}
		r := errorResponse(outcome.New(http.StatusGone, "deleted", "%s/%s was deleted (version %d)", typ, id, res.Version))
		r.Interaction = "read"
		r.setHeader("ETag", etag(res.Version))
		return r, nil
	}
	return e.readResponse(ctx, req, res, "read")
}

// readResponse serves a stored version, honouring If-None-Match, If-Modified-Since, _summary
// and _elements.
func (e *Engine) readResponse(ctx context.Context, req *Request, res *store.Resource, interaction string) (*Response, error) {
	// A resource the requester may not see answers exactly as an unknown one, so nothing
	// about its existence leaks.
	shown, ok, err := disclose(ctx, e.session(ctx, req), res)
	if err != nil {
		return nil, err
	}
	if !ok {
		if interaction == "vread" {
			// As an unknown version would answer.
			return &Response{Interaction: interaction}, outcome.New(http.StatusNotFound, "not-found", "%s/%s has no version %d", res.Type, res.ID, res.Version)
		}
		return &Response{Interaction: interaction}, errNotFound(res.Type, res.ID)
	}
	res = shown
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		if v, err := parseETag(inm); err == nil && v == res.Version {
			r := &Response{Status: http.StatusNotModified, Interaction: interaction}
			r.setHeader("ETag", etag(res.Version))
			return r, nil
		}
	}
	if ims := req.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !res.LastUpdated.Truncate(time.Second).After(t) {
			r := &Response{Status: http.StatusNotModified, Interaction: interaction}
			r.setHeader("ETag", etag(res.Version))
			return r, nil
		}
	}
	r := &Response{Status: http.StatusOK, Interaction: interaction, Body: res.Body}
	r.setHeader("ETag", etag(res.Version))
	r.setHeader("Last-Modified", res.LastUpdated.UTC().Format(http.TimeFormat))
	if req.Query.Get("_summary") != "" || req.Query.Get("_elements") != "" {
		m, err := resource.Decode(res.Body, resource.Limits{})
		if err != nil {
			return nil, err
		}
		sub, err := e.subset(m, req.Query)
		if err != nil {
			return nil, err
		}
		r.Body, r.Resource = nil, sub
	}
	if req.Method == http.MethodHead {
		r.Body, r.Resource = nil, nil
	}
	return r, nil
}

func (e *Engine) vread(ctx context.Context, req *Request, typ, id string, v int64) (*Response, error) {
	res, err := e.cfg.Store.VRead(ctx, typ, id, v)
	if errors.Is(err, store.ErrNotFound) {
		return &Response{Interaction: "vread"}, outcome.New(http.StatusNotFound, "not-found", "%s/%s has no version %d", typ, id, v)
	}
	if err != nil {
		return nil, err
	}
	if res.Deleted {
		if err := e.hideDeletion(ctx, req, res, outcome.New(http.StatusNotFound, "not-found", "%s/%s has no version %d", typ, id, v)); err != nil {
			return &Response{Interaction: "vread"}, err
		}
		return &Response{Interaction: "vread"}, outcome.New(http.StatusGone, "deleted", "version %d of %s/%s is a deletion", v, typ, id)
	}
	return e.readResponse(ctx, req, res, "vread")
}

func (e *Engine) create(ctx context.Context, req *Request, typ string) (*Response, error) {
	res, err := e.parseBody(req.Body, typ)
	if err != nil {
		return &Response{Interaction: "create"}, err
	}
	var out *store.Resource
	status := http.StatusCreated
	err = e.writeTx(ctx, func(tx store.Tx) error {
		r := resource.Clone(res).(map[string]any)
		var err error
		out, status, err = e.createIn(ctx, tx, req, typ, r, req.Header.Get("If-None-Exist"), "")
		return err
	})
	if err != nil {
		return &Response{Interaction: "create"}, err
	}
	return e.stored(req, out, status, "create"), nil
}

// createIn creates res in tx, or, with If-None-Exist criteria, returns the one match (200).
// id, when set, is the id to use (transactions pre-assign ids for urn:uuid fullUrls).
func (e *Engine) createIn(ctx context.Context, tx store.Tx, req *Request, typ string, res map[string]any, ifNoneExist, id string) (*store.Resource, int, error) {
	if ifNoneExist != "" {
		match, err := e.conditionalMatch(ctx, tx, req, typ, ifNoneExist, "If-None-Exist")
		if err != nil {
			return nil, 0, err
		}
		if match != nil {
			return match, http.StatusOK, nil
		}
	}
	if id == "" {
		id = e.cfg.NewID()
	}
	// A server-assigned id never collides; the body's own id is ignored on create, as the
	// specification requires.
	out, err := e.write(ctx, tx, typ, id, res, http.MethodPost, nil)
	return out, http.StatusCreated, err
}

func (e *Engine) update(ctx context.Context, req *Request, typ, id string) (*Response, error) {
	res, err := e.parseBody(req.Body, typ)
	if err != nil {
		return &Response{Interaction: "update"}, err
	}
	bodyID := resource.ID(res)
	if bodyID == "" {
		return &Response{Interaction: "update"}, outcome.At(http.StatusBadRequest, "required", typ+".id", "the resource has no id; an update must carry the id of the URL (%s)", id)
	}
	if bodyID != id {
		return &Response{Interaction: "update"}, outcome.At(http.StatusBadRequest, "invalid", typ+".id", "the resource id %q does not match the URL id %q", bodyID, id)
	}
	ifMatch, err := ifMatchVersion(req.Header)
	if err != nil {
		return &Response{Interaction: "update"}, err
	}
	if err := e.guardWrite(ctx, req, typ, id); err != nil {
		return &Response{Interaction: "update"}, err
	}
	var out *store.Resource
	var status int
	err = e.writeTx(ctx, func(tx store.Tx) error {
		var err error
		out, status, err = e.updateIn(ctx, tx, typ, id, resource.Clone(res).(map[string]any), ifMatch, http.MethodPut)
		return err
	})
	if err != nil {
		return &Response{Interaction: "update"}, err
	}
	return e.stored(req, out, status, "update"), nil
}

func ifMatchVersion(h http.Header) (int64, error) {
	im := h.Get("If-Match")
	if im == "" {
		return 0, nil
	}
	v, err := parseETag(im)
	if err != nil {
		return 0, outcome.New(http.StatusBadRequest, "invalid", "If-Match: %v; send W/\"<versionId>\"", err)
	}
	return v, nil
}

// updateIn writes res as the new version of typ/id; ifMatch (0 = none) must equal the current
// version. Updating a resource that does not exist creates it with the client's id (201).
func (e *Engine) updateIn(ctx context.Context, tx store.Tx, typ, id string, res map[string]any, ifMatch int64, method string) (*store.Resource, int, error) {
	cur, err := currentOrNil(ctx, tx, typ, id)
	if err != nil {
		return nil, 0, err
	}
	if ifMatch != 0 {
		if cur == nil || cur.Version != ifMatch {
			have := "does not exist"
			if cur != nil {
				have = "is at version " + strconv.FormatInt(cur.Version, 10)
			}
			return nil, 0, outcome.New(http.StatusPreconditionFailed, "conflict", "If-Match asked for version %d of %s/%s, which %s", ifMatch, typ, id, have)
		}
	}
	status := http.StatusOK
	if cur == nil || cur.Deleted {
		status = http.StatusCreated
	}
	out, err := e.write(ctx, tx, typ, id, res, method, cur)
	return out, status, err
}

func (e *Engine) conditionalUpdate(ctx context.Context, req *Request, typ string) (*Response, error) {
	if len(req.Query) == 0 {
		return &Response{Interaction: "update"}, outcome.New(http.StatusMethodNotAllowed, "not-supported", "PUT on a type needs search criteria (conditional update) or an id in the URL")
	}
	res, err := e.parseBody(req.Body, typ)
	if err != nil {
		return &Response{Interaction: "update"}, err
	}
	ifMatch, err := ifMatchVersion(req.Header)
	if err != nil {
		return &Response{Interaction: "update"}, err
	}
	var out *store.Resource
	var status int
	err = e.writeTx(ctx, func(tx store.Tx) error {
		var err error
		out, status, err = e.conditionalUpdateIn(ctx, tx, req, typ, req.Query.Encode(), resource.Clone(res).(map[string]any), ifMatch)
		return err
	})
	if err != nil {
		return &Response{Interaction: "update"}, err
	}
	return e.stored(req, out, status, "update"), nil
}

func (e *Engine) conditionalUpdateIn(ctx context.Context, tx store.Tx, req *Request, typ, criteria string, res map[string]any, ifMatch int64) (*store.Resource, int, error) {
	match, err := e.conditionalMatch(ctx, tx, req, typ, criteria, "conditional update")
	if err != nil {
		return nil, 0, err
	}
	bodyID := resource.ID(res)
	if match == nil {
		id := bodyID
		if id == "" {
			id = e.cfg.NewID()
		}
		return e.updateIn(ctx, tx, typ, id, res, ifMatch, http.MethodPut)
	}
	if bodyID != "" && bodyID != match.ID {
		return nil, 0, outcome.At(http.StatusBadRequest, "invalid", typ+".id", "the resource id %q differs from the id %q of the resource the criteria matched", bodyID, match.ID)
	}
	return e.updateIn(ctx, tx, typ, match.ID, res, ifMatch, http.MethodPut)
}

// patch applies a JSON Patch to typ/id, or, with an empty id, to the one resource the
// query's criteria match (conditional patch).
func (e *Engine) patch(ctx context.Context, req *Request, typ, id string) (*Response, error) {
	p, err := e.parsePatch(req)
	if err != nil {
		return &Response{Interaction: "patch"}, err
	}
	ifMatch, err := ifMatchVersion(req.Header)
	if err != nil {
		return &Response{Interaction: "patch"}, err
	}
	if err := e.guardWrite(ctx, req, typ, id); err != nil {
		return &Response{Interaction: "patch"}, err
	}
	var out *store.Resource
	err = e.writeTx(ctx, func(tx store.Tx) error {
		target := id
		if target == "" {
			match, err := e.conditionalMatch(ctx, tx, req, typ, req.Query.Encode(), "conditional patch")
			if err != nil {
				return err
			}
			if match == nil {
				return outcome.New(http.StatusNotFound, "not-found", "no %s matches the criteria of the conditional patch", typ)
			}
			target = match.ID
		}
		var err error
		out, err = e.patchIn(ctx, tx, typ, target, p, ifMatch, "")
		return err
	})
	if err != nil {
		return &Response{Interaction: "patch"}, err
	}
	return e.stored(req, out, http.StatusOK, "patch"), nil
}

func (e *Engine) parsePatch(req *Request) (jsonpatch.Patch, error) {
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if ct != "application/json-patch+json" {
		return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "PATCH needs Content-Type application/json-patch+json (JSON Patch); got %q", ct)
	}
	return decodePatch(req.Body)
}

func decodePatch(b []byte) (jsonpatch.Patch, error) {
	p, err := jsonpatch.DecodePatch(b)
	if err != nil {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "the body is not a JSON Patch document: %v", err)
	}
	return p, nil
}

// patchIn applies a JSON Patch to the current version and stores the result after the same
// checks as an update. at prefixes expressions for Bundle entries.
func (e *Engine) patchIn(ctx context.Context, tx store.Tx, typ, id string, p jsonpatch.Patch, ifMatch int64, at string) (*store.Resource, error) {
	cur, err := currentOrNil(ctx, tx, typ, id)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
	}
	if cur.Deleted {
		return nil, outcome.New(http.StatusGone, "deleted", "%s/%s was deleted", typ, id)
	}
	if ifMatch != 0 && cur.Version != ifMatch {
		return nil, outcome.New(http.StatusPreconditionFailed, "conflict", "If-Match asked for version %d of %s/%s, which is at version %d", ifMatch, typ, id, cur.Version)
	}
	patched, err := p.ApplyWithOptions(cur.Body, &jsonpatch.ApplyOptions{SupportNegativeIndices: true, EnsurePathExistsOnAdd: false})
	if err != nil {
		return nil, outcome.New(http.StatusUnprocessableEntity, "processing", "the patch could not be applied to %s/%s: %v", typ, id, err)
	}
	res, err := resource.Decode(patched, resource.Limits{MaxDepth: e.cfg.Limits.MaxDepth})
	if err != nil {
		return nil, err
	}
	if resource.Type(res) != typ || resource.ID(res) != id {
		return nil, outcome.New(http.StatusUnprocessableEntity, "invalid", "a patch may not change resourceType or id")
	}
	if err := e.checkResource(res, patched, typ, at); err != nil {
		var oe *outcome.Error
		if errors.As(err, &oe) && oe.Status == http.StatusBadRequest {
			oe.Status = http.StatusUnprocessableEntity // the patch was well formed; its result is not
		}
		return nil, err
	}
	return e.write(ctx, tx, typ, id, res, http.MethodPatch, cur)
}

func (e *Engine) conditionalPatch(ctx context.Context, req *Request, typ string) (*Response, error) {
	if len(req.Query) == 0 {
		return &Response{Interaction: "patch"}, outcome.New(http.StatusMethodNotAllowed, "not-supported", "PATCH on a type needs search criteria (conditional patch) or an id in the URL")
	}
	return e.patch(ctx, req, typ, "")
}

func (e *Engine) delete(ctx context.Context, req *Request, typ, id string) (*Response, error) {
	ifMatch, err := ifMatchVersion(req.Header)
	if err != nil {
		return &Response{Interaction: "delete"}, err
	}
	if err := e.guardWrite(ctx, req, typ, id); err != nil {
		return &Response{Interaction: "delete"}, err
	}
	var out *store.Resource
	err = e.writeTx(ctx, func(tx store.Tx) error {
		var err error
		out, err = e.deleteIn(ctx, tx, typ, id, ifMatch)
		return err
	})
	if err != nil {
		return &Response{Interaction: "delete"}, err
	}
	return deleted(req, out), nil
}

// deleteIn deletes typ/id. Deleting an already deleted resource changes nothing and succeeds.
func (e *Engine) deleteIn(ctx context.Context, tx store.Tx, typ, id string, ifMatch int64) (*store.Resource, error) {
	cur, err := currentOrNil(ctx, tx, typ, id)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
	}
	if ifMatch != 0 && cur.Version != ifMatch {
		return nil, outcome.New(http.StatusPreconditionFailed, "conflict", "If-Match asked for version %d of %s/%s, which is at version %d", ifMatch, typ, id, cur.Version)
	}
	if cur.Deleted {
		return cur, nil
	}
	return e.remove(ctx, tx, cur)
}

func deleted(req *Request, res *store.Resource) *Response {
	r := &Response{Status: http.StatusNoContent, Interaction: "delete"}
	if res != nil {
		r.setHeader("ETag", etag(res.Version))
	}
	if preferReturn(req.Header) == "OperationOutcome" {
		r.Status = http.StatusOK
		what := "nothing matched; nothing was deleted"
		if res != nil {
			what = "deleted " + res.Type + "/" + res.ID
		}
		r.Resource = outcome.Resource(outcome.Info("%s", what))
	}
	return r
}

func (e *Engine) conditionalDelete(ctx context.Context, req *Request, typ string) (*Response, error) {
	if len(req.Query) == 0 {
		return &Response{Interaction: "delete"}, outcome.New(http.StatusMethodNotAllowed, "not-supported", "DELETE on a type needs search criteria (conditional delete) or an id in the URL")
	}
	var out *store.Resource
	err := e.writeTx(ctx, func(tx store.Tx) error {
		match, err := e.conditionalMatch(ctx, tx, req, typ, req.Query.Encode(), "conditional delete")
		if err != nil || match == nil {
			return err
		}
		out, err = e.deleteIn(ctx, tx, typ, match.ID, 0)
		return err
	})
	if err != nil {
		return &Response{Interaction: "delete"}, err
	}
	return deleted(req, out), nil
}
