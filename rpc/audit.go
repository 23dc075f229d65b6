package rpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/telemetry"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Auditor is what handlers need from the audit log (audit.Log implements
// it). The call pattern is in audit/DESIGN.md: one begin/end per RPC for
// its outcome record, plus Durable before any change that must not happen
// unaudited (issuance, renewal, admin changes).
type Auditor interface {
	// Durable writes ev and returns once it is durable; an error (wrapping
	// audit.ErrNotDurable) means: do not make the change.
	Durable(ctx context.Context, ev *audit.Event) error
	// Record spools ev; it never blocks.
	Record(ev *audit.Event)
	// RecordBy spools a request's ev; when the queue is full it waits for
	// room until deadline (zero: the configured queue_wait) instead of
	// dropping it at once (back-pressure).
	RecordBy(ev *audit.Event, deadline time.Time)
	// QueueDeadline is how long a request starting now may wait for room
	// (one deadline shared by a batch's records).
	QueueDeadline() time.Time
	// Hash is the keyed hash under which records show a secret.
	Hash(value string) string
	Watch(streams []audit.Stream, buffer int) *audit.Subscription
	Config() audit.Config
}

// nopAuditor audits nothing (Deps.Audit nil: tests and benchmarks).
type nopAuditor struct{}

func (nopAuditor) Durable(context.Context, *audit.Event) error { return nil }
func (nopAuditor) Record(*audit.Event)                         {}
func (nopAuditor) RecordBy(*audit.Event, time.Time)            {}
func (nopAuditor) QueueDeadline() time.Time                    { return time.Time{} }
func (nopAuditor) Hash(string) string                          { return "" }
func (nopAuditor) Watch([]audit.Stream, int) *audit.Subscription {
	return nil
}
func (nopAuditor) Config() audit.Config { return audit.Config{} }

// ---- the call pattern ----

// call is one audited RPC: the handler fills ev as it learns who called and
// what was decided; end records it (with the error, if any) and observes the
// decision latency. Handlers that change state also call durable first.
type call struct {
	d     *Deps
	ev    *audit.Event
	start time.Time
	// decision: the RPC is a decision (its latency goes to
	// writ_decision_duration_seconds by result).
	decision bool
	// skip: the handler already recorded everything (or nothing is due).
	skip bool
}

// begin starts the audit record of one RPC.
func (d *Deps) begin(t audit.Type, method string, decision bool) *call {
	now := time.Now()
	return &call{d: d, ev: &audit.Event{Time: now, Type: t, Method: method, AuthMethod: authCredential}, start: now, decision: decision}
}

// end records the call's outcome. err is what the handler returns.
func (c *call) end(err error) {
	if c.decision {
		result := c.ev.Decision
		if err != nil {
			result = "error"
		}
		if result == "" {
			result = audit.Deny
		}
		c.d.Metrics.Decision(c.ev.Method, result).Observe(time.Since(c.start).Seconds())
	}
	if c.skip {
		return
	}
	if err != nil {
		c.ev.Error = auditError(err)
		if c.ev.Type == audit.TypeIssue || c.ev.Type == audit.TypeRenew || c.ev.Type == audit.TypeAdmin {
			c.ev.Phase = audit.PhaseResult
		}
	}
	c.d.Audit.RecordBy(c.ev, time.Time{})
}

// durable writes the intent record of a change before it is proposed: a
// copy of the call's event with Phase intent. On error the caller returns
// it (Unavailable, reason audit_unavailable) and makes no change; end then
// records the aborted result. On success the result record follows at end.
func (c *call) durable(ctx context.Context) error {
	intent := *c.ev
	intent.Phase = audit.PhaseIntent
	if err := c.d.Audit.Durable(ctx, &intent); err != nil {
		return err
	}
	c.ev.Phase = audit.PhaseResult
	return nil
}

// auditError is how the caller saw err: its Connect code and reason.
func auditError(err error) *audit.Error {
	ce := toConnect(slog.New(slog.DiscardHandler), err)
	var cerr *connect.Error
	if !errors.As(ce, &cerr) {
		return &audit.Error{Code: connect.CodeInternal.String()}
	}
	out := &audit.Error{Code: cerr.Code().String()}
	for _, d := range cerr.Details() {
		if v, err := d.Value(); err == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				out.Reason = info.GetReason()
			}
		}
	}
	return out
}

// ---- actors ----

type actorKey struct{}

