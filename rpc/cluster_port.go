package rpc

import (
	"context"
	"net/http"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// MemberBackend is what the cluster port's MemberService needs from a node.
type MemberBackend interface {
	// RaftStats reports this server's own Raft state. It must answer before
	// the cluster is bootstrapped.
	RaftStats(ctx context.Context) (*writv1.RaftStatsResponse, error)
}

// Departer is implemented by backends that can leave the cluster
// gracefully (ClusterService.Leave with self set).
type Departer interface {
	// Depart hands leadership over if this node leads, leaves gossip, waits
	// until the leader has removed it from the voters, and then stops the
	// node in the background. It returns the index of the removal when known.
	Depart(ctx context.Context) (uint64, error)
}

// NewClusterHandler serves node-to-node traffic on the cluster port:
// NodeService (forwarded writes, applied-index waits; node token required)
// and MemberService (Raft stats; no token, as it must answer before
// bootstrap). Transport security (mutual TLS) is the listener's job.
func NewClusterHandler(d Deps, members MemberBackend) http.Handler {
	d.defaults()
	opts := connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxRequestBytes), connect.WithInterceptors(d.Interceptors...))
	// Forwarded writes carry policy sets of up to MaxPolicyBytes.
	big := connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxPolicyRequestBytes), connect.WithCompressMinBytes(CompressMinBytes), connect.WithInterceptors(d.Interceptors...))
	mux := http.NewServeMux()
	mux.Handle(writv1connect.NewNodeServiceHandler(&nodeService{d: d}, big,
		connect.WithInterceptors(nodeAuth(d))))
	mux.Handle(writv1connect.NewMemberServiceHandler(&memberService{d: d, b: members}, opts))
	return mux
}

type memberService struct {
	d Deps
	b MemberBackend
}

func (s *memberService) RaftStats(ctx context.Context, _ *connect.Request[writv1.RaftStatsRequest]) (*connect.Response[writv1.RaftStatsResponse], error) {
	st, err := s.b.RaftStats(ctx)
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(st), nil
}
