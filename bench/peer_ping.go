package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/rpc"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// PingProcedure is the bare Connect ping: the RPC ceiling. It takes an
// AuthorizeRequest and answers a fixed AuthorizeResponse, so the bytes on the
// wire and the protobuf work match an Authorize call and only Writ's own
// work (credential, lease, Cedar) is missing.
const PingProcedure = "/writ.bench.v1.PingService/Ping"

var pingAnswer = &writv1.AuthorizeResponse{
	LeaseId:      "l_aaaaaaaaaaaaaaaaaaaaaaaaaa",
	AppliedIndex: 12345,
	Decision: &writv1.Decision{
		Allowed: true, DecisionId: "d_aaaaaaaaaaaaaaaaaaaaaaaaaa", PolicySet: benchEnv, PolicyVersion: 1,
		Reason:              "allowed by deploy-with-ticket",
		DeterminingPolicies: []*writv1.DeterminingPolicy{{Id: "deploy-with-ticket", Annotations: map[string]string{"id": "deploy-with-ticket"}}},
	},
}

// PingHandler serves PingProcedure with the options Writ's API uses.
func PingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PingProcedure, connect.NewUnaryHandler(PingProcedure,
		func(_ context.Context, _ *connect.Request[writv1.AuthorizeRequest]) (*connect.Response[writv1.AuthorizeResponse], error) {
			return connect.NewResponse(pingAnswer), nil
		}, connect.WithReadMaxBytes(rpc.MaxRequestBytes), connect.WithCompressMinBytes(rpc.CompressMinBytes)))
	return mux
}

// ServePing serves the ping on addr over HTTP/1.1 and h2c (the http.Server
// settings of a Writ node) until ctx ends; ready gets the bound address.
func ServePing(ctx context.Context, addr string, ready func(string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: PingHandler(), Protocols: &ps, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if ready != nil {
		ready(ln.Addr().String())
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// pingOp returns an Op calling the ping at baseURL with p, each worker
// sending a request shaped like the authorize scenario's.
func pingOp(baseURL string, p Protocol, conns int) Op {
	client := connect.NewClient[writv1.AuthorizeRequest, writv1.AuthorizeResponse](p.httpClient(conns), baseURL+PingProcedure, p.clientOptions()...)
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "BENCH-1"})
	req := (&fixture{ctx: ticket, resource: &writv1.Resource{Type: "Deployment", Id: "svc-bench"}}).authorizeRequest(
		"eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0."+
			"eyJpc3MiOiJ3cml0Iiwic3ViIjoiYmVuY2gvYWdlbnQiLCJhdWQiOlsid3JpdCJdLCJleHAiOjE4MDAwMDAwMDAsIm5iZiI6MTcwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwLCJqdGkiOiJsX2FhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhIiwicm9sZSI6ImJlbmNoLWFnZW50IiwiZW52aXJvbm1lbnQiOiJiZW5jaCJ9."+
			"c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl", 0)
	return func(ctx context.Context, _ int) (int, error) {
		resp, err := client.CallUnary(ctx, connect.NewRequest(req))
		if err != nil {
			return 0, err
		}
		if !resp.Msg.GetDecision().GetAllowed() {
			return 0, fmt.Errorf("ping: bad answer")
		}
		return 1, nil
	}
}
