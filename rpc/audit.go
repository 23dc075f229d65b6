package rpc

import (
	"context"
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
	// Hash is the keyed hash under which records show a secret.
	Hash(value string) string
	Watch(streams []audit.Stream, buffer int) *audit.Subscription
	Config() audit.Config
}

// nopAuditor audits nothing (Deps.Audit nil: tests and benchmarks).
type nopAuditor struct{}

func (nopAuditor) Durable(context.Context, *audit.Event) error { return nil }
func (nopAuditor) Record(*audit.Event)                         {}
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
		c.d.Metrics.DecisionSeconds.WithLabelValues(c.ev.Method, result).Observe(time.Since(c.start).Seconds())
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
	c.d.Audit.Record(c.ev)
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

// adminActor names an admin by the keyed hash of its token, never the
// token: human = admin token caller (until authn adds actor types).
func (d *Deps) adminActor(token string) audit.Actor {
	return audit.Actor{ID: "admin:" + d.Audit.Hash(token), Kind: "admin", Human: true}
}

func identityActor(ident *fsmpb.Identity, role string) audit.Actor {
	return audit.Actor{ID: ident.GetId(), Kind: ident.GetKind(), Owner: ident.GetOwner(), Role: role}
}

// Auth methods of callers that present something other than a login proof.
const (
	authAdminToken = "admin_token"
	authCredential = "credential" // a Writ credential (the lease's login method is in context.auth)
)

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
		return "lease/" + p.RevokeLease.GetLeaseId()
	case *fsmpb.Command_RevokeIdentity:
		return "identity/" + p.RevokeIdentity.GetIdentityId()
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

// loginFailed records a refused proof: the secret and the role id appear
// only as keyed hashes (so repeated attempts with one value correlate).
func (s *authzService) loginFailed(c *call, method, roleID, secret string, err error) {
	reason := authn.Reason(err)
	s.d.Metrics.LoginFailures.WithLabelValues(method, reason).Inc()
	ev := &audit.Event{Type: audit.TypeLogin, Method: c.ev.Method, RequestID: c.ev.RequestID, AuthMethod: method, Decision: audit.Deny, Reason: reason,
		Hashes: map[string]string{"role_id": s.d.Audit.Hash(roleID), "secret_id": s.d.Audit.Hash(secret)}}
	ev.Error = auditError(err)
	s.d.Audit.Record(ev)
	c.skip = true // the login record is the call's record
}

// loggedIn records an accepted proof and makes its principal the call's actor.
func (s *authzService) loggedIn(c *call, p *authn.Principal) {
	c.ev.Actor = identityActor(p.Identity, p.Role.GetName())
	c.ev.AuthMethod = p.Method
	ev := &audit.Event{Type: audit.TypeLogin, Method: c.ev.Method, RequestID: c.ev.RequestID, Actor: c.ev.Actor, AuthMethod: p.Method, Decision: audit.Allow}
	if p.SecretAccessor != "" {
		ev.Target = "secret_id/" + p.SecretAccessor
	}
	s.d.Audit.Record(ev)
}

// unknownCredential marks a credential that did not verify: its keyed hash
// correlates repeated presentations without recording it.
func (s *authzService) unknownCredential(c *call, token string) {
	if token != "" {
		c.ev.Hashes = map[string]string{"credential": s.d.Audit.Hash(token)}
	}
}

func revokeTarget(m *writv1.RevokeRequest) string {
	switch m.GetTarget().(type) {
	case *writv1.RevokeRequest_Credential:
		return "credential"
	case *writv1.RevokeRequest_Identity:
		return "identity"
	}
	return "lease"
}
