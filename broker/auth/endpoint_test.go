package auth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func TestTokenEndpoint(t *testing.T) {
	k := keysOnce()
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			clk := newClock()
			core, logs := observer.New(zap.InfoLevel)
			a := newAuth(t, openDB(t, b), clk, func(o *Options) { o.Logger = zap.New(core) })
			cases := []struct {
				name   string
				client string
				edit   func(*assertionSpec)
				form   func(url.Values)
				status int
				code   string
				// reason is what the log must say for a 401, so that each case fails the
				// check it is about.
				reason string
				scope  string
			}{
				{name: "RS384", client: "rsa-client", status: 200, scope: "system/Observation.cruds system/Patient.rs"},
				{name: "RS512", client: "rsa-client", edit: func(s *assertionSpec) { s.method = jwt.SigningMethodRS512 }, status: 200},
				{name: "ES384", client: "ec-client", status: 200, scope: "system/Composition.rs system/Patient.rs"},
				{name: "no kid tries every key", client: "rsa-client", edit: func(s *assertionSpec) { s.header["kid"] = nil }, status: 200},
				{name: "scope narrowed", client: "rsa-client", form: func(f url.Values) { f.Set("scope", "system/*.rs launch") },
					status: 200, scope: "system/Observation.rs system/Patient.rs"},
				{name: "v1 scope", client: "rsa-client", form: func(f url.Values) { f.Set("scope", "system/Patient.read") },
					status: 200, scope: "system/Patient.rs"},
				{name: "client_id agrees", client: "rsa-client", form: func(f url.Values) { f.Set("client_id", "rsa-client") }, status: 200},

				{name: "bad signature", client: "rsa-client", edit: func(s *assertionSpec) { s.key = k.other }, status: 401, code: "invalid_client", reason: "verification error"},
				{name: "alg none", client: "rsa-client", edit: func(s *assertionSpec) {
					s.method, s.key = jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType
				}, status: 401, code: "invalid_client", reason: "signing method none is invalid"},
				{name: "HS256 with the public key as secret", client: "rsa-client", edit: func(s *assertionSpec) {
					s.method, s.key = jwt.SigningMethodHS256, pubPEM
				}, status: 401, code: "invalid_client", reason: "signing method HS256 is invalid"},
				{name: "RS256 not allowed", client: "rsa-client", edit: func(s *assertionSpec) { s.method = jwt.SigningMethodRS256 }, status: 401, code: "invalid_client", reason: "signing method RS256 is invalid"},
				{name: "PS384 not allowed", client: "rsa-client", edit: func(s *assertionSpec) { s.method = jwt.SigningMethodPS384 }, status: 401, code: "invalid_client", reason: "signing method PS384 is invalid"},
				{name: "EC key with RSA alg", client: "ec-client", edit: func(s *assertionSpec) { s.method, s.key = jwt.SigningMethodRS384, k.rsa }, status: 401, code: "invalid_client", reason: "no registered key"},
				{name: "expired", client: "rsa-client", edit: func(s *assertionSpec) {
					s.claims["exp"] = clk.Now().Add(-time.Minute).Unix()
					s.claims["iat"] = clk.Now().Add(-2 * time.Minute).Unix()
				}, status: 401, code: "invalid_client", reason: "token is expired"},
				{name: "no exp", client: "rsa-client", edit: func(s *assertionSpec) { delete(s.claims, "exp") }, status: 401, code: "invalid_client", reason: "exp claim is required"},
				{name: "exp too far ahead", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["exp"] = clk.Now().Add(10 * time.Minute).Unix() }, status: 401, code: "invalid_client", reason: "more than 5m0s"},
				{name: "iat in the future", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["iat"] = clk.Now().Add(2 * time.Minute).Unix() }, status: 401, code: "invalid_client", reason: "used before issued"},
				{name: "wrong audience", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["aud"] = "https://elsewhere.example/oauth2/token" }, status: 401, code: "invalid_client", reason: "is not the token endpoint"},
				{name: "audience among others", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["aud"] = []string{testTokenURL, "https://x.example"} }, status: 401, code: "invalid_client", reason: "is not the token endpoint"},
				{name: "sub differs from iss", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["sub"] = "ec-client" }, status: 401, code: "invalid_client", reason: "sub differs from iss"},
				{name: "iss names another client", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["iss"], s.claims["sub"] = "ec-client", "ec-client" }, status: 401, code: "invalid_client", reason: "no registered key"},
				{name: "unknown client", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["iss"], s.claims["sub"] = "nobody", "nobody" }, status: 401, code: "invalid_client", reason: "unknown client"},
				{name: "client without keys", client: "rsa-client", edit: func(s *assertionSpec) { s.claims["iss"], s.claims["sub"] = "nokeys", "nokeys" }, status: 401, code: "invalid_client", reason: "no registered keys"},
				{name: "unknown kid", client: "rsa-client", edit: func(s *assertionSpec) { s.header["kid"] = "rsa2" }, status: 401, code: "invalid_client", reason: "no registered key for kid \"rsa2\""},
				{name: "no jti", client: "rsa-client", edit: func(s *assertionSpec) { delete(s.claims, "jti") }, status: 401, code: "invalid_client", reason: "jti missing"},
				{name: "client_id differs", client: "rsa-client", form: func(f url.Values) { f.Set("client_id", "ec-client") }, status: 401, code: "invalid_client", reason: "client_id differs"},

				{name: "no grant_type", client: "rsa-client", form: func(f url.Values) { f.Del("grant_type") }, status: 400, code: "invalid_request"},
				{name: "other grant_type", client: "rsa-client", form: func(f url.Values) { f.Set("grant_type", "password") }, status: 400, code: "unsupported_grant_type"},
				{name: "other assertion type", client: "rsa-client", form: func(f url.Values) { f.Set("client_assertion_type", "urn:x") }, status: 400, code: "invalid_request"},
				{name: "no assertion", client: "rsa-client", form: func(f url.Values) { f.Del("client_assertion") }, status: 400, code: "invalid_request"},
				{name: "repeated parameter", client: "rsa-client", form: func(f url.Values) { f.Add("grant_type", "client_credentials") }, status: 400, code: "invalid_request"},
				{name: "scope not allowed", client: "rsa-client", form: func(f url.Values) { f.Set("scope", "system/Composition.rs") }, status: 400, code: "invalid_scope"},
				{name: "scope malformed", client: "rsa-client", form: func(f url.Values) { f.Set("scope", "system/Patient.sr") }, status: 400, code: "invalid_scope"},
				{name: "only non-resource scopes", client: "rsa-client", form: func(f url.Values) { f.Set("scope", "openid") }, status: 400, code: "invalid_scope"},
			}
			var failBody string
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					spec := defaultAssertion(clk, tc.client)
					if tc.edit != nil {
						tc.edit(&spec)
					}
					form := tokenForm(spec.sign(t))
					if tc.form != nil {
						tc.form(form)
					}
					rec := postToken(a, form)
					res := decode(t, rec)
					if rec.Code != tc.status || res.Error != tc.code {
						t.Fatalf("got %d %q (%s), want %d %q", rec.Code, res.Error, res.Description, tc.status, tc.code)
					}
					if rec.Header().Get("Cache-Control") != "no-store" {
						t.Errorf("Cache-Control %q", rec.Header().Get("Cache-Control"))
					}
					if tc.status == 401 {
						entries := logs.TakeAll()
						if len(entries) == 0 || !strings.Contains(fmt.Sprint(entries[len(entries)-1].ContextMap()), tc.reason) {
							t.Errorf("log %v, want the reason %q", entries, tc.reason)
						}
						// Every failed client authentication looks the same.
						if failBody == "" {
							failBody = rec.Body.String()
						} else if rec.Body.String() != failBody {
							t.Errorf("401 body %q differs from %q", rec.Body.String(), failBody)
						}
					}
					if tc.status != 200 {
						return
					}
					if res.TokenType != "Bearer" || res.ExpiresIn != 300 || res.AccessToken == "" {
						t.Fatalf("token response %+v", res)
					}
					if tc.scope != "" && res.Scope != tc.scope {
						t.Errorf("scope %q, want %q", res.Scope, tc.scope)
					}
					p, err := a.Verify(t.Context(), res.AccessToken)
					if err != nil {
						t.Fatalf("issued token does not verify: %v", err)
					}
					if p.ClientID != tc.client || p.Scopes.String() != res.Scope {
						t.Errorf("principal %+v for scope %q", p, res.Scope)
					}
				})
			}
		})
	}
}

