package spinesim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Error code systems as each real service sends them.
const (
	pdsSystem = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"
	scrSystem = "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode"
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// call is one API request being answered.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	service string
	rec     *Request
	people  map[string]*patient
}

// api wraps an API handler: it records the request, mirrors the tracing headers, and checks
// the bearer token and X-Request-ID as the platform does.
func (s *Server) api(service string, h func(c *call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
			RequestID: r.Header.Get("X-Request-ID"), CorrelationID: r.Header.Get("X-Correlation-ID")}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			rec.Status = sw.status
			s.mu.Lock()
			s.requests = append(s.requests, rec)
			s.mu.Unlock()
		}()
		if rec.RequestID != "" {
			sw.Header().Set("X-Request-ID", rec.RequestID)
		}
		if rec.CorrelationID != "" {
			sw.Header().Set("X-Correlation-ID", rec.CorrelationID)
		}
		c := &call{w: sw, r: r, service: service, rec: &rec, people: testPatients()}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		t, known := s.tokens[tok]
		s.mu.Unlock()
		switch {
		case !ok || !known:
			c.fail(http.StatusUnauthorized, "forbidden", "ACCESS_DENIED", "Missing or invalid OAuth 2.0 bearer token in request")
			return
		case s.opts.Now().After(t.until):
			c.fail(http.StatusUnauthorized, "forbidden", "ACCESS_DENIED", "Access token expired")
			return
		}
		rec.ClientID = t.client
		switch {
		case rec.RequestID == "":
			c.fail(http.StatusBadRequest, "value", "MISSING_VALUE", "Invalid request with error - X-Request-ID header must be supplied to access this resource")
			return
		case !uuidRE.MatchString(rec.RequestID):
			c.fail(http.StatusBadRequest, "value", "INVALID_VALUE", "Invalid value - '"+rec.RequestID+"' in header 'X-Request-ID'")
			return
		}
		h(c)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// fail answers with the service's error shape: PDS always codes its errors; SCR codes its
// 5xx and puts the message of most 4xx in details.text.
func (c *call) fail(status int, issueCode, spineCode, text string) {
	system := pdsSystem
	if c.service == "scr" {
		system = scrSystem
		if status < 500 && spineCode != "ACCESS_DENIED" {
			spineCode = ""
		}
	}
	writeOutcome(c.w, status, issueCode, system, spineCode, text)
}

// injected answers with a fault a test set, reporting whether there was one.
func (s *Server) injected(c *call, nhs string) bool {
	f, ok := s.nextFault(c.service, nhs)
	if !ok {
		return false
	}
	if f.RetryAfter != "" {
		c.w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Garbage {
		c.w.Header().Set("Content-Type", "text/html")
		c.w.WriteHeader(f.Status)
		c.w.Write([]byte("<html><body>upstream error</body></html>")) //nolint:errcheck // the client went away
		return true
	}
	issue := issueFor(f.Status)
	text := f.Text
	if text == "" {
		text = http.StatusText(f.Status)
	}
	system := pdsSystem
	if c.service == "scr" {
		system = scrSystem
	}
	writeOutcome(c.w, f.Status, issue, system, f.Code, text)
	return true
}

func issueFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not-found"
	case http.StatusUnauthorized, http.StatusForbidden, 420:
		return "forbidden"
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return "timeout"
	case http.StatusTooManyRequests:
		return "throttled"
	case http.StatusBadRequest:
		return "invalid"
	}
	if status >= 500 {
		return "exception"
	}
	return "processing"
}

func writeOutcome(w http.ResponseWriter, status int, issueCode, system, spineCode, text string) {
	issue := map[string]any{"severity": "error", "code": issueCode}
	if spineCode != "" {
		issue["details"] = map[string]any{"coding": []any{map[string]any{"system": system, "version": "1", "code": spineCode, "display": text}}}
		issue["diagnostics"] = text
	} else {
		issue["details"] = map[string]any{"text": text}
	}
	writeJSON(w, status, map[string]any{"resourceType": "OperationOutcome", "issue": []any{issue}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

// slow keeps the request waiting, until the caller gives up.
func (s *Server) slow(c *call) bool {
	t := time.NewTimer(s.opts.SlowDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.r.Context().Done():
		return false
	}
}
