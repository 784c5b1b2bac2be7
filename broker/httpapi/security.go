package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/access"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
)

// Headers a client uses to state why it asks.
const (
	// PurposeHeader carries the purpose of use, a v3-ActReason code (TREAT, COC, HLEGAL, BTG,
	// ...); without it the client's first configured purpose applies.
	PurposeHeader = "X-Purpose-Of-Use"
	// BreakGlassHeader carries the reason for an emergency override (purpose BTG).
	BreakGlassHeader = "X-Break-Glass-Reason"
)

// Security authenticates FHIR requests and audits every one.
type Security struct {
	Auth *auth.Authenticator
	// Agencies resolves an agency id to its ODS code for the audit trail.
	Agencies func(id string) (ods string)
	Audit    *audit.Recorder
	Logger   *zap.Logger
	// BreakGlass counts emergency overrides.
	BreakGlass prometheus.Counter
	// Denials counts refused requests by reason (unauthenticated, forbidden).
	Denials *prometheus.CounterVec
}

const accessKey = "access"

// authenticate is the middleware on /fhir: every request but the CapabilityStatement and the
// SMART configuration needs a valid access token.
func (s *server) authenticate(c *gin.Context) {
	sec := s.cfg.Security
	path := strings.TrimPrefix(c.Request.URL.Path, "/fhir")
	if path == "/metadata" || strings.HasPrefix(path, "/.well-known/") {
		c.Next()
		return
	}
	bearer := ""
	if h := c.GetHeader("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			s.unauthenticated(c, &auth.TokenError{Code: "invalid_request", Description: "use the Bearer scheme"})
			return
		}
		bearer = strings.TrimSpace(tok)
	}
	p, err := sec.Auth.Verify(c.Request.Context(), bearer)
	if err != nil {
		s.unauthenticated(c, err)
		return
	}
	purpose := strings.TrimSpace(c.GetHeader(PurposeHeader))
	if i := strings.LastIndex(purpose, "|"); i >= 0 {
		purpose = purpose[i+1:] // system|code
	}
	if purpose == "" && len(p.Purposes) > 0 {
		purpose = p.Purposes[0]
	}
	acc := &engine.Access{
		ClientID: p.ClientID, AgencyID: p.AgencyID, AgencyKind: p.AgencyKind,
		Scopes: p.Scopes, Purpose: purpose,
	}
	if sec.Agencies != nil {
		acc.AgencyODS = sec.Agencies(p.AgencyID)
	}
	c.Set("client_id", p.ClientID)
	if !slices.Contains(p.Purposes, purpose) {
		s.forbidden(c, acc, "purpose of use %q is not one this client may claim (%s)", purpose, strings.Join(p.Purposes, ", "))
		return
	}
	if purpose == audit.PurposeBreakGlass {
		acc.BreakGlass = strings.TrimSpace(c.GetHeader(BreakGlassHeader))
		if acc.BreakGlass == "" {
			s.forbidden(c, acc, "break-glass (purpose BTG) needs a stated reason in the %s header", BreakGlassHeader)
			return
		}
	}
	c.Set(accessKey, acc)
	c.Next()
}

func (s *server) unauthenticated(c *gin.Context, err error) {
	var te *auth.TokenError
	challenge := `Bearer realm="hjbroker"`
	msg := "a valid access token is required"
	if errors.As(err, &te) {
		challenge = te.Challenge()
		if te.Description != "" {
			msg = te.Description
		}
	}
	if s.cfg.Security.Denials != nil {
		s.cfg.Security.Denials.WithLabelValues("unauthenticated").Inc()
	}
	c.Header("WWW-Authenticate", challenge)
	s.record(c, nil, &engine.Response{Status: http.StatusUnauthorized, Interaction: "authentication"})
	s.write(c, &engine.Response{Status: http.StatusUnauthorized, Resource: outcome.Resource(outcome.New(http.StatusUnauthorized, "login", "%s", msg).Issues)})
	c.Abort()
}

func (s *server) forbidden(c *gin.Context, acc *engine.Access, format string, args ...any) {
	if s.cfg.Security.Denials != nil {
		s.cfg.Security.Denials.WithLabelValues("forbidden").Inc()
	}
	oe := outcome.New(http.StatusForbidden, "forbidden", format, args...)
	s.record(c, acc, &engine.Response{Status: http.StatusForbidden, Interaction: "authorization"})
	s.write(c, &engine.Response{Status: http.StatusForbidden, Resource: outcome.Resource(oe.Issues)})
	c.Abort()
}

// accessOf returns the authenticated access of a request, or nil.
func accessOf(c *gin.Context) *engine.Access {
	v, ok := c.Get(accessKey)
	if !ok {
		return nil
	}
	a, _ := v.(*engine.Access)
	return a
}

