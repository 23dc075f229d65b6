package rpc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// leaseService: delegation and completion for a lease's holder (who proves
// it with the credential), and the revocation stream for gateways. It
// shares the authz service's signers.
type leaseService struct{ a *authzService }

// Delegate issues a child lease for one tool call: within the parent's
// scope, remaining time and the role's delegation depth, allowed by Cedar
// with context.delegation describing the chain. Apply re-checks the parent
// (valid, same identity and role, scope, depth) and the budgets.
func (s *leaseService) Delegate(ctx context.Context, req *connect.Request[writv1.DelegateRequest]) (*connect.Response[writv1.DelegateResponse], error) {
	c := s.a.d.begin(audit.TypeDecision, "Delegate", true)
	resp, err := s.delegate(ctx, req.Msg, c)
	c.end(err)
	return resp, toConnect(s.a.d.Logger, err)
}

// delegate issues a lease: like AuthorizeAndIssue, no child is proposed
// unless its audit intent is durable.
func (s *leaseService) delegate(ctx context.Context, m *writv1.DelegateRequest, c *call) (*connect.Response[writv1.DelegateResponse], error) {
	d := s.a.d
	intent := m.GetIntent()
	if err := checkLen("intent.action", intent.GetAction(), 128); err != nil {
		return nil, err
	}
	res, err := resourceFromAPI(intent.GetResource())
	if err != nil {
		return nil, err
	}
	if intent.GetTtlSeconds() < 0 {
		return nil, invalidf("intent.ttl_seconds must not be negative")
	}
	if len(m.GetRequestId()) > 128 {
		return nil, invalidf("request_id is longer than 128 bytes")
	}
	requestID := "c_" + m.GetRequestId()
	if m.GetRequestId() == "" {
		if requestID, err = newID(d.Rand, "r_"); err != nil {
			return nil, err
		}
	}
	leaseID, err := newID(d.Rand, "l_")
	if err != nil {
		return nil, err
	}
	decisionID, err := newID(d.Rand, "d_")
	if err != nil {
		return nil, err
	}
	c.ev.RequestID, c.ev.DecisionID, c.ev.Action = requestID, decisionID, intent.GetAction()
	c.ev.Resource = &audit.Resource{Type: res.Type, ID: res.ID}
	var minIndex uint64
	linearizable := false
	for attempt := 0; ; attempt++ {
		view, err := d.Backend.Read(ctx, ReadOptions{MinIndex: minIndex, Linearizable: linearizable})
		if err != nil {
			return nil, err
		}
		now := d.Clock.Now()
		_, parent, reason, err := s.a.credentialLease(view, m.GetCredential(), now)
		if err != nil {
			s.a.unknownCredential(c, m.GetCredential())
			return nil, err
		}
		if reason == fsm.ReasonUnknownLease && !linearizable {
			// A parent issued a moment ago through another node may not be
			// here yet: look again at a linearizable view before failing.
			linearizable = true
			attempt--
			continue
		}
		if reason != "" {
			return nil, withReason(connect.CodeUnauthenticated, reason, "credential rejected: lease "+strings.ReplaceAll(reason, "_", " "))
		}
		ident, _ := view.Identity(parent.GetIdentity()) // CheckLease passed: both exist
		role, _ := view.Role(parent.GetRole())
		c.ev.Actor, c.ev.Target = leaseActor(ident, parent), "lease/"+parent.GetId()
		if m.GetRequestId() != "" {
			leaseID = derivedLeaseID(view.HMACKey(), ident.GetId()+"\x00"+parent.GetId(), requestID)
		}
		depth := parent.GetDepth() + 1
		if depth > role.GetMaxDelegationDepth() || depth > fsm.MaxLeaseAncestors {
			return nil, withReason(connect.CodePermissionDenied, "delegation_depth_exceeded",
				fmt.Sprintf("a child at depth %d exceeds role %q's delegation depth of %d", depth, role.GetName(), min(role.GetMaxDelegationDepth(), fsm.MaxLeaseAncestors)))
		}
		if !inScope(parent, intent.GetAction(), res) {
			return nil, withReason(connect.CodePermissionDenied, "outside_parent_scope", "a child lease's action and resource must be within its parent's scope")
		}
		remaining := time.Unix(0, parent.GetExpiresUnixNano()).Sub(now)
		ttl := time.Duration(intent.GetTtlSeconds()) * time.Second
		switch {
		case ttl == 0:
			ttl = min(time.Duration(role.GetDefaultTtlNanos()), remaining)
		case ttl > remaining:
			return nil, invalidf("requested ttl %s exceeds the parent's remaining %s", ttl, remaining.Truncate(time.Second))
		case ttl > time.Duration(role.GetMaxTtlNanos()):
			return nil, invalidf("requested ttl %s exceeds the role's max ttl %s", ttl, time.Duration(role.GetMaxTtlNanos()))
		}
		cedarCtx, err := requestContext(intent.GetContext(), leaseEvidence(parent))
		if err != nil {
			return nil, err
		}
		cedarCtx["requested_ttl"] = int64(ttl / time.Second)
		cedarCtx["delegation"] = delegationContext(view, parent.GetId(), depth)
		dec, err := s.a.decide(view, ident, role.GetName(), intent.GetAction(), res, cedarCtx, nil)
		if err != nil {
			return nil, err
		}
		apiDec := decisionToAPI(dec, decisionID)
		c.ev.Type, c.ev.Phase, c.ev.Context = audit.TypeDecision, "", cedarCtx
		setDecision(c.ev, dec, decisionID)
		if !dec.Allowed {
			return connect.NewResponse(&writv1.DelegateResponse{Decision: apiDec}), nil
		}
		// A delegated lease is an issuance: no child is proposed unless its
		// audit intent is durable.
		c.ev.Type, c.ev.LeaseID = audit.TypeIssue, leaseID
		if err := c.durable(ctx); err != nil {
			return nil, err
		}
		cmd := &fsmpb.Command{
			Header: &fsmpb.Header{RequestId: requestID},
			Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{
				Lease: &fsmpb.Lease{
					Id:            leaseID,
					Identity:      ident.GetId(),
					IdentityEpoch: ident.GetEpoch(),
					Role:          role.GetName(),
					RoleEpoch:     role.GetEpoch(),
					Parent:        parent.GetId(),
					Scope: &fsmpb.Scope{
						Actions:   []string{intent.GetAction()},
						Resources: []*fsmpb.Resource{{Type: res.Type, Id: res.ID, Attributes: intent.GetResource().GetAttributes()}},
					},
					DecisionId:    decisionID,
					PolicySet:     dec.PolicySet,
					PolicyVersion: dec.Version,
					AuthMethod:    parent.GetAuthMethod(),
				},
				TtlNanos: int64(ttl),
			}},
		}
		results, err := d.Backend.Propose(ctx, []*fsmpb.Command{cmd}, ProposeOptions{})
		if err != nil {
			return nil, err
		}
		r := results[0]
		if r.GetCode() == fsmpb.ResultCode_RESULT_CODE_POLICY_CHANGED && attempt == 0 {
			minIndex = r.GetIndex()
			continue
		}
		c.ev.AppliedIndex = r.GetIndex()
		if err := resultError(r); err != nil {
			return nil, err
		}
		d.Metrics.LeasesIssued.WithLabelValues(issuedDelegation).Inc()
		cred, err := s.a.mint(view, r.GetLease())
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&writv1.DelegateResponse{
			Decision: apiDec, Lease: leaseToAPI(r.GetLease(), ""), Credential: cred, Index: r.GetIndex(),
		}), nil
	}
}

