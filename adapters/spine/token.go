package spine

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionType is the client_assertion_type of a signed JWT client assertion.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid; the platform accepts at most
// five minutes.
const assertionLifetime = 4 * time.Minute

// tokenMargin renews a token this long before it expires, so that no request carries a
// token that expires in flight.
const tokenMargin = 30 * time.Second

// Assertion signs a client assertion for the token endpoint: RS512 with the key id in the
// header; iss and sub the client id, aud the token URL, a fresh jti, exp within five minutes.
func (c *Client) Assertion() (string, error) {
	now := c.cfg.Clock()
	claims := jwt.MapClaims{
		"iss": c.cfg.ClientID,
		"sub": c.cfg.ClientID,
		"aud": c.cfg.TokenURL,
		"jti": c.cfg.NewID(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS512, claims)
	t.Header["kid"] = c.cfg.KeyID
	s, err := t.SignedString(c.cfg.Key)
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return s, nil
}

// accessToken returns the cached bearer token, or gets a new one.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && c.cfg.Clock().Before(c.until) {
		return c.token, nil
	}
	tok, ttl, err := c.fetchToken(ctx)
	if err != nil {
		return "", err
	}
	c.token = tok
	c.until = c.cfg.Clock().Add(ttl - tokenMargin)
	return tok, nil
}

// forgetToken drops a token the service refused, so that the next request gets a new one.
func (c *Client) forgetToken(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
}

// fetchToken runs the client credentials grant with a fresh assertion.
func (c *Client) fetchToken(ctx context.Context) (string, time.Duration, error) {
	assertion, err := c.Assertion()
	if err != nil {
		return "", 0, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {AssertionType},
		"client_assertion":      {assertion},
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("building the token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return "", 0, transportError("token", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, transportError("token", err)
	}
	var out struct {
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		TokenType   string          `json:"token_type"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	if err := json.Unmarshal(body, &out); err != nil && resp.StatusCode < 500 {
		return "", 0, &Error{Status: http.StatusBadGateway, IssueCode: "exception", Service: "token", HTTPStatus: resp.StatusCode,
			Message: fmt.Sprintf("the Spine token endpoint answered HTTP %d with a body that is not JSON", resp.StatusCode)}
	}
	if resp.StatusCode >= 500 {
		return "", 0, &Error{Status: http.StatusServiceUnavailable, IssueCode: "transient", Service: "token", HTTPStatus: resp.StatusCode, Code: out.Error,
			Message: fmt.Sprintf("the Spine token endpoint is unavailable (HTTP %d)", resp.StatusCode)}
	}
	if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		msg := out.Description
		if msg == "" {
			msg = out.Error
		}
		return "", 0, &Error{Status: http.StatusBadGateway, IssueCode: "security", Service: "token", HTTPStatus: resp.StatusCode, Code: out.Error,
			Message: fmt.Sprintf("the Spine token endpoint refused the broker's credentials (HTTP %d): %s", resp.StatusCode, msg)}
	}
	if !strings.EqualFold(out.TokenType, "bearer") {
		return "", 0, &Error{Status: http.StatusBadGateway, IssueCode: "security", Service: "token", HTTPStatus: resp.StatusCode,
			Message: fmt.Sprintf("the Spine token endpoint issued a %q token, not a bearer token", out.TokenType)}
	}
	// expires_in is a number on most servers and a string on the NHS platform.
	secs := 0
	if err := json.Unmarshal(out.ExpiresIn, &secs); err != nil {
		var s string
		if json.Unmarshal(out.ExpiresIn, &s) == nil {
			fmt.Sscanf(s, "%d", &secs) //nolint:errcheck // a bad value leaves secs 0, handled below
		}
	}
	if secs <= 0 {
		secs = 60
	}
	return out.AccessToken, time.Duration(secs) * time.Second, nil
}

// ParsePrivateKeyPEM reads an RSA private key in PKCS#1 or PKCS#8 PEM.
func ParsePrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("the private key is not an RSA key (RS512 needs RSA)")
	}
	return rk, nil
}

// ParsePublicKeyPEM reads an RSA public key in PKIX or PKCS#1 PEM, or the key of a
// certificate.
func ParsePublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type == "CERTIFICATE" {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing the certificate: %w", err)
		}
		if k, ok := cert.PublicKey.(*rsa.PublicKey); ok {
			return k, nil
		}
		return nil, errors.New("the certificate's key is not an RSA key")
	}
	if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the public key: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the public key is not an RSA key")
	}
	return rk, nil
}
