package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AlgES256 signs the broker's access tokens: ECDSA P-256 keys are small and fast to sign
// with, and every JOSE library verifies them.
const AlgES256 = "ES256"

// reloadGap bounds how often an unknown kid makes a node re-read the keys table, so that
// tokens with invented kids cannot flood the database.
const reloadGap = time.Second

// signingKey is one of the broker's own keys.
type signingKey struct {
	kid         string
	priv        *ecdsa.PrivateKey
	signUntil   time.Time
	verifyUntil time.Time
}

// keyring hands out the current signing key and finds verification keys. Each rotation
// period has one key whose kid is derived from the period, so nodes that rotate at the same
// time insert the same row and converge on one key.
type keyring struct {
	db       Database
	rotation time.Duration
	// keep is how long after its last use for signing a key still verifies.
	keep time.Duration

	mu       sync.Mutex
	keys     map[string]*signingKey
	lastLoad time.Time
}

func newKeyring(db Database, rotation, keep time.Duration) *keyring {
	return &keyring{db: db, rotation: rotation, keep: keep, keys: map[string]*signingKey{}}
}

// kidFor names the key of the rotation period containing t.
func (k *keyring) kidFor(t time.Time) (string, time.Time, time.Time) {
	secs := int64(k.rotation / time.Second)
	start := t.Unix() / secs * secs
	return "es256-" + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(secs, 10),
		time.Unix(start, 0), time.Unix(start+secs, 0)
}

// current returns the key to sign with at now, creating the period's key if no node has.
func (k *keyring) current(ctx context.Context, now time.Time) (*signingKey, error) {
	kid, start, end := k.kidFor(now)
	k.mu.Lock()
	sk := k.keys[kid]
	k.mu.Unlock()
	if sk != nil {
		return sk, nil
	}
	sk, err := k.load(ctx, kid)
	if err != nil {
		return nil, err
	}
	if sk == nil {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encoding signing key: %w", err)
		}
		// Another node may insert the same kid first; then its key is the one used.
		if _, err := k.db.DB().ExecContext(ctx, k.db.Rebind(`INSERT INTO auth_signing_keys
			(kid, alg, private_key, created, sign_until, verify_until) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (kid) DO NOTHING`),
			kid, AlgES256, base64.StdEncoding.EncodeToString(der), start.Unix(), end.Unix(), end.Add(k.keep).Unix()); err != nil {
			return nil, fmt.Errorf("storing signing key: %w", err)
		}
		if sk, err = k.load(ctx, kid); err != nil {
			return nil, err
		}
		if sk == nil {
			return nil, errors.New("signing key vanished after insert")
		}
	}
	k.mu.Lock()
	k.keys[kid] = sk
	k.mu.Unlock()
	return sk, nil
}

func (k *keyring) load(ctx context.Context, kid string) (*signingKey, error) {
	row := k.db.DB().QueryRowContext(ctx, k.db.Rebind(`SELECT kid, alg, private_key, sign_until, verify_until
		FROM auth_signing_keys WHERE kid = ?`), kid)
	sk, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return sk, err
}

func scanKey(row interface{ Scan(...any) error }) (*signingKey, error) {
	var kid, alg, enc string
	var signUntil, verifyUntil int64
	if err := row.Scan(&kid, &alg, &enc, &signUntil, &verifyUntil); err != nil {
		return nil, err
	}
	if alg != AlgES256 {
		return nil, fmt.Errorf("signing key %s: algorithm %q is not %s", kid, alg, AlgES256)
	}
	der, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	priv, ok := pk.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("signing key %s is not a P-256 key", kid)
	}
	return &signingKey{kid: kid, priv: priv, signUntil: time.Unix(signUntil, 0), verifyUntil: time.Unix(verifyUntil, 0)}, nil
}

// verifier returns the public key for kid if it may still verify at now.
func (k *keyring) verifier(ctx context.Context, kid string, now time.Time) (*ecdsa.PublicKey, error) {
	k.mu.Lock()
	sk := k.keys[kid]
	stale := now.Sub(k.lastLoad) >= reloadGap
	k.mu.Unlock()
	if sk == nil && plausibleKid(kid, now) {
		if stale {
			if err := k.reload(ctx, now); err != nil {
				return nil, err
			}
		} else if cur, _, _ := k.kidFor(now); cur == kid {
			// The period has just turned and another node signed first.
			if _, err := k.current(ctx, now); err != nil {
				return nil, err
			}
		}
		k.mu.Lock()
		sk = k.keys[kid]
		k.mu.Unlock()
	}
	if sk == nil || !now.Before(sk.verifyUntil) {
		return nil, errUnknownKey
	}
	return &sk.priv.PublicKey, nil
}

var errUnknownKey = errors.New("unknown or retired signing key")

// plausibleKid rejects kids that no node could have made, before any database access.
func plausibleKid(kid string, now time.Time) bool {
	rest, ok := strings.CutPrefix(kid, "es256-")
	if !ok {
		return false
	}
	start, secs, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	s, err1 := strconv.ParseInt(start, 10, 64)
	p, err2 := strconv.ParseInt(secs, 10, 64)
	return err1 == nil && err2 == nil && p > 0 && s <= now.Unix()
}

// reload reads every key that still verifies, replacing the cache.
func (k *keyring) reload(ctx context.Context, now time.Time) error {
	rows, err := k.db.DB().QueryContext(ctx, k.db.Rebind(`SELECT kid, alg, private_key, sign_until, verify_until
		FROM auth_signing_keys WHERE verify_until > ?`), now.Unix())
	if err != nil {
		return fmt.Errorf("reading signing keys: %w", err)
	}
	defer rows.Close()
	keys := map[string]*signingKey{}
	for rows.Next() {
		sk, err := scanKey(rows)
		if err != nil {
			return err
		}
		keys[sk.kid] = sk
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading signing keys: %w", err)
	}
	k.mu.Lock()
	k.keys = keys
	k.lastLoad = now
	k.mu.Unlock()
	return nil
}

// published returns the keys that still verify, newest first, for the JWKS document.
func (k *keyring) published(ctx context.Context, now time.Time) ([]*signingKey, error) {
	if _, err := k.current(ctx, now); err != nil {
		return nil, err
	}
	if err := k.reload(ctx, now); err != nil {
		return nil, err
	}
	k.mu.Lock()
	var out []*signingKey
	for _, sk := range k.keys {
		out = append(out, sk)
	}
	k.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].signUntil.After(out[j].signUntil) })
	return out, nil
}
