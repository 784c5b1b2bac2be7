package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/routing"
)

// Endpoint types with an adapter in this package.
const (
	TypeFHIRRest    = "fhir-rest"
	TypeFHIRMessage = "fhir-message"
	TypeRestHook    = "rest-hook"
)

// Payload is what one attempt sends.
type Payload struct {
	Delivery routing.Delivery
	// Agency is the receiving agency (nil when unknown).
	Agency *config.Agency
	// Resource is the (transformed) resource version; nil when the version is a deletion.
	Resource map[string]any
	// Deleted is set when the delivered version deletes the resource.
	Deleted bool
	// RequestID is the idempotency key (X-Request-ID), the same on every attempt.
	RequestID string
	// CorrelationID ties the delivery to the change that caused it (X-Correlation-ID).
	CorrelationID string
	// Header holds extra request headers (a Subscription's channel headers).
	Header http.Header
	// PayloadMode and MimeType are a Subscription channel's payload settings (rest-hook).
	PayloadMode string
	MimeType    string
}

// Result is the answer to a successful attempt.
type Result struct {
	StatusCode int
	// Body is the start of the response body (message acknowledgements).
	Body []byte
}

// Adapter sends one payload to one endpoint. It returns an *Error for a failure the
// receiver reported and any other error for a failure to reach it (both transient unless
// the *Error says Permanent).
type Adapter interface {
	Send(ctx context.Context, ep config.Endpoint, p Payload) (Result, error)
}

// AdapterFunc adapts a function to Adapter.
type AdapterFunc func(ctx context.Context, ep config.Endpoint, p Payload) (Result, error)

// Send calls f.
func (f AdapterFunc) Send(ctx context.Context, ep config.Endpoint, p Payload) (Result, error) {
	return f(ctx, ep, p)
}

// Error is a failed attempt the receiver answered.
type Error struct {
	StatusCode int
	// Permanent: sending the same payload again cannot succeed (4xx other than 408 and 429).
	Permanent bool
	// RetryAfter is the receiver's Retry-After, zero when absent.
	RetryAfter time.Duration
	Msg        string
}

func (e *Error) Error() string { return e.Msg }

// IsPermanent reports whether err is a failure that retrying cannot fix.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// retryAfter returns the receiver's requested delay, if any.
func retryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Permanentf returns a permanent failure that did not come from the receiver (a payload the
// adapter cannot build, a bad endpoint configuration).
func Permanentf(format string, args ...any) error {
	return &Error{Permanent: true, Msg: fmt.Sprintf(format, args...)}
}

// maxResponse bounds how much of a response body is kept.
const maxResponse = 64 << 10

// do sends req with the delivery headers and classifies the answer.
func do(ctx context.Context, client *http.Client, req *http.Request, p Payload, now func() time.Time) (Result, error) {
	req = req.WithContext(ctx)
	for k, vs := range p.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("X-Request-ID", p.RequestID)
	if p.CorrelationID != "" {
		req.Header.Set("X-Correlation-ID", p.CorrelationID)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) //nolint:errcheck // drain for keep-alive
	res := Result{StatusCode: resp.StatusCode, Body: body}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return res, nil
	}
	e := &Error{
		StatusCode: resp.StatusCode,
		Permanent:  permanentStatus(resp.StatusCode),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now()),
		Msg:        fmt.Sprintf("%s %s: HTTP %d%s", req.Method, req.URL.Redacted(), resp.StatusCode, snippet(body)),
	}
	return res, e
}

// permanentStatus: 408, 429 and 5xx are worth retrying; every other non-2xx is not.
func permanentStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return false
	}
	return true
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// snippet is the start of a response body for an error message, on one line.
func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return ""
	}
	const max = 300
	s := string(b)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return ": " + strings.Join(strings.Fields(s), " ")
}

// fhirRequest builds a POST of a FHIR JSON body.
func fhirRequest(url string, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, Permanentf("endpoint URL %q: %v", url, err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	return req, nil
}
