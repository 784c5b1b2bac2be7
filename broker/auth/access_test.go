package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func TestMintAndVerify(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			clk := newClock()
			db := openDB(t, b)
			a := newAuth(t, db, clk, nil)
			tok, err := a.MintFor(t.Context(), "rsa-client")
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "Bearer" || tok.ExpiresIn != 300 || tok.Scope != "system/Observation.cruds system/Patient.rs" {
				t.Errorf("token %+v", tok)
			}
			p, err := a.Verify(t.Context(), tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			want := Principal{ClientID: "rsa-client", AgencyID: "custody-hcp", AgencyKind: "custody-healthcare", Purposes: []string{"TREAT", "BTG"}}
			if p.ClientID != want.ClientID || p.AgencyID != want.AgencyID || p.AgencyKind != want.AgencyKind ||
				!slices.Equal(p.Purposes, want.Purposes) || p.TokenID == "" || !p.Expires.Equal(clk.Now().Add(5*time.Minute)) {
				t.Errorf("principal %+v", p)
			}
			if !p.Scopes.Allows("Observation", 'd') || p.Scopes.Allows("Patient", 'u') || p.Scopes.Allows("Condition", 'r') {
				t.Errorf("scopes %s", p.Scopes)
			}
			// Purposes of a client without its own come from the sharing rules of its kind.
			ec, err := a.MintFor(t.Context(), "ec-client")
			if err != nil {
				t.Fatal(err)
			}
			if p, err := a.Verify(t.Context(), ec.AccessToken); err != nil || !slices.Equal(p.Purposes, []string{"HLEGAL", "LEGAL"}) {
				t.Errorf("ec-client principal %+v, %v", p, err)
			}
			if _, err := a.MintFor(t.Context(), "nobody"); err == nil {
				t.Error("minted for an unknown client")
			}

			// Another node on the same database signs with the same key and verifies.
			other := newAuth(t, openDB(t, b), clk, nil)
			if _, err := other.Verify(t.Context(), tok.AccessToken); err != nil {
				t.Errorf("second node: %v", err)
			}
			tok2, err := other.MintFor(t.Context(), "rsa-client")
			if err != nil {
				t.Fatal(err)
			}
			if kidOf(t, tok2.AccessToken) != kidOf(t, tok.AccessToken) {
				t.Errorf("nodes sign with different keys in one period: %s, %s", kidOf(t, tok2.AccessToken), kidOf(t, tok.AccessToken))
			}

			// A different audience (another deployment on the same database) refuses it.
			elsewhere := newAuth(t, db, clk, func(o *Options) { o.PublicBase = "https://other.example/fhir" })
			if _, err := elsewhere.Verify(t.Context(), tok.AccessToken); !isInvalid(err) {
				t.Errorf("other audience: %v", err)
			}

			clk.Add(5*time.Minute + Leeway + time.Second)
			_, err = a.Verify(t.Context(), tok.AccessToken)
			var te *TokenError
			if !errors.As(err, &te) || te.Description != "the access token has expired" {
				t.Errorf("expired: %v", err)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	clk := newClock()
	a := newAuth(t, openDB(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}), clk, nil)
	tok, err := a.MintFor(t.Context(), "rsa-client")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok.AccessToken, ".")
	payload := must(base64.RawURLEncoding.DecodeString(parts[1]))
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	header := map[string]any{}
	json.Unmarshal(must(base64.RawURLEncoding.DecodeString(parts[0])), &header) //nolint:errcheck
	reencode := func(v any) string { return base64.RawURLEncoding.EncodeToString(must(json.Marshal(v))) }
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range claims {
			c[kk] = vv
		}
		c[k] = v
		return c
	}
	// A broker-shaped key that the database does not hold.
	rogue := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	signRogue := func(h map[string]any, c map[string]any) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(c))
		for k, v := range h {
			tk.Header[k] = v
		}
		return must(tk.SignedString(rogue))
	}
	sk, err := a.keys.current(t.Context(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	signReal := func(method jwt.SigningMethod, key any, h, c map[string]any) string {
		tk := jwt.NewWithClaims(method, jwt.MapClaims(c))
		for k, v := range h {
			tk.Header[k] = v
		}
		return must(tk.SignedString(key))
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&sk.priv.PublicKey))})
	kid := header["kid"]
	cases := map[string]string{
		"tampered scope":        parts[0] + "." + reencode(with("scope", "system/*.cruds")) + "." + parts[2],
		"tampered client":       parts[0] + "." + reencode(with("sub", "ec-client")) + "." + parts[2],
		"signature cut":         parts[0] + "." + parts[1] + ".",
		"signature of another":  parts[0] + "." + parts[1] + "." + strings.Split(must(a.MintFor(t.Context(), "rsa-client")).AccessToken, ".")[2],
		"alg none":              reencode(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + parts[1] + ".",
		"HS256 with public key": signReal(jwt.SigningMethodHS256, pubPEM, map[string]any{"kid": kid, "typ": "at+jwt"}, claims),
		"unknown kid":           signRogue(map[string]any{"kid": "es256-0-3600", "typ": "at+jwt"}, claims),
		"future kid":            signRogue(map[string]any{"kid": "es256-99999999999-3600", "typ": "at+jwt"}, claims),
		"known kid, other key":  signRogue(map[string]any{"kid": kid, "typ": "at+jwt"}, claims),
		"no kid":                signRogue(map[string]any{"typ": "at+jwt"}, claims),
		"wrong typ":             signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "JWT"}, claims),
		"wrong issuer":          signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, with("iss", "https://evil.example")),
		"wrong audience":        signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, with("aud", "https://evil.example/fhir")),
		"no exp":                signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, with("exp", nil)),
		"not yet valid":         signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, with("nbf", clk.Now().Add(time.Hour).Unix())),
		"unconfigured client":   signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, with("sub", "nobody")),
		"agency mismatch":       signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, with("agency", "court")),
		"garbage":               "not.a.token",
		"too long":              strings.Repeat("a", maxTokenLen+1),
	}
	// The re-signed control token proves the helpers themselves make valid tokens.
	control := signReal(jwt.SigningMethodES256, sk.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, claims)
	if _, err := a.Verify(t.Context(), control); err != nil {
		t.Fatalf("control token: %v", err)
	}
	// reasons are what each error must say (Error, not the description), so that each case
	// fails the check it is about.
	reasons := map[string]string{
		"tampered scope": "verification error", "tampered client": "verification error",
		"signature cut": "verification error", "signature of another": "verification error",
		"alg none": "signing method none is invalid", "HS256 with public key": "signing method HS256 is invalid",
		"unknown kid": "unknown or retired", "future kid": "unknown or retired", "no kid": "unknown or retired",
		"known kid, other key": "verification error", "wrong typ": "typ is not at+jwt",
		"wrong issuer": "invalid issuer", "wrong audience": "invalid audience", "no exp": "exp claim is required",
		"not yet valid": "not valid yet", "unconfigured client": "no longer configured",
		"agency mismatch": "disagree with the configuration", "garbage": "malformed", "too long": "too long",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if p, err := a.Verify(t.Context(), tok); !isInvalid(err) {
				t.Errorf("got %+v, %v; want invalid_token", p, err)
			} else if !strings.Contains(err.Error(), reasons[name]) {
				t.Errorf("error %q, want the reason %q", err, reasons[name])
			}
		})
	}
	_, err = a.Verify(t.Context(), "")
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "" || te.Challenge() != `Bearer realm="hjbroker"` {
		t.Errorf("empty token: %v", err)
	}
}

