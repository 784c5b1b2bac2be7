package testscript

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/resource"
)

// mediaType maps the TestScript shorthands json and xml to FHIR media types.
func mediaType(s string) string {
	switch s {
	case "json":
		return "application/fhir+json"
	case "xml":
		return "application/fhir+xml"
	}
	return s
}

// operation runs one operation, recording the exchange under responseId and requestId.
func (st *run) operation(ctx context.Context, p string, op *Operation) ActionResult {
	start := time.Now()
	ar := ActionResult{Path: p, Kind: "operation", Label: operationLabel(op)}
	ex, err := st.request(ctx, op)
	ar.Duration = time.Since(start)
	if err != nil {
		ar.Status, ar.Message = Errored, err.Error()
		return ar
	}
	ar.Exchange = ex
	if ex.Err != "" {
		ar.Status, ar.Message = Errored, ex.Err
		return ar
	}
	st.last = ex
	if op.ResponseID != "" {
		st.responses[op.ResponseID] = ex
	}
	if op.RequestID != "" {
		st.requests[op.RequestID] = ex
	}
	ar.Status = Pass
	ar.Message = fmt.Sprintf("%s %s → %d", ex.Method, ex.URL, ex.Status)
	return ar
}

func operationLabel(op *Operation) string {
	if op.Label != "" {
		return op.Label
	}
	if op.Description != "" {
		return op.Description
	}
	code := ""
	if op.Type != nil {
		code = op.Type.Code
	}
	return strings.TrimSpace(code + " " + op.Resource)
}

// target is what targetId (or sourceId) names: type, id and version of a resource.
type target struct{ typ, id, vid string }

func (st *run) targetOf(id string) target {
	if fx, ok := st.fixtures[id]; ok {
		if fx.created != nil {
			return st.exchangeTarget(fx.created)
		}
		m := asMap(fx.json)
		t := target{typ: resource.Type(m), id: resource.ID(m)}
		if meta := asMap(m["meta"]); meta != nil {
			t.vid, _ = meta["versionId"].(string)
		}
		return t
	}
	if ex, ok := st.responses[id]; ok {
		return st.exchangeTarget(ex)
	}
	return target{}
}

func (st *run) exchangeTarget(ex *Exchange) target {
	var t target
	if m := asMap(ex.responseJSON); m != nil && resource.Type(m) != "OperationOutcome" && resource.Type(m) != "Bundle" {
		t.typ, t.id = resource.Type(m), resource.ID(m)
		if meta := asMap(m["meta"]); meta != nil {
			t.vid, _ = meta["versionId"].(string)
		}
	}
	if loc := ex.ResponseHeader.Get("Location"); loc != "" {
		if typ, id, vid, ok := splitLocation(st.r.cfg.Base, loc); ok {
			if t.id == "" {
				t.typ, t.id = typ, id
			}
			if t.vid == "" {
				t.vid = vid
			}
		}
	}
	if t.vid == "" {
		etag := strings.Trim(strings.TrimPrefix(ex.ResponseHeader.Get("ETag"), "W/"), `"`)
		t.vid = etag
	}
	return t
}

// body returns the sourceId content to send, with variables substituted.
func (st *run) body(ctx context.Context, sourceID string) ([]byte, any, error) {
	var raw []byte
	if fx, ok := st.fixtures[sourceID]; ok {
		raw = fx.raw
	} else if ex, ok := st.responses[sourceID]; ok {
		raw = ex.ResponseBody
	}
	if raw == nil {
		return nil, nil, fmt.Errorf("sourceId %q has no content yet", sourceID)
	}
	s, err := st.substitute(ctx, string(raw), true)
	if err != nil {
		return nil, nil, err
	}
	var v any
	_ = jsonUnmarshal([]byte(s), &v)
	return []byte(s), v, nil
}

