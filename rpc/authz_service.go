package rpc

import (
	"context"
	"encoding/base32"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// DefaultPolicySet is evaluated for an identity whose environment has no set of its own.
const DefaultPolicySet = "default"

// reserved context keys are filled by Writ, never by the caller.
var reservedContextKeys = []string{"auth", "delegation"}

type authzService struct {
	d        Deps
	signers  sync.Map // kid → *credential.Signer (deriving a key costs as much as a signature)
	batches  batchSlots
	evidence evidenceCache
}

func (s *authzService) signer(key *fsmpb.SigningKey) (*credential.Signer, error) {
	if v, ok := s.signers.Load(key.GetKid()); ok {
		return v.(*credential.Signer), nil
	}
	sg, err := credential.NewSigner(key)
	if err != nil {
		return nil, err
	}
	s.signers.Store(key.GetKid(), sg)
	return sg, nil
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 128 random bits.
func newID(r io.Reader, prefix string) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b[:]), nil
}

func readOptions(ro *writv1.ReadOptions) ReadOptions {
	return ReadOptions{
		MinIndex:     ro.GetMinIndex(),
		Linearizable: ro.GetConsistency() == writv1.Consistency_CONSISTENCY_LINEARIZABLE,
	}
}

// policySetFor picks the policy set that governs an environment.
func policySetFor(view *fsm.View, env string) (*fsmpb.PolicySet, bool) {
	if ps, ok := view.PolicySet(env); ok {
		return ps, true
	}
	return view.PolicySet(DefaultPolicySet)
}

func requestContext(s *structpb.Struct, auth map[string]any) (map[string]any, error) {
	ctx := structMap(s)
	for _, k := range reservedContextKeys {
		if _, ok := ctx[k]; ok {
			return nil, invalidf("context key %q is reserved: Writ fills it", k)
		}
	}
	if ctx == nil {
		ctx = make(map[string]any, 1)
	}
	ctx["auth"] = auth
	return ctx, nil
}

func resourceFromAPI(r *writv1.Resource) (authz.Resource, error) {
	if r == nil {
		return authz.Resource{}, invalidf("resource is required")
	}
	if err := checkLen("resource type", r.GetType(), 128); err != nil {
		return authz.Resource{}, err
	}
	if err := checkLen("resource id", r.GetId(), 512); err != nil {
		return authz.Resource{}, err
	}
	return authz.Resource{Type: r.GetType(), ID: r.GetId(), Attributes: structMap(r.GetAttributes())}, nil
}

func decisionToAPI(dec authz.Decision, decisionID string) *writv1.Decision {
	out := &writv1.Decision{
		Allowed:       dec.Allowed,
		DecisionId:    decisionID,
		Errors:        dec.Errors,
		PolicySet:     dec.PolicySet,
		PolicyVersion: dec.Version,
		Reason:        dec.Reason,
	}
	for _, p := range dec.Determining {
		out.DeterminingPolicies = append(out.DeterminingPolicies, &writv1.DeterminingPolicy{Id: p.ID, Annotations: p.Annotations, Reason: p.Annotations["reason"]})
	}
	explainToAPI(out, dec)
	return out
}

func denied(reason, policySet string, version uint64, decisionID string) *writv1.Decision {
	return &writv1.Decision{Allowed: false, Reason: reason, PolicySet: policySet, PolicyVersion: version, DecisionId: decisionID}
}

// decide evaluates one request against the policy set governing the
// identity; converted (may be nil) is authz.Request.Converted.
func (s *authzService) decide(view *fsm.View, ident *fsmpb.Identity, role, action string, res authz.Resource, ctx map[string]any, converted map[string]authz.Converted) (authz.Decision, error) {
	ps, ok := policySetFor(view, ident.GetEnvironment())
	if !ok {
		return authz.Decision{Allowed: false, Reason: fmt.Sprintf("no policy set for environment %q and no %q set", ident.GetEnvironment(), DefaultPolicySet)}, nil
	}
	compiled, err := s.d.Engine.Get(ps)
	if err != nil {
		return authz.Decision{}, fmt.Errorf("compile policy set %s v%d: %w", ps.GetName(), ps.GetVersion(), err)
	}
	areq := authz.Request{Identity: ident, Role: role, Action: action, Resource: res, Context: ctx, Converted: converted}
	dec, err := compiled.Decide(areq)
	if err == nil {
		s.d.Policy.observe(s.d.Engine, view, areq, dec)
	}
	return dec, err
}

