// Package httpapi binds the interaction engine to HTTP with gin: FHIR under /fhir, health and
// readiness probes, Prometheus metrics, request ids and structured access logs.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
)

// Pinger reports whether a dependency is ready.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config wires the HTTP binding.
type Config struct {
	Engine   *engine.Engine
	Ready    Pinger
	Logger   *zap.Logger
	Registry *prometheus.Registry
	// PublicBase overrides the base URL used in links (for deployments behind a proxy);
	// otherwise it is derived from the request.
	PublicBase string
	// Middleware runs before FHIR handling (tracing).
	Middleware []gin.HandlerFunc
	// Security, when set, authenticates every FHIR request (except the CapabilityStatement
	// and the SMART configuration), serves the token endpoint and audits every request.
	Security *Security
	// Admin, when set, is served under /admin to operators only.
	Admin http.Handler
	// Renderings names operations ("$court-report") that negotiate their own media types
	// (HTML, PDF) from Accept and _format; they answer 406 themselves for what they lack.
	Renderings []string
}

type server struct {
	cfg      Config
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight prometheus.Gauge
}

// New builds the HTTP handler.
func New(cfg Config) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	s := &server{cfg: cfg}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hjbroker_fhir_requests_total", Help: "FHIR interactions by interaction, method and status code.",
	}, []string{"interaction", "method", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hjbroker_fhir_request_duration_seconds",
		Help:    "FHIR interaction latency.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"interaction"})
	s.inflight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hjbroker_fhir_requests_in_flight", Help: "FHIR requests being served."})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.requests, s.latency, s.inflight)
	}

	r := gin.New()
	r.HandleMethodNotAllowed = false
	r.Use(s.requestIDs, gin.CustomRecovery(s.recovered))
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.readyz)
	if cfg.Registry != nil {
		r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))
	}
	fhir := r.Group("/fhir")
	fhir.Use(cfg.Middleware...)
	if cfg.Security != nil {
		r.POST(auth.TokenPath, gin.WrapH(cfg.Security.Auth.TokenHandler()))
		r.GET(auth.JWKSPath, gin.WrapH(cfg.Security.Auth.JWKSHandler()))
		fhir.Use(s.authenticate)
	}
	if cfg.Admin != nil && cfg.Security != nil {
		r.Any(adminPrefix+"/*path", s.admin)
	}
	fhir.Any("", s.fhir)
	fhir.Any("/*path", s.fhir)
	r.NoRoute(func(c *gin.Context) {
		s.write(c, &engine.Response{Status: http.StatusNotFound, Resource: outcome.Resource(outcome.New(http.StatusNotFound, "not-found", "nothing at %s; the FHIR API is under /fhir", c.Request.URL.Path).Issues)})
	})
	return r
}

func (s *server) readyz(c *gin.Context) {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready.Ping(ctx); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": err.Error()})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// requestIDs accepts or generates X-Request-ID and X-Correlation-ID, echoes them, and logs the
// request when it is done.
func (s *server) requestIDs(c *gin.Context) {
	start := time.Now()
	rid := c.GetHeader("X-Request-ID")
	if rid == "" || len(rid) > 200 {
		rid = uuid.NewString()
	}
	cid := c.GetHeader("X-Correlation-ID")
	if len(cid) > 200 {
		cid = ""
	}
	c.Header("X-Request-ID", rid)
	// The engine and what it calls (the Spine client, routing) read the id from the request.
	c.Request.Header.Set("X-Request-ID", rid)
	if cid != "" {
		c.Header("X-Correlation-ID", cid)
	}
	c.Set("request_id", rid)
	c.Next()
	if s.cfg.Logger == nil {
		return
	}
	// Check first: the fields are built only when the line is written (the level is often
	// warn in production), which keeps them off every request's allocations.
	ce := s.cfg.Logger.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("request_id", rid),
		zap.String("method", c.Request.Method),
		zap.String("path", c.Request.URL.Path),
		zap.Int("status", c.Writer.Status()),
		zap.Duration("latency", time.Since(start)),
	}
	if cid != "" {
		fields = append(fields, zap.String("correlation_id", cid))
	}
	if client, ok := c.Get("client_id"); ok {
		fields = append(fields, zap.Any("client", client))
	}
	if in, ok := c.Get("interaction"); ok {
		fields = append(fields, zap.Any("interaction", in))
	}
	ce.Write(fields...)
}

func (s *server) recovered(c *gin.Context, err any) {
	if s.cfg.Logger != nil {
		s.cfg.Logger.Error("panic serving request", zap.Any("panic", err), zap.String("path", c.Request.URL.Path))
	}
	s.write(c, &engine.Response{Status: http.StatusInternalServerError, Resource: outcome.Resource(outcome.New(http.StatusInternalServerError, "exception", "internal error").Issues)})
	c.Abort()
}

