package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// entry is one parsed Bundle entry of a batch or transaction.
type entry struct {
	index    int
	at       string // "Bundle.entry[i]"
	method   string
	url      string
	typ, id  string
	query    url.Values
	fullURL  string
	resource map[string]any
	raw      json.RawMessage
	request  map[string]any
	patch    jsonpatch.Patch
	// response fields
	status   int
	out      *store.Resource
	resp     *Response
	assigned string // id assigned before processing, for urn:uuid resolution
	target   string // "Type/id" the entry resolves to
	dupOf    *entry // an earlier entry with the same If-None-Exist criteria
}

// processing order for transactions, as the specification sets it.
var methodOrder = map[string]int{http.MethodDelete: 0, http.MethodPost: 1, http.MethodPut: 2, http.MethodPatch: 2, http.MethodGet: 3, http.MethodHead: 3}

func (e *Engine) bundle(ctx context.Context, req *Request) (*Response, error) {
	b, err := resource.Decode(req.Body, resource.Limits{MaxDepth: e.cfg.Limits.MaxDepth})
	if err != nil {
		return &Response{Interaction: "transaction"}, err
	}
	if resource.Type(b) != "Bundle" {
		return &Response{Interaction: "transaction"}, outcome.At(http.StatusBadRequest, "invalid", "Bundle.resourceType",
			"POST to the base URL takes a Bundle of type batch or transaction; got resourceType %q", resource.Type(b))
	}
	kind, _ := b["type"].(string)
	if kind != "batch" && kind != "transaction" {
		return &Response{Interaction: "transaction"}, outcome.At(http.StatusBadRequest, "invalid", "Bundle.type",
			"POST to the base URL takes a Bundle of type batch or transaction; got %q", kind)
	}
	rawEntries, isList := b["entry"].([]any)
	if isList && len(rawEntries) == 0 {
		return &Response{Interaction: kind}, outcome.At(http.StatusBadRequest, "structure", "Bundle.entry", "Bundle.entry is an empty array; FHIR JSON leaves empty elements out")
	}
	if len(rawEntries) > e.cfg.Limits.MaxEntries {
		return &Response{Interaction: kind}, outcome.At(http.StatusRequestEntityTooLarge, "too-costly", "Bundle.entry",
			"the Bundle has %d entries; the limit is %d (HJB_MAX_ENTRIES)", len(rawEntries), e.cfg.Limits.MaxEntries)
	}
	entries := make([]*entry, len(rawEntries))
	for i, re := range rawEntries {
		en, err := e.parseEntry(i, re)
		if err != nil {
			if kind == "transaction" {
				return &Response{Interaction: kind}, err
			}
			en = &entry{index: i, at: fmt.Sprintf("Bundle.entry[%d]", i)}
			en.resp = errorResponse(err)
		}
		entries[i] = en
	}
	if kind == "batch" {
		return e.batch(ctx, req, entries), nil
	}
	return e.transaction(ctx, req, entries)
}

