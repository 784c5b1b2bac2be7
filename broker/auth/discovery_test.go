package auth

import (
	"crypto/elliptic"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func TestSmartConfiguration(t *testing.T) {
	clk := newClock()
	db := openDB(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()})
	for _, tc := range []struct {
		name, base, host, token, jwks string
	}{
		{"configured", testBase, "ignored.example", testTokenURL, "https://hjb.example/oauth2/jwks"},
		{"from the request", "", "127.0.0.1:8080", "http://127.0.0.1:8080/oauth2/token", "http://127.0.0.1:8080/oauth2/jwks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, db, clk, func(o *Options) { o.PublicBase = tc.base })
			req := httptest.NewRequest(http.MethodGet, "http://"+tc.host+SmartConfigPath, nil)
			rec := httptest.NewRecorder()
			a.SmartConfigHandler().ServeHTTP(rec, req)
			if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s", rec.Code, rec.Header().Get("Content-Type"))
			}
			var doc struct {
				TokenEndpoint string   `json:"token_endpoint"`
				JWKSURI       string   `json:"jwks_uri"`
				Grants        []string `json:"grant_types_supported"`
				AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
				Algs          []string `json:"token_endpoint_auth_signing_alg_values_supported"`
				Scopes        []string `json:"scopes_supported"`
				Capabilities  []string `json:"capabilities"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.TokenEndpoint != tc.token || doc.JWKSURI != tc.jwks ||
				!slices.Equal(doc.Grants, []string{"client_credentials"}) ||
				!slices.Equal(doc.AuthMethods, []string{"private_key_jwt"}) ||
				!slices.Equal(doc.Algs, []string{"RS384", "ES384", "RS512"}) ||
				!slices.Equal(doc.Capabilities, []string{"client-confidential-asymmetric", "permission-v2"}) ||
				!slices.Equal(doc.Scopes, []string{"system/Composition.rs", "system/Observation.cruds", "system/Patient.rs"}) {
				t.Errorf("document %+v", doc)
			}
		})
	}
}

// The published keys verify the broker's tokens, as an outside verifier would use them.
func TestJWKSVerifiesTokens(t *testing.T) {
	clk := newClock()
	a := newAuth(t, openDB(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}), clk, nil)
	tok, err := a.MintFor(t.Context(), "ec-client")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://hjb.example"+JWKSPath, nil))
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	set, err := parsePublishedJWKS(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok.AccessToken, func(t *jwt.Token) (any, error) {
		return set[t.Header["kid"].(string)], nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(clk.Now), jwt.WithAudience(testBase))
	if err != nil || !parsed.Valid {
		t.Fatalf("token does not verify with the published key: %v", err)
	}
	rec = httptest.NewRecorder()
	a.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, JWKSPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

// parsePublishedJWKS reads the broker's own JWKS (P-256 keys, which client registration
// refuses) by kid.
func parsePublishedJWKS(raw []byte) (map[string]any, error) {
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, k := range set.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" || k.Use != "sig" || k.D != "" {
			return nil, fmt.Errorf("published key %+v", k)
		}
		pub, err := ecPublic(elliptic.P256(), k.X, k.Y)
		if err != nil {
			return nil, err
		}
		out[k.Kid] = pub
	}
	return out, nil
}
