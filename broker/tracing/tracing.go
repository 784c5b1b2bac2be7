// Package tracing turns on OpenTelemetry tracing when an OTLP endpoint is configured: one span
// per HTTP request, exported over OTLP/HTTP. Without an endpoint nothing is set up.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Tracer is a configured tracer provider.
type Tracer struct {
	tp *sdktrace.TracerProvider
}

// New exports spans to endpoint, an OTLP/HTTP URL such as http://127.0.0.1:4318.
func New(ctx context.Context, endpoint, service, version string) (*Tracer, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q: want a URL such as http://collector:4318", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	if u.Scheme != "https" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if u.Path != "" && u.Path != "/" {
		opts = append(opts, otlptracehttp.WithURLPath(u.Path))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating OTLP exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res))
	return &Tracer{tp: tp}, nil
}

// Middleware starts a span for each request, continuing a W3C traceparent from the caller.
func (t *Tracer) Middleware(service string) gin.HandlerFunc {
	return otelgin.Middleware(service, otelgin.WithTracerProvider(t.tp),
		otelgin.WithPropagators(propagation.TraceContext{}))
}

// Shutdown flushes and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }
