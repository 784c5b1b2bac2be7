package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// The client assertion type of RFC 7523.
const jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxFormBytes bounds a token request body.
const maxFormBytes = 64 << 10

// oauthError is an OAuth 2.0 error response (RFC 6749 5.2).
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

// errClientAuth is the one answer to every failed client assertion, so that a caller
// cannot learn which check failed (the log has the reason).
var errClientAuth = &oauthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed"}

func badRequest(code, desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: code, Description: desc}
}

// TokenHandler serves POST /oauth2/token: the client_credentials grant with a private_key_jwt
// client assertion. The optional scope parameter narrows the grant to what the client is
// allowed; without it the client gets all of its allowed scopes.
func (a *Authenticator) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := a.token(w, r)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			var oe *oauthError
			if !errors.As(err, &oe) {
				a.log.Error("token request failed", zap.Error(err))
				oe = &oauthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "the token could not be issued"}
			}
			if oe.Status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", http.MethodPost)
			}
			w.WriteHeader(oe.Status)
			json.NewEncoder(w).Encode(oe) //nolint:errcheck
			return
		}
		json.NewEncoder(w).Encode(tok) //nolint:errcheck
	})
}

func (a *Authenticator) token(w http.ResponseWriter, r *http.Request) (*Token, error) {
	if r.Method != http.MethodPost {
		return nil, &oauthError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "use POST"}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, badRequest("invalid_request", "the form could not be read")
	}
	form := r.PostForm
	// RFC 6749 3.2: request parameters must not be repeated.
	for k, v := range form {
		if len(v) > 1 {
			return nil, badRequest("invalid_request", fmt.Sprintf("parameter %s is repeated", k))
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return nil, badRequest("invalid_request", "grant_type is required")
	case "client_credentials":
	default:
		return nil, badRequest("unsupported_grant_type", "only client_credentials is supported")
	}
	if form.Get("client_assertion_type") != jwtBearerAssertion {
		return nil, badRequest("invalid_request", "client_assertion_type must be "+jwtBearerAssertion)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return nil, badRequest("invalid_request", "client_assertion is required")
	}
	aud := a.tokenURL
	if aud == "" {
		aud = requestURL(r)
	}
	c, err := a.authenticateClient(r.Context(), assertion, aud)
	if err != nil {
		var oe *oauthError
		if errors.As(err, &oe) {
			return nil, oe
		}
		a.log.Info("client authentication failed", zap.String("client", c.idOrEmpty()), zap.Error(err))
		return nil, errClientAuth
	}
	if id := form.Get("client_id"); id != "" && id != c.ID {
		a.log.Info("client authentication failed", zap.String("client", c.ID), zap.String("reason", "client_id differs from the assertion"))
		return nil, errClientAuth
	}
	granted := c.Scopes
	if s, ok := form["scope"]; ok {
		req, _, err := ParseScopes(s...)
		if err != nil {
			return nil, badRequest("invalid_scope", "a requested scope is malformed")
		}
		if granted = req.Intersect(c.Scopes); len(granted) == 0 {
			return nil, badRequest("invalid_scope", "none of the requested scopes is allowed for this client")
		}
	}
	return a.mint(r.Context(), c, granted)
}

func (c *Client) idOrEmpty() string {
	if c == nil {
		return ""
	}
	return c.ID
}

// requestURL is the URL a request arrived at, as its client named it.
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.Path
}

// assertionClaims are the claims of a client assertion.
type assertionClaims struct {
	jwt.RegisteredClaims
}

// authenticateClient checks a client assertion. The client is returned with the error once
// it is known, for the log.
func (a *Authenticator) authenticateClient(ctx context.Context, assertion, tokenURL string) (*Client, error) {
	if len(assertion) > maxTokenLen {
		return nil, errors.New("assertion too long")
	}
	now := a.now()
	var claims assertionClaims
	var client *Client
	p := jwt.NewParser(
		jwt.WithValidMethods(assertionAlgs),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	_, err := p.ParseWithClaims(assertion, &claims, func(t *jwt.Token) (any, error) {
		c, ok := a.reg.Client(claims.Issuer)
		if !ok {
			return nil, errors.New("unknown client")
		}
		client = c
		return c.verificationKeys(t)
	})
	if err != nil {
		return client, fmt.Errorf("assertion: %w", err)
	}
	c := client
	if claims.Subject != claims.Issuer {
		return c, errors.New("sub differs from iss")
	}
	if len(claims.Audience) != 1 || claims.Audience[0] != tokenURL {
		return c, fmt.Errorf("aud %q is not the token endpoint %q", []string(claims.Audience), tokenURL)
	}
	exp := claims.ExpiresAt.Time
	if exp.After(now.Add(MaxAssertionLifetime + Leeway)) {
		return c, fmt.Errorf("exp is %s ahead, more than %s", exp.Sub(now).Round(time.Second), MaxAssertionLifetime)
	}
	if claims.ID == "" || len(claims.ID) > 255 {
		return c, errors.New("jti missing or longer than 255 characters")
	}
	// Recorded only after the signature checks, so that nobody else can spend a client's jti.
	fresh, err := useAssertionID(ctx, a.db, c.ID, claims.ID, exp.Unix(), now.Add(-Leeway).Unix())
	if err != nil {
		a.log.Error("checking assertion replay", zap.Error(err))
		return c, &oauthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "the token could not be issued"}
	}
	if !fresh {
		return c, errors.New("jti replayed")
	}
	return c, nil
}

// verificationKeys selects the client's keys that may check a token: those with its kid
// (when it has one) and made for its algorithm.
func (c *Client) verificationKeys(t *jwt.Token) (any, error) {
	if len(c.keys) == 0 {
		return nil, errors.New("client has no registered keys")
	}
	alg := t.Method.Alg()
	kid, hasKid := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range c.keys {
		if hasKid && k.kid != kid || !k.allows(alg) {
			continue
		}
		switch pub := k.key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
			set.Keys = append(set.Keys, pub)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no registered key for kid %q and alg %s", kid, alg)
	}
	return set, nil
}