// callerInfo is what the admin interceptor learned about an admin caller.
type callerInfo struct {
	actor     audit.Actor
	procedure string
	recorded  bool // a handler recorded the call itself
}

func withCaller(ctx context.Context, ci *callerInfo) context.Context {
	return context.WithValue(ctx, actorKey{}, ci)
}

// callerFrom returns the admin caller, or a placeholder when the call did
// not come through the admin interceptor.
func callerFrom(ctx context.Context) *callerInfo {
	if ci, ok := ctx.Value(actorKey{}).(*callerInfo); ok {
		return ci
	}
	return &callerInfo{actor: audit.Actor{Kind: "admin", Human: true}}
}

// auditAdminLoginFailure records a refused admin token (a human's failed
// login) and counts it.
func (d *Deps) auditAdminLoginFailure(h http.Header, procedure string, err error) {
	c := d.begin(audit.TypeLogin, procedureMethod(procedure), false)
	c.ev.AuthMethod = authAdminToken
	c.ev.Actor = audit.Actor{Kind: "admin", Human: true}
	if tok := bearer(h); tok != "" {
		c.ev.Actor.ID = "admin:" + d.Audit.Hash(tok)
	}
	c.ev.Decision = audit.Deny
	info := auditError(err)
	d.Metrics.LoginFailures.WithLabelValues(authAdminToken, info.Reason).Inc()
	c.end(err)
}

// auditedChange makes one admin change between a durable intent record and
// its result record: no change is proposed unless its intent is durable.
// change returns the Raft index that committed it.
func (d *Deps) auditedChange(ctx context.Context, target, requestID string, change func() (uint64, error)) (uint64, error) {
	ci := callerFrom(ctx)
	ci.recorded = true
	c := d.begin(audit.TypeAdmin, procedureMethod(ci.procedure), false)
	c.ev.Actor, c.ev.Target, c.ev.RequestID, c.ev.AuthMethod = ci.actor, target, requestID, authAdminToken
	if err := c.durable(ctx); err != nil {
		c.end(err)
		return 0, err
	}
	idx, err := change()
	c.ev.AppliedIndex = idx
	c.end(err)
	return idx, err
}

// adminActor is the audit actor of an admin token's holder.
func (d *Deps) adminActor(token string) audit.Actor {
	return d.auditActor(authn.AdminActor(token, ""), token)
}

// auditActor turns the actor authn established (authn.WithActor) into the
// record's actor: its kind decides human or machine, and so the stream. A
// human with the admin token is named by the keyed hash of the token
// ("admin:hmac-sha256:..."), never the token nor authn's unkeyed short hash.
func (d *Deps) auditActor(a authn.Actor, token string) audit.Actor {
	if a.IsHuman() {
		out := audit.Actor{ID: a.ID, Kind: "admin", Human: true}
		if token != "" {
			out.ID = "admin:" + d.Audit.Hash(token)
		}
		return out
	}
	return audit.Actor{ID: a.ID, Role: a.Role}
}

// identityActor is the machine a login established (authn.MachineActor),
// with its identity's kind and owner.
func (d *Deps) identityActor(ident *fsmpb.Identity, a authn.Actor) audit.Actor {
	out := d.auditActor(a, "")
	out.ID, out.Kind, out.Owner = ident.GetId(), ident.GetKind(), ident.GetOwner()
	return out
}

// Auth methods of callers that present something other than a login proof.
const (
	authAdminToken = "admin_token"
	authCredential = "credential" // a Writ credential (the lease's login method is in context.auth)
)

// claimsActor is the holder of a verified credential.
func claimsActor(view *fsm.View, claims *credential.Claims) audit.Actor {
	a := audit.Actor{ID: claims.Subject, Owner: claims.Owner, Role: claims.Role}
	if ident, ok := view.Identity(claims.Subject); ok {
		a.Kind = ident.GetKind()
	}
	return a
}

// leaseActor is the holder of a lease (identity looked up for its kind).
func leaseActor(ident *fsmpb.Identity, l *fsmpb.Lease) audit.Actor {
	a := audit.Actor{ID: l.GetIdentity(), Owner: l.GetOwner(), Role: l.GetRole()}
	if ident != nil {
		a.Kind = ident.GetKind()
	}
	return a
}

// setDecision copies a decision into the record.
func setDecision(ev *audit.Event, dec authz.Decision, decisionID string) {
	ev.DecisionID = decisionID
	ev.Decision = audit.Deny
	if dec.Allowed {
		ev.Decision = audit.Allow
	}
	ev.Reason = dec.Reason
	ev.PolicySet = dec.PolicySet
	ev.PolicyVersion = dec.Version
	ev.Policies = nil
	for _, p := range dec.Determining {
		ev.Policies = append(ev.Policies, p.ID)
	}
}