func (s *server) base(c *gin.Context) string {
	if s.cfg.PublicBase != "" {
		return strings.TrimSuffix(s.cfg.PublicBase, "/")
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host + "/fhir"
}

// acceptedBody reports whether a request body's media type is one the interaction takes.
func acceptedBody(method, path, ct string) bool {
	switch ct {
	case "application/fhir+json", "application/json", "application/json+fhir":
		return true
	case "application/json-patch+json":
		return method == http.MethodPatch
	case "application/x-www-form-urlencoded":
		return method == http.MethodPost && strings.HasSuffix(path, "_search")
	}
	return false
}

func (s *server) fhir(c *gin.Context) {
	start := time.Now()
	s.inflight.Inc()
	defer s.inflight.Dec()
	path := strings.TrimPrefix(c.Param("path"), "/")
	if path == ".well-known/smart-configuration" && s.cfg.Security != nil {
		s.cfg.Security.Auth.SmartConfigHandler().ServeHTTP(c.Writer, c.Request)
		return
	}
	req := &engine.Request{
		Method: c.Request.Method,
		Path:   path,
		Query:  c.Request.URL.Query(),
		Header: c.Request.Header,
		Base:   s.base(c),
		Access: accessOf(c),
	}
	var resp *engine.Response
	if err := s.checkFormat(c, req); err != nil {
		resp = errorResp(err)
	} else if body, err := s.readBody(c, req); err != nil {
		resp = errorResp(err)
	} else {
		req.Body = body
		resp = s.cfg.Engine.Handle(c.Request.Context(), req)
	}
	if resp.Interaction == "" {
		resp.Interaction = "unknown"
	}
	c.Set("interaction", resp.Interaction)
	if req.Access != nil {
		s.record(c, req.Access, resp)
	}
	s.write(c, resp)
	s.requests.WithLabelValues(resp.Interaction, c.Request.Method, strconv.Itoa(resp.Status)).Inc()
	s.latency.WithLabelValues(resp.Interaction).Observe(time.Since(start).Seconds())
}

func errorResp(err error) *engine.Response {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		oe = outcome.New(http.StatusBadRequest, "invalid", "%v", err)
	}
	return &engine.Response{Status: oe.Status, Resource: outcome.Resource(oe.Issues)}
}

// checkFormat rejects _format values and Accept headers that ask for something other than JSON.
func (s *server) checkFormat(c *gin.Context, req *engine.Request) error {
	if i := strings.LastIndex(req.Path, "/$"); i >= 0 && slices.Contains(s.cfg.Renderings, req.Path[i+1:]) {
		return nil
	}
	if f := req.Query.Get("_format"); f != "" {
		// An unescaped "+" in the URL arrives as a space; parameters (fhirVersion) do not matter.
		mt, _, err := mime.ParseMediaType(strings.ReplaceAll(f, " ", "+"))
		if err != nil {
			mt = f
		}
		switch mt {
		case "json", "application/json", "application/fhir+json", "application/json+fhir":
		default:
			// _format overrides Accept, so an unsupported one is Not Acceptable like the header.
			return outcome.At(http.StatusNotAcceptable, "not-supported", "_format", "_format %q is not supported; this server speaks FHIR JSON", f)
		}
	}
	if acc := c.GetHeader("Accept"); acc != "" && !acceptsJSON(acc) {
		return outcome.New(http.StatusNotAcceptable, "not-supported", "Accept %q: this server answers application/fhir+json", acc)
	}
	return nil
}

func acceptsJSON(acc string) bool {
	for _, part := range strings.Split(acc, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "*/*", "application/*", "application/fhir+json", "application/json", "application/json+fhir", "application/json-patch+json":
			return true
		}
	}
	return false
}

func (s *server) readBody(c *gin.Context, req *engine.Request) ([]byte, error) {
	if c.Request.Body == nil || c.Request.ContentLength == 0 && c.Request.Method == http.MethodGet {
		return nil, nil
	}
	limit := s.cfg.Engine.Limits().MaxBodyBytes
	if c.Request.ContentLength > limit {
		return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "the body is %d bytes; the limit is %d (HJB_MAX_BODY_BYTES)", c.Request.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "the body is larger than the limit of %d bytes (HJB_MAX_BODY_BYTES)", limit)
		}
		return nil, outcome.New(http.StatusBadRequest, "invalid", "reading the body: %v", err)
	}
	if len(body) == 0 {
		return nil, nil
	}
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		ct := c.GetHeader("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if ct == "" || err != nil || !acceptedBody(req.Method, req.Path, mt) {
			return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "Content-Type %q is not supported; send application/fhir+json", ct)
		}
	}
	return body, nil
}

// write sends a response: stored bytes as they are, or an encoded resource.
func (s *server) write(c *gin.Context, resp *engine.Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			c.Writer.Header().Add(k, v)
		}
	}
	body := resp.Body
	if body == nil && resp.Resource != nil {
		body = resource.Encode(resp.Resource)
	}
	if c.Request.Method == http.MethodHead {
		body = nil
	}
	if len(body) == 0 {
		c.Status(resp.Status)
		c.Writer.WriteHeaderNow()
		return
	}
	if p := c.Query("_pretty"); p == "true" {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	ct := "application/fhir+json; charset=utf-8"
	if v := resp.Header.Get("Content-Type"); v != "" {
		ct = v // a rendering (HTML, PDF)
	}
	c.Data(resp.Status, ct, body)
}
