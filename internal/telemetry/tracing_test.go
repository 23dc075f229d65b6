package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

type verifier struct {
	writv1connect.UnimplementedAuthzServiceHandler
}

func (verifier) Verify(context.Context, *connect.Request[writv1.VerifyRequest]) (*connect.Response[writv1.VerifyResponse], error) {
	return connect.NewResponse(&writv1.VerifyResponse{Active: true}), nil
}

func serve(t *testing.T, tr *Tracing) writv1connect.AuthzServiceClient {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(writv1connect.NewAuthzServiceHandler(verifier{}, connect.WithInterceptors(tr.Interceptor)))
	srv := httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(srv.Close)
	return writv1connect.NewAuthzServiceClient(srv.Client(), srv.URL)
}

// TestTracingSpansPerRPC: with an in-memory exporter, each RPC produces a
// server span named after its procedure, and a caller's W3C traceparent
// makes it a child of the caller's trace.
func TestTracingSpansPerRPC(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr, err := NewTracing(context.Background(), TracingConfig{Exporter: exp, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, tr)
	req := connect.NewRequest(&writv1.VerifyRequest{Credential: "x"})
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req.Header().Set("traceparent", parent)
	if _, err := client.Verify(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := tr.Provider.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "writ.v1.AuthzService/Verify" || s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("span %q trace %s parent %s", s.Name, s.SpanContext.TraceID(), s.Parent.SpanID())
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTracingExportsOTLP: the OTLP/HTTP exporter posts spans to the
// configured endpoint (a collector stand-in on 127.0.0.1).
func TestTracingExportsOTLP(t *testing.T) {
	t.Parallel()
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	tr, err := NewTracing(context.Background(), TracingConfig{Endpoint: collector.URL, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, tr)
	if _, err := client.Verify(context.Background(), connect.NewRequest(&writv1.VerifyRequest{Credential: "x"})); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Error("no OTLP export reached the collector")
	}
}

func TestTracingConfigRejects(t *testing.T) {
	t.Parallel()
	for _, ep := range []string{"127.0.0.1:4318", "ftp://x", "http://"} {
		if _, err := NewTracing(context.Background(), TracingConfig{Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
	if (TracingConfig{}).Enabled() {
		t.Error("tracing is on by default")
	}
}
