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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/httpapi"
	"github.com/hjbroker/hjbroker/broker/index"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/searchparam"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
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
	Logger     *zap.Logger
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
		{&c.Limits.DefaultCount, "HJB_DEFAULT_COUNT"}, {&c.Limits.MaxCount, "HJB_MAX_COUNT"}, {&c.MaxConns, "HJB_MAX_CONNS"}} {
		if err := num(f.dst, f.key); err != nil {
			return err
		}
	}
	if body > 0 && c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = int64(body)
	}
	return nil
}

// Node is a running broker's parts.
type Node struct {
	Store    *store.SQL
	Engine   *engine.Engine
	Handler  http.Handler
	Registry *prometheus.Registry
	cfg      Config
}

// New opens the store and builds the engine and handler.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	st, err := store.Open(ctx, cfg.StoreURL, cfg.DataDir, store.Options{MaxConns: cfg.MaxConns})
	if err != nil {
		return nil, err
	}
	params, err := searchparam.NewR4()
	if err != nil {
		st.Close()
		return nil, err
	}
	model := r4model.Load()
	fp := fhirpath.NewEngine(model)
	limits := cfg.Limits
	def := engine.DefaultLimits()
	if limits.MaxDepth == 0 {
		limits.MaxDepth = def.MaxDepth
	}
	checker, err := resource.NewChecker(limits.MaxDepth)
	if err != nil {
		st.Close()
		return nil, err
	}
	eng, err := engine.New(engine.Config{
		Store:    st,
		Checker:  checker,
		Indexer:  index.New(params, fp),
		Params:   params,
		Types:    model,
		Summary:  summaries{model: model},
		Limits:   limits,
		Software: "hjbroker",
		Version:  Version,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := httpapi.New(httpapi.Config{Engine: eng, Ready: st, Logger: cfg.Logger, Registry: reg, PublicBase: cfg.PublicBase})
	return &Node{Store: st, Engine: eng, Handler: h, Registry: reg, cfg: cfg}, nil
}

// Close releases the store.
func (n *Node) Close() error { return n.Store.Close() }

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