func (e *Engine) parseEntry(i int, raw any) (*entry, error) {
	at := fmt.Sprintf("Bundle.entry[%d]", i)
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, outcome.At(http.StatusBadRequest, "structure", at, "entry %d is not an object", i)
	}
	en := &entry{index: i, at: at}
	en.fullURL, _ = m["fullUrl"].(string)
	rq, ok := m["request"].(map[string]any)
	if !ok {
		return nil, outcome.At(http.StatusBadRequest, "required", at+".request", "entry %d has no request (method and url)", i)
	}
	en.request = rq
	en.method, _ = rq["method"].(string)
	en.url, _ = rq["url"].(string)
	if _, ok := methodOrder[en.method]; !ok {
		return nil, outcome.At(http.StatusBadRequest, "value", at+".request.method", "entry %d: method %q must be GET, HEAD, POST, PUT, PATCH or DELETE", i, en.method)
	}
	if en.url == "" {
		return nil, outcome.At(http.StatusBadRequest, "required", at+".request.url", "entry %d has no request.url", i)
	}
	path, rawQuery, _ := strings.Cut(en.url, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, outcome.At(http.StatusBadRequest, "invalid", at+".request.url", "entry %d: bad query in %q: %v", i, en.url, err)
	}
	en.query = q
	parts := strings.Split(strings.Trim(path, "/"), "/")
	en.typ = parts[0]
	if len(parts) > 1 {
		en.id = parts[1]
	}
	switch en.method {
	case http.MethodPost, http.MethodPut:
		if len(parts) > 2 || (en.method == http.MethodPost && len(parts) > 1 && !strings.HasPrefix(parts[1], "$")) {
			return nil, outcome.At(http.StatusBadRequest, "invalid", at+".request.url", "entry %d: %s to %q is not a create or update URL", i, en.method, en.url)
		}
		if err := e.checkType(en.typ); err != nil {
			return nil, outcome.At(http.StatusBadRequest, "not-supported", at+".request.url", "entry %d: %v", i, err)
		}
		res, ok := m["resource"].(map[string]any)
		if !ok {
			return nil, outcome.At(http.StatusBadRequest, "required", at+".resource", "entry %d: %s needs a resource", i, en.method)
		}
		en.resource = res
		if err := e.checkResource(res, nil, en.typ, at+".resource"); err != nil {
			return nil, err
		}
		if en.method == http.MethodPut && en.id != "" {
			if err := checkID(en.id); err != nil {
				return nil, err
			}
			if bid := resource.ID(res); bid != en.id {
				return nil, outcome.At(http.StatusBadRequest, "invalid", at+".resource.id", "entry %d: resource id %q does not match the id %q in request.url", i, bid, en.id)
			}
		}
		if en.method == http.MethodPut && en.id == "" && len(q) == 0 {
			return nil, outcome.At(http.StatusBadRequest, "invalid", at+".request.url", "entry %d: PUT needs an id or search criteria in request.url", i)
		}
	case http.MethodPatch:
		if err := e.checkType(en.typ); err != nil {
			return nil, err
		}
		p, err := entryPatch(m, at)
		if err != nil {
			return nil, err
		}
		en.patch = p
	case http.MethodDelete:
		if err := e.checkType(en.typ); err != nil {
			return nil, err
		}
		if en.id == "" && len(q) == 0 {
			return nil, outcome.At(http.StatusBadRequest, "invalid", at+".request.url", "entry %d: DELETE needs an id or search criteria", i)
		}
	}
	return en, nil
}

// entryPatch reads a JSON Patch from a Binary resource (contentType application/json-patch+json,
// base64 data), the usual carrier inside Bundles.
func entryPatch(m map[string]any, at string) (jsonpatch.Patch, error) {
	res, _ := m["resource"].(map[string]any)
	if resource.Type(res) != "Binary" {
		return nil, outcome.At(http.StatusBadRequest, "not-supported", at+".resource", "a PATCH entry carries a JSON Patch as a Binary resource with contentType application/json-patch+json")
	}
	data, _ := res["data"].(string)
	raw, err := decodeBase64(data)
	if err != nil {
		return nil, outcome.At(http.StatusBadRequest, "invalid", at+".resource.data", "Binary.data is not base64: %v", err)
	}
	return decodePatch(raw)
}

// batch processes entries independently, each in its own transaction.
func (e *Engine) batch(ctx context.Context, req *Request, entries []*entry) *Response {
	for _, en := range entries {
		if en.resp != nil {
			continue
		}
		en.resp = e.Handle(ctx, e.entryRequest(req, en))
	}
	return e.bundleResponse(req, "batch-response", entries)
}