// record writes the audit event for a finished request. Break-glass and denials are written
// before the response goes out; other reads are batched.
func (s *server) record(c *gin.Context, acc *engine.Access, resp *engine.Response) {
	sec := s.cfg.Security
	if sec == nil || sec.Audit == nil {
		return
	}
	e := audit.Event{
		Action:    auditAction(c.Request.Method, resp.Interaction),
		Status:    resp.Status,
		Outcome:   audit.OutcomeSuccess,
		Query:     c.Request.URL.RawQuery,
		RequestID: c.GetString("request_id"),
		Source:    c.ClientIP(),
		Patients:  resp.Patients,
	}
	switch {
	case resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden:
		e.Outcome = audit.OutcomeDenied
	case resp.Status >= 400:
		e.Outcome = audit.OutcomeError
	}
	if acc != nil {
		e.ClientID, e.AgencyID, e.AgencyODS, e.Purpose = acc.ClientID, acc.AgencyID, acc.AgencyODS, acc.Purpose
		e.BreakGlassReason = acc.BreakGlass
	}
	if resp.Status < 400 && (e.Action == audit.ActionCreate || e.Action == audit.ActionUpdate || e.Action == audit.ActionPatch) {
		// A write is about the resource it stored (named by Location) and that resource's
		// patient, so that the trail finds writes by patient too.
		if ref, ok := instanceRef(locationPath(resp.Header.Get("Location"))); ok && ref.Type != "Patient" {
			e.Resources = append(e.Resources, ref)
		}
		if p := writtenPatient(resp); p != "" && len(e.Patients) == 0 {
			e.Patients = []string{p}
		}
	}
	if ref, ok := instanceRef(c.Request.URL.Path); ok && !slices.Contains(e.Resources, ref) {
		e.Resources = append(e.Resources, ref)
		if ref.Type == "Patient" && len(e.Patients) == 0 && resp.Status < 400 {
			e.Patients = []string{"Patient/" + ref.ID}
		}
	}
	var err error
	if resp.BreakGlass || e.Outcome == audit.OutcomeDenied {
		err = sec.Audit.RecordWait(c.Request.Context(), e)
		if resp.BreakGlass {
			alert := e
			alert.Action = audit.ActionBreakGlass
			if werr := sec.Audit.RecordWait(context.WithoutCancel(c.Request.Context()), alert); werr != nil && err == nil {
				err = werr
			}
			if sec.BreakGlass != nil {
				sec.BreakGlass.Inc()
			}
			if sec.Logger != nil {
				sec.Logger.Warn("break-glass access", zap.String("client", e.ClientID), zap.String("agency", e.AgencyID),
					zap.String("reason", e.BreakGlassReason), zap.Strings("patients", e.Patients), zap.String("request_id", e.RequestID))
			}
		}
	} else {
		err = sec.Audit.Record(e)
	}
	if err != nil && sec.Logger != nil {
		sec.Logger.Error("audit write failed", zap.Error(err), zap.String("request_id", e.RequestID))
	}
}

func auditAction(method, interaction string) audit.Action {
	switch interaction {
	case "read":
		return audit.ActionRead
	case "vread":
		return audit.ActionVRead
	case "search-type", "search-system", "operation":
		return audit.ActionSearch
	case "history-instance", "history-type", "history-system":
		return audit.ActionHistory
	case "create":
		return audit.ActionCreate
	case "update":
		return audit.ActionUpdate
	case "patch":
		return audit.ActionPatch
	case "delete":
		return audit.ActionDelete
	case "transaction", "batch":
		return audit.ActionTransaction
	case "authentication", "authorization":
		return audit.ActionDenial
	}
	if method == http.MethodGet {
		return audit.ActionRead
	}
	return audit.ActionUpdate
}

// instanceRef reads Type/id from /fhir/Type/id[/...].
func instanceRef(path string) (audit.Ref, bool) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(path, "/fhir"), "/"), "/")
	if len(parts) < 2 || parts[0] == "" || parts[0][0] < 'A' || parts[0][0] > 'Z' || strings.HasPrefix(parts[1], "_") || strings.HasPrefix(parts[1], "$") {
		return audit.Ref{}, false
	}
	ref := audit.Ref{Type: parts[0], ID: parts[1]}
	if len(parts) == 4 && parts[2] == "_history" {
		ref.Version = parts[3]
	}
	return ref, true
}

// locationPath is the path of a Location header's URL, from /fhir on.
func locationPath(loc string) string {
	if i := strings.Index(loc, "/fhir/"); i >= 0 {
		return loc[i:]
	}
	return ""
}

// writtenPatient names the patient of the resource a write returned, or "".
func writtenPatient(resp *engine.Response) string {
	res := resp.Resource
	if res == nil && len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, &res); err != nil {
			return ""
		}
	}
	if res == nil || res["resourceType"] == "OperationOutcome" {
		return ""
	}
	return access.PatientOf(res)
}
