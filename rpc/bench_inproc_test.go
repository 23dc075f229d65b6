package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/bench"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// inProcess is a RoundTripper that serves every request with h in the
// caller's goroutine: no sockets, no scheduler hand-offs, so one caller's
// ns/op is the CPU of the client and server code alone, steady even on a
// busy machine.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// BenchmarkAuthorizeInProcess compares one Authorize call with the bare
// Connect ping (bench.PingHandler: same request and response types, fixed
// answer) through the same in-process transport, so the difference is
// Writ's own work per call: credential, lease, Cedar, audit record, metrics.
// cpu-ns/op counts the audit goroutines too (for audit=on, after they have
// written every record).
func BenchmarkAuthorizeInProcess(b *testing.B) {
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
	b.Run("ping", func(b *testing.B) {
		hc := &http.Client{Transport: inProcess{bench.PingHandler()}}
		client := connect.NewClient[writv1.AuthorizeRequest, writv1.AuthorizeResponse](hc, "http://inproc"+bench.PingProcedure)
		// A credential of a real one's size, as writ bench's ping sends.
		req := &writv1.AuthorizeRequest{Credential: strings.Repeat("a", 360), Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket}
		ctx := context.Background()
		b.ReportAllocs()
		cpu0 := processCPU()
		for b.Loop() {
			resp, err := client.CallUnary(ctx, connect.NewRequest(req))
			if err != nil || !resp.Msg.GetDecision().GetAllowed() {
				b.Fatalf("ping: %v %v", err, resp)
			}
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	})
	for _, n := range []int{100, 10000} {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("policies=%d/audit=%v", n, on), func(b *testing.B) {
				client, cred, c := inProcessNode(b, n, on)
				req := &writv1.AuthorizeRequest{Credential: cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket}
				ctx := context.Background()
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					resp, err := client.Authorize(ctx, connect.NewRequest(req))
					if err != nil || !resp.Msg.GetDecision().GetAllowed() {
						b.Fatalf("authorize: %v %v", err, resp)
					}
				}
				if on {
					waitAuditDrained(b, c)
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// inProcessNode starts one node with n generated policies (audited when
// audited is set) and returns an Authorize client calling its API handler
// in-process and a live credential for Deployment::api.
func inProcessNode(b *testing.B, n int, audited bool) (writv1connect.AuthzServiceClient, string, *nodetest.Cluster) {
	b.Helper()
	c := nodetest.New(b, 1, nodetest.Options{Configure: func(m *nodetest.Member, cfg *node.Config) {
		if audited {
			cfg.Audit = &audit.Config{Dir: filepath.Join(m.DataDir, "audit")}
		}
	}})
	_, cred := benchNodeOn(b, c, n)
	hc := &http.Client{Transport: inProcess{c.Members[0].Node.APIHandler()}}
	return writv1connect.NewAuthzServiceClient(hc, "http://inproc"), cred, c
}