func peerAddr(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// AuthorizeAndIssue: authenticate the proof, decide locally, and on allow
// replicate the lease (one Raft write, group-committed) and mint its credential.
func (s *authzService) AuthorizeAndIssue(ctx context.Context, req *connect.Request[writv1.AuthorizeAndIssueRequest]) (*connect.Response[writv1.AuthorizeAndIssueResponse], error) {
	c := s.d.begin(audit.TypeDecision, "AuthorizeAndIssue", true)
	c.ev.AuthMethod = "" // the login sets it
	resp, err := s.authorizeAndIssue(ctx, req, c)
	c.end(err)
	return resp, toConnect(s.d.Logger, err)
}

func (s *authzService) authorizeAndIssue(ctx context.Context, req *connect.Request[writv1.AuthorizeAndIssueRequest], c *call) (*connect.Response[writv1.AuthorizeAndIssueResponse], error) {
	m := req.Msg
	proof := m.GetProof()
	if proof.GetMethod() == nil {
		return nil, invalidf("a proof is required: approle, jwt or mtls")
	}
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
	requestID := m.GetRequestId()
	if requestID == "" {
		if requestID, err = newID(s.d.Rand, "r_"); err != nil {
			return nil, err
		}
	} else {
		requestID = "c_" + requestID
	}
	leaseID, err := newID(s.d.Rand, "l_")
	if err != nil {
		return nil, err
	}
	decisionID, err := newID(s.d.Rand, "d_")
	if err != nil {
		return nil, err
	}
	c.ev.RequestID, c.ev.DecisionID, c.ev.Action = requestID, decisionID, intent.GetAction()
	c.ev.Resource = &audit.Resource{Type: res.Type, ID: res.ID}

	var minIndex uint64
	linearizable := false
	// One retry when the policy set changed between the decision and Apply.
	for attempt := 0; ; attempt++ {
		view, err := s.d.Backend.Read(ctx, ReadOptions{MinIndex: minIndex, Linearizable: linearizable})
		if err != nil {
			return nil, err
		}
		now := s.d.Clock.Now()
		principal, method, err := s.login(ctx, view, proof, req.Peer().Addr, now)
		if err != nil && !linearizable && retryFresher(authn.Reason(err)) {
			// A secret id or role created a moment ago on another node may not
			// have reached this one yet: look again at a linearizable view
			// before failing (only failed logins pay for this).
			linearizable = true
			attempt--
			continue
		}
		if err != nil {
			s.d.Logger.Info("login failed", "method", method, "reason", authn.Reason(err))
			s.loginFailed(ctx, c, method, proof, err)
			return nil, err
		}
		ctx := authn.WithActor(ctx, authn.MachineActor(principal))
		s.loggedIn(ctx, c, principal)
		role := principal.Role
		if m.GetRequestId() != "" {
			// A retry with the same request id names the same lease, which
			// is how the FSM recognises it (issuance dedupes by lease id).
			leaseID = derivedLeaseID(view.HMACKey(), principal.Identity.GetId(), requestID)
		}
		ttl := time.Duration(intent.GetTtlSeconds()) * time.Second
		if ttl == 0 {
			ttl = time.Duration(role.GetDefaultTtlNanos())
		}
		if ttl > time.Duration(role.GetMaxTtlNanos()) {
			return nil, invalidf("requested ttl %s exceeds the role's max ttl %s", ttl, time.Duration(role.GetMaxTtlNanos()))
		}
		cedarCtx, err := requestContext(intent.GetContext(), principal.Evidence)
		if err != nil {
			return nil, err
		}
		cedarCtx["requested_ttl"] = int64(ttl / time.Second)
		dec, err := s.decide(view, principal.Identity, role.GetName(), intent.GetAction(), res, cedarCtx, nil)
		if err != nil {
			return nil, err
		}
		apiDec := decisionToAPI(dec, decisionID)
		apiDec.Auth = evidenceStruct(principal.Evidence)
		c.ev.Type, c.ev.Phase, c.ev.Context = audit.TypeDecision, "", cedarCtx
		setDecision(c.ev, dec, decisionID)
		if !dec.Allowed {
			// A deny is answered at once and never written to the log.
			return connect.NewResponse(&writv1.AuthorizeAndIssueResponse{Decision: apiDec}), nil
		}
		// No lease is proposed unless its audit intent is durable.
		c.ev.Type, c.ev.LeaseID = audit.TypeIssue, leaseID
		if err := c.durable(ctx); err != nil {
			return nil, err
		}
		cmd := &fsmpb.Command{
			Header: &fsmpb.Header{RequestId: requestID},
			Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{
				Lease: &fsmpb.Lease{
					Id:            leaseID,
					Identity:      principal.Identity.GetId(),
					IdentityEpoch: principal.Identity.GetEpoch(),
					Role:          role.GetName(),
					RoleEpoch:     role.GetEpoch(),
					Scope: &fsmpb.Scope{
						Actions:   []string{intent.GetAction()},
						Resources: []*fsmpb.Resource{{Type: res.Type, Id: res.ID, Attributes: intent.GetResource().GetAttributes()}},
					},
					DecisionId:    decisionID,
					PolicySet:     dec.PolicySet,
					PolicyVersion: dec.Version,
					AuthMethod:    principal.Method,
				},
				TtlNanos:              int64(ttl),
				ConsumeSecretAccessor: principal.SecretAccessor,
				// The leader lowers this away while any server is older
				// than FSM version 3 (fsm.Lower).
				SkipUnlimitedUseCount: principal.SecretAccessor != "",
			}},
		}
		results, err := s.d.Backend.Propose(ctx, []*fsmpb.Command{cmd}, ProposeOptions{})
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
			if r.GetCode() == fsmpb.ResultCode_RESULT_CODE_PERMISSION_DENIED && principal.SecretAccessor != "" {
				// Apply refused the secret id (another login used it up
				// first, or it expired): say why as the login would now.
				return nil, s.secretRejected(ctx, proof, req.Peer().Addr, r.GetIndex(), err)
			}
			return nil, err
		}
		s.d.Metrics.LeasesIssued.WithLabelValues(issuedLogin).Inc()
		lease := r.GetLease()
		cred, err := s.mint(view, lease)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&writv1.AuthorizeAndIssueResponse{
			Decision:   apiDec,
			Lease:      leaseToAPI(lease, ""),
			Credential: cred,
			Index:      r.GetIndex(),
		}), nil
	}
}

