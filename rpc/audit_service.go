package rpc

import (
	"context"
	"errors"
	"slices"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/audit"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// auditService reads this node's audit log; every call checks the admin token.
type auditService struct{ d Deps }

// errNoAudit: the node runs without an audit log (tests, benchmarks).
var errNoAudit = errors.New("this node has no audit log")

func (s *auditService) admin(ctx context.Context, req connect.AnyRequest) error {
	if err := checkAdmin(ctx, s.d, req.Header()); err != nil {
		s.d.auditAdminLoginFailure(req.Header(), req.Spec().Procedure, err)
		return toConnect(s.d.Logger, err)
	}
	return nil
}

func (s *auditService) WatchAudit(ctx context.Context, req *connect.Request[writv1.WatchAuditRequest], stream *connect.ServerStream[writv1.WatchAuditResponse]) error {
	if err := s.admin(ctx, req); err != nil {
		return err
	}
	var streams []audit.Stream
	for _, name := range req.Msg.GetStreams() {
		if !slices.Contains(audit.Streams, audit.Stream(name)) {
			return toConnect(s.d.Logger, invalidf("stream %q: want human, workload or agent", name))
		}
		streams = append(streams, audit.Stream(name))
	}
	sub := s.d.Audit.Watch(streams, 0)
	if sub == nil {
		return newError(connect.CodeFailedPrecondition, "no_audit", errNoAudit.Error(), nil)
	}
	defer sub.Close()
	// Headers go out at once, so a forwarder knows it is subscribed.
	if err := stream.Send(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-sub.Lines():
			if !ok {
				return newError(connect.CodeUnavailable, "audit_closed", "the node's audit log closed", nil)
			}
			if n := sub.Dropped(); n > 0 {
				if err := stream.Send(&writv1.WatchAuditResponse{Item: &writv1.WatchAuditResponse_Gap{Gap: &writv1.AuditGap{Dropped: n, Reason: "subscriber_behind"}}}); err != nil {
					return err
				}
			}
			if len(line) > 0 && line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			if err := stream.Send(&writv1.WatchAuditResponse{Item: &writv1.WatchAuditResponse_Record{Record: string(line)}}); err != nil {
				return err
			}
		}
	}
}

func (s *auditService) HashAuditValue(ctx context.Context, req *connect.Request[writv1.HashAuditValueRequest]) (*connect.Response[writv1.HashAuditValueResponse], error) {
	if err := s.admin(ctx, req); err != nil {
		return nil, err
	}
	if len(req.Msg.GetValue()) > 64<<10 {
		return nil, toConnect(s.d.Logger, invalidf("value is longer than 64 KiB"))
	}
	view := s.d.Backend.LocalView()
	h := audit.HMAC(audit.DeriveKey(view.HMACKey()), req.Msg.GetValue())
	return connect.NewResponse(&writv1.HashAuditValueResponse{Hash: h}), nil
}

func (s *auditService) GetAuditConfig(ctx context.Context, req *connect.Request[writv1.GetAuditConfigRequest]) (*connect.Response[writv1.GetAuditConfigResponse], error) {
	if err := s.admin(ctx, req); err != nil {
		return nil, err
	}
	cfg := s.d.Audit.Config()
	if cfg.Dir == "" {
		return nil, newError(connect.CodeFailedPrecondition, "no_audit", errNoAudit.Error(), nil)
	}
	return connect.NewResponse(&writv1.GetAuditConfigResponse{Yaml: cfg.YAML(), NodeId: s.d.Backend.NodeID()}), nil
}

func (s *auditService) ListAuditCheckpoints(ctx context.Context, req *connect.Request[writv1.ListAuditCheckpointsRequest]) (*connect.Response[writv1.ListAuditCheckpointsResponse], error) {
	if err := s.admin(ctx, req); err != nil {
		return nil, err
	}
	view, err := s.d.Backend.Read(ctx, ReadOptions{})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListAuditCheckpointsResponse{AppliedIndex: view.Index()}
	for _, n := range view.Nodes() {
		if id := req.Msg.GetNodeId(); id != "" && n.GetId() != id {
			continue
		}
		for _, c := range n.GetAuditCheckpoints() {
			out.Checkpoints = append(out.Checkpoints, &writv1.AuditCheckpoint{
				NodeId: n.GetId(), Stream: c.GetStream(), Seq: c.GetSeq(), Hash: c.GetHash(),
				Index: c.GetIndex(), TimeUnixNano: uint64(c.GetTimeUnixNano()),
			})
		}
	}
	return connect.NewResponse(out), nil
}
