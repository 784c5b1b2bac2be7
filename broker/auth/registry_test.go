package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/config"
)

func TestRegistryDemo(t *testing.T) {
	cfg, err := config.Demo()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"custody-hcp", "ld-team", "court", "probation", "gp", "operator"} {
		c, ok := reg.Client(id)
		if !ok {
			t.Fatalf("demo client %s missing", id)
		}
		if c.HasKeys() {
			t.Errorf("%s has keys in the demo", id)
		}
	}
	op, _ := reg.Client("operator")
	if op.AgencyKind != config.KindBroker || !op.Scopes.Allows("AuditEvent", 'd') || op.Scopes.String() != "system/*.cruds" {
		t.Errorf("operator %+v", op)
	}
	court, _ := reg.Client("court")
	if court.Scopes.Allows("Observation", 'r') || !court.Scopes.Allows("Composition", 's') {
		t.Errorf("court scopes %s", court.Scopes)
	}
}

func TestRegistryKeys(t *testing.T) {
	k := keysOnce()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec := ecJWK("e", &k.ec.PublicKey)
	offCurve := ecJWK("e", &k.ec.PublicKey)
	offCurve["y"] = offCurve["x"]
	withD := rsaJWK("r", &k.rsa.PublicKey)
	withD["d"] = "AQAB"
	p256JWK := ecJWK("p", &p256.PublicKey)
	p256JWK["crv"], p256JWK["alg"] = "P-256", nil
	set := func(m map[string]any, kv ...any) map[string]any {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	cases := []struct {
		name string
		key  map[string]any
		err  string // "" means accepted
	}{
		{"RSA", rsaJWK("r", &k.rsa.PublicKey), ""},
		{"RSA with RS512", set(rsaJWK("r", &k.rsa.PublicKey), "alg", "RS512", "use", "sig"), ""},
		{"EC P-384", ec, ""},
		{"private key", withD, "private key"},
		{"RSA 1024", rsaJWK("r", &small.PublicKey), "at least 2048"},
		{"RSA with RS256", set(rsaJWK("r", &k.rsa.PublicKey), "alg", "RS256"), "RS384 or RS512"},
		{"RSA for encryption", set(rsaJWK("r", &k.rsa.PublicKey), "use", "enc"), "want sig"},
		{"EC P-256", p256JWK, "needs P-384"},
		{"EC off the curve", offCurve, "EC point"},
		{"EC with ES256", set(ec, "alg", "ES256"), "must be ES384"},
		{"oct", map[string]any{"kty": "oct", "k": "c2VjcmV0"}, "want RSA or EC"},
		{"bad base64", set(rsaJWK("r", &k.rsa.PublicKey), "n", "!!"), "base64url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.key {
				if v == nil {
					delete(tc.key, k)
				}
			}
			cfg := &config.Config{Agencies: []config.Agency{{ID: "a", Kind: config.KindGP, Clients: []config.Client{
				{ID: "c", Scopes: []string{"system/Patient.rs"}, JWKS: jwks(tc.key)}}}}}
			reg, err := NewRegistry(cfg)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c, _ := reg.Client("c"); !c.HasKeys() {
					t.Error("key not registered")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestRegistryJWKSFileAndScopes(t *testing.T) {
	dir := t.TempDir()
	k := keysOnce()
	raw, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("r", &k.rsa.PublicKey), ecJWK("e", &k.ec.PublicKey)}})
	if err := os.WriteFile(filepath.Join(dir, "court.jwks"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := `version: 1
agencies:
  - id: court
    ods: XCRT01
    name: Court
    kind: court
    clients:
      - id: court
        scopes: [system/Patient.rs]
        jwksFile: court.jwks
`
	cfgPath := filepath.Join(dir, "hjb.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := reg.Client("court"); len(c.keys) != 2 {
		t.Errorf("keys from the file: %d", len(c.keys))
	}

	cfg.Agencies[0].Clients[0].JWKSFile = "missing.jwks"
	if _, err := NewRegistry(cfg); err == nil || !strings.Contains(err.Error(), "jwksFile") {
		t.Errorf("missing file: %v", err)
	}
	cfg.Agencies[0].Clients[0].JWKSFile = ""
	for _, bad := range []string{"patient/Patient.rs", "openid", "system/Patient.sr"} {
		cfg.Agencies[0].Clients[0].Scopes = []string{bad}
		if _, err := NewRegistry(cfg); err == nil {
			t.Errorf("scope %s accepted", bad)
		}
	}
}
