package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

const (
	testBase     = "https://hjb.example/fhir"
	testTokenURL = "https://hjb.example/oauth2/token"
)

// clock is a settable test clock shared by the authenticators of one test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// clientKeys are the private keys of the test clients, made once per test binary run.
type clientKeys struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	other *rsa.PrivateKey // registered to nobody
}

var keysOnce = sync.OnceValue(func() clientKeys {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	o, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return clientKeys{rsa: r, ec: e, other: o}
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	b, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	n := (len(b) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-384", "alg": "ES384", "x": b64(b[1 : 1+n]), "y": b64(b[1+n:])}
}

// jwks round-trips through JSON, as a configuration file would give it.
func jwks(keys ...map[string]any) map[string]any {
	raw, _ := json.Marshal(map[string]any{"keys": keys})
	var out map[string]any
	json.Unmarshal(raw, &out) //nolint:errcheck
	return out
}

func testConfig() *config.Config {
	k := keysOnce()
	return &config.Config{
		Version: 1,
		Agencies: []config.Agency{
			{ID: "custody-hcp", Kind: config.KindCustodyHealthcare, Clients: []config.Client{
				{ID: "rsa-client", Scopes: []string{"system/Patient.rs", "system/Observation.cruds"}, Purposes: []string{"TREAT", "BTG"},
					JWKS: jwks(rsaJWK("rsa1", &k.rsa.PublicKey))},
				{ID: "nokeys", Scopes: []string{"system/Patient.rs"}},
			}},
			{ID: "court", Kind: config.KindCourt, Clients: []config.Client{
				{ID: "ec-client", Scopes: []string{"system/Patient.rs", "system/Composition.rs"},
					JWKS: jwks(ecJWK("ec1", &k.ec.PublicKey))},
			}},
		},
		Sharing: []config.SharingRule{{ID: "court", AgencyKinds: []string{config.KindCourt}, Purposes: []string{"LEGAL", "HLEGAL"}}},
	}
}

// openDB opens a backend's store with the auth tables; each call is a new connection pool,
// as a second broker node would have.
func openDB(t testing.TB, b storetest.Backend) *store.SQL {
	t.Helper()
	st, err := store.Open(context.Background(), b.StoreURL, b.DataDir, store.Options{Migrations: Migrations(), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newAuth(t testing.TB, db Database, clk *clock, mod func(*Options)) *Authenticator {
	t.Helper()
	opts := Options{Config: testConfig(), DB: db, PublicBase: testBase, Now: clk.Now, KeyRotation: time.Hour}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
}

// assertion builds a client assertion; edit changes the defaults.
type assertionSpec struct {
	method jwt.SigningMethod
	key    any
	header map[string]any
	claims jwt.MapClaims
}

func defaultAssertion(clk *clock, client string) assertionSpec {
	k := keysOnce()
	now := clk.Now()
	s := assertionSpec{
		method: jwt.SigningMethodRS384, key: k.rsa, header: map[string]any{"kid": "rsa1"},
		claims: jwt.MapClaims{
			"iss": client, "sub": client, "aud": testTokenURL,
			"exp": now.Add(4 * time.Minute).Unix(), "iat": now.Unix(), "jti": randomJTI(),
		},
	}
	if client == "ec-client" {
		s.method, s.key, s.header["kid"] = jwt.SigningMethodES384, k.ec, "ec1"
	}
	return s
}

func randomJTI() string {
	id, err := randomID()
	if err != nil {
		panic(err)
	}
	return id
}

func (s assertionSpec) sign(t testing.TB) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, s.claims)
	for k, v := range s.header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	str, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

func tokenForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {jwtBearerAssertion},
		"client_assertion":      {assertion},
	}
}

func postToken(a *Authenticator, form url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, testTokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	a.TokenHandler().ServeHTTP(rec, req)
	return rec
}

type tokenResponse struct {
	Token
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func decode(t testing.TB, rec *httptest.ResponseRecorder) tokenResponse {
	t.Helper()
	var out tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %q: %v", rec.Body.String(), err)
	}
	return out
}
