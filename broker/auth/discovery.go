package auth

import (
	"encoding/json"
	"net/http"

	"go.uber.org/zap"
)

// rootFor returns the broker's public root URL: the configured one, else the request's.
func (a *Authenticator) rootFor(r *http.Request) string {
	if a.root != "" {
		return a.root
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// SmartConfigHandler serves /fhir/.well-known/smart-configuration (SMART App Launch 2.x
// discovery, the backend services subset).
func (a *Authenticator) SmartConfigHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		root := a.rootFor(r)
		tokenURL := a.tokenURL
		if tokenURL == "" {
			tokenURL = root + TokenPath
		}
		doc := map[string]any{
			"token_endpoint":                        tokenURL,
			"jwks_uri":                              root + JWKSPath,
			"grant_types_supported":                 []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": assertionAlgs,
			"scopes_supported": a.reg.scopes,
			"capabilities":     []string{"client-confidential-asymmetric", "permission-v2"},
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		json.NewEncoder(w).Encode(doc) //nolint:errcheck
	})
}

// JWKSHandler serves the public keys that verify the broker's access tokens.
func (a *Authenticator) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		keys, err := a.keys.published(r.Context(), a.now())
		if err != nil {
			a.log.Error("reading signing keys", zap.Error(err))
			http.Error(w, "keys unavailable", http.StatusInternalServerError)
			return
		}
		set := struct {
			Keys []jwk `json:"keys"`
		}{Keys: []jwk{}}
		for _, k := range keys {
			j, err := publicJWK(k.kid, &k.priv.PublicKey)
			if err != nil {
				a.log.Error("encoding signing key", zap.Error(err))
				http.Error(w, "keys unavailable", http.StatusInternalServerError)
				return
			}
			set.Keys = append(set.Keys, j)
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		// Short, so that verifiers see the next key soon after rotation.
		w.Header().Set("Cache-Control", "public, max-age=60")
		json.NewEncoder(w).Encode(set) //nolint:errcheck
	})
}
