package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// resign replaces a token's signature with one made by key over its (possibly edited)
// header and claims.
func resign(t *testing.T, header, claims map[string]any, key *ecdsa.PrivateKey) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	signing := b64url(h) + "." + b64url(c)
	sig, err := jwt.SigningMethodES256.Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64url(sig)
}

// tokenParts decodes a compact JWT's header and claims.
func tokenParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWT: %q", tok)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func TestSecurityBearerTokens(t *testing.T) {
	t.Parallel()
	foreign, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000017", "Bearer"))
		good := s.Token("custody-hcp")
		header, claims := tokenParts(t, good)
		parts := strings.Split(good, ".")

		// The genuine token works, so the refusals below are about the token alone.
		secWant(t, s.Do("GET", "Patient/"+pid, nil, "Authorization: Bearer "+good), 200, "genuine token")

		widened := map[string]any{}
		for k, v := range claims {
			widened[k] = v
		}
		widened["scope"] = "system/*.cruds"
		wc, _ := json.Marshal(widened)
		expired := map[string]any{}
		for k, v := range claims {
			expired[k] = v
		}
		expired["exp"] = time.Now().Add(-time.Hour).Unix()
		expired["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		expired["nbf"] = time.Now().Add(-2 * time.Hour).Unix()
		noneHeader, _ := json.Marshal(map[string]any{"alg": "none", "typ": "at+jwt", "kid": header["kid"]})
		otherAud := map[string]any{}
		for k, v := range claims {
			otherAud[k] = v
		}
		otherAud["aud"] = "https://elsewhere.example/fhir"

		cases := []struct {
			name, auth string
			challenge  string // a fragment WWW-Authenticate must hold
		}{
			{"no token", "", `Bearer realm="hjbroker"`},
			{"empty bearer", "Bearer ", `realm="hjbroker"`},
			{"basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("court:secret")), "invalid_request"},
			{"garbage", "Bearer not-a-token", "invalid_token"},
			{"malformed segments", "Bearer a.b", "invalid_token"},
			{"tampered claims", "Bearer " + parts[0] + "." + b64url(wc) + "." + parts[2], "invalid_token"},
			{"truncated signature", "Bearer " + good[:len(good)-6], "invalid_token"},
			{"foreign key, same kid", "Bearer " + resign(t, header, claims, foreign), "invalid_token"},
			{"foreign key, expired", "Bearer " + resign(t, header, expired, foreign), "invalid_token"},
			{"foreign key, other audience", "Bearer " + resign(t, header, otherAud, foreign), "invalid_token"},
			{"alg none", "Bearer " + b64url(noneHeader) + "." + parts[1] + ".", "invalid_token"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				h := "Authorization: " + c.auth
				r := s.Do("GET", "Patient/"+pid, nil, h)
				wantOutcome(t, r, http.StatusUnauthorized, "")
				if ch := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") || !strings.Contains(ch, c.challenge) {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge with %q", ch, c.challenge)
				}
				if strings.Contains(string(r.Raw), pid) {
					t.Errorf("the 401 body says too much: %s", r.Raw)
				}
				// Searches and writes are refused the same way.
				wantOutcome(t, s.Do("GET", "Patient?_id="+pid, nil, h), http.StatusUnauthorized, "")
				wantOutcome(t, s.Do("POST", "Patient", secPatient("9000000025", "Intruder"), h), http.StatusUnauthorized, "")
			})
		}
		if n := s.Do("GET", "Patient?identifier="+url.QueryEscape(secNHSSystem+"|9000000025"), nil).Want(t, 200).Total(); n != 0 {
			t.Errorf("an unauthenticated create stored %d Patients", n)
		}

		// Discovery needs no token.
		meta := secWant(t, s.Do("GET", "metadata", nil, "Authorization:"), 200, "metadata without a token")
		if meta.Str("resourceType") != "CapabilityStatement" {
			t.Errorf("metadata: %s", meta.Raw)
		}
		smart := secWant(t, s.Do("GET", ".well-known/smart-configuration", nil, "Authorization:"), 200, "smart-configuration without a token")
		if te, _ := smart.JSON["token_endpoint"].(string); !strings.HasSuffix(te, "/oauth2/token") {
			t.Errorf("smart-configuration token_endpoint %q: %s", te, smart.Raw)
		}
		jwks := secWant(t, s.Do("GET", s.URL+"/oauth2/jwks", nil, "Authorization:"), 200, "JWKS")
		keys, _ := jwks.JSON["keys"].([]any)
		found := false
		for _, k := range keys {
			found = found || apptest.Get(k, "kid") == header["kid"]
		}
		if !found {
			t.Errorf("JWKS does not publish the signing key %v: %s", header["kid"], jwks.Raw)
		}
	})
}