// retryFresher names login failures that a lagging replica could cause.
func retryFresher(reason string) bool {
	switch reason {
	case "invalid_secret_id", "unknown_role_id", "identity_not_found", "unknown_role", "wrong_issuer":
		return true
	}
	return false
}

// mint signs a credential for a lease with the newest replicated signing key.
func (s *authzService) mint(view *fsm.View, l *fsmpb.Lease) (string, error) {
	keys := view.SigningKeys()
	if len(keys) == 0 {
		return "", ErrNotBootstrapped
	}
	c := credential.Claims{
		Issuer:        s.d.Issuer,
		Subject:       l.GetIdentity(),
		Audience:      []string{s.d.Audience},
		IssuedAt:      time.Unix(0, l.GetIssuedUnixNano()),
		NotBefore:     time.Unix(0, l.GetIssuedUnixNano()),
		Expiry:        time.Unix(0, l.GetExpiresUnixNano()),
		ID:            l.GetId(),
		Role:          l.GetRole(),
		Owner:         l.GetOwner(),
		Environment:   l.GetEnvironment(),
		Parent:        l.GetParent(),
		PolicySet:     l.GetPolicySet(),
		PolicyVersion: l.GetPolicyVersion(),
	}
	c.Scope.Actions = append(c.Scope.Actions, l.GetScope().GetActions()...)
	for _, r := range l.GetScope().GetResources() {
		c.Scope.Resources = append(c.Scope.Resources, credential.ResourceRef{Type: r.GetType(), ID: r.GetId()})
	}
	sg, err := s.signer(keys[0])
	if err != nil {
		return "", err
	}
	return sg.Mint(c)
}

