// Package auth authenticates API clients the SMART Backend Services way. A client proves who
// it is with a JWT signed by its own private key (private_key_jwt, RS384, ES384 or RS512) at
// the token endpoint and receives a short-lived access token: a JWT signed by the broker with
// ES256 keys that rotate and are shared, with the replay table, by every node on one
// database. Verify turns such a token back into a Principal for authorisation.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/config"
)

// Paths of the endpoints, relative to the broker's root.
const (
	TokenPath       = "/oauth2/token"
	JWKSPath        = "/oauth2/jwks"
	SmartConfigPath = "/fhir/.well-known/smart-configuration"
)

// Defaults.
const (
	DefaultTokenTTL    = 5 * time.Minute
	DefaultKeyRotation = 24 * time.Hour
	// MaxAssertionLifetime is how far ahead a client assertion's exp may be.
	MaxAssertionLifetime = 5 * time.Minute
	// Leeway absorbs clock differences between clients, nodes and the database.
	Leeway = 15 * time.Second
)

// Options configure an Authenticator. Zero values take the documented defaults.
type Options struct {
	// Config supplies the clients (required).
	Config *config.Config
	// DB keeps replayed assertion ids and signing keys (required; *store.SQL).
	DB Database
	// PublicBase is the public FHIR base URL ("https://hjb.example/fhir", HJB_PUBLIC_BASE).
	// Access tokens carry it as aud and its root (without /fhir) as iss, and client
	// assertions must name root+/oauth2/token as aud. When empty, tokens carry the logical
	// names urn:hjbroker and urn:hjbroker:fhir, and assertions must name the token URL the
	// request arrived at, which trusts the Host header: set it in production.
	PublicBase string
	// TokenURL overrides the token endpoint URL that client assertions must name as aud.
	TokenURL string
	// TokenTTL is the access token lifetime (default 5 minutes, HJB_TOKEN_TTL).
	TokenTTL time.Duration
	// KeyRotation is how long a signing key signs before the next takes over (default 24
	// hours, HJB_KEY_ROTATION; whole seconds, at least a minute).
	KeyRotation time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger records why an authentication failed; callers only ever see the error code.
	Logger *zap.Logger
}

// FromEnv fills unset fields from HJB_PUBLIC_BASE, HJB_TOKEN_TTL and HJB_KEY_ROTATION, so that
// `hjbroker serve` and `hjbroker token` agree on the issuer and audience.
func (o *Options) FromEnv() error {
	if v := os.Getenv("HJB_PUBLIC_BASE"); v != "" && o.PublicBase == "" {
		o.PublicBase = v
	}
	for _, f := range []struct {
		dst *time.Duration
		key string
	}{{&o.TokenTTL, "HJB_TOKEN_TTL"}, {&o.KeyRotation, "HJB_KEY_ROTATION"}} {
		v := os.Getenv(f.key)
		if v == "" || *f.dst != 0 {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s=%q: want a positive duration such as 5m", f.key, v)
		}
		*f.dst = d
	}
	return nil
}

// Authenticator issues and verifies access tokens.
type Authenticator struct {
	reg      *Registry
	db       Database
	keys     *keyring
	issuer   string
	audience string
	root     string // public root URL, "" when unknown
	tokenURL string // "" means: the URL of the request
	ttl      time.Duration
	now      func() time.Time
	log      *zap.Logger

	mu        sync.Mutex
	lastPurge time.Time

	// verified remembers tokens whose signature already checked out, so each request pays
	// for a map lookup rather than an ECDSA verification; expiry is checked on every use.
	verifiedMu sync.Mutex
	verified   map[string]*Principal
}

// maxVerified bounds the verified-token cache; it is emptied when full.
const maxVerified = 8192

// purgeEvery is how often a node deletes expired assertion ids and keys.
const purgeEvery = 10 * time.Minute

// New builds an Authenticator. The store must have been opened with Migrations().
func New(opts Options) (*Authenticator, error) {
	if opts.Config == nil || opts.DB == nil {
		return nil, errors.New("auth: Config and DB are required")
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.KeyRotation == 0 {
		opts.KeyRotation = DefaultKeyRotation
	}
	if opts.TokenTTL < 10*time.Second || opts.TokenTTL > 24*time.Hour {
		return nil, fmt.Errorf("auth: token lifetime %s: want between 10s and 24h", opts.TokenTTL)
	}
	if opts.KeyRotation < time.Minute || opts.KeyRotation%time.Second != 0 {
		return nil, fmt.Errorf("auth: key rotation %s: want whole seconds, at least 1m", opts.KeyRotation)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	reg, err := NewRegistry(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	a := &Authenticator{
		reg: reg, db: opts.DB, ttl: opts.TokenTTL, now: opts.Now, log: opts.Logger,
		issuer: "urn:hjbroker", audience: "urn:hjbroker:fhir", tokenURL: opts.TokenURL,
		keys: newKeyring(opts.DB, opts.KeyRotation, opts.TokenTTL+Leeway),
	}
	if opts.PublicBase != "" {
		u, err := url.Parse(opts.PublicBase)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("auth: public base %q: want an http(s) URL", opts.PublicBase)
		}
		a.audience = strings.TrimSuffix(opts.PublicBase, "/")
		a.root = strings.TrimSuffix(a.audience, "/fhir")
		if a.root == a.audience {
			a.root = u.Scheme + "://" + u.Host
		}
		a.issuer = a.root
		if a.tokenURL == "" {
			a.tokenURL = a.root + TokenPath
		}
	}
	return a, nil
}

// Registry returns the configured clients.
func (a *Authenticator) Registry() *Registry { return a.reg }

// Issuer is the iss of the access tokens.
func (a *Authenticator) Issuer() string { return a.issuer }

// Audience is the aud of the access tokens: the FHIR base.
func (a *Authenticator) Audience() string { return a.audience }

// maybePurge deletes expired rows at most every purgeEvery per node.
func (a *Authenticator) maybePurge(ctx context.Context, now time.Time) {
	a.mu.Lock()
	due := now.Sub(a.lastPurge) >= purgeEvery
	if due {
		a.lastPurge = now
	}
	a.mu.Unlock()
	if due {
		// Assertions are accepted up to Leeway past exp, so their ids are kept that long.
		if err := purgeExpired(ctx, a.db, now.Add(-Leeway).Unix()); err != nil {
			a.log.Warn("purging expired authentication rows", zap.Error(err))
		}
	}
}
