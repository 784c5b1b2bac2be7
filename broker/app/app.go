// Package app assembles a broker node from configuration: store, search parameters, indexer,
// interaction engine and HTTP binding. The CLI, tests and benchmarks all start nodes through it.
package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/access"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/capability"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/delivery"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/httpapi"
	"github.com/hjbroker/hjbroker/broker/index"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/queue/storeq"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/searchparam"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/tracing"
	"github.com/hjbroker/hjbroker/profiles/bindings"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/invariants"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/summary"
	"github.com/hjbroker/hjbroker/profiles/ukcore"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// Version is the broker version reported in the CapabilityStatement.
const Version = "0.1.0"

// Config is everything a node needs. Zero values take the documented defaults.
type Config struct {
	Addr       string // listen address, default 127.0.0.1:8080
	DataDir    string // embedded store directory, default ./data
	StoreURL   string // postgres://... selects PostgreSQL
	PublicBase string // base URL in links when behind a proxy
	Limits     engine.Limits
	MaxConns   int
	// ReadCacheMB sizes the embedded store's cache of current versions in MiB: 0 takes the
	// default (64), a negative value turns it off (HJB_READ_CACHE_MB=0).
	ReadCacheMB int
	Logger      *zap.Logger
	// OTLPEndpoint turns on OpenTelemetry tracing (OTLP/HTTP, e.g. http://127.0.0.1:4318).
	OTLPEndpoint string
	// Validation is the write validation mode: off, reject (default), tag or quarantine.
	Validation string
	// AllowedProfiles, when set, are the only meta.profile URLs writes may declare.
	AllowedProfiles []string
	// ConfigFile is the agency configuration (YAML); empty uses the built-in demo.
	ConfigFile string
	// RedisURL selects the Redis Streams delivery queue (HJB_REDIS_URL); empty keeps the
	// embedded queue on the store. Queue keys live under RedisPrefix (HJB_REDIS_PREFIX,
	// default DefaultRedisPrefix).
	RedisURL, RedisPrefix string
	// Routing tunes delivery retries, leases and concurrency.
	Routing RoutingOptions
	// Spine connects the PDS fallback and $summary (HJB_SPINE_*); off without a URL.
	Spine SpineOptions
}

// FromEnv fills unset fields from HJB_* environment variables.
func (c *Config) FromEnv() error {
	str := func(dst *string, key string) {
		if v := os.Getenv(key); v != "" && *dst == "" {
			*dst = v
		}
	}
	str(&c.StoreURL, "HJB_STORE_URL")
	str(&c.PublicBase, "HJB_PUBLIC_BASE")
	str(&c.OTLPEndpoint, "HJB_OTEL_ENDPOINT")
	str(&c.ConfigFile, "HJB_CONFIG")
	str(&c.Validation, "HJB_VALIDATION")
	str(&c.RedisURL, "HJB_REDIS_URL")
	str(&c.RedisPrefix, "HJB_REDIS_PREFIX")
	if err := c.Routing.fromEnv(); err != nil {
		return err
	}
	if err := c.Spine.fromEnv(); err != nil {
		return err
	}
	if v := os.Getenv("HJB_ALLOWED_PROFILES"); v != "" && len(c.AllowedProfiles) == 0 {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.AllowedProfiles = append(c.AllowedProfiles, p)
			}
		}
	}
	if _, err := engine.ParseValidationMode(c.Validation); err != nil {
		return fmt.Errorf("HJB_VALIDATION: %w", err)
	}
	num := func(dst *int, key string) error {
		v := os.Getenv(key)
		if v == "" || *dst != 0 {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s=%q: want a positive integer", key, v)
		}
		*dst = n
		return nil
	}
	var body int
	for _, f := range []struct {
		dst *int
		key string
	}{{&body, "HJB_MAX_BODY_BYTES"}, {&c.Limits.MaxDepth, "HJB_MAX_DEPTH"}, {&c.Limits.MaxEntries, "HJB_MAX_ENTRIES"},
		{&c.Limits.DefaultCount, "HJB_DEFAULT_COUNT"}, {&c.Limits.MaxCount, "HJB_MAX_COUNT"},
		{&c.Limits.MaxSavedResults, "HJB_MAX_SAVED_RESULTS"}, {&c.MaxConns, "HJB_MAX_CONNS"}} {
		if err := num(f.dst, f.key); err != nil {
			return err
		}
	}
	if v := os.Getenv("HJB_READ_CACHE_MB"); v != "" && c.ReadCacheMB == 0 {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("HJB_READ_CACHE_MB=%q: want a size in MiB, 0 for no cache", v)
		}
		c.ReadCacheMB = n
		if n == 0 {
			c.ReadCacheMB = -1
		}
	}
	if body > 0 && c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = int64(body)
	}
	return nil
}

