package spine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxBody bounds what is read of one answer.
const maxBody = 16 << 20

type correlationKey struct{}

// WithCorrelationID returns a context whose Spine requests carry id as X-Correlation-ID (the
// broker passes its own request id, so one trace joins both sides). Without it the request's
// X-Request-ID is used.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// call is one logical request, retried as a whole.
type call struct {
	service     string
	method      string
	url         string
	body        []byte
	contentType string
}

// retryable reports the statuses worth another attempt (the platform's transient set).
func retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// do sends a call, retrying transient failures with the same X-Request-ID, and returns the
// status and body of a 2xx answer.
func (c *Client) do(ctx context.Context, cl call) (int, []byte, error) {
	requestID := c.cfg.NewID()
	correlation, _ := ctx.Value(correlationKey{}).(string)
	if correlation == "" {
		correlation = requestID
	}
	var last *Error
	refreshed := false
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		wait := c.cfg.Backoff << (attempt - 1)
		tok, err := c.accessToken(ctx)
		if err != nil {
			// A token endpoint that is down or slow is worth another attempt; a refusal is not.
			var te *Error
			if !errors.As(err, &te) || te.HTTPStatus != 0 && te.HTTPStatus < 500 || attempt == c.cfg.MaxAttempts || ctx.Err() != nil {
				return 0, nil, err
			}
			if err := sleep(ctx, wait); err != nil {
				return 0, nil, transportError(cl.service, err)
			}
			continue
		}
		status, header, body, err := c.attempt(ctx, cl, tok, requestID, correlation)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return 0, nil, transportError(cl.service, ctx.Err())
			}
			last = transportError(cl.service, err)
			last.RequestID = requestID
		case status == http.StatusUnauthorized && !refreshed:
			// The token was revoked or expired early: get a new one, once.
			c.forgetToken(tok)
			refreshed = true
			attempt--
			continue
		case retryable(status):
			last = responseError(cl.service, status, body, requestID)
			if ra, ok := retryAfter(header.Get("Retry-After"), c.cfg.Clock()); ok {
				if ra > c.cfg.MaxRetryAfter {
					last.Message += fmt.Sprintf(" (it asked to retry after %s)", ra)
					return 0, nil, last
				}
				wait = max(wait, ra)
			}
		case status >= 300:
			return 0, nil, responseError(cl.service, status, body, requestID)
		default:
			return status, body, nil
		}
		if attempt == c.cfg.MaxAttempts {
			break
		}
		if err := sleep(ctx, wait); err != nil {
			return 0, nil, transportError(cl.service, err)
		}
	}
	if c.cfg.MaxAttempts > 1 {
		last.Message += fmt.Sprintf(" (%d attempts)", c.cfg.MaxAttempts)
	}
	return 0, nil, last
}

// attempt sends one try within the per-attempt timeout.
func (c *Client) attempt(ctx context.Context, cl call, tok, requestID, correlation string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if cl.body != nil {
		rd = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, cl.url, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Request-ID", requestID)
	req.Header.Set("X-Correlation-ID", correlation)
	req.Header.Set("Accept", "application/fhir+json")
	if cl.body != nil {
		req.Header.Set("Content-Type", cl.contentType)
	}
	if c.cfg.ODS != "" {
		req.Header.Set("NHSD-End-User-Organisation-ODS", c.cfg.ODS)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
