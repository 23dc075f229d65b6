package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// TracingConfig turns on OpenTelemetry tracing of the Connect API. Tracing
// is off unless Endpoint (or Exporter) is set.
type TracingConfig struct {
	// Endpoint is the OTLP/HTTP collector, e.g. http://127.0.0.1:4318.
	// http:// sends without TLS; https:// with.
	Endpoint string
	// SampleRatio of new traces sampled (parent decisions are honoured);
	// default 1.
	SampleRatio float64
	// Node is recorded as service.instance.id.
	Node string
	// Exporter overrides the OTLP exporter (tests use an in-memory one).
	Exporter sdktrace.SpanExporter
}

// Enabled reports whether tracing is configured.
func (c TracingConfig) Enabled() bool { return c.Endpoint != "" || c.Exporter != nil }

// Tracing is a running tracer provider and the Connect interceptor that
// uses it.
type Tracing struct {
	Provider    *sdktrace.TracerProvider
	Interceptor connect.Interceptor
}

// NewTracing starts a batching tracer provider exporting to cfg's endpoint
// and returns the otelconnect interceptor for every service (server spans
// named writ.v1.AuthzService/Authorize, W3C trace context propagated).
// Shutdown flushes it.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	if !cfg.Enabled() {
		return nil, errors.New("tracing: no endpoint")
	}
	exp := cfg.Exporter
	if exp == nil {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("tracing endpoint %q: want http(s)://host:port", cfg.Endpoint)
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if u.Path != "" && u.Path != "/" {
			opts = append(opts, otlptracehttp.WithURLPath(u.Path))
		}
		if exp, err = otlptracehttp.New(ctx, opts...); err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
	}
	ratio := cfg.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	res := resource.NewSchemaless(semconv.ServiceName("writ"), semconv.ServiceInstanceID(cfg.Node))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	ic, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagation.TraceContext{}),
		otelconnect.WithoutMetrics(),
		otelconnect.WithTrustRemote(),
	)
	if err != nil {
		_ = tp.Shutdown(ctx)
		return nil, fmt.Errorf("otelconnect: %w", err)
	}
	return &Tracing{Provider: tp, Interceptor: ic}, nil
}

// Tracer returns a tracer for Writ's own spans.
func (t *Tracing) Tracer() trace.Tracer { return t.Provider.Tracer("github.com/writ-dev/writ") }

// Shutdown flushes pending spans and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.Provider.Shutdown(ctx) }