// credentialLease verifies a credential and checks its lease at now: the
// signature (cached), then the lease in the local state (active, unexpired,
// epochs current, ancestors valid).
func (s *authzService) credentialLease(view *fsm.View, token string, now time.Time) (*credential.Claims, *fsmpb.Lease, string, error) {
	if token == "" {
		return nil, nil, "", invalidf("credential is required")
	}
	claims, err := s.d.Verifier.Verify(token, view, now)
	if err != nil {
		return nil, nil, "", err
	}
	lease, reason := view.CheckLease(claims.ID, now)
	return claims, lease, reason, nil
}

func inScope(l *fsmpb.Lease, action string, res authz.Resource) bool {
	okAction := false
	for _, a := range l.GetScope().GetActions() {
		if a == action {
			okAction = true
			break
		}
	}
	if !okAction {
		return false
	}
	for _, r := range l.GetScope().GetResources() {
		if r.GetType() == res.Type && r.GetId() == res.ID {
			return true
		}
	}
	return false
}

// leaseEvidence is what policies see as context.auth on calls made with a credential.
func leaseEvidence(l *fsmpb.Lease) map[string]any {
	return map[string]any{
		"method":       "credential",
		"login_method": l.GetAuthMethod(),
		"lease_id":     l.GetId(),
		"role":         l.GetRole(),
	}
}

// leaseAuth is a lease's context.auth in the forms a decision needs: the
// map the request's context and the audit record hold, the same converted
// for Cedar (authz.Request.Converted), and the Struct the answer carries
// as decision.auth. All are shared by every call made with the lease and
// must never be modified.
type leaseAuth struct {
	authMethod, role string // what the evidence was built from (checked on every hit)
	evidence         map[string]any
	converted        map[string]authz.Converted // nil: Decide converts evidence itself
	st               *structpb.Struct
}

// evidenceCache keeps each lease's leaseAuth: building the map and the
// Struct took 1.4 KB and ~2 us per Authorize (BenchmarkAuthorizeInProcess),
// for values that depend only on the lease's id, role and auth method,
// which never change. It is bounded: when it holds evidenceCacheMax leases
// it starts over (a lease seen again is rebuilt once).
type evidenceCache struct {
	mu sync.RWMutex
	m  map[string]*leaseAuth
}

const evidenceCacheMax = 1 << 14