// readCacheBytes is the store's read cache size (PostgreSQL stores ignore it).
func (c *Config) readCacheBytes() int64 {
	switch {
	case c.ReadCacheMB < 0:
		return 0
	case c.ReadCacheMB == 0:
		return store.DefaultReadCacheBytes
	}
	return int64(c.ReadCacheMB) << 20
}

// Node is a running broker's parts.
type Node struct {
	Store    *store.SQL
	Engine   *engine.Engine
	Handler  http.Handler
	Registry *prometheus.Registry
	// Auth issues and verifies access tokens; Config is the agency configuration in force.
	Auth   *auth.Authenticator
	Config *config.Config
	Audit  *audit.Trail

	recorder *audit.Recorder
	tracer   *tracing.Tracer
	routing  *routingParts
	docs     *documentOps
	cfg      Config
	closers  []func() error
}

// Migrations lists the schema steps of every package that keeps tables in the store.
func Migrations() []store.Migration {
	var all []store.Migration
	all = append(all, auth.Migrations()...)
	all = append(all, audit.Migrations()...)
	all = append(all, routing.Migrations()...)
	all = append(all, delivery.Migrations()...)
	all = append(all, storeq.Migrations()...)
	return all
}

// LoadConfig reads the agency configuration file, or the built-in demo configuration when
// path is empty.
func LoadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Demo()
	}
	return config.Load(path)
}