// delegationContext is what policies see as context.delegation for a lease
// at depth whose parent is parentID: the chain of lease ids from the root
// down to the parent.
func delegationContext(view *fsm.View, parentID string, depth uint32) map[string]any {
	var chain []string
	for id := parentID; id != "" && len(chain) <= fsm.MaxLeaseAncestors; {
		chain = append(chain, id)
		l, ok := view.Lease(id)
		if !ok {
			break
		}
		id = l.GetParent()
	}
	slices.Reverse(chain)
	root := parentID
	if len(chain) > 0 {
		root = chain[0]
	}
	return map[string]any{"depth": int64(depth), "parent": parentID, "root": root, "chain": chain}
}

// Complete ends the holder's lease: completed, unusable at once on every
// node in contact with the leader when the call returns.
func (s *leaseService) Complete(ctx context.Context, req *connect.Request[writv1.CompleteRequest]) (*connect.Response[writv1.CompleteResponse], error) {
	c := s.a.d.begin(audit.TypeRevoke, "Complete", false)
	c.ev.Reason = req.Msg.GetReason()
	idx, err := s.a.complete(ctx, req.Msg.GetCredential(), req.Msg.GetReason(), c)
	c.end(err)
	if err != nil {
		return nil, toConnect(s.a.d.Logger, err)
	}
	return connect.NewResponse(&writv1.CompleteResponse{Index: idx}), nil
}

// complete verifies the credential's signature (a lease already revoked or
// expired can still be completed: it is idempotent) and marks the lease completed.
func (s *authzService) complete(ctx context.Context, credential, reason string, c *call) (uint64, error) {
	if credential == "" {
		return 0, invalidf("credential is required")
	}
	if len(reason) > 1024 {
		return 0, invalidf("reason is longer than 1024 bytes")
	}
	view, err := s.d.Backend.Read(ctx, ReadOptions{})
	if err != nil {
		return 0, err
	}
	claims, err := s.d.Verifier.Verify(credential, view, s.d.Clock.Now())
	if err != nil {
		s.unknownCredential(c, credential)
		return 0, err
	}
	c.ev.Actor = claimsActor(view, claims)
	cmd := &fsmpb.Command{Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{
		LeaseId: claims.ID, Reason: nonEmpty(reason, "completed by holder"), Completed: true,
	}}}
	return s.commitRevocation(ctx, cmd, c, revokedByHolder)
}

