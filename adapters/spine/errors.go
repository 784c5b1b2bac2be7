package spine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// Error is a failed Spine exchange, normalised: Status and IssueCode are what the broker
// answers its own client with; Code, System and HTTPStatus are what the Spine said, kept for
// the audit trail. It unwraps to an *outcome.Error, so the broker's engine answers with it.
type Error struct {
	// Status is the HTTP status to answer with; IssueCode the FHIR IssueType code.
	Status    int
	IssueCode string
	// Message explains the failure to the broker's client.
	Message string
	// Expression names the element of the broker's request the failure is about, if any.
	Expression string
	// Service is the service that failed: "pds", "scr" or "token".
	Service string
	// HTTPStatus is the status the Spine answered; 0 when there was no answer.
	HTTPStatus int
	// Code, System and Display are the Spine's own error code (details.coding), or empty when
	// it gave none (SCR puts most 4xx messages in details.text).
	Code, System, Display string
	// RequestID is the X-Request-ID of the failed request.
	RequestID string
}

func (e *Error) Error() string {
	s := e.Message
	if e.Code != "" {
		s += " [" + e.Service + " " + e.Code + "]"
	}
	return s
}

// Unwrap gives the OperationOutcome error the broker answers with.
func (e *Error) Unwrap() error {
	return &outcome.Error{Status: e.Status, Issues: []outcome.Issue{e.issue()}}
}

func (e *Error) issue() outcome.Issue {
	is := outcome.Issue{Severity: "error", Code: e.IssueCode, Diagnostics: e.Error()}
	if e.Expression != "" {
		is.Expression = []string{e.Expression}
	}
	return is
}

// OperationOutcome renders the error as a FHIR OperationOutcome whose issue keeps the
// Spine's original code in details.coding (system as the Spine sent it).
func (e *Error) OperationOutcome() map[string]any {
	oo := outcome.Resource([]outcome.Issue{e.issue()})
	if e.Code != "" {
		issue := oo["issue"].([]any)[0].(map[string]any)
		c := map[string]any{"code": e.Code}
		if e.System != "" {
			c["system"] = e.System
		}
		if e.Display != "" {
			c["display"] = e.Display
		}
		issue["details"] = map[string]any{"coding": []any{c}}
	}
	return oo
}

// AuditDetail describes the failure for the audit trail, with the Spine's code.
func (e *Error) AuditDetail() string {
	parts := []string{"spine " + e.Service}
	if e.HTTPStatus != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", e.HTTPStatus))
	}
	if e.Code != "" {
		parts = append(parts, e.Code)
		if e.System != "" {
			parts = append(parts, "("+e.System+")")
		}
	}
	if e.RequestID != "" {
		parts = append(parts, "X-Request-ID "+e.RequestID)
	}
	return strings.Join(parts, " ") + ": " + e.Message
}

// mapped is what the broker answers for one Spine code.
type mapped struct {
	status int
	code   string
}