// assertion is a client assertion's content.
type assertion struct {
	alg, kid, iss, aud, jti string
	exp, iat                time.Time
	key                     any // *rsa.PrivateKey or *ecdsa.PrivateKey; nil for alg none
}

func (a assertion) sign(t *testing.T) string {
	t.Helper()
	claims := jwt.MapClaims{"iss": a.iss, "sub": a.iss, "aud": a.aud, "jti": a.jti, "exp": a.exp.Unix(), "iat": a.iat.Unix()}
	if a.alg == "none" {
		h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT", "kid": a.kid})
		c, _ := json.Marshal(claims)
		return b64url(h) + "." + b64url(c) + "."
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(a.alg), claims)
	tok.Header["kid"] = a.kid
	signed, err := tok.SignedString(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// tokenRequest posts a client_credentials request with the assertion.
func tokenRequest(t *testing.T, s *apptest.Server, assertion string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	for k, v := range extra {
		form[k] = v
	}
	resp, err := http.Post(s.URL+"/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token response is not JSON: %v", err)
	}
	return resp.StatusCode, body
}

func rsaPublicJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS384", "use": "sig", "n": b64url(pub.N.Bytes()), "e": b64url(big.NewInt(int64(pub.E)).Bytes())}
}

func ecPublicJWK(t *testing.T, kid string, pub *ecdsa.PublicKey) map[string]any {
	b, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	n := (len(b) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-384", "alg": "ES384", "x": b64url(b[1 : 1+n]), "y": b64url(b[1+n:])}
}

func TestSecurityTokenEndpoint(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSet, _ := json.Marshal(map[string]any{"keys": []any{ecPublicJWK(t, "ld-ec-1", &ecKey.PublicKey)}})
	path := secConfigFile(t, func(cfg map[string]any) {
		// An inline JWKS for a custody system and a JWKS file for an L&D system.
		secAddClient(t, cfg, "custody-hcp", map[string]any{
			"id": "custody-emr", "purposes": []any{"TREAT"},
			"scopes": []any{"system/Patient.rs", "system/Observation.cruds"},
			"jwks":   map[string]any{"keys": []any{rsaPublicJWK("emr-rsa-1", &rsaKey.PublicKey)}},
		})
		secAddClient(t, cfg, "ld-team", map[string]any{
			"id": "ld-case", "purposes": []any{"TREAT"},
			"scopes":   []any{"system/Patient.rs"},
			"jwksFile": "ld-case.jwks.json",
		})
	}, map[string][]byte{"ld-case.jwks.json": ecSet})

	secForEach(t, app.Config{ConfigFile: path}, func(t *testing.T, s *apptest.Server) {
		aud := s.URL + "/oauth2/token"
		now := time.Now()
		seq := 0
		fresh := func(alg, kid, iss string, key any) assertion {
			seq++
			return assertion{alg: alg, kid: kid, iss: iss, aud: aud, jti: "jti-" + itoa(seq) + "-" + b64url([]byte(now.String())),
				exp: now.Add(2 * time.Minute), iat: now, key: key}
		}
		pid := secCreateAs(t, s, "custody-hcp", "Patient", secPatient("9000000033", "Token"))

		for _, c := range []struct {
			name string
			a    assertion
		}{
			{"RS384 inline JWKS", fresh("RS384", "emr-rsa-1", "custody-emr", rsaKey)},
			{"ES384 JWKS file", fresh("ES384", "ld-ec-1", "ld-case", ecKey)},
		} {
			status, body := tokenRequest(t, s, c.a.sign(t), nil)
			if status != 200 {
				t.Fatalf("%s: token endpoint %d %v", c.name, status, body)
			}
			tok, _ := body["access_token"].(string)
			if body["token_type"] != "Bearer" || tok == "" {
				t.Fatalf("%s: token response %v", c.name, body)
			}
			if exp, _ := body["expires_in"].(float64); exp <= 0 || exp > 300 {
				t.Errorf("%s: expires_in %v, want at most 5 minutes", c.name, body["expires_in"])
			}
			r := s.Do("GET", "Patient/"+pid, nil, "Authorization: Bearer "+tok)
			secWant(t, r, 200, c.name+": reading with the issued token")
			if c.a.iss == "ld-case" {
				// Its scopes are only Patient.rs: the token carries no more.
				wantOutcome(t, s.Do("GET", "Observation?subject=Patient/"+pid, nil, "Authorization: Bearer "+tok), 403, "")
			}
		}

		// A narrower scope request is honoured; a wider one is not granted.
		status, body := tokenRequest(t, s, fresh("RS384", "emr-rsa-1", "custody-emr", rsaKey).sign(t), url.Values{"scope": {"system/Patient.rs"}})
		if status != 200 || body["scope"] != "system/Patient.rs" {
			t.Fatalf("narrowed scope: %d %v", status, body)
		}
		narrow, _ := body["access_token"].(string)
		wantOutcome(t, s.Do("POST", "Observation", secObservation(pid), "Authorization: Bearer "+narrow), 403, "")

		replayed := fresh("ES384", "ld-ec-1", "ld-case", ecKey).sign(t)
		if status, body := tokenRequest(t, s, replayed, nil); status != 200 {
			t.Fatalf("first use of an assertion: %d %v", status, body)
		}
		wrongAud := fresh("RS384", "emr-rsa-1", "custody-emr", rsaKey)
		wrongAud.aud = "https://other-broker.example/oauth2/token"
		expired := fresh("RS384", "emr-rsa-1", "custody-emr", rsaKey)
		expired.iat, expired.exp = now.Add(-10*time.Minute), now.Add(-5*time.Minute)
		tooLong := fresh("RS384", "emr-rsa-1", "custody-emr", rsaKey)
		tooLong.exp = now.Add(time.Hour)
		none := fresh("none", "emr-rsa-1", "custody-emr", nil)
		stranger := fresh("ES384", "ld-ec-1", "ld-case", strangerKey)
		rs256 := fresh("RS256", "emr-rsa-1", "custody-emr", rsaKey)
		unknown := fresh("RS384", "emr-rsa-1", "no-such-client", rsaKey)
		other := fresh("RS384", "emr-rsa-1", "custody-emr", rsaKey)
		other.iss = "ld-case" // custody's key claiming to be the L&D system
		for _, c := range []struct {
			name, assertion string
		}{
			{"replayed jti", replayed},
			{"wrong audience", wrongAud.sign(t)},
			{"expired", expired.sign(t)},
			{"exp more than 5 minutes ahead", tooLong.sign(t)},
			{"alg none", none.sign(t)},
			{"signed by an unregistered key", stranger.sign(t)},
			{"RS256", rs256.sign(t)},
			{"unknown client", unknown.sign(t)},
			{"another client's key", other.sign(t)},
			{"garbage", "not.a.jwt"},
		} {
			status, body := tokenRequest(t, s, c.assertion, nil)
			if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Errorf("%s: %d %v, want 401 invalid_client", c.name, status, body)
			}
			if _, ok := body["access_token"]; ok {
				t.Errorf("%s: a token was issued", c.name)
			}
		}
		// Clients without registered keys (the demo ones) cannot use the endpoint at all.
		demo := fresh("RS384", "emr-rsa-1", "custody-hcp", rsaKey)
		if status, body := tokenRequest(t, s, demo.sign(t), nil); status != http.StatusUnauthorized {
			t.Errorf("keyless client: %d %v", status, body)
		}
	})
}