func (c *evidenceCache) get(l *fsmpb.Lease) *leaseAuth {
	c.mu.RLock()
	a := c.m[l.GetId()]
	c.mu.RUnlock()
	if a != nil && a.authMethod == l.GetAuthMethod() && a.role == l.GetRole() {
		return a
	}
	ev := leaseEvidence(l)
	a = &leaseAuth{authMethod: l.GetAuthMethod(), role: l.GetRole(), evidence: ev, st: evidenceStruct(ev)}
	if cv, err := authz.ConvertValue(ev); err == nil {
		a.converted = map[string]authz.Converted{"auth": cv}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= evidenceCacheMax {
		c.m = make(map[string]*leaseAuth)
	}
	c.m[l.GetId()] = a
	c.mu.Unlock()
	return a
}

// Authorize checks a credential for one action on one resource, now, on this
// node's state. No write.
func (s *authzService) Authorize(ctx context.Context, req *connect.Request[writv1.AuthorizeRequest]) (*connect.Response[writv1.AuthorizeResponse], error) {
	c := s.d.begin(audit.TypeUse, "Authorize", true)
	resp, err := s.authorize(ctx, req.Msg, c)
	c.end(err)
	return resp, toConnect(s.d.Logger, err)
}

func (s *authzService) authorize(ctx context.Context, m *writv1.AuthorizeRequest, c *call) (*connect.Response[writv1.AuthorizeResponse], error) {
	if err := checkLen("action", m.GetAction(), 128); err != nil {
		return nil, err
	}
	res, err := resourceFromAPI(m.GetResource())
	if err != nil {
		return nil, err
	}
	view, err := s.d.Backend.Read(ctx, readOptions(m.GetRead()))
	if err != nil {
		return nil, err
	}
	c.ev.Action, c.ev.Resource, c.ev.AppliedIndex = m.GetAction(), &audit.Resource{Type: res.Type, ID: res.ID}, view.Index()
	lease, ident, err := s.checkCredential(view, m.GetCredential(), s.d.Clock.Now(), c)
	if err != nil {
		return nil, err
	}
	dec, err := s.decideForLease(view, lease, ident, m.GetAction(), res, m.GetContext(), c.ev)
	if err != nil {
		return nil, err
	}
	if !m.GetIncludeAuth() {
		dec.Auth = nil // asked for: see AuthorizeRequest.include_auth
	}
	return connect.NewResponse(&writv1.AuthorizeResponse{LeaseId: lease.GetId(), AppliedIndex: view.Index(), Decision: dec}), nil
}

// checkCredential verifies a credential and returns its lease when the lease
// is live at now on view, with the lease's identity (nil when deleted); a
// rejected lease is an Unauthenticated error with the lease's reason. c
// (nil: not audited) learns the holder, or the keyed hash of a credential
// that did not verify.
func (s *authzService) checkCredential(view *fsm.View, token string, now time.Time, c *call) (*fsmpb.Lease, *fsmpb.Identity, error) {
	_, lease, reason, err := s.credentialLease(view, token, now)
	if err != nil {
		if c != nil {
			s.unknownCredential(c, token)
		}
		return nil, nil, err
	}
	ident, _ := view.Identity(lease.GetIdentity())
	if c != nil {
		c.ev.LeaseID, c.ev.Actor = lease.GetId(), leaseActor(ident, lease)
		c.ev.Healthy = reason == ""
	}
	if reason != "" {
		return nil, nil, withReason(connect.CodeUnauthenticated, reason, "credential rejected: lease "+strings.ReplaceAll(reason, "_", " "))
	}
	return lease, ident, nil
}

// decideForLease answers one Authorize question for a live lease on view
// and its identity (checkCredential's; nil when deleted): outside the
// lease's scope is a deny without Cedar, otherwise Cedar decides with the
// lease's evidence as context.auth. The decision is copied into ev (the
// call's audit record).
func (s *authzService) decideForLease(view *fsm.View, lease *fsmpb.Lease, ident *fsmpb.Identity, action string, res authz.Resource, reqCtx *structpb.Struct, ev *audit.Event) (*writv1.Decision, error) {
	if !inScope(lease, action, res) {
		out := denied("outside the credential's scope", lease.GetPolicySet(), lease.GetPolicyVersion(), "")
		ev.Decision, ev.Reason, ev.PolicySet, ev.PolicyVersion = audit.Deny, out.GetReason(), lease.GetPolicySet(), lease.GetPolicyVersion()
		return out, nil
	}
	if ident == nil {
		return nil, withReason(connect.CodeUnauthenticated, "identity_deleted", "credential rejected: identity deleted")
	}
	auth := s.evidence.get(lease)
	cedarCtx, err := requestContext(reqCtx, auth.evidence)
	if err != nil {
		return nil, err
	}
	if lease.GetParent() != "" {
		cedarCtx["delegation"] = delegationContext(view, lease.GetParent(), lease.GetDepth())
	}
	dec, err := s.decide(view, ident, lease.GetRole(), action, res, cedarCtx, auth.converted)
	if err != nil {
		return nil, err
	}
	decisionID, err := newID(s.d.Rand, "d_")
	if err != nil {
		return nil, err
	}
	out := decisionToAPI(dec, decisionID)
	out.Auth = auth.st
	ev.Context = cedarCtx
	setDecision(ev, dec, decisionID)
	return out, nil
}

// Verify introspects a credential (RFC 7662 style): an inactive credential is
// an answer, not an error; only a malformed request is an error.
func (s *authzService) Verify(ctx context.Context, req *connect.Request[writv1.VerifyRequest]) (*connect.Response[writv1.VerifyResponse], error) {
	c := s.d.begin(audit.TypeUse, "Verify", true)
	resp, err := s.verify(ctx, req.Msg, c)
	c.end(err)
	return resp, toConnect(s.d.Logger, err)
}

func (s *authzService) verify(ctx context.Context, m *writv1.VerifyRequest, c *call) (*connect.Response[writv1.VerifyResponse], error) {
	if m.GetCredential() == "" {
		return nil, invalidf("credential is required")
	}
	view, err := s.d.Backend.Read(ctx, readOptions(m.GetRead()))
	if err != nil {
		return nil, err
	}
	now := s.d.Clock.Now()
	claims, lease, reason, err := s.credentialLease(view, m.GetCredential(), now)
	out := &writv1.VerifyResponse{AppliedIndex: view.Index()}
	c.ev.AppliedIndex, c.ev.Decision = view.Index(), audit.Deny
	if err != nil {
		s.unknownCredential(c, m.GetCredential())
		r := credentialReason(err)
		if r == "" {
			return nil, err
		}
		out.Reason, c.ev.Reason = r, r
		return connect.NewResponse(out), nil
	}
	ident, _ := view.Identity(lease.GetIdentity())
	c.ev.LeaseID, c.ev.Actor, c.ev.Reason = lease.GetId(), leaseActor(ident, lease), reason
	if reason == "" {
		c.ev.Decision, c.ev.Healthy = audit.Allow, true
	}
	out.Active = reason == ""
	out.Reason = reason
	out.Lease = leaseToAPI(lease, reason)
	out.Claims = claimsStruct(claims)
	return connect.NewResponse(out), nil
}

func claimsStruct(c *credential.Claims) *structpb.Struct {
	m := map[string]any{
		"iss": c.Issuer, "sub": c.Subject, "jti": c.ID,
		"iat": float64(c.IssuedAt.Unix()), "exp": float64(c.Expiry.Unix()),
		"role": c.Role, "owner": c.Owner, "environment": c.Environment,
		"policy_set": c.PolicySet, "policy_version": float64(c.PolicyVersion),
	}
	aud := make([]any, 0, len(c.Audience))
	for _, a := range c.Audience {
		aud = append(aud, a)
	}
	m["aud"] = aud
	if c.Parent != "" {
		m["parent"] = c.Parent
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil
	}
	return st
}

// Renew extends a lease: a fresh authorization of its scope with fresh
// context, bounded by the role's max TTL and max renewals.
func (s *authzService) Renew(ctx context.Context, req *connect.Request[writv1.RenewRequest]) (*connect.Response[writv1.RenewResponse], error) {
	c := s.d.begin(audit.TypeDecision, "Renew", true)
	resp, err := s.renew(ctx, req.Msg, c)
	c.end(err)
	return resp, toConnect(s.d.Logger, err)
}

func (s *authzService) renew(ctx context.Context, m *writv1.RenewRequest, c *call) (*connect.Response[writv1.RenewResponse], error) {
	if m.GetTtlSeconds() < 0 {
		return nil, invalidf("ttl_seconds must not be negative")
	}
	view, err := s.d.Backend.Read(ctx, ReadOptions{})
	if err != nil {
		return nil, err
	}
	now := s.d.Clock.Now()
	_, lease, reason, err := s.credentialLease(view, m.GetCredential(), now)
	if err != nil {
		s.unknownCredential(c, m.GetCredential())
		return nil, err
	}
	ident, _ := view.Identity(lease.GetIdentity())
	c.ev.LeaseID, c.ev.Actor, c.ev.AppliedIndex = lease.GetId(), leaseActor(ident, lease), view.Index()
	if reason != "" {
		return nil, withReason(connect.CodeUnauthenticated, reason, "credential rejected: lease "+strings.ReplaceAll(reason, "_", " "))
	}
	role, _ := view.Role(lease.GetRole())
	ctx = authn.WithActor(ctx, authn.Actor{Kind: authn.ActorMachine, ID: lease.GetIdentity(), Method: "credential", Role: lease.GetRole()})
	ttl := time.Duration(m.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = time.Duration(role.GetDefaultTtlNanos())
	}
	cedarCtx, err := requestContext(m.GetContext(), leaseEvidence(lease))
	if err != nil {
		return nil, err
	}
	cedarCtx["requested_ttl"] = int64(ttl / time.Second)
	if lease.GetParent() != "" {
		cedarCtx["delegation"] = delegationContext(view, lease.GetParent(), lease.GetDepth())
	}
	decisionID, err := newID(s.d.Rand, "d_")
	if err != nil {
		return nil, err
	}
	// Every (action, resource) of the scope must still be allowed.
	var dec authz.Decision
	for _, action := range lease.GetScope().GetActions() {
		for _, r := range lease.GetScope().GetResources() {
			dec, err = s.decide(view, ident, lease.GetRole(), action, authz.Resource{Type: r.GetType(), ID: r.GetId(), Attributes: structMap(r.GetAttributes())}, cedarCtx, nil)
			if err != nil {
				return nil, err
			}
			if !dec.Allowed {
				c.ev.Action, c.ev.Resource, c.ev.Context = action, &audit.Resource{Type: r.GetType(), ID: r.GetId()}, cedarCtx
				setDecision(c.ev, dec, decisionID)
				return connect.NewResponse(&writv1.RenewResponse{Decision: decisionToAPI(dec, decisionID)}), nil
			}
		}
	}
	requestID, err := newID(s.d.Rand, "r_")
	if err != nil {
		return nil, err
	}
	// No renewal is proposed unless its audit intent is durable.
	c.ev.Type, c.ev.RequestID, c.ev.Context = audit.TypeRenew, requestID, cedarCtx
	setDecision(c.ev, dec, decisionID)
	if err := c.durable(ctx); err != nil {
		return nil, err
	}
	cmd := &fsmpb.Command{
		Header: &fsmpb.Header{RequestId: requestID},
		Payload: &fsmpb.Command_RenewLease{RenewLease: &fsmpb.RenewLease{
			LeaseId: lease.GetId(), TtlNanos: int64(ttl), PolicySet: dec.PolicySet, PolicyVersion: dec.Version,
		}},
	}
	results, err := s.d.Backend.Propose(ctx, []*fsmpb.Command{cmd}, ProposeOptions{})
	if err != nil {
		return nil, err
	}
	c.ev.AppliedIndex = results[0].GetIndex()
	if err := resultError(results[0]); err != nil {
		return nil, err
	}
	s.d.Metrics.LeasesRenewed.Inc()
	renewed := results[0].GetLease()
	cred, err := s.mint(view, renewed)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&writv1.RenewResponse{
		Decision: decisionToAPI(dec, decisionID), Lease: leaseToAPI(renewed, ""), Credential: cred, Index: results[0].GetIndex(),
	}), nil
}