// codes maps the Spine error codes of every API (PDS, SCR, GP Connect, NRL, BaRS and the
// retired UK Core set) on the code string alone: the systems differ per API, the codes do
// not conflict. Failures of what the broker itself sent (headers, parameters it builds) are
// the Spine refusing the broker, not the broker's client: they answer 502.
var codes = map[string]mapped{
	// The person is not there.
	"RESOURCE_NOT_FOUND":   {http.StatusNotFound, "not-found"},
	"PATIENT_NOT_FOUND":    {http.StatusNotFound, "not-found"},
	"NO_RECORD_FOUND":      {http.StatusNotFound, "not-found"},
	"INVALIDATED_RESOURCE": {http.StatusNotFound, "not-found"},
	"REC_NOT_FOUND":        {http.StatusNotFound, "not-found"},
	"PROXY_NOT_FOUND":      {http.StatusNotFound, "not-found"},
	"REFERENCE_NOT_FOUND":  {http.StatusNotFound, "not-found"},
	// The NHS number the client gave is not one.
	"INVALID_RESOURCE_ID":       {http.StatusBadRequest, "value"},
	"INVALID_NHS_NUMBER":        {http.StatusBadRequest, "value"},
	"INVALID_IDENTIFIER_VALUE":  {http.StatusBadRequest, "value"},
	"INVALID_IDENTIFIER_SYSTEM": {http.StatusBadRequest, "value"},
	"INVALID_SEARCH_DATA":       {http.StatusBadRequest, "invalid"},
	// Consent and access.
	"NO_PATIENT_CONSENT":      {http.StatusForbidden, "forbidden"},
	"NO_ORGANISATION_CONSENT": {http.StatusForbidden, "forbidden"},
	"ACCESS_DENIED":           {http.StatusForbidden, "forbidden"},
	"SEND_FORBIDDEN":          {http.StatusForbidden, "forbidden"},
	"FORBIDDEN_UPDATE":        {http.StatusForbidden, "forbidden"},
	// Matching.
	"TOO_MANY_MATCHES":   {http.StatusUnprocessableEntity, "multiple-matches"},
	"DUPLICATE_REJECTED": {http.StatusConflict, "duplicate"},
	"REC_CONFLICT":       {http.StatusConflict, "duplicate"},
	"SEND_CONFLICT":      {http.StatusConflict, "duplicate"},
	"PROXY_CONFLICT":     {http.StatusConflict, "duplicate"},
	// What the broker sent was refused.
	"UNSUPPORTED_SERVICE":          {http.StatusBadGateway, "processing"},
	"MISSING_VALUE":                {http.StatusBadGateway, "processing"},
	"INVALID_VALUE":                {http.StatusBadGateway, "processing"},
	"UNSUPPORTED_VALUE":            {http.StatusBadGateway, "processing"},
	"ADDITIONAL_PROPERTIES":        {http.StatusBadGateway, "processing"},
	"INVALID_PARAMETER":            {http.StatusBadGateway, "processing"},
	"INVALID_RESOURCE":             {http.StatusBadGateway, "processing"},
	"INVALID_CODE_SYSTEM":          {http.StatusBadGateway, "processing"},
	"INVALID_CODE_VALUE":           {http.StatusBadGateway, "processing"},
	"BAD_REQUEST":                  {http.StatusBadGateway, "processing"},
	"SEND_BAD_REQUEST":             {http.StatusBadGateway, "processing"},
	"REC_BAD_REQUEST":              {http.StatusBadGateway, "processing"},
	"VALIDATION_ERROR":             {http.StatusBadGateway, "processing"},
	"INVALID_PATIENT_DEMOGRAPHICS": {http.StatusBadGateway, "processing"},
	"AUTHOR_CREDENTIALS_ERROR":     {http.StatusBadGateway, "security"},
	"SEND_UNAUTHORIZED":            {http.StatusBadGateway, "security"},
	"REC_UNAUTHORIZED":             {http.StatusBadGateway, "security"},
	"SEND_UNPROCESSABLE_ENTITY":    {http.StatusBadGateway, "processing"},
	"REC_UNPROCESSABLE_ENTITY":     {http.StatusBadGateway, "processing"},
	"SEND_NOT_ACCEPTABLE":          {http.StatusBadGateway, "processing"},
	"SEND_METHOD_NOT_ALLOWED":      {http.StatusBadGateway, "processing"},
	"REC_METHOD_NOT_ALLOWED":       {http.StatusBadGateway, "processing"},
	"NOT_IMPLEMENTED":              {http.StatusNotImplemented, "not-supported"},
	"SEND_NOT_IMPLEMENTED":         {http.StatusNotImplemented, "not-supported"},
	"REC_NOT_IMPLEMENTED":          {http.StatusNotImplemented, "not-supported"},
	// Transient: the Spine could not answer in time or now.
	"UNABLE_TO_CALL_SERVICE":     {http.StatusGatewayTimeout, "timeout"},
	"REC_TIMEOUT":                {http.StatusGatewayTimeout, "timeout"},
	"TOO_MANY_REQUESTS":          {http.StatusServiceUnavailable, "throttled"},
	"SEND_TOO_MANY_REQUESTS":     {http.StatusServiceUnavailable, "throttled"},
	"REC_TOO_MANY_REQUESTS":      {http.StatusServiceUnavailable, "throttled"},
	"REC_UNAVAILABLE":            {http.StatusServiceUnavailable, "transient"},
	"PROXY_UNAVAILABLE":          {http.StatusServiceUnavailable, "transient"},
	"UNKNOWN_ERROR":              {http.StatusBadGateway, "exception"},
	"INTERNAL_SERVER_ERROR":      {http.StatusBadGateway, "exception"},
	"FAILURE_TO_PROCESS_MESSAGE": {http.StatusBadGateway, "exception"},
	"REC_SERVER_ERROR":           {http.StatusBadGateway, "exception"},
	"PROXY_SERVER_ERROR":         {http.StatusBadGateway, "exception"},
}

