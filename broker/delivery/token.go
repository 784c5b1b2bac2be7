package delivery

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
)

// assertionLifetime is the exp of a client assertion: SMART Backend Services and the NHS
// platform accept at most five minutes.
const assertionLifetime = 4 * time.Minute

// tokenMargin renews a token this long before it expires, so no request carries one that
// expires in flight.
const tokenMargin = 30 * time.Second

// Tokens gets bearer tokens for endpoints by the OAuth client-credentials grant with a
// private_key_jwt client assertion (RFC 7523, SMART Backend Services), and caches them until
// shortly before they expire. Safe for concurrent use.
type Tokens struct {
	client *http.Client
	now    func() time.Time

	fetchMu sync.Mutex
	mu      sync.Mutex
	tokens  map[string]cachedToken
	keys    map[string]crypto.Signer
}

type cachedToken struct {
	value   string
	expires time.Time
}

// NewTokens returns a token source using client for token requests (http.DefaultClient when
// nil) and now as its clock (time.Now when nil).
func NewTokens(client *http.Client, now func() time.Time) *Tokens {
	if client == nil {
		client = http.DefaultClient
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{client: client, now: now, tokens: map[string]cachedToken{}, keys: map[string]crypto.Signer{}}
}

func tokenKey(ep config.Endpoint) string { return ep.TokenURL + "\x00" + ep.Client + "\x00" + ep.Scope }

// Token returns a bearer token for ep, or "" when ep has no token URL.
func (t *Tokens) Token(ctx context.Context, ep config.Endpoint) (string, error) {
	if ep.TokenURL == "" {
		return "", nil
	}
	k := tokenKey(ep)
	t.mu.Lock()
	c, ok := t.tokens[k]
	t.mu.Unlock()
	if ok && t.now().Before(c.expires) {
		return c.value, nil
	}
	// One request at a time: concurrent deliveries wait for the token the first one gets.
	t.fetchMu.Lock()
	defer t.fetchMu.Unlock()
	t.mu.Lock()
	c, ok = t.tokens[k]
	t.mu.Unlock()
	if ok && t.now().Before(c.expires) {
		return c.value, nil
	}
	c, err := t.fetch(ctx, ep)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.tokens[k] = c
	t.mu.Unlock()
	return c.value, nil
}

// Forget drops ep's cached token (after the endpoint rejected it).
func (t *Tokens) Forget(ep config.Endpoint) {
	t.mu.Lock()
	delete(t.tokens, tokenKey(ep))
	t.mu.Unlock()
}

func (t *Tokens) fetch(ctx context.Context, ep config.Endpoint) (cachedToken, error) {
	assertion, err := t.assertion(ep)
	if err != nil {
		return cachedToken{}, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	if ep.Scope != "" {
		form.Set("scope", ep.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return cachedToken{}, Permanentf("token URL %q: %v", ep.TokenURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return cachedToken{}, fmt.Errorf("token request to %s: %w", ep.TokenURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode != http.StatusOK {
		// A rejected assertion is a configuration problem, but the token service may
		// also be down: both are worth retrying until the endpoint's limits are reached.
		return cachedToken{}, &Error{StatusCode: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), t.now()),
			Msg: fmt.Sprintf("token request to %s: HTTP %d%s", ep.TokenURL, resp.StatusCode, snippet(body))}
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return cachedToken{}, fmt.Errorf("token response from %s has no access_token", ep.TokenURL)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return cachedToken{}, fmt.Errorf("token response from %s: token_type %q is not Bearer", ep.TokenURL, tr.TokenType)
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	exp := t.now().Add(life - tokenMargin)
	if life <= 2*tokenMargin {
		exp = t.now().Add(life / 2)
	}
	return cachedToken{value: tr.AccessToken, expires: exp}, nil
}

// assertion signs a client assertion: iss = sub = client id, aud = the token URL, a fresh
// jti and a short exp.
func (t *Tokens) assertion(ep config.Endpoint) (string, error) {
	if ep.Client == "" {
		return "", Permanentf("endpoint %s has a token URL but no client", ep.ID)
	}
	key, err := t.key(ep.KeyFile)
	if err != nil {
		return "", err
	}
	method, err := signingMethod(key)
	if err != nil {
		return "", Permanentf("key file %s: %v", ep.KeyFile, err)
	}
	now := t.now()
	claims := jwt.RegisteredClaims{
		Issuer:    ep.Client,
		Subject:   ep.Client,
		Audience:  jwt.ClaimStrings{ep.TokenURL},
		ID:        uuid.NewString(),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["typ"] = "JWT"
	if ep.KeyID != "" {
		tok.Header["kid"] = ep.KeyID
	}
	s, err := tok.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("signing the client assertion for %s: %w", ep.ID, err)
	}
	return s, nil
}

// signingMethod picks the algorithm for a key: RS384 for RSA (the SMART default), ES256 or
// ES384 by curve.
func signingMethod(key crypto.Signer) (jwt.SigningMethod, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS384, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jwt.SigningMethodES256, nil
		case elliptic.P384():
			return jwt.SigningMethodES384, nil
		}
		return nil, fmt.Errorf("EC curve %s is not supported", k.Curve.Params().Name)
	}
	return nil, fmt.Errorf("key type %T is not supported", key)
}

func (t *Tokens) key(file string) (crypto.Signer, error) {
	if file == "" {
		return nil, Permanentf("no key file configured for the client assertion")
	}
	t.mu.Lock()
	k, ok := t.keys[file]
	t.mu.Unlock()
	if ok {
		return k, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, Permanentf("reading key file: %v", err)
	}
	k, err = ParsePrivateKey(b)
	if err != nil {
		return nil, Permanentf("key file %s: %v", file, err)
	}
	t.mu.Lock()
	t.keys[file] = k
	t.mu.Unlock()
	return k, nil
}

// ParsePrivateKey reads a PEM private key: PKCS #8, PKCS #1 (RSA) or SEC 1 (EC).
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("no PEM private key found")
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("key type %T cannot sign", k)
			}
			return s, nil
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(block.Bytes)
		}
	}
}
