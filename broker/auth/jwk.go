package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Client assertion algorithms the token endpoint accepts (SMART Backend Services).
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
	AlgRS512 = "RS512"
)

// assertionAlgs are the only signature algorithms accepted on client assertions.
var assertionAlgs = []string{AlgRS384, AlgES384, AlgRS512}

// minRSABits is the smallest RSA modulus accepted for a client key.
const minRSABits = 2048

// jwk is the subset of RFC 7517 fields the broker reads or writes.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
	// D is present only in private keys, which a client registration must never hold.
	D string `json:"d,omitempty"`
}

// clientKey is a client's registered public key.
type clientKey struct {
	kid string
	alg string // empty: any algorithm matching the key type
	key crypto.PublicKey
}

// allows reports whether the key may verify a signature made with alg.
func (k clientKey) allows(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch k.key.(type) {
	case *rsa.PublicKey:
		return alg == AlgRS384 || alg == AlgRS512
	case *ecdsa.PublicKey:
		return alg == AlgES384
	}
	return false
}

// parseJWKS reads a JSON Web Key Set of client public keys.
func parseJWKS(raw []byte) ([]clientKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("reading JWKS: %w", err)
	}
	var out []clientKey
	for i, rk := range set.Keys {
		var k jwk
		if err := json.Unmarshal(rk, &k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		ck, err := k.public()
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
		}
		out = append(out, ck)
	}
	return out, nil
}

func (k jwk) public() (clientKey, error) {
	if k.D != "" {
		return clientKey{}, errors.New("holds a private key; register only the public key")
	}
	if k.Use != "" && k.Use != "sig" {
		return clientKey{}, fmt.Errorf("use %q: want sig", k.Use)
	}
	ck := clientKey{kid: k.Kid, alg: k.Alg}
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != AlgRS384 && k.Alg != AlgRS512 {
			return clientKey{}, fmt.Errorf("alg %q: RSA keys must be RS384 or RS512", k.Alg)
		}
		n, err := b64Int(k.N)
		if err != nil {
			return clientKey{}, fmt.Errorf("n: %w", err)
		}
		e, err := b64Int(k.E)
		if err != nil {
			return clientKey{}, fmt.Errorf("e: %w", err)
		}
		if n.BitLen() < minRSABits {
			return clientKey{}, fmt.Errorf("RSA modulus of %d bits: want at least %d", n.BitLen(), minRSABits)
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return clientKey{}, errors.New("RSA exponent out of range")
		}
		ck.key = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		if k.Alg != "" && k.Alg != AlgES384 {
			return clientKey{}, fmt.Errorf("alg %q: EC keys must be ES384", k.Alg)
		}
		// ES384 is defined on P-384 only; a key on another curve could never verify.
		if k.Crv != "P-384" {
			return clientKey{}, fmt.Errorf("crv %q: ES384 needs P-384", k.Crv)
		}
		pub, err := ecPublic(elliptic.P384(), k.X, k.Y)
		if err != nil {
			return clientKey{}, err
		}
		ck.key = pub
	default:
		return clientKey{}, fmt.Errorf("kty %q: want RSA or EC", k.Kty)
	}
	return ck, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("want a non-empty base64url value")
	}
	return new(big.Int).SetBytes(b), nil
}

// ecPublic decodes and checks an EC point (it must lie on the curve).
func ecPublic(curve elliptic.Curve, xs, ys string) (*ecdsa.PublicKey, error) {
	size := (curve.Params().BitSize + 7) / 8
	x, err1 := base64.RawURLEncoding.DecodeString(xs)
	y, err2 := base64.RawURLEncoding.DecodeString(ys)
	if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
		return nil, fmt.Errorf("x and y must be base64url values of %d bytes", size)
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("EC point: %w", err)
	}
	return pub, nil
}

// publicJWK describes one of the broker's own ES256 signing keys.
func publicJWK(kid string, pub *ecdsa.PublicKey) (jwk, error) {
	b, err := pub.Bytes()
	if err != nil {
		return jwk{}, err
	}
	size := (len(b) - 1) / 2
	return jwk{
		Kty: "EC", Kid: kid, Alg: AlgES256, Use: "sig", Crv: "P-256",
		X: base64.RawURLEncoding.EncodeToString(b[1 : 1+size]),
		Y: base64.RawURLEncoding.EncodeToString(b[1+size:]),
	}, nil
}
