package spinesim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxAssertionLife is the longest a client assertion may be valid (exp - now).
const maxAssertionLife = 5 * time.Minute

// token serves the client credentials grant with a private_key_jwt assertion.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.nextFault("token", ""); ok {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		tokenError(w, f.Status, "temporarily_unavailable", f.Text)
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	case r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		tokenError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	audience := scheme + "://" + r.Host + "/oauth2/token"
	client, err := s.verify(r.PostForm.Get("client_assertion"), audience)
	if err != nil {
		tokenError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	buf := make([]byte, 16)
	rand.Read(buf) //nolint:errcheck // crypto/rand does not fail
	tok := hex.EncodeToString(buf)
	now := s.opts.Now()
	s.mu.Lock()
	s.tokens[tok] = issued{client: client, until: now.Add(s.opts.TokenTTL)}
	s.issuedN++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]string{ //nolint:errcheck // the client went away
		"access_token": tok,
		"expires_in":   strconv.Itoa(int(s.opts.TokenTTL.Seconds())),
		"token_type":   "Bearer",
		"issued_at":    strconv.FormatInt(now.UnixMilli(), 10),
	})
}

// verify checks a client assertion: RS512 signed by a registered key (kid), iss = sub = the
// key's client, aud the token URL, exp at most five minutes ahead, jti never seen before.
func (s *Server) verify(assertion, audience string) (string, error) {
	if assertion == "" {
		return "", fmt.Errorf("client_assertion is missing")
	}
	var client Client
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		c, ok := s.clients[kid]
		if !ok {
			return nil, fmt.Errorf("no key is registered with kid %q", kid)
		}
		client = c
		return c.Key, nil
	}, jwt.WithValidMethods([]string{"RS512"}), jwt.WithExpirationRequired(), jwt.WithAudience(audience),
		jwt.WithTimeFunc(s.opts.Now))
	if err != nil {
		return "", fmt.Errorf("the client assertion is not valid: %w", err)
	}
	iss, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	if iss != client.ID || sub != client.ID {
		return "", fmt.Errorf("iss and sub must both be the client id %q of key %q", client.ID, client.KeyID)
	}
	exp, _ := claims.GetExpirationTime()
	if exp.Sub(s.opts.Now()) > maxAssertionLife+5*time.Second {
		return "", fmt.Errorf("exp is more than 5 minutes ahead")
	}
	jti, _ := claims["jti"].(string)
	if strings.TrimSpace(jti) == "" {
		return "", fmt.Errorf("jti is missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jtis[jti] {
		return "", fmt.Errorf("jti %q was used before", jti)
	}
	s.jtis[jti] = true
	return client.ID, nil
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc}) //nolint:errcheck // the client went away
}
