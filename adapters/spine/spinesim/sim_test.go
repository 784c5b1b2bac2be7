package spinesim

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

func newSim(t *testing.T) (*Server, *httptest.Server, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Clients: []Client{{ID: "app", KeyID: "k1", Key: &k.PublicKey}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts, k
}

func assertion(t *testing.T, k *rsa.PrivateKey, method jwt.SigningMethod, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func postToken(t *testing.T, ts *httptest.Server, a string) (int, map[string]string) {
	t.Helper()
	resp, err := http.PostForm(ts.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck // checked by the callers' expectations
	return resp.StatusCode, out
}

func TestTokenEndpoint(t *testing.T) {
	_, ts, k := newSim(t)
	aud := ts.URL + "/oauth2/token"
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "app", "sub": "app", "aud": aud, "jti": uuid.NewString(), "exp": now.Add(4 * time.Minute).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims { c := good(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := good(); delete(c, k); return c }
	reused := good()
	if st, out := postToken(t, ts, assertion(t, k, jwt.SigningMethodRS512, "k1", reused)); st != 200 || out["access_token"] == "" || out["token_type"] != "Bearer" {
		t.Fatalf("a good assertion: %d %v", st, out)
	}
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		kid    string
		claims jwt.MapClaims
	}{
		{"reused jti", jwt.SigningMethodRS512, "k1", reused},
		{"RS256", jwt.SigningMethodRS256, "k1", good()},
		{"unknown kid", jwt.SigningMethodRS512, "k2", good()},
		{"wrong audience", jwt.SigningMethodRS512, "k1", with("aud", "https://elsewhere/oauth2/token")},
		{"iss is not the client", jwt.SigningMethodRS512, "k1", with("iss", "other")},
		{"sub is not the client", jwt.SigningMethodRS512, "k1", with("sub", "other")},
		{"exp too far ahead", jwt.SigningMethodRS512, "k1", with("exp", now.Add(30*time.Minute).Unix())},
		{"expired", jwt.SigningMethodRS512, "k1", with("exp", now.Add(-time.Minute).Unix())},
		{"no exp", jwt.SigningMethodRS512, "k1", without("exp")},
		{"no jti", jwt.SigningMethodRS512, "k1", without("jti")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := postToken(t, ts, assertion(t, k, tc.method, tc.kid, tc.claims))
			if st != http.StatusUnauthorized || out["error"] != "invalid_client" || out["access_token"] != "" {
				t.Errorf("%d %v, want 401 invalid_client", st, out)
			}
		})
	}
	if st, _ := postToken(t, ts, "not.a.jwt"); st != http.StatusUnauthorized {
		t.Errorf("garbage assertion: %d", st)
	}
}

func TestAPIChecks(t *testing.T) {
	s, ts, k := newSim(t)
	_, out := postToken(t, ts, assertion(t, k, jwt.SigningMethodRS512, "k1", jwt.MapClaims{"iss": "app", "sub": "app",
		"aud": ts.URL + "/oauth2/token", "jti": uuid.NewString(), "exp": time.Now().Add(time.Minute).Unix()}))
	tok := out["access_token"]
	get := func(path, token, requestID string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if requestID != "" {
			req.Header.Set("X-Request-ID", requestID)
		}
		req.Header.Set("X-Correlation-ID", "c-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String(), resp.Header
	}
	id := uuid.NewString()
	pds := "/personal-demographics/FHIR/R4/Patient/"
	for _, tc := range []struct {
		name, path, token, rid string
		status                 int
		contains               string
	}{
		{"no token", pds + NormalPatient, "", id, 401, "ACCESS_DENIED"},
		{"unknown token", pds + NormalPatient, "abc", id, 401, "ACCESS_DENIED"},
		{"no X-Request-ID", pds + NormalPatient, tok, "", 400, "MISSING_VALUE"},
		{"X-Request-ID not a UUID", pds + NormalPatient, tok, "123", 400, "INVALID_VALUE"},
		{"read", pds + NormalPatient, tok, id, 200, `"generalPractitioner"`},
		{"superseded", pds + SupersededNumber, tok, id, 200, `"id":"` + ReplacementNumber + `"`},
		{"invalid number", pds + InvalidNumber, tok, id, 400, "INVALID_RESOURCE_ID"},
		{"unknown", pds + UnknownPatient, tok, id, 404, "RESOURCE_NOT_FOUND"},
		{"garbage", pds + GarbagePDSPatient, tok, id, 200, `{"fam`},
		{"search needs one result", "/personal-demographics/FHIR/R4/Patient?family=Smith&birthdate=1985-10-22", tok, id, 403, "INVALID_VALUE"},
		{"SCR needs the patient system", "/summary-care-record/FHIR/R4/DocumentReference?patient=" + NormalPatient, tok, id, 400, `"text"`},
		{"SCR no", "/summary-care-record/FHIR/R4/DocumentReference?patient=https://fhir.nhs.uk/Id/nhs-number|" + OptedOutPatient, tok, id, 200, `"code":"No"`},
		{"SCR restricted", "/summary-care-record/FHIR/R4/DocumentReference?patient=https://fhir.nhs.uk/Id/nhs-number|" + RestrictedPatient, tok, id, 200, `"total":0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body, h := get(tc.path, tc.token, tc.rid)
			if st != tc.status || !strings.Contains(body, tc.contains) {
				t.Errorf("%d %s, want %d containing %s", st, body, tc.status, tc.contains)
			}
			if tc.rid != "" && h.Get("X-Request-ID") != tc.rid || h.Get("X-Correlation-ID") != "c-1" {
				t.Errorf("tracing headers not mirrored: %v", h)
			}
		})
	}
	if rs := s.Requests(); len(rs) == 0 || rs[len(rs)-1].ClientID != "app" {
		t.Errorf("requests not recorded with their client: %+v", rs)
	}
}

func TestPatientsAreConsistent(t *testing.T) {
	for nhs, p := range testPatients() {
		if p.supersededBy != "" {
			continue
		}
		res := p.pdsPatient()
		if res["id"] != nhs {
			t.Errorf("%s: id %v", nhs, res["id"])
		}
		if p.restricted && (res["address"] != nil || res["generalPractitioner"] != nil || res["telecom"] != nil) {
			t.Errorf("%s: a restricted record carries location data", nhs)
		}
	}
}