// request builds and sends the request for op.
func (st *run) request(ctx context.Context, op *Operation) (*Exchange, error) {
	code := ""
	if op.Type != nil {
		code = op.Type.Code
	}
	method := strings.ToUpper(op.Method)
	if method == "" {
		method = strings.ToUpper(operationCodes[code])
	}
	var body []byte
	var bodyJSON any
	if op.SourceID != "" && code != "read" && code != "vread" && code != "delete" && code != "history" {
		b, v, err := st.body(ctx, op.SourceID)
		if err != nil {
			return nil, err
		}
		body, bodyJSON = b, v
	}
	tgt := target{}
	targetID := op.TargetID
	// Operations that send no body address their sourceId when they have no targetId.
	if targetID == "" && op.URL == "" && op.Params == "" && (code == "read" || code == "vread" || code == "delete" || code == "history") {
		targetID = op.SourceID
	}
	if targetID != "" {
		tgt = st.targetOf(targetID)
		if tgt.id == "" {
			return nil, fmt.Errorf("targetId %q: no resource id to address (has the operation that created it run?)", targetID)
		}
	}
	typ := op.Resource
	if typ == "" {
		typ = tgt.typ
	}
	// The body names the type of what is created or updated; an operation's body is its
	// input, not the resource it acts on.
	if _, crud := needsType[code]; typ == "" && crud {
		typ = resource.Type(asMap(bodyJSON))
	}
	params, err := st.substitute(ctx, op.Params, false)
	if err != nil {
		return nil, err
	}
	if op.EncodeRequestURL != nil && *op.EncodeRequestURL {
		params = encodeQuery(params)
	}
	var u string
	if op.URL != "" {
		s, err := st.substitute(ctx, op.URL, false)
		if err != nil {
			return nil, err
		}
		if op.EncodeRequestURL != nil && *op.EncodeRequestURL {
			s = encodeQuery(s)
		}
		u = s
		if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			u = st.r.cfg.Base + "/" + strings.TrimPrefix(s, "/")
		}
	} else {
		path, err := st.path(code, method, typ, tgt, params, bodyJSON)
		if err != nil {
			return nil, err
		}
		u = st.r.cfg.Base + path
	}
	// A body whose id is missing takes the id it is addressed to, as FHIR update requires.
	if (code == "update" || code == "updateCreate") && tgt.id != "" {
		if m := asMap(bodyJSON); m != nil && resource.ID(m) == "" {
			m["id"] = tgt.id
			body = resource.Encode(m)
		}
	}
	contentType := mediaType(op.ContentType)
	if contentType == "" {
		contentType = "application/fhir+json"
		if _, isArray := bodyJSON.([]any); isArray && code == "patch" {
			contentType = "application/json-patch+json"
		}
	}
	accept := mediaType(op.Accept)
	if accept == "" {
		accept = "application/fhir+json"
	}
	// A search by POST sends its parameters as a form.
	if code == "search" && method == "POST" && body == nil {
		if i := strings.Index(u, "?"); i >= 0 {
			body = []byte(u[i+1:])
			u = u[:i]
		}
		if !strings.HasSuffix(u, "/_search") {
			u += "/_search"
		}
		contentType = "application/x-www-form-urlencoded"
	}
	hdr := http.Header{}
	for _, h := range op.RequestHeader {
		v, err := st.substitute(ctx, h.Value, false)
		if err != nil {
			return nil, err
		}
		hdr.Add(h.Field, v)
	}
	return st.send(ctx, method, u, hdr, body, contentType, accept), nil
}

// path builds the request path below the base for an operation type.
func (st *run) path(code, method, typ string, tgt target, params string, body any) (string, error) {
	join := func(prefix, params string) string {
		if params == "" {
			return prefix
		}
		if strings.HasPrefix(params, "/") || strings.HasPrefix(params, "?") {
			return prefix + params
		}
		return prefix + "/" + params
	}
	root := ""
	if typ != "" {
		root = "/" + typ
	}
	switch code {
	case "capabilities":
		return join("/metadata", params), nil
	case "batch", "transaction":
		return join("", params), nil
	case "create":
		return join(root, params), nil
	case "search":
		return join(root, params), nil
	case "history":
		if tgt.id != "" {
			return root + "/" + tgt.id + "/_history" + params, nil
		}
		// params "/{id}/_history" names the instance; "?_count=..." qualifies the type's or
		// the system's history.
		if params != "" && !strings.HasPrefix(params, "?") {
			return join(root, params), nil
		}
		return root + "/_history" + params, nil
	case "read", "delete", "deleteCondSingle", "deleteCondMultiple", "patch", "update", "updateCreate":
		if tgt.id != "" {
			return root + "/" + tgt.id + params, nil
		}
		if params != "" {
			return join(root, params), nil
		}
		if id := resource.ID(asMap(body)); id != "" && (code == "update" || code == "updateCreate") {
			return root + "/" + id, nil
		}
		return "", fmt.Errorf("%s: no targetId, params or body id says which resource", code)
	case "vread":
		if tgt.id != "" {
			if tgt.vid == "" {
				return "", fmt.Errorf("vread: the target has no version id (meta.versionId, ETag or Location)")
			}
			return root + "/" + tgt.id + "/_history/" + tgt.vid, nil
		}
		return join(root, params), nil
	case "":
		return join(root, params), nil
	}
	// Any other code is a FHIR operation: [Type/[id/]]$code.
	p := root
	if tgt.id != "" {
		p += "/" + tgt.id
	}
	return join(p+"/$"+code, params), nil
}

// encodeQuery percent-encodes the query values of a URL or params string, leaving encoded
// values as they are.
func encodeQuery(s string) string {
	path, q, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	parts := strings.Split(q, "&")
	for i, part := range parts {
		k, v, has := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		k = strings.ReplaceAll(url.QueryEscape(k), "%3A", ":")
		if has {
			parts[i] = k + "=" + url.QueryEscape(v)
		} else {
			parts[i] = k
		}
	}
	return path + "?" + strings.Join(parts, "&")
}

// substitute replaces ${name} with the variable's value; inJSON escapes values for use
// inside JSON strings.
func (st *run) substitute(ctx context.Context, s string, inJSON bool) (string, error) {
	return st.substituteDepth(ctx, s, inJSON, 0)
}

func (st *run) substituteDepth(ctx context.Context, s string, inJSON bool, depth int) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	if depth > 8 {
		return "", fmt.Errorf("variables refer to each other in a loop")
	}
	var firstErr error
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := st.vars[name]
		if !ok {
			return m
		}
		val, err := st.variable(ctx, v, depth)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("variable %s: %w", name, err)
		}
		if inJSON {
			b, _ := json.Marshal(val)
			return string(b[1 : len(b)-1])
		}
		return val
	})
	return out, firstErr
}