// Revoke invalidates a lease (and so its delegation subtree), everything an
// identity, role or owner holds, or everything delegated from a lease, in
// one log entry, and returns once every node in contact with the leader has
// applied it. A dry run counts the live leases it would hit and writes
// nothing.
func (s *authzService) Revoke(ctx context.Context, req *connect.Request[writv1.RevokeRequest]) (*connect.Response[writv1.RevokeResponse], error) {
	c := s.d.begin(audit.TypeRevoke, "Revoke", false)
	resp, err := s.revoke(ctx, req, c)
	c.end(err)
	return resp, toConnect(s.d.Logger, err)
}

// revoke never fails closed on the audit log: refusing a revocation because
// its record cannot be written would keep a credential alive. Its record is
// spooled like a decision (and a loss shows as a gap).
func (s *authzService) revoke(ctx context.Context, req *connect.Request[writv1.RevokeRequest], c *call) (*connect.Response[writv1.RevokeResponse], error) {
	m := req.Msg
	c.ev.Reason = m.GetReason()
	if len(m.GetReason()) > 1024 {
		return nil, invalidf("reason is longer than 1024 bytes")
	}
	if cred, ok := m.GetTarget().(*writv1.RevokeRequest_Credential); ok && !m.GetDryRun() {
		// The holder ends its own lease: no admin token needed.
		idx, err := s.complete(ctx, cred.Credential, m.GetReason(), c)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&writv1.RevokeResponse{Index: idx}), nil
	}
	if _, ok := m.GetTarget().(*writv1.RevokeRequest_Credential); !ok {
		if err := checkAdmin(ctx, s.d, req.Header()); err != nil {
			s.d.auditAdminLoginFailure(req.Header(), req.Spec().Procedure, err)
			c.skip = true
			return nil, err
		}
		actor := authn.AdminActor(bearer(req.Header()), sourceIP(req.Peer().Addr))
		ctx = authn.WithActor(ctx, actor)
		c.ev.Actor, c.ev.AuthMethod = s.d.auditActor(actor, bearer(req.Header())), actor.Method
	}
	reason := nonEmpty(m.GetReason(), "revoked by admin")
	var (
		cmd    *fsmpb.Command
		target fsm.Target
	)
	switch t := m.GetTarget().(type) {
	case *writv1.RevokeRequest_Credential: // dry run of the holder's own lease
		view, err := s.d.Backend.Read(ctx, ReadOptions{})
		if err != nil {
			return nil, err
		}
		claims, err := s.d.Verifier.Verify(t.Credential, view, s.d.Clock.Now())
		if err != nil {
			s.unknownCredential(c, t.Credential)
			return nil, err
		}
		c.ev.Actor = claimsActor(view, claims)
		target = fsm.Target{Kind: fsm.RevocationLease, ID: claims.ID}
	case *writv1.RevokeRequest_LeaseId:
		if err := checkLen("lease_id", t.LeaseId, 128); err != nil {
			return nil, err
		}
		target = fsm.Target{Kind: fsm.RevocationLease, ID: t.LeaseId}
		cmd = &fsmpb.Command{Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: t.LeaseId, Reason: reason}}}
	case *writv1.RevokeRequest_Subtree:
		if err := checkLen("subtree", t.Subtree, 128); err != nil {
			return nil, err
		}
		target = fsm.Target{Kind: fsm.RevocationSubtree, ID: t.Subtree}
		cmd = &fsmpb.Command{Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: t.Subtree, Reason: reason, DescendantsOnly: true}}}
	case *writv1.RevokeRequest_Identity:
		if err := checkLen("identity", t.Identity, 256); err != nil {
			return nil, err
		}
		target = fsm.Target{Kind: fsm.RevocationIdentity, ID: t.Identity}
		cmd = &fsmpb.Command{Payload: &fsmpb.Command_RevokeIdentity{RevokeIdentity: &fsmpb.RevokeIdentity{IdentityId: t.Identity, Reason: reason}}}
	case *writv1.RevokeRequest_Role:
		if err := checkLen("role", t.Role, 256); err != nil {
			return nil, err
		}
		target = fsm.Target{Kind: fsm.RevocationRole, ID: t.Role}
		cmd = &fsmpb.Command{Payload: &fsmpb.Command_RevokeRole{RevokeRole: &fsmpb.RevokeRole{Name: t.Role, Reason: reason}}}
	case *writv1.RevokeRequest_Owner:
		if err := checkLen("owner", t.Owner, 256); err != nil {
			return nil, err
		}
		target = fsm.Target{Kind: fsm.RevocationOwner, ID: t.Owner}
		cmd = &fsmpb.Command{Payload: &fsmpb.Command_RevokeOwner{RevokeOwner: &fsmpb.RevokeOwner{Owner: t.Owner, Reason: reason}}}
	default:
		return nil, invalidf("a revocation target is required: lease_id, identity, role, owner, subtree or credential")
	}
	c.ev.Target = revocationTarget(target)
	if target.Kind == fsm.RevocationLease {
		c.ev.LeaseID = target.ID
	}
	if m.GetDryRun() {
		// The blast radius on a linearizable view (every write committed
		// before the call counts); nothing is written.
		c.ev.Phase = phaseDryRun
		view, err := s.d.Backend.Read(ctx, ReadOptions{Linearizable: true})
		if err != nil {
			return nil, err
		}
		n := view.BlastRadius(target, s.d.Clock.Now())
		c.ev.AppliedIndex, c.ev.Context = view.Index(), map[string]any{"live_leases": int64(n)}
		return connect.NewResponse(&writv1.RevokeResponse{
			DryRun: true, LiveLeases: n, AppliedIndex: view.Index(),
		}), nil
	}
	idx, err := s.commitRevocation(ctx, cmd, c, revokeTarget(m))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&writv1.RevokeResponse{Index: idx}), nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
