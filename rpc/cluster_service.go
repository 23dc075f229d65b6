package rpc

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

type clusterService struct{ d Deps }

func (s *clusterService) Status(ctx context.Context, _ *connect.Request[writv1.StatusRequest]) (*connect.Response[writv1.StatusResponse], error) {
	st, err := s.d.Backend.Status(ctx)
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(st), nil
}

func (s *clusterService) Join(ctx context.Context, req *connect.Request[writv1.JoinRequest]) (*connect.Response[writv1.JoinResponse], error) {
	m := req.Msg
	if err := checkLen("node_id", m.GetNodeId(), 128); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	// An API that serves TLS is advertised as https://host:port.
	api := strings.TrimPrefix(strings.TrimPrefix(m.GetApiAddr(), "https://"), "http://")
	for what, addr := range map[string]string{"raft_addr": m.GetRaftAddr(), "api_addr": api} {
		if _, err := netip.ParseAddrPort(addr); err != nil {
			if _, _, herr := splitHostPort(addr); herr != nil {
				return nil, toConnect(s.d.Logger, invalidf("%s %q: want host:port", what, addr))
			}
		}
	}
	idx, err := s.d.auditedChange(ctx, "node/"+m.GetNodeId(), "", func() (uint64, error) { return s.d.Backend.Join(ctx, m) })
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.JoinResponse{Index: idx}), nil
}

func (s *clusterService) Leave(ctx context.Context, req *connect.Request[writv1.LeaveRequest]) (*connect.Response[writv1.LeaveResponse], error) {
	if req.Msg.GetSelf() {
		if len(req.Msg.GetNodeId()) > 128 {
			return nil, toConnect(s.d.Logger, invalidf("node_id is %d bytes; at most 128", len(req.Msg.GetNodeId())))
		}
		return s.depart(ctx, req.Msg.GetNodeId())
	}
	if err := checkLen("node_id", req.Msg.GetNodeId(), 128); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	idx, err := s.d.auditedChange(ctx, "node/"+req.Msg.GetNodeId(), "", func() (uint64, error) { return s.d.Backend.Leave(ctx, req.Msg.GetNodeId()) })
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.LeaveResponse{Index: idx}), nil
}

func (s *clusterService) depart(ctx context.Context, nodeID string) (*connect.Response[writv1.LeaveResponse], error) {
	if nodeID != "" && nodeID != s.d.Backend.NodeID() {
		return nil, toConnect(s.d.Logger, invalidf("self leave names node %s, but this is %s", quote(nodeID), quote(s.d.Backend.NodeID())))
	}
	dep, ok := s.d.Backend.(Departer)
	if !ok {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this node cannot depart gracefully"))
	}
	// An admin change like Leave: a durable audit intent first.
	idx, err := s.d.auditedChange(ctx, "node/"+s.d.Backend.NodeID(), "", func() (uint64, error) { return dep.Depart(ctx) })
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.LeaveResponse{Index: idx}), nil
}

// nodeService is node-to-node traffic, authenticated by the node token.
type nodeService struct{ d Deps }

// MaxForwardCommands bounds one Forward call.
const MaxForwardCommands = 4096

func (s *nodeService) Forward(ctx context.Context, req *connect.Request[writv1.ForwardRequest]) (*connect.Response[writv1.ForwardResponse], error) {
	raw := req.Msg.GetCommands()
	if len(raw) == 0 || len(raw) > MaxForwardCommands {
		return nil, toConnect(s.d.Logger, invalidf("forward carries %d commands; want 1..%d", len(raw), MaxForwardCommands))
	}
	cmds := make([]*fsmpb.Command, len(raw))
	for i, b := range raw {
		cmd := &fsmpb.Command{}
		if err := proto.Unmarshal(b, cmd); err != nil {
			return nil, toConnect(s.d.Logger, invalidf("command %d: %v", i, err))
		}
		if err := fsm.CheckCommand(cmd); err != nil {
			return nil, toConnect(s.d.Logger, invalidf("command %d: %v", i, err))
		}
		cmds[i] = cmd
	}
	results, err := s.d.Backend.ApplyForwarded(ctx, cmds)
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ForwardResponse{Results: make([][]byte, len(results))}
	for i, r := range results {
		b, err := marshalResult(r)
		if err != nil {
			return nil, toConnect(s.d.Logger, err)
		}
		out.Results[i] = b
		out.Index = max(out.Index, r.GetIndex())
	}
	return connect.NewResponse(out), nil
}

func (s *nodeService) WaitApplied(ctx context.Context, req *connect.Request[writv1.WaitAppliedRequest]) (*connect.Response[writv1.WaitAppliedResponse], error) {
	if rev := req.Msg.GetRevocation(); rev != nil {
		return s.pushRevocation(ctx, req.Msg.GetIndex(), rev)
	}
	if id := req.Msg.GetNodeId(); id != "" && req.Msg.GetReadIndex() {
		if err := checkLen("node id", id, 256); err != nil {
			return nil, toConnect(s.d.Logger, err)
		}
		s.d.Backend.NotePeerVersion(id, req.Msg.GetFsmVersion())
	}
	applied, err := s.d.Backend.WaitApplied(ctx, req.Msg.GetIndex(), req.Msg.GetReadIndex())
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.WaitAppliedResponse{AppliedIndex: applied}), nil
}

// pushRevocation puts a committed revocation a peer pushed in force here
// and answers at once (see fsm/overlay.go).
func (s *nodeService) pushRevocation(ctx context.Context, index uint64, rev *writv1.PendingRevocation) (*connect.Response[writv1.WaitAppliedResponse], error) {
	switch {
	case !fsm.PendingKind(rev.GetKind()):
		return nil, toConnect(s.d.Logger, invalidf("revocation kind %s: want lease, completed, subtree, identity, role or owner", quote(rev.GetKind())))
	case index == 0:
		return nil, toConnect(s.d.Logger, invalidf("a pushed revocation needs its index"))
	}
	if err := checkLen("revocation target", rev.GetTarget(), 256); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	applied, err := s.d.Backend.PushRevocation(ctx, fsm.Pending{Index: index, Kind: rev.GetKind(), ID: rev.GetTarget()})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.WaitAppliedResponse{AppliedIndex: applied}), nil
}

func quote(s string) string { return strconv.Quote(s) }
