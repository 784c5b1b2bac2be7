package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenLen bounds the tokens and assertions parsed at all.
const maxTokenLen = 16 << 10

// accessTokenType is the JWT typ of access tokens (RFC 9068), which keeps other JWTs signed
// with a broker key from passing as one.
const accessTokenType = "at+jwt"

// Token is an issued access token, in the shape of the token endpoint's response.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// accessClaims are the claims of an access token.
type accessClaims struct {
	jwt.RegisteredClaims
	ClientID   string   `json:"client_id"`
	Agency     string   `json:"agency"`
	AgencyKind string   `json:"agency_kind"`
	Scope      string   `json:"scope"`
	Purposes   []string `json:"purposes,omitempty"`
}

// Principal is the authenticated caller of a request.
type Principal struct {
	ClientID   string
	AgencyID   string
	AgencyKind string
	Scopes     Scopes
	// Purposes are the purposes of use the client may claim.
	Purposes []string
	// TokenID and Expires identify the access token, for audit.
	TokenID string
	Expires time.Time
}

// MintFor issues an access token for a configured client with all its allowed scopes,
// without a client assertion: for operators (`hjbroker token`) and tests.
func (a *Authenticator) MintFor(ctx context.Context, clientID string) (*Token, error) {
	c, ok := a.reg.Client(clientID)
	if !ok {
		return nil, fmt.Errorf("no client %q in the configuration", clientID)
	}
	return a.mint(ctx, c, c.Scopes)
}

func (a *Authenticator) mint(ctx context.Context, c *Client, scopes Scopes) (*Token, error) {
	now := a.now()
	sk, err := a.keys.current(ctx, now)
	if err != nil {
		return nil, err
	}
	jti, err := randomID()
	if err != nil {
		return nil, err
	}
	exp := now.Add(a.ttl)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    a.issuer,
			Subject:   c.ID,
			Audience:  jwt.ClaimStrings{a.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		ClientID: c.ID, Agency: c.AgencyID, AgencyKind: c.AgencyKind,
		Scope: scopes.String(), Purposes: c.Purposes,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = sk.kid
	t.Header["typ"] = accessTokenType
	signed, err := t.SignedString(sk.priv)
	if err != nil {
		return nil, fmt.Errorf("signing access token: %w", err)
	}
	a.maybePurge(ctx, now)
	return &Token{AccessToken: signed, TokenType: "Bearer", ExpiresIn: int(a.ttl / time.Second), Scope: claims.Scope}, nil
}

func randomID() (string, error) {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// TokenError is why a bearer token was refused. The HTTP layer answers 401 with
// Challenge() as the WWW-Authenticate header.
type TokenError struct {
	// Code is "invalid_token", or "" when the request carried no token (RFC 6750 3.1).
	Code string
	// Description is safe to show the caller.
	Description string
	// reason is the detail, for logs only.
	reason error
}

func (e *TokenError) Error() string {
	if e.reason != nil {
		return e.Description + ": " + e.reason.Error()
	}
	return e.Description
}

func (e *TokenError) Unwrap() error { return e.reason }

// Challenge is the WWW-Authenticate value for the 401 response.
func (e *TokenError) Challenge() string {
	if e.Code == "" {
		return `Bearer realm="hjbroker"`
	}
	return fmt.Sprintf(`Bearer realm="hjbroker", error=%q, error_description=%q`, e.Code, e.Description)
}

// ErrNoToken is returned by Verify for an empty bearer token.
var ErrNoToken = &TokenError{Description: "an access token is required"}

func invalidToken(desc string, reason error) *TokenError {
	return &TokenError{Code: "invalid_token", Description: desc, reason: reason}
}

// Verify checks an access token (the part after "Bearer ") and returns its principal. Every
// failure is a *TokenError.
func (a *Authenticator) Verify(ctx context.Context, bearer string) (*Principal, error) {
	if bearer == "" {
		return nil, ErrNoToken
	}
	if len(bearer) > maxTokenLen {
		return nil, invalidToken("the access token is invalid", errors.New("too long"))
	}
	now := a.now()
	a.verifiedMu.Lock()
	cached, ok := a.verified[bearer]
	a.verifiedMu.Unlock()
	if ok {
		if now.After(cached.Expires.Add(Leeway)) {
			return nil, invalidToken("the access token has expired", jwt.ErrTokenExpired)
		}
		if c, ok := a.reg.Client(cached.ClientID); ok && c.AgencyID == cached.AgencyID {
			cp := *cached
			return &cp, nil
		}
	}
	var claims accessClaims
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{AlgES256}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(a.issuer),
		jwt.WithAudience(a.audience),
		jwt.WithStrictDecoding(),
	)
	_, err := p.ParseWithClaims(bearer, &claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, accessTokenType) {
			return nil, errors.New("typ is not at+jwt")
		}
		kid, _ := t.Header["kid"].(string)
		return a.keys.verifier(ctx, kid, now)
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, invalidToken("the access token has expired", err)
		}
		return nil, invalidToken("the access token is invalid", err)
	}
	c, ok := a.reg.Client(claims.Subject)
	switch {
	case !ok:
		return nil, invalidToken("the access token is invalid", errors.New("client no longer configured"))
	case claims.ClientID != claims.Subject || claims.Agency != c.AgencyID || claims.AgencyKind != c.AgencyKind:
		return nil, invalidToken("the access token is invalid", errors.New("client or agency claims disagree with the configuration"))
	case claims.ID == "":
		return nil, invalidToken("the access token is invalid", errors.New("no jti"))
	}
	scopes, _, err := ParseScopes(claims.Scope)
	if err != nil {
		return nil, invalidToken("the access token is invalid", err)
	}
	pr := &Principal{
		ClientID: c.ID, AgencyID: c.AgencyID, AgencyKind: c.AgencyKind,
		// The configuration may have narrowed since the token was issued.
		Scopes:   scopes.Intersect(c.Scopes),
		Purposes: intersect(claims.Purposes, c.Purposes),
		TokenID:  claims.ID, Expires: claims.ExpiresAt.Time,
	}
	a.verifiedMu.Lock()
	if a.verified == nil || len(a.verified) >= maxVerified {
		a.verified = make(map[string]*Principal)
	}
	a.verified[bearer] = pr
	a.verifiedMu.Unlock()
	cp := *pr
	return &cp, nil
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