// byStatus maps a Spine HTTP status when the body gives no known code.
func byStatus(status int) mapped {
	switch {
	case status == http.StatusNotFound:
		return mapped{http.StatusNotFound, "not-found"}
	case status == http.StatusForbidden || status == 420: // SCR 420: PSIS access control
		return mapped{http.StatusForbidden, "forbidden"}
	case status == http.StatusConflict:
		return mapped{http.StatusConflict, "conflict"}
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		return mapped{http.StatusGatewayTimeout, "timeout"}
	case status == http.StatusTooManyRequests:
		return mapped{http.StatusServiceUnavailable, "throttled"}
	case status == http.StatusServiceUnavailable:
		return mapped{http.StatusServiceUnavailable, "transient"}
	case status == http.StatusUnauthorized:
		return mapped{http.StatusBadGateway, "security"}
	case status >= 500:
		return mapped{http.StatusBadGateway, "exception"}
	}
	return mapped{http.StatusBadGateway, "processing"}
}

// serviceName names a service in messages.
func serviceName(service string) string {
	switch service {
	case "pds":
		return "the Personal Demographics Service"
	case "scr":
		return "the Summary Care Record service"
	}
	return "the Spine token endpoint"
}

// responseError reads a Spine error answer (an OperationOutcome, or anything else).
func responseError(service string, status int, body []byte, requestID string) *Error {
	e := &Error{Service: service, HTTPStatus: status, RequestID: requestID}
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code        string `json:"code"`
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text   string `json:"text"`
				Coding []struct {
					System, Code, Display string
				} `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	detail := ""
	if json.Unmarshal(body, &oo) == nil && oo.ResourceType == "OperationOutcome" && len(oo.Issue) > 0 {
		is := oo.Issue[0]
		if len(is.Details.Coding) > 0 {
			c := is.Details.Coding[0]
			e.Code, e.System, e.Display = c.Code, c.System, c.Display
		}
		for _, s := range []string{is.Diagnostics, is.Details.Text, e.Display} {
			if s != "" {
				detail = s
				break
			}
		}
	}
	m, ok := codes[e.Code]
	if !ok {
		m = byStatus(status)
	}
	e.Status, e.IssueCode = m.status, m.code
	e.Message = fmt.Sprintf("%s answered HTTP %d", serviceName(service), status)
	if detail != "" {
		e.Message += ": " + detail
	}
	return e
}

// transportError reads a failure to get any answer.
func transportError(service string, err error) *Error {
	e := &Error{Service: service}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		e.Status, e.IssueCode = http.StatusGatewayTimeout, "timeout"
		e.Message = serviceName(service) + " did not answer in time"
		return e
	}
	e.Status, e.IssueCode = http.StatusBadGateway, "transient"
	e.Message = fmt.Sprintf("%s could not be reached: %v", serviceName(service), err)
	return e
}

// garbage is a 2xx answer the broker cannot read.
func garbage(service string, status int, why, requestID string) *Error {
	return &Error{Status: http.StatusBadGateway, IssueCode: "exception", Service: service, HTTPStatus: status, RequestID: requestID,
		Message: fmt.Sprintf("%s answered HTTP %d with %s", serviceName(service), status, why)}
}