func TestTokenErrorChallenge(t *testing.T) {
	e := invalidToken("the access token has expired", errors.New("detail"))
	want := `Bearer realm="hjbroker", error="invalid_token", error_description="the access token has expired"`
	if e.Challenge() != want {
		t.Errorf("got %s", e.Challenge())
	}
	if !strings.Contains(e.Error(), "detail") || strings.Contains(e.Challenge(), "detail") {
		t.Errorf("detail must be in Error only: %q / %q", e.Error(), e.Challenge())
	}
}

func TestKeyRotation(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			clk := newClock()
			rot := func(o *Options) { o.KeyRotation = time.Minute }
			a := newAuth(t, openDB(t, b), clk, rot)
			node2 := newAuth(t, openDB(t, b), clk, rot)
			old, err := a.MintFor(t.Context(), "rsa-client")
			if err != nil {
				t.Fatal(err)
			}
			clk.Add(2 * time.Minute)
			// node2 signs first in the new period; node1 has not seen that key yet.
			fresh, err := node2.MintFor(t.Context(), "rsa-client")
			if err != nil {
				t.Fatal(err)
			}
			if kidOf(t, fresh.AccessToken) == kidOf(t, old.AccessToken) {
				t.Fatal("key did not rotate")
			}
			for name, tok := range map[string]string{"old": old.AccessToken, "fresh": fresh.AccessToken} {
				for node, n := range map[string]*Authenticator{"node1": a, "node2": node2} {
					if _, err := n.Verify(t.Context(), tok); err != nil {
						t.Errorf("%s token on %s: %v", name, node, err)
					}
				}
			}
			jwks := publishedKids(t, a)
			if !slices.Contains(jwks, kidOf(t, old.AccessToken)) || !slices.Contains(jwks, kidOf(t, fresh.AccessToken)) {
				t.Errorf("JWKS kids %v", jwks)
			}
			// Once the old key's last token has expired, the key is retired: gone from the
			// JWKS, and the purge deletes its row.
			clk.Add(5 * time.Minute)
			if slices.Contains(publishedKids(t, a), kidOf(t, old.AccessToken)) {
				t.Error("retired key still published")
			}
			if _, err := node2.Verify(t.Context(), old.AccessToken); !isInvalid(err) {
				t.Errorf("old token after expiry: %v", err)
			}
			if err := purgeExpired(t.Context(), a.db, clk.Now().Unix()); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := a.db.DB().QueryRowContext(t.Context(), a.db.Rebind(`SELECT COUNT(*) FROM auth_signing_keys WHERE kid = ?`),
				kidOf(t, old.AccessToken)).Scan(&n); err != nil || n != 0 {
				t.Errorf("retired key rows %d, %v", n, err)
			}
		})
	}
}

func publishedKids(t *testing.T, a *Authenticator) []string {
	t.Helper()
	keys, err := a.keys.published(t.Context(), a.now())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.kid)
	}
	return out
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := parsed.Header["kid"].(string)
	return kid
}

func isInvalid(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "invalid_token"
}