// New opens the store and builds the engine and handler. On error everything opened so far
// is closed again.
func New(ctx context.Context, cfg Config) (node *Node, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	n := &Node{cfg: cfg}
	defer func() {
		if err != nil {
			n.Close() //nolint:errcheck // the first error is the one to report
		}
	}()
	if n.Config, err = LoadConfig(cfg.ConfigFile); err != nil {
		return nil, err
	}
	if n.Store, err = store.Open(ctx, cfg.StoreURL, cfg.DataDir, store.Options{MaxConns: cfg.MaxConns, Migrations: Migrations(),
		ReadCacheBytes: cfg.readCacheBytes()}); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, n.Store.Close)
	params, err := searchparam.NewR4()
	if err != nil {
		return nil, err
	}
	model := r4model.Load()
	flags, err := summary.Load()
	if err != nil {
		return nil, err
	}
	fp := fhirpath.NewEngine(model)
	limits := cfg.Limits
	if limits.MaxDepth == 0 {
		limits.MaxDepth = engine.DefaultLimits().MaxDepth
	}
	checker, err := resource.NewChecker(limits.MaxDepth)
	if err != nil {
		return nil, err
	}
	val, err := NewValidator(fp, checker)
	if err != nil {
		return nil, err
	}
	conf, err := conformance(val)
	if err != nil {
		return nil, err
	}
	for _, p := range cfg.AllowedProfiles {
		if !val.Known(p) {
			return nil, fmt.Errorf("allowed profile %s is not known to the validator", p)
		}
	}
	authOpts := auth.Options{Config: n.Config, DB: n.Store, PublicBase: cfg.PublicBase, Logger: cfg.Logger}
	if err := authOpts.FromEnv(); err != nil {
		return nil, err
	}
	if n.Auth, err = auth.New(authOpts); err != nil {
		return nil, err
	}
	pol := policy.New(n.Config, nil)
	sp, err := newSpine(cfg.Spine, n, pol)
	if err != nil {
		return nil, err
	}
	n.docs = newDocumentOps(n, pol, delivery.FromStore(n.Store, params))
	n.Audit = audit.NewTrail(n.Store)
	n.Registry = prometheus.NewRegistry()
	if n.routing, err = newRouting(ctx, n, cfg, fp, params); err != nil {
		return nil, err
	}
	ing, err := newIngest(n)
	if err != nil {
		return nil, err
	}
	n.Engine, err = engine.New(engine.Config{
		Store:      n.Store,
		Checker:    checker,
		Indexer:    index.New(params, fp),
		Params:     params,
		Types:      model,
		Summary:    summaries{model: model, flags: flags},
		Limits:     limits,
		Software:   "hjbroker",
		Version:    Version,
		Capability: conf.withViews(capability.New(n.Config, n.Auth.Registry(), smartSecurity(cfg.PublicBase))),
		Validator:  val,
		Validation: engine.Validation{Mode: cfg.Validation, AllowedProfiles: cfg.AllowedProfiles},
		Discloser:  access.New(pol, n.Store, params),
		Security:   smartSecurity(cfg.PublicBase),
		Operations: sp.operations(mergeOps(map[string]engine.Operation{
			engine.OperationKey("Patient", true, "access-check"):           accessCheck(n.Config, pol, n.Store),
			engine.OperationKey("", false, "process-message"):              processMessage(n),
			engine.OperationKey("QuestionnaireResponse", false, "extract"): extractOperation(n, params),
			engine.OperationKey("", false, OpIngestClinicalEntries):        ing.clinicalEntries,
			engine.OperationKey("", false, OpImportCareConnect):            ing.importCareConnect,
		}, n.docs.operations())),
		Resolvers:   sp.resolvers(),
		OnWrite:     n.routing.onWrite,
		AfterCommit: n.routing.afterCommit,
		Searches:    map[string]engine.Operation{"AuditEvent": auditSearch(n.Audit)},
		Reads:       map[string]engine.Operation{"AuditEvent": auditRead(n.Audit)},
		Checks:      []func(string, map[string]any) []outcome.Issue{consentCheck},
		Transitions: map[string]func(*engine.Access, map[string]any, map[string]any) error{"Task": checkReferralTask},

		// An ending referral Task closes its ServiceRequest (docs/ld-and-referrals.md).
		Consequences: map[string]func(map[string]any, map[string]any) []engine.Consequence{"Task": referralConsequences},
	})
	if err != nil {
		return nil, err
	}
	if err := loadShipped(ctx, n); err != nil {
		return nil, fmt.Errorf("loading the L&D Questionnaires and service directory: %w", err)
	}
	n.recorder = audit.NewRecorder(n.Audit, audit.RecorderOptions{OnError: func(err error) {
		cfg.Logger.Error("audit flush failed", zap.Error(err))
	}})
	n.closers = append(n.closers, n.recorder.Close)

	if err := n.routing.startWorkers(n, cfg, params, n.Registry); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func() error { n.Stop(); return nil })
	n.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if n.Store.ReadCacheStats().Enabled {
		st := n.Store.ReadCacheStats
		n.Registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hjbroker_read_cache_hits_total", Help: "Reads by id served from the embedded store's cache."},
				func() float64 { return float64(st().Hits) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hjbroker_read_cache_misses_total", Help: "Reads by id that went to the database."},
				func() float64 { return float64(st().Misses) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hjbroker_read_cache_bytes", Help: "Estimated size of the read cache's entries."},
				func() float64 { return float64(st().Bytes) }))
	}
	sec := &httpapi.Security{
		Auth:   n.Auth,
		Audit:  n.recorder,
		Logger: cfg.Logger,
		Agencies: func(id string) string {
			if a, ok := n.Config.Agency(id); ok {
				return a.ODS
			}
			return ""
		},
		BreakGlass: prometheus.NewCounter(prometheus.CounterOpts{Name: "hjbroker_break_glass_total", Help: "Emergency (break-glass) accesses."}),
		Denials:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hjbroker_access_denied_total", Help: "Requests refused, by reason."}, []string{"reason"}),
	}
	n.Registry.MustRegister(sec.BreakGlass, sec.Denials)
	hc := httpapi.Config{Engine: n.Engine, Ready: n.Store, Logger: cfg.Logger, Registry: n.Registry, PublicBase: cfg.PublicBase, Security: sec,
		Admin: n.routing.admin, Renderings: renderingOps}
	if cfg.OTLPEndpoint != "" {
		if n.tracer, err = tracing.New(ctx, cfg.OTLPEndpoint, "hjbroker", Version); err != nil {
			return nil, err
		}
		hc.Middleware = append(hc.Middleware, n.tracer.Middleware("hjbroker"))
	}
	n.Handler = httpapi.New(hc)
	return n, nil
}