// entryRequest turns an entry into a standalone Request.
func (e *Engine) entryRequest(req *Request, en *entry) *Request {
	h := http.Header{}
	for _, kv := range [][2]string{{"ifNoneMatch", "If-None-Match"}, {"ifModifiedSince", "If-Modified-Since"}, {"ifMatch", "If-Match"}, {"ifNoneExist", "If-None-Exist"}} {
		if v, ok := en.request[kv[0]].(string); ok {
			h.Set(kv[1], v)
		}
	}
	for _, p := range req.Header.Values("Prefer") {
		h.Add("Prefer", p)
	}
	r := &Request{Method: en.method, Path: strings.SplitN(en.url, "?", 2)[0], Query: en.query, Header: h, Base: req.Base, Access: req.Access}
	switch {
	case en.resource != nil:
		r.Body = resource.Encode(en.resource)
		h.Set("Content-Type", "application/fhir+json")
	case en.patch != nil:
		r.Body, _ = json.Marshal(en.patch)
		h.Set("Content-Type", "application/json-patch+json")
	}
	return r
}

// transaction processes all entries in one store transaction: all succeed or nothing changes.
//
// Conditional entries: criteria are evaluated against the store after the transaction's
// deletes and before its creates are written. Criteria equal (canonically) to those of an
// earlier create resolve to that create's resource, so two POST entries with the same
// If-None-Exist criteria yield one resource: the first creates it, the second matches it
// (200), and both fullUrls resolve to it. Two entries that change one resource fail the
// transaction, as the specification requires.
func (e *Engine) transaction(ctx context.Context, req *Request, entries []*entry) (*Response, error) {
	for _, en := range entries {
		if err := e.authorizeEntry(req, en); err != nil {
			return &Response{Interaction: "transaction"}, entryErr(en, err)
		}
		if en.method == http.MethodPut || en.method == http.MethodPatch || en.method == http.MethodDelete {
			if err := e.guardWrite(ctx, req, en.typ, en.id); err != nil {
				return &Response{Interaction: "transaction"}, entryErr(en, err)
			}
		}
	}
	order := make([]*entry, len(entries))
	copy(order, entries)
	sort.SliceStable(order, func(i, j int) bool { return methodOrder[order[i].method] < methodOrder[order[j].method] })

	err := e.writeTx(ctx, func(tx store.Tx) error {
		// Fresh state on every (re)try.
		for _, en := range entries {
			en.status, en.out, en.resp, en.assigned, en.target, en.dupOf = 0, nil, nil, "", "", nil
		}
		ids := map[string]string{}         // fullUrl -> Type/id
		conditional := map[string]*entry{} // canonical If-None-Exist criteria -> first entry
		// Ids for creates are decided first (so references can be rewritten) and conditional
		// creates are matched in the same pass, in Bundle order.
		resolved := map[string]map[string]any{}
		// The specification fails a transaction in which two entries change one resource.
		changed := map[string]*entry{}
		claim := func(en *entry, key string) error {
			if first, ok := changed[key]; ok {
				return outcome.At(http.StatusBadRequest, "business-rule", en.at,
					"entry %d and entry %d both change %s; a transaction may change each resource only once", first.index, en.index, key)
			}
			changed[key] = en
			return nil
		}
		for _, en := range order {
			res := en.resource
			if res != nil {
				res = resource.Clone(res).(map[string]any)
				resolved[en.fullURL+"#"+strconv.Itoa(en.index)] = res
			}
			switch en.method {
			case http.MethodDelete:
				if err := e.txDelete(ctx, tx, req, en); err != nil {
					return err
				}
				if en.out != nil {
					if err := claim(en, en.out.Type+"/"+en.out.ID); err != nil {
						return err
					}
				}
			case http.MethodPost:
				if ine, _ := en.request["ifNoneExist"].(string); ine != "" {
					key, err := e.criteriaKey(en.typ, ine)
					if err != nil {
						return entryErr(en, err)
					}
					if first, ok := conditional[key]; ok {
						// Same criteria as an earlier entry: the same resource.
						en.status, en.dupOf, en.target = http.StatusOK, first, first.target
						if en.fullURL != "" {
							ids[en.fullURL] = en.target
						}
						continue
					}
					match, err := e.conditionalMatch(ctx, tx, req, en.typ, ine, "If-None-Exist")
					if err != nil {
						return entryErr(en, err)
					}
					if match != nil {
						en.out, en.status, en.target = match, http.StatusOK, en.typ+"/"+match.ID
						if en.fullURL != "" {
							ids[en.fullURL] = en.target
						}
						conditional[key] = en
						continue
					}
					conditional[key] = en
				}
				en.assigned = e.cfg.NewID()
				en.target = en.typ + "/" + en.assigned
				if en.fullURL != "" {
					ids[en.fullURL] = en.target
				}
			case http.MethodPut:
				id := en.id
				if id == "" {
					match, err := e.conditionalMatch(ctx, tx, req, en.typ, en.query.Encode(), "conditional update")
					if err != nil {
						return entryErr(en, err)
					}
					// Creates of earlier entries are not written yet, so criteria equal to
					// theirs resolve to the same resource (and then fail as an overlap).
					key, err := e.criteriaKey(en.typ, en.query.Encode())
					if err != nil {
						return entryErr(en, err)
					}
					switch {
					case match != nil:
						id = match.ID
					case conditional[key] != nil && conditional[key].target != "":
						_, id, _ = strings.Cut(conditional[key].target, "/")
					case resource.ID(res) != "":
						id = resource.ID(res)
					default:
						id = e.cfg.NewID()
					}
					if match == nil && conditional[key] == nil {
						conditional[key] = en
						en.target = en.typ + "/" + id
					}
				}
				en.assigned = id
				if en.fullURL != "" {
					ids[en.fullURL] = en.typ + "/" + id
				}
			}
		}
		// Rewrite references, then write in processing order.
		for _, en := range order {
			if en.status != 0 || en.method == http.MethodDelete {
				continue
			}
			res := resolved[en.fullURL+"#"+strconv.Itoa(en.index)]
			if res != nil {
				if err := e.rewriteRefs(ctx, tx, req, res, ids, en.at+".resource"); err != nil {
					return err
				}
			}
			var err error
			switch en.method {
			case http.MethodPost:
				if err := claim(en, en.typ+"/"+en.assigned); err != nil {
					return err
				}
				en.out, err = e.write(ctx, tx, en.typ, en.assigned, res, http.MethodPost, nil)
				en.status = http.StatusCreated
			case http.MethodPut:
				var ifMatch int64
				if im, _ := en.request["ifMatch"].(string); im != "" {
					if ifMatch, err = parseETag(im); err != nil {
						return entryErr(en, outcome.New(http.StatusBadRequest, "invalid", "ifMatch: %v", err))
					}
				}
				if err := claim(en, en.typ+"/"+en.assigned); err != nil {
					return err
				}
				res["id"] = en.assigned
				en.out, en.status, err = e.updateIn(ctx, tx, en.typ, en.assigned, res, ifMatch, http.MethodPut)
			case http.MethodPatch:
				var ifMatch int64
				if im, _ := en.request["ifMatch"].(string); im != "" {
					if ifMatch, err = parseETag(im); err != nil {
						return entryErr(en, outcome.New(http.StatusBadRequest, "invalid", "ifMatch: %v", err))
					}
				}
				id := en.id
				if id == "" {
					match, merr := e.conditionalMatch(ctx, tx, req, en.typ, en.query.Encode(), "conditional patch")
					if merr != nil {
						return entryErr(en, merr)
					}
					if match == nil {
						return entryErr(en, outcome.New(http.StatusNotFound, "not-found", "no %s matches the conditional patch", en.typ))
					}
					id = match.ID
				}
				if err := claim(en, en.typ+"/"+id); err != nil {
					return err
				}
				en.out, err = e.patchIn(ctx, tx, en.typ, id, en.patch, ifMatch, en.at)
				en.status = http.StatusOK
			case http.MethodGet, http.MethodHead:
				resp, err := e.readInTx(ctx, tx, req, en)
				if err != nil {
					return entryErr(en, err)
				}
				en.resp = resp
				continue
			}
			if err != nil {
				return entryErr(en, err)
			}
		}
		for _, en := range entries {
			if en.dupOf != nil {
				en.out = en.dupOf.out
			}
		}
		return nil
	})
	if err != nil {
		return &Response{Interaction: "transaction"}, err
	}
	return e.bundleResponse(req, "transaction-response", entries), nil
}