// commandTarget names what an admin command changes: "role/ci-deploy".
// Commands it does not know are named by their payload type, so a new
// admin command is audited (less precisely) before anyone extends this.
func commandTarget(cmd *fsmpb.Command) string {
	switch p := cmd.GetPayload().(type) {
	case *fsmpb.Command_PutIdentity:
		return "identity/" + p.PutIdentity.GetIdentity().GetId()
	case *fsmpb.Command_DeleteIdentity:
		return "identity/" + p.DeleteIdentity.GetId()
	case *fsmpb.Command_PutRole:
		return "role/" + p.PutRole.GetRole().GetName()
	case *fsmpb.Command_DeleteRole:
		return "role/" + p.DeleteRole.GetName()
	case *fsmpb.Command_CreateSecretId:
		return "secret_id/" + p.CreateSecretId.GetSecretId().GetAccessor()
	case *fsmpb.Command_RevokeSecretId:
		return "secret_id/" + p.RevokeSecretId.GetAccessor()
	case *fsmpb.Command_PutPolicySet:
		return "policy_set/" + p.PutPolicySet.GetPolicySet().GetName()
	case *fsmpb.Command_DeletePolicySet:
		return "policy_set/" + p.DeletePolicySet.GetName()
	case *fsmpb.Command_RevokeLease:
		if p.RevokeLease.GetDescendantsOnly() {
			return "subtree/" + p.RevokeLease.GetLeaseId()
		}
		return "lease/" + p.RevokeLease.GetLeaseId()
	case *fsmpb.Command_RevokeIdentity:
		return "identity/" + p.RevokeIdentity.GetIdentityId()
	case *fsmpb.Command_RevokeRole:
		return "role/" + p.RevokeRole.GetName()
	case *fsmpb.Command_RevokeOwner:
		return "owner/" + p.RevokeOwner.GetOwner()
	case *fsmpb.Command_PutAuthConfig:
		return "auth_config/" + p.PutAuthConfig.GetConfig().GetName()
	case *fsmpb.Command_DeleteAuthConfig:
		return "auth_config/" + p.DeleteAuthConfig.GetName()
	case *fsmpb.Command_PutSigningKey:
		return "signing_key/" + p.PutSigningKey.GetKey().GetKid()
	case *fsmpb.Command_RetireSigningKey:
		return "signing_key/" + p.RetireSigningKey.GetKid()
	case *fsmpb.Command_RegisterNode:
		return "node/" + p.RegisterNode.GetNode().GetId()
	case *fsmpb.Command_RemoveNode:
		return "node/" + p.RemoveNode.GetNodeId()
	case *fsmpb.Command_CheckpointAudit:
		return "node/" + p.CheckpointAudit.GetNodeId()
	}
	m := cmd.ProtoReflect()
	if od := m.Descriptor().Oneofs().ByName("payload"); od != nil {
		if f := m.WhichOneof(od); f != nil {
			return string(f.Name())
		}
	}
	return ""
}