// smartSecurity describes SMART Backend Services in CapabilityStatement.rest.security.
func smartSecurity(publicBase string) map[string]any {
	sec := map[string]any{
		"cors": false,
		"service": []any{map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
		"description": "SMART Backend Services: client_credentials with a private_key_jwt assertion (RS384, ES384, RS512) " +
			"at /oauth2/token; SMART v2 system scopes; see .well-known/smart-configuration.",
	}
	if root := strings.TrimSuffix(strings.TrimSuffix(publicBase, "/"), "/fhir"); root != "" {
		sec["extension"] = []any{map[string]any{
			"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			"extension": []any{map[string]any{"url": "token", "valueUri": root + auth.TokenPath}},
		}}
	}
	return sec
}

// Token mints an access token for a configured client, for operators and tests.
func (n *Node) Token(ctx context.Context, clientID string) (string, error) {
	t, err := n.Auth.MintFor(ctx, clientID)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// Close flushes the audit trail and traces and releases the store.
func (n *Node) Close() error {
	if n.tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.tracer.Shutdown(ctx) //nolint:errcheck // tracing must not block shutdown
	}
	var first error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	n.closers = nil
	return first
}

// Serve listens on the configured address until ctx is cancelled, then drains requests.
func (n *Node) Serve(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", n.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", n.cfg.Addr, err)
	}
	srv := &http.Server{Handler: n.Handler, ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready(ln.Addr().String())
	}
	n.Start(ctx)
	defer n.Stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// NewValidator builds the broker's validator: the R4 invariants (profiles/invariants) and
// required bindings (profiles/bindings), the UK
// Core profiles and value sets (profiles/ukcore) and QuestionnaireResponse checks. checker may
// be nil. The CLI's validate command uses the same, so it answers as $validate does.
func NewValidator(fp *fhirpath.Engine, checker *resource.Checker) (*validate.Validator, error) {
	invs, err := invariants.R4()
	if err != nil {
		return nil, err
	}
	d, err := validate.LoadFS(ukcore.FS())
	if err != nil {
		return nil, err
	}
	bs, err := bindings.R4()
	if err != nil {
		return nil, err
	}
	base, vsets := validate.FromBindings(bs)
	return validate.New(validate.Config{
		FHIRPath:     fp,
		Checker:      checker,
		Invariants:   validate.FromInvariants(invs),
		Bindings:     base,
		Profiles:     d.Profiles,
		ValueSets:    append(d.ValueSets, vsets...),
		Verification: d.Verification,
	})
}
