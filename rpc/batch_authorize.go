package rpc

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// MaxBatchAuthorizeItems bounds one BatchAuthorize call. 1,000 decisions take
// a few milliseconds of one core; a bigger batch would hold a handler (and its
// read view) long enough to hurt the tail of everything else.
const MaxBatchAuthorizeItems = 1000

// BatchAuthorize answers many Authorize questions in one call, all on one
// read view. Each distinct credential is verified and its lease checked once;
// an item that cannot be decided gets an ItemError and the rest of the batch
// goes on. Only request-wide problems (no items, too many, stale node) fail
// the call.
//
// Audit: the items made with one credential share one spooled use record
// that lists every item's decision (batchRecords); the call's own record is
// written only when the whole call fails.
func (s *authzService) BatchAuthorize(ctx context.Context, req *connect.Request[writv1.BatchAuthorizeRequest]) (*connect.Response[writv1.BatchAuthorizeResponse], error) {
	c := s.d.begin(audit.TypeUse, "BatchAuthorize", true)
	resp, err := s.batchAuthorize(ctx, req.Msg, c)
	c.end(err)
	return resp, toConnect(s.d.Logger, err)
}

// checked is one credential's verification outcome within a batch, with
// everything its items share: the lease, the identity, the compiled policy
// set and the context.auth evidence are looked up once per credential.
type checked struct {
	lease     *fsmpb.Lease
	ident     *fsmpb.Identity
	compiled  *authz.PolicySet
	noSet     *writv1.Decision // set when no policy set governs the identity
	evidence  map[string]any
	converted map[string]authz.Converted // evidence converted for Cedar (nil: Decide converts it)
	auth      *structpb.Struct           // evidence as the API shows it (decision.auth), shared by the items (read-only)
	// delegation is context.delegation for a child lease (nil for a root).
	delegation map[string]any
	// actor and hashes are the credential's audit fields (the holder, or
	// the keyed hash of a credential that did not verify).
	actor  audit.Actor
	hashes map[string]string
	// err fails every item (the credential itself); identErr and setErr fail
	// the items inside the lease's scope, in Authorize's order.
	err, identErr, setErr error
}

// prepare verifies token and looks up what every item using it shares.
func (s *authzService) prepare(view *fsm.View, token string, now time.Time) *checked {
	lease, ident, err := s.checkCredential(view, token, now, nil)
	if err != nil {
		ck := &checked{err: err}
		if _, l, _, verr := s.credentialLease(view, token, now); verr != nil {
			if token != "" {
				ck.hashes = map[string]string{"credential": s.d.Audit.Hash(token)}
			}
		} else {
			ident, _ := view.Identity(l.GetIdentity())
			ck.actor, ck.lease = leaseActor(ident, l), l
		}
		return ck
	}
	auth := s.evidence.get(lease)
	c := &checked{lease: lease, evidence: auth.evidence, converted: auth.converted, auth: auth.st}
	if lease.GetParent() != "" {
		c.delegation = delegationContext(view, lease.GetParent(), lease.GetDepth())
	}
	c.actor = leaseActor(ident, lease)
	if ident == nil {
		c.identErr = withReason(connect.CodeUnauthenticated, "identity_deleted", "credential rejected: identity deleted")
		return c
	}
	c.ident = ident
	ps, ok := policySetFor(view, ident.GetEnvironment())
	if !ok {
		c.noSet = decisionToAPI(authz.Decision{Reason: fmt.Sprintf("no policy set for environment %q and no %q set", ident.GetEnvironment(), DefaultPolicySet)}, "")
		return c
	}
	if c.compiled, err = s.d.Engine.Get(ps); err != nil {
		c.setErr = fmt.Errorf("compile policy set %s v%d: %w", ps.GetName(), ps.GetVersion(), err)
	}
	return c
}

// batchSlots caps the batches decided at once on a node to twice GOMAXPROCS.
// A batch is milliseconds of pure CPU; with 64 running at once the Go
// scheduler gave Raft's heartbeat and apply goroutines so small a share that
// a follower went more than max staleness without hearing from the leader
// and failed closed (seen under writ bench batch-authorize at 64 callers).
// Waiting callers queue here instead; throughput is unchanged.
type batchSlots struct {
	once sync.Once
	ch   chan struct{}
}