func TestTokenEndpointReplay(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			clk := newClock()
			node1 := newAuth(t, openDB(t, b), clk, nil)
			node2 := newAuth(t, openDB(t, b), clk, nil)
			spec := defaultAssertion(clk, "rsa-client")
			assertion := spec.sign(t)
			if rec := postToken(node1, tokenForm(assertion)); rec.Code != 200 {
				t.Fatalf("first use: %d %s", rec.Code, rec.Body)
			}
			for name, node := range map[string]*Authenticator{"same node": node1, "second node": node2} {
				if rec := postToken(node, tokenForm(assertion)); rec.Code != 401 {
					t.Errorf("%s: replay gave %d %s", name, rec.Code, rec.Body)
				}
			}
			// The same jti in a fresh assertion is still a replay while the first is unexpired.
			clk.Add(time.Minute)
			spec.claims["exp"] = clk.Now().Add(4 * time.Minute).Unix()
			if rec := postToken(node2, tokenForm(spec.sign(t))); rec.Code != 401 {
				t.Errorf("reused jti gave %d", rec.Code)
			}
			// Another client may use the same jti value.
			other := defaultAssertion(clk, "ec-client")
			other.claims["jti"] = spec.claims["jti"]
			if rec := postToken(node2, tokenForm(other.sign(t))); rec.Code != 200 {
				t.Errorf("another client's jti: %d %s", rec.Code, rec.Body)
			}
			// Once the first assertion has expired, its row no longer blocks.
			clk.Add(10 * time.Minute)
			spec.claims["exp"] = clk.Now().Add(4 * time.Minute).Unix()
			spec.claims["iat"] = clk.Now().Unix()
			if rec := postToken(node1, tokenForm(spec.sign(t))); rec.Code != 200 {
				t.Errorf("jti after expiry: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestTokenEndpointRequestShape(t *testing.T) {
	clk := newClock()
	a := newAuth(t, openDB(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}), clk, nil)
	rec := httptest.NewRecorder()
	a.TokenHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, testTokenURL, nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	req := httptest.NewRequest(http.MethodPost, testTokenURL, strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	rec = httptest.NewRecorder()
	a.TokenHandler().ServeHTTP(rec, req)
	if rec.Code != 400 || decode(t, rec).Error != "invalid_request" {
		t.Errorf("JSON body: %d %s", rec.Code, rec.Body)
	}
}

// Without a public base the assertion must name the URL the request arrived at.
func TestTokenEndpointRequestAudience(t *testing.T) {
	clk := newClock()
	a := newAuth(t, openDB(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}), clk, func(o *Options) { o.PublicBase = "" })
	good := defaultAssertion(clk, "rsa-client")
	if rec := postToken(a, tokenForm(good.sign(t))); rec.Code != 200 {
		t.Fatalf("request URL as aud: %d %s", rec.Code, rec.Body)
	}
	bad := defaultAssertion(clk, "rsa-client")
	bad.claims["aud"] = "https://hjb.example/other"
	if rec := postToken(a, tokenForm(bad.sign(t))); rec.Code != 401 {
		t.Errorf("other path as aud: %d", rec.Code)
	}
	tok, err := a.MintFor(t.Context(), "ec-client")
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, claims); err != nil {
		t.Fatal(err)
	}
	if aud, _ := claims.GetAudience(); claims["iss"] != "urn:hjbroker" || len(aud) != 1 || aud[0] != "urn:hjbroker:fhir" {
		t.Errorf("iss %v aud %v", claims["iss"], claims["aud"])
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Nodes racing on the same assertion: exactly one wins. Nodes racing to sign in a new
// period: all use one key.
func TestConcurrentNodes(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			clk := newClock()
			nodes := []*Authenticator{newAuth(t, openDB(t, b), clk, nil), newAuth(t, openDB(t, b), clk, nil)}
			assertion := defaultAssertion(clk, "ec-client").sign(t)
			const n = 16
			codes := make(chan int, n)
			kids := make(chan string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					node := nodes[i%2]
					codes <- postToken(node, tokenForm(assertion)).Code
					tok, err := node.MintFor(context.Background(), "rsa-client")
					if err != nil {
						t.Error(err)
						return
					}
					kids <- kidOf(t, tok.AccessToken)
				}()
			}
			wg.Wait()
			close(codes)
			close(kids)
			won := 0
			for c := range codes {
				switch c {
				case 200:
					won++
				case 401:
				default:
					t.Errorf("status %d", c)
				}
			}
			if won != 1 {
				t.Errorf("%d requests with one assertion succeeded, want 1", won)
			}
			seen := map[string]bool{}
			for k := range kids {
				seen[k] = true
			}
			if len(seen) != 1 {
				t.Errorf("signing kids %v, want one", seen)
			}
		})
	}
}