func (e *Engine) txDelete(ctx context.Context, tx store.Tx, req *Request, en *entry) error {
	id := en.id
	if id == "" {
		match, err := e.conditionalMatch(ctx, tx, req, en.typ, en.query.Encode(), "conditional delete")
		if err != nil {
			return entryErr(en, err)
		}
		if match == nil {
			en.status = http.StatusNoContent
			return nil
		}
		id = match.ID
	}
	var ifMatch int64
	if im, _ := en.request["ifMatch"].(string); im != "" {
		v, err := parseETag(im)
		if err != nil {
			return entryErr(en, outcome.New(http.StatusBadRequest, "invalid", "ifMatch: %v", err))
		}
		ifMatch = v
	}
	out, err := e.deleteIn(ctx, tx, en.typ, id, ifMatch)
	if err != nil {
		return entryErr(en, err)
	}
	en.out, en.status = out, http.StatusNoContent
	return nil
}

// readInTx serves a GET entry of a transaction from the transaction's own view. A failed read
// fails the transaction like any other entry.
func (e *Engine) readInTx(ctx context.Context, tx store.Tx, req *Request, en *entry) (*Response, error) {
	r := e.entryRequest(req, en)
	if en.id != "" && len(strings.Split(strings.Trim(r.Path, "/"), "/")) == 2 {
		cur, err := tx.Current(ctx, en.typ, en.id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", en.typ, en.id)
		}
		if err != nil {
			return nil, err
		}
		if cur.Deleted {
			return nil, outcome.New(http.StatusGone, "deleted", "%s/%s was deleted", en.typ, en.id)
		}
		return e.readResponse(ctx, r, cur, "read")
	}
	if !strings.Contains(r.Path, "/") && !strings.HasPrefix(r.Path, "$") && !strings.HasPrefix(r.Path, "_") && r.Query.Get("_getpages") == "" {
		// A search entry runs last and must see what the earlier entries wrote.
		if r.Path != "" {
			if err := e.checkType(r.Path); err != nil {
				return nil, err
			}
		}
		return e.searchWith(ctx, tx, r, r.Path)
	}
	return e.dispatch(ctx, r)
}

