package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

func rawJSON(b []byte) json.RawMessage { return json.RawMessage(b) }

func jsonInt(n int) json.Number { return json.Number(strconv.Itoa(n)) }

// history serves instance, type and system history, newest first. Paging is anchored to the
// highest version sequence seen by the first page (_snapshot), so later writes do not show,
// and pages continue from the sequence number of the last entry shown (_cursor=lt<n>, or
// gt<n> back from the first), so a write that commits late cannot shift them.
func (e *Engine) history(ctx context.Context, req *Request, typ, id string) (*Response, error) {
	interaction := "history-system"
	switch {
	case id != "":
		interaction = "history-instance"
	case typ != "":
		interaction = "history-type"
	}
	fail := &Response{Interaction: interaction}
	hq := store.HistoryQuery{Type: typ, ID: id, Count: e.cfg.Limits.DefaultCount}
	q := req.Query
	for k := range q {
		switch k {
		case "_count", "_since", "_offset", "_snapshot", "_cursor", "_format", "_pretty":
		default:
			if preferValue(req.Header, "handling") == "strict" {
				return fail, outcome.At(http.StatusBadRequest, "not-supported", k, "history does not support the parameter %q", k)
			}
		}
	}
	if v := q.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fail, outcome.At(http.StatusBadRequest, "invalid", "_count", "_count must be a non-negative integer")
		}
		hq.Count = min(n, e.cfg.Limits.MaxCount)
	}
	if v := q.Get("_since"); v != "" {
		r, err := search.DateRange(v)
		if err != nil {
			return fail, outcome.At(http.StatusBadRequest, "invalid", "_since", "_since: %v", err)
		}
		hq.Since = time.UnixMicro(r.Low)
	}
	if v := q.Get("_offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fail, outcome.At(http.StatusBadRequest, "invalid", "_offset", "_offset must be a non-negative integer")
		}
		hq.Offset = n
	}
	if v := q.Get("_snapshot"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fail, outcome.At(http.StatusBadRequest, "invalid", "_snapshot", "_snapshot must be a non-negative integer")
		}
		hq.Before = n
	}
	cursor := q.Get("_cursor")
	if cursor != "" {
		n, err := strconv.ParseInt(cursor[min(2, len(cursor)):], 10, 64)
		switch {
		case err != nil || n <= 0:
			return fail, outcome.At(http.StatusBadRequest, "invalid", "_cursor", "_cursor must be lt or gt and a version sequence number, as the paging links give it")
		case strings.HasPrefix(cursor, "lt"):
			hq.Below = n
		case strings.HasPrefix(cursor, "gt"):
			hq.Above = n
		default:
			return fail, outcome.At(http.StatusBadRequest, "invalid", "_cursor", "_cursor must be lt or gt and a version sequence number, as the paging links give it")
		}
	}
	if id != "" {
		if _, err := e.cfg.Store.Current(ctx, typ, id); err != nil {
			if err == store.ErrNotFound {
				return fail, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
			}
			return fail, err
		}
	}
	page, err := e.cfg.Store.History(ctx, hq)
	if err != nil {
		return fail, err
	}
	b := newSearchset(req.Base)
	b.kind = "history"
	b.total = page.Total
	sess := e.session(ctx, req)
	if sess != nil {
		b.total = -1 // a count over versions the requester may not see would reveal them
	}
	self := req.Base
	if typ != "" {
		self += "/" + typ
	}
	if id != "" {
		self += "/" + id
	}
	self += "/_history"
	mk := func(cursor string, offset int) string {
		v := url.Values{}
		v.Set("_count", strconv.Itoa(hq.Count))
		if cursor != "" {
			v.Set("_cursor", cursor)
		}
		if offset > 0 || cursor == "" {
			v.Set("_offset", strconv.Itoa(offset))
		}
		v.Set("_snapshot", strconv.FormatInt(page.Snapshot, 10))
		if !hq.Since.IsZero() {
			v.Set("_since", instant(hq.Since))
		}
		return self + "?" + v.Encode()
	}
	b.link("self", mk(cursor, hq.Offset))
	if page.Older {
		b.link("next", mk("lt"+strconv.FormatInt(page.Last, 10), 0))
	}
	switch {
	case page.Newer:
		b.link("previous", mk("gt"+strconv.FormatInt(page.First, 10), 0))
	case len(page.Entries) == 0 && hq.Offset > 0 && cursor == "":
		b.link("previous", mk("", max(0, hq.Offset-hq.Count))) // past the end by offset
	}
	for _, r := range page.Entries {
		if sess != nil {
			if r.Deleted {
				continue // nothing to decide on: a deletion is shown to unrestricted callers only
			}
			shown, ok, err := disclose(ctx, sess, r)
			if err != nil {
				return fail, err
			}
			if !ok {
				continue
			}
			r = shown
		}
		item := map[string]any{
			"fullUrl": req.Base + "/" + r.Type + "/" + r.ID,
			"request": map[string]any{"method": historyMethod(r), "url": historyURL(r)},
			"response": map[string]any{
				"status":       historyStatus(r),
				"etag":         etag(r.Version),
				"lastModified": instant(r.LastUpdated),
			},
		}
		if !r.Deleted {
			item["resource"] = rawJSON(r.Body)
		}
		b.entries = append(b.entries, item)
	}
	return &Response{Status: http.StatusOK, Resource: b.resource(), Interaction: interaction}, nil
}

func historyMethod(r *store.Resource) string {
	if r.Method == http.MethodPatch {
		return http.MethodPatch
	}
	return r.Method
}

func historyURL(r *store.Resource) string {
	if r.Method == http.MethodPost {
		return r.Type
	}
	return r.Type + "/" + r.ID
}

func historyStatus(r *store.Resource) string {
	switch {
	case r.Deleted:
		return statusLine(http.StatusNoContent)
	case r.Version == 1 || r.Method == http.MethodPost:
		return statusLine(http.StatusCreated)
	}
	return statusLine(http.StatusOK)
}