// commitRevocation proposes one revocation entry and returns its index once
// it is in force on every node in contact with the leader (applied, or
// pushed into the node's overlay of committed revocations). It never waits for
// the audit log (c's record is spooled at the call's end): refusing a
// revocation for audit reasons would keep a credential alive. label is the
// target of writ_revocations_total.
func (s *authzService) commitRevocation(ctx context.Context, cmd *fsmpb.Command, c *call, label string) (uint64, error) {
	requestID, err := newID(s.d.Rand, "r_")
	if err != nil {
		return 0, err
	}
	cmd.Header = &fsmpb.Header{RequestId: requestID}
	c.ev.RequestID = requestID
	if c.ev.Target == "" {
		c.ev.Target = commandTarget(cmd)
	}
	if rl := cmd.GetRevokeLease(); rl != nil {
		c.ev.LeaseID = rl.GetLeaseId()
	}
	results, err := s.d.Backend.Propose(ctx, []*fsmpb.Command{cmd}, ProposeOptions{Urgent: true})
	if err != nil {
		return 0, err
	}
	c.ev.AppliedIndex = results[0].GetIndex()
	if err := resultError(results[0]); err != nil {
		return 0, err
	}
	idx := results[0].GetIndex()
	s.d.Metrics.Revocations.WithLabelValues(label).Inc() // committed, whether or not confirmed everywhere
	committed := time.Now()
	p, _ := fsm.PendingOf(cmd)
	p.Index = idx
	p.Holders = results[0].GetHolders()
	if err := s.d.Backend.AwaitEverywhere(ctx, p); err != nil {
		return 0, fmt.Errorf("revocation committed at index %d but not confirmed everywhere: %w", idx, err)
	}
	s.d.Metrics.RevocationPropagationSeconds.Observe(time.Since(committed).Seconds())
	return idx, nil
}

// watchBatch bounds the events in one stream message.
const watchBatch = 512

// WatchRevocations streams revocations from this node's own history (any
// node serves it). It sends everything committed after the requested index,
// then each new revocation as it is applied here, and a heartbeat carrying
// the applied index every HeartbeatInterval. When the node no longer holds
// every revocation after the requested index it sends reset first. The
// stream ends with Unavailable when the node loses the leader for longer
// than its max staleness: its state can no longer vouch for anything, and
// the gateway should reconnect (to any node) and resume.
func (s *leaseService) WatchRevocations(ctx context.Context, req *connect.Request[writv1.WatchRevocationsRequest], stream *connect.ServerStream[writv1.WatchRevocationsResponse]) error {
	d := s.a.d
	after := req.Msg.GetAfterIndex()
	heartbeat := time.NewTicker(d.WatchHeartbeat)
	defer heartbeat.Stop()
	for {
		if _, err := d.Backend.Read(ctx, ReadOptions{}); err != nil {
			return toConnect(d.Logger, err)
		}
		b := d.Backend.Revocations(after, watchBatch)
		if b.Reset || len(b.Events) > 0 {
			msg := &writv1.WatchRevocationsResponse{ResetCache: b.Reset, UpToIndex: b.UpTo}
			for _, ev := range b.Events {
				msg.Events = append(msg.Events, &writv1.RevocationEvent{
					Index: ev.Index, Kind: ev.Kind, Target: ev.Target, CommittedAt: ts(ev.UnixNano),
				})
			}
			if err := stream.Send(msg); err != nil {
				return toConnect(d.Logger, err)
			}
			after = b.UpTo
			continue // more may be waiting past the batch limit
		}
		after = max(after, b.UpTo)
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return toConnect(d.Logger, ctx.Err())
		case <-b.Next:
		case <-heartbeat.C:
			if err := stream.Send(&writv1.WatchRevocationsResponse{UpToIndex: after}); err != nil {
				return toConnect(d.Logger, err)
			}
		}
	}
}

// derivedLeaseID names the lease a client-supplied request id asks for:
// "l_" and 128 bits of HMAC-SHA256(cluster key, scope of the request and
// the id). A retry therefore carries the same lease id, and the FSM answers
// it with the stored lease instead of issuing a second one; nobody without
// the cluster key can aim a request id at another caller's lease id.
func derivedLeaseID(key []byte, scope, requestID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("writ lease id v1\x00" + scope + "\x00" + requestID))
	return "l_" + idEncoding.EncodeToString(mac.Sum(nil)[:16])
}