// procedureMethod turns "/writ.v1.AdminService/PutRole" into "PutRole".
func procedureMethod(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// metricsOrNew returns m, or unregistered metrics.
func metricsOrNew(m *telemetry.Metrics) *telemetry.Metrics {
	if m == nil {
		return telemetry.NewMetrics(nil)
	}
	return m
}

// ---- authz event sites ----

// loginFailed records a refused proof. Nothing secret enters the record:
// an AppRole's role id and secret id, and a JWT, appear only as keyed hashes
// (so repeated attempts with one value correlate); an mTLS login names the
// client certificate by its SHA-256 fingerprint (public), and JWT and mTLS
// logins name the role they asked for (not secret).
func (s *authzService) loginFailed(ctx context.Context, c *call, method string, proof *writv1.Proof, err error) {
	reason := authn.Reason(err)
	s.d.Metrics.LoginFailures.WithLabelValues(method, reason).Inc()
	ev := &audit.Event{Type: audit.TypeLogin, Method: c.ev.Method, RequestID: c.ev.RequestID, AuthMethod: method, Decision: audit.Deny, Reason: reason}
	switch m := proof.GetMethod().(type) {
	case *writv1.Proof_Approle:
		ev.Hashes = map[string]string{"role_id": s.d.Audit.Hash(m.Approle.GetRoleId()), "secret_id": s.d.Audit.Hash(m.Approle.GetSecretId())}
	case *writv1.Proof_Jwt:
		ev.Actor.Role = m.Jwt.GetRole()
		if tok := m.Jwt.GetToken(); tok != "" {
			ev.Hashes = map[string]string{"jwt": s.d.Audit.Hash(tok)}
		}
	case *writv1.Proof_Mtls:
		ev.Actor.Role = m.Mtls.GetRole()
		if chain := peerCertificates(ctx); len(chain) > 0 {
			sum := sha256.Sum256(chain[0].Raw)
			ev.Context = map[string]any{"auth": map[string]any{authn.EvidenceCertFingerprint: hex.EncodeToString(sum[:])}}
		}
	}
	ev.Error = auditError(err)
	s.d.Audit.RecordBy(ev, time.Time{})
	c.skip = true // the login record is the call's record
}

// loggedIn records an accepted proof and makes its principal (the machine
// actor authn put in ctx) the call's actor.
func (s *authzService) loggedIn(ctx context.Context, c *call, p *authn.Principal) {
	a, ok := authn.ActorFrom(ctx)
	if !ok {
		a = authn.MachineActor(p)
	}
	c.ev.Actor = s.d.identityActor(p.Identity, a)
	c.ev.AuthMethod = p.Method
	ev := &audit.Event{Type: audit.TypeLogin, Method: c.ev.Method, RequestID: c.ev.RequestID, Actor: c.ev.Actor, AuthMethod: p.Method, Decision: audit.Allow}
	if p.SecretAccessor != "" {
		ev.Target = "secret_id/" + p.SecretAccessor
	}
	if cfg, _ := p.Evidence[authn.EvidenceAuthConfig].(string); cfg != "" {
		ev.Target = "auth_config/" + cfg
	}
	s.d.Audit.RecordBy(ev, time.Time{})
}

// unknownCredential marks a credential that did not verify: its keyed hash
// correlates repeated presentations without recording it.
func (s *authzService) unknownCredential(c *call, token string) {
	if token != "" {
		c.ev.Hashes = map[string]string{"credential": s.d.Audit.Hash(token)}
	}
}

// Labels of writ_leases_issued_total and writ_revocations_total that are
// not a RevokeRequest target.
const (
	issuedLogin      = "login"      // AuthorizeAndIssue
	issuedDelegation = "delegation" // LeaseService.Delegate
	revokedByHolder  = "credential" // the holder ended its own lease (Revoke with credential, Complete)
)

// phaseDryRun marks a revocation's dry run: its blast radius was counted and
// nothing was written.
const phaseDryRun = "dry_run"

// revokeTarget is the target label of writ_revocations_total.
func revokeTarget(m *writv1.RevokeRequest) string {
	switch m.GetTarget().(type) {
	case *writv1.RevokeRequest_Credential:
		return revokedByHolder
	case *writv1.RevokeRequest_Identity:
		return fsm.RevocationIdentity
	case *writv1.RevokeRequest_Role:
		return fsm.RevocationRole
	case *writv1.RevokeRequest_Owner:
		return fsm.RevocationOwner
	case *writv1.RevokeRequest_Subtree:
		return fsm.RevocationSubtree
	}
	return fsm.RevocationLease
}

// revocationTarget names a revocation's target in a record: "role/ci-deploy".
func revocationTarget(t fsm.Target) string {
	if t.Kind == "" {
		return ""
	}
	return t.Kind + "/" + t.ID
}

// ---- batch items ----

// batchRecords builds BatchAuthorize's audit records: one spooled use record
// per credential in the call, listing the decision of every item made with
// it (audit.Item, in request order). What the items share is written once:
// the holder's actor, lease, keyed hash of a credential that did not verify,
// applied index, and the context Writ adds (context.auth, context.delegation).
// Each item keeps its action, resource, own request context, decision,
// reason, determining policies, policy set and version, or error. Until
// 2026-12-04 every item had a record of its own, repeating all of that;
// auditing was then half of a node's CPU per decision (audit/DESIGN.md).
//
// The record's decision is allow only when every item in it was allowed,
// so a decision: deny filter keeps every record that holds a deny; its error
// is set when the credential itself failed (every item failed with it).
type batchRecords struct {
	start   time.Time
	index   uint64
	batchID string
	items   int        // the call's item count
	order   []*checked // first use order; nil is the items with no credential at all
	byCred  map[*checked]*audit.Event
}

func (b *batchRecords) add(i int, it *writv1.BatchAuthorizeItem, ck *checked, dec *writv1.Decision, cedarCtx map[string]any, err error) {
	ev := b.byCred[ck]
	if ev == nil {
		ev = &audit.Event{Time: b.start, Type: audit.TypeUse, Method: "BatchAuthorize", AuthMethod: authCredential,
			DecisionID: b.batchID, AppliedIndex: b.index, Decision: audit.Allow}
		if b.order == nil {
			// Most batches use one credential: room for every item left.
			// Later credentials' records grow as needed (a cap per record
			// would be quadratic in a batch of distinct credentials).
			ev.Items = make([]audit.Item, 0, b.items-i)
		}
		if ck != nil {
			ev.Actor, ev.LeaseID, ev.Hashes = ck.actor, ck.lease.GetId(), ck.hashes
			ev.Healthy = ck.err == nil
			if ck.err != nil {
				ev.Error = auditError(ck.err)
			}
		}
		if b.byCred == nil {
			b.byCred = make(map[*checked]*audit.Event, 1)
		}
		b.byCred[ck] = ev
		b.order = append(b.order, ck)
	}
	item := audit.Item{Index: i, Action: it.GetAction()}
	if r := it.GetResource(); r != nil {
		item.Resource = &audit.Resource{Type: r.GetType(), ID: r.GetId()}
	}
	if cedarCtx != nil {
		// The shared keys go on the record once; the item keeps its own.
		if ev.Context == nil {
			shared := map[string]any{}
			for _, k := range reservedContextKeys {
				if v, ok := cedarCtx[k]; ok {
					shared[k] = v
				}
			}
			ev.Context = shared
		}
		for _, k := range reservedContextKeys {
			delete(cedarCtx, k)
		}
		item.Context = cedarCtx
	}
	switch {
	case err != nil:
		ev.Decision = audit.Deny
		// The credential's own error is the record's; an item that failed
		// for a reason of its own (a bad resource) says so.
		if ck == nil || ck.err == nil || !errors.Is(err, ck.err) {
			item.Error = auditError(err)
		}
	case dec != nil:
		item.Reason, item.PolicySet, item.PolicyVersion = dec.GetReason(), dec.GetPolicySet(), dec.GetPolicyVersion()
		item.Decision = audit.Deny
		if dec.GetAllowed() {
			item.Decision = audit.Allow
		} else {
			ev.Decision = audit.Deny
		}
		for _, p := range dec.GetDeterminingPolicies() {
			item.Policies = append(item.Policies, p.GetId())
		}
	}
	ev.Items = append(ev.Items, item)
}

// record spools the records. They share one queue_wait: a full queue makes
// the call wait at most that long for all of them together.
func (b *batchRecords) record(a Auditor) {
	deadline := a.QueueDeadline()
	for _, ck := range b.order {
		a.RecordBy(b.byCred[ck], deadline)
	}
}

// ---- shadow policy sets ----

// shadowAuditor counts shadow disagreements in writ_policy_shadow_total and
// records each disagreement (type shadow, spooled): issue 6's "counts
// disagreements in metrics and audit before activation". It runs on the
// decision path, so it does nothing for an agreeing evaluation but count it.
type shadowAuditor struct {
	metrics *telemetry.Metrics
	audit   Auditor
}

func (o shadowAuditor) ObserveShadow(r authz.ShadowResult) {
	o.metrics.ShadowEvaluations.WithLabelValues(r.Set, r.Kind.String()).Inc()
	if r.Kind == authz.Unchanged {
		return
	}
	ev := &audit.Event{Type: audit.TypeShadow, Method: "shadow", Action: r.Request.Action,
		Resource:  &audit.Resource{Type: r.Request.Resource.Type, ID: r.Request.Resource.ID},
		PolicySet: ShadowPrefix + r.Set, PolicyVersion: r.Candidate.Version}
	if id := r.Request.Identity; id != nil {
		ev.Actor = audit.Actor{ID: id.GetId(), Kind: id.GetKind(), Owner: id.GetOwner(), Role: r.Request.Role}
	}
	setDecision(ev, r.Candidate, "")
	ev.Reason = r.Kind.String() + ": active " + r.Set + " v" + u64s(r.Active.Version) + " " + allowWord(r.Active.Allowed) + "; candidate: " + r.Candidate.Reason
	o.audit.Record(ev)
}

func allowWord(allowed bool) string {
	if allowed {
		return audit.Allow
	}
	return audit.Deny
}