func (b *batchSlots) acquire(ctx context.Context) (func(), error) {
	b.once.Do(func() { b.ch = make(chan struct{}, 2*runtime.GOMAXPROCS(0)) })
	select {
	case b.ch <- struct{}{}:
		return func() { <-b.ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *authzService) batchAuthorize(ctx context.Context, m *writv1.BatchAuthorizeRequest, call *call) (*connect.Response[writv1.BatchAuthorizeResponse], error) {
	items := m.GetItems()
	switch {
	case len(items) == 0:
		return nil, invalidf("items: at least one is required")
	case len(items) > MaxBatchAuthorizeItems:
		return nil, invalidf("items: %d exceeds the limit of %d per call", len(items), MaxBatchAuthorizeItems)
	}
	release, err := s.batches.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	view, err := s.d.Backend.Read(ctx, readOptions(m.GetRead()))
	if err != nil {
		return nil, err
	}
	now := s.d.Clock.Now()
	// One random id per batch; item i's decision id is <batch id>_<i>.
	batchID, err := newID(s.d.Rand, "d_")
	if err != nil {
		return nil, err
	}
	// Most batches carry one credential: verify it once, not per item.
	var shared *checked
	var others map[string]*checked
	lookup := func(token string) *checked {
		if token == "" || token == m.GetCredential() {
			if shared == nil {
				shared = s.prepare(view, m.GetCredential(), now)
			}
			return shared
		}
		if c, ok := others[token]; ok {
			return c
		}
		if others == nil {
			others = make(map[string]*checked)
		}
		c := s.prepare(view, token, now)
		others[token] = c
		return c
	}
	out := &writv1.BatchAuthorizeResponse{AppliedIndex: view.Index(), Results: make([]*writv1.BatchAuthorizeResult, len(items))}
	allowed := true
	recs := batchRecords{start: call.start, index: view.Index(), batchID: batchID, items: len(items)}
	for i, it := range items {
		r := &writv1.BatchAuthorizeResult{}
		out.Results[i] = r
		dec, cedarCtx, err := s.batchItem(it, lookup, batchID+"_"+strconv.Itoa(i), m.GetIncludeAnnotations(), m.GetIncludeAuth())
		var ck *checked
		if err == nil || it.GetCredential() != "" || m.GetCredential() != "" {
			ck = lookup(it.GetCredential())
		}
		recs.add(i, it, ck, dec, cedarCtx, err)
		if err != nil {
			allowed = false
			r.Error = s.itemError(err)
			continue
		}
		allowed = allowed && dec.GetAllowed()
		r.Decision, r.LeaseId = dec, ck.lease.GetId()
	}
	recs.record(s.d.Audit)
	// The items are the records; the call's latency is observed as one
	// decision (allow when every item was allowed).
	call.skip = true
	call.ev.Decision = audit.Deny
	if allowed {
		call.ev.Decision = audit.Allow
	}
	return connect.NewResponse(out), nil
}

// batchItem decides one item exactly as Authorize would. It also returns
// the item's Cedar context, for its audit record.
func (s *authzService) batchItem(it *writv1.BatchAuthorizeItem, lookup func(string) *checked, decisionID string, annotations, withAuth bool) (*writv1.Decision, map[string]any, error) {
	if err := checkLen("action", it.GetAction(), 128); err != nil {
		return nil, nil, err
	}
	res, err := resourceFromAPI(it.GetResource())
	if err != nil {
		return nil, nil, err
	}
	c := lookup(it.GetCredential())
	if c.err != nil {
		return nil, nil, c.err
	}
	if !inScope(c.lease, it.GetAction(), res) {
		return denied("outside the credential's scope", c.lease.GetPolicySet(), c.lease.GetPolicyVersion(), ""), nil, nil
	}
	if c.identErr != nil {
		return nil, nil, c.identErr
	}
	cedarCtx, err := requestContext(it.GetContext(), c.evidence)
	if err != nil {
		return nil, nil, err
	}
	if c.delegation != nil {
		cedarCtx["delegation"] = c.delegation
	}
	if c.setErr != nil {
		return nil, cedarCtx, c.setErr
	}
	if c.noSet != nil {
		d := proto.Clone(c.noSet).(*writv1.Decision)
		d.DecisionId = decisionID
		if withAuth {
			d.Auth = c.auth
		}
		return d, cedarCtx, nil
	}
	dec, err := c.compiled.Decide(authz.Request{Identity: c.ident, Role: c.lease.GetRole(), Action: it.GetAction(), Resource: res, Context: cedarCtx, Converted: c.converted})
	if err != nil {
		return nil, cedarCtx, err
	}
	out := decisionToAPI(dec, decisionID)
	if withAuth {
		out.Auth = c.auth // what Authorize answers: the credential's context.auth
	}
	if !annotations {
		for _, p := range out.DeterminingPolicies {
			p.Annotations = nil
		}
	}
	return out, cedarCtx, nil
}

// itemError is the error a single Authorize call would have returned, as data.
func (s *authzService) itemError(err error) *writv1.ItemError {
	var ce *connect.Error
	if !errors.As(toConnect(s.d.Logger, err), &ce) {
		return &writv1.ItemError{Code: connect.CodeInternal.String(), Message: "internal error"}
	}
	out := &writv1.ItemError{Code: ce.Code().String(), Message: ce.Message()}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				out.Reason = info.GetReason()
			}
		}
	}
	return out
}