// entryErr names the failing entry in every issue of err, so the client can find it.
func entryErr(en *entry, err error) error {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return err
	}
	for i := range oe.Issues {
		if len(oe.Issues[i].Expression) == 0 {
			oe.Issues[i].Expression = []string{en.at}
		}
		if !strings.Contains(oe.Issues[i].Diagnostics, "entry ") {
			oe.Issues[i].Diagnostics = fmt.Sprintf("entry %d (%s %s): %s", en.index, en.method, en.url, oe.Issues[i].Diagnostics)
		}
	}
	return oe
}

// rewriteRefs replaces urn:uuid fullUrls and conditional references (Type?criteria) with the
// Type/id they resolve to, everywhere a "reference" appears in the resource.
func (e *Engine) rewriteRefs(ctx context.Context, tx store.Tx, req *Request, res map[string]any, ids map[string]string, at string) error {
	var walk func(v any, path string) error
	walk = func(v any, path string) error {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "reference" {
					s, ok := c.(string)
					if !ok {
						continue
					}
					target, err := e.resolveRef(ctx, tx, req, s, ids, path+".reference")
					if err != nil {
						return err
					}
					if target != "" {
						x[k] = target
					}
					continue
				}
				if err := walk(c, path+"."+k); err != nil {
					return err
				}
			}
		case []any:
			for i, c := range x {
				if err := walk(c, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(res, at)
}

func (e *Engine) resolveRef(ctx context.Context, tx store.Tx, req *Request, ref string, ids map[string]string, path string) (string, error) {
	if t, ok := ids[ref]; ok {
		return t, nil
	}
	if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
		return "", outcome.At(http.StatusBadRequest, "not-found", path, "reference %q names no fullUrl in this Bundle", ref)
	}
	typ, criteria, ok := strings.Cut(ref, "?")
	if !ok || strings.Contains(typ, "/") || !e.cfg.Types.IsResource(typ) {
		return "", nil
	}
	match, err := e.conditionalMatch(ctx, tx, req, typ, criteria, "conditional reference")
	if err != nil {
		var oe *outcome.Error
		if errors.As(err, &oe) {
			for i := range oe.Issues {
				oe.Issues[i].Expression = []string{path}
			}
		}
		return "", err
	}
	if match == nil {
		return "", outcome.At(http.StatusNotFound, "not-found", path, "conditional reference %q matches no resource", ref)
	}
	t := typ + "/" + match.ID
	ids[ref] = t
	return t, nil
}

// bundleResponse builds a batch-response or transaction-response in request order.
func (e *Engine) bundleResponse(req *Request, kind string, entries []*entry) *Response {
	list := make([]any, 0, len(entries))
	for _, en := range entries {
		rsp := map[string]any{}
		item := map[string]any{"response": rsp}
		switch {
		case en.resp != nil:
			rsp["status"] = statusLine(en.resp.Status)
			if et := en.resp.Header.Get("ETag"); et != "" {
				rsp["etag"] = et
			}
			if loc := en.resp.Header.Get("Location"); loc != "" {
				rsp["location"] = strings.TrimPrefix(loc, req.Base+"/")
			}
			if lm := en.resp.Header.Get("Last-Modified"); lm != "" {
				if t, err := http.ParseTime(lm); err == nil {
					rsp["lastModified"] = instant(t)
				}
			}
			body := en.resp.Resource
			if body == nil && len(en.resp.Body) > 0 {
				body, _ = resource.Decode(en.resp.Body, resource.Limits{})
			}
			if body != nil {
				if en.resp.Status >= 400 {
					rsp["outcome"] = body
				} else {
					item["resource"] = body
					if t, id := resource.Type(body), resource.ID(body); t != "" && id != "" {
						item["fullUrl"] = req.Base + "/" + t + "/" + id
					}
				}
			}
		case en.out != nil:
			rsp["status"] = statusLine(en.status)
			rsp["etag"] = etag(en.out.Version)
			rsp["lastModified"] = instant(en.out.LastUpdated)
			rsp["location"] = en.out.Type + "/" + en.out.ID + "/_history/" + strconv.FormatInt(en.out.Version, 10)
			item["fullUrl"] = req.Base + "/" + en.out.Type + "/" + en.out.ID
			if !en.out.Deleted {
				switch preferReturn(req.Header) {
				case "minimal":
				case "OperationOutcome":
					rsp["outcome"] = outcome.Resource(outcome.Info("%s/%s version %d", en.out.Type, en.out.ID, en.out.Version))
				default:
					if r, err := resource.Decode(en.out.Body, resource.Limits{}); err == nil {
						item["resource"] = r
					}
				}
			}
		default:
			rsp["status"] = statusLine(en.status)
		}
		list = append(list, item)
	}
	b := map[string]any{"resourceType": "Bundle", "id": e.cfg.NewID(), "type": kind}
	if len(list) > 0 {
		b["entry"] = list // an empty array is not valid FHIR JSON
	}
	return &Response{Status: http.StatusOK, Resource: b, Interaction: strings.TrimSuffix(kind, "-response")}
}

func statusLine(code int) string {
	if code == 0 {
		code = http.StatusOK
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(s)
}
